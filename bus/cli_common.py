"""What every `huitong` command shares: the --config option, settings, building a hub."""
from __future__ import annotations

import click

import signal
import time

from bus.config import Settings, load_settings
from bus.errors import HuitongError
from bus.logs import configure_logging

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
