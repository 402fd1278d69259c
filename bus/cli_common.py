"""What every `huitong` command shares: the --config option, settings, building a hub."""
from __future__ import annotations

import datetime as dt
import signal
import time

import click

from bus.config import Settings, load_settings
from bus.errors import HuitongError
from bus.logs import configure_logging
from bus.times import parse_moment

config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                             help="YAML configuration file (default: $HUITONG_CONFIG, else the embedded default).")


def _settings(config_path: str | None) -> Settings:
    try:
        settings = load_settings(config_path)
    except HuitongError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(settings.logging.level, settings.logging.format)
    return settings


def _hub(settings: Settings):
    from bus.hub import Hub
    try:
        return Hub(settings)
    except HuitongError as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from None


def run_until_stopped(hub) -> None:
    """Keep a started hub running until Ctrl-C or SIGTERM, then stop it gracefully."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()


def engine_for(settings: Settings):
    """The hub's database, its schema brought up to date (or refused when auto_upgrade is off)."""
    from bus.database import ensure_schema, make_engine
    engine = make_engine(settings.effective_database_url)
    try:
        ensure_schema(engine, auto_upgrade=settings.auto_upgrade)
    except HuitongError as exc:
        raise click.ClickException(str(exc)) from None
    return engine


class Moment(click.ParamType):
    """A point in time on the command line: 2026-11-21, 2026-11-21T08:30 or with a zone
    (…+08:00, …Z). Without a zone it is Beijing time, as the departments read their clocks."""

    name = "TIME"

    def convert(self, value, param, ctx):
        if isinstance(value, dt.datetime):
            return value
        try:
            return parse_moment(value)
        except ValueError:
            self.fail(f"{value!r} is not a date or time like 2026-11-21 or 2026-11-21T08:30+08:00", param, ctx)
