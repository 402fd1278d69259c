"""The `huitong` command."""
from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import click

from bus.cli_common import _hub, _settings, config_option, run_until_stopped
from bus.errors import HuitongError, RejectedMessage
from bus.masking import mask_text

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Huitong (汇通): the data-exchange hub of the regional e-government platform."""


@main.command()
@config_option
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8080).")
@click.option("--demo", is_flag=True, help="Also run simulated department systems (under var/demo, with demo "
              "routes and a flaky destination) and print the demo users' sign-in for the console at /.")
def serve(config_path, host, port, demo):
    """Run the hub in one process: HTTP endpoints, the console at /, exchange log and relay.

    With no configuration it runs embedded: SQLite under ./var/ and the in-memory broker."""
    import waitress

    from bus.http import create_app, serve_options

    demo_plugin = _demo_plugin() if demo else None
    if demo_plugin is not None:
        from bus.logs import configure_logging
        try:
            settings = demo_plugin.demo_settings(config_path)
        except HuitongError as exc:
            raise click.ClickException(str(exc)) from None
        configure_logging(settings.logging.level, settings.logging.format)
    else:
        settings = _settings(config_path)
    hub = _hub(settings).start()
    host = host or settings.http.host
    port = settings.http.port if port is None else port
    server = waitress.create_server(create_app(hub), host=host, port=port, **serve_options(settings))

    def _terminate(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    stop_demo = None
    if demo_plugin is not None:
        stop_demo, lines = demo_plugin.start_demo(hub)
        for line in lines:
            click.echo(line, err=True)
    click.echo(f"Huitong serving on http://{server.effective_host}:{server.effective_port} "
               f"(database {_safe_url(settings.effective_database_url)}, broker {_safe_url(settings.broker_url)})",
               err=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if stop_demo is not None:
            stop_demo()
        server.close()
        hub.stop()
        click.echo("Huitong stopped.", err=True)


def _demo_plugin():
    """The demo lives in the console package (bus/ imports no plug-in): found by entry point."""
    from importlib.metadata import entry_points
    found = [ep for ep in entry_points(group="huitong.demo")]
    if not found:
        raise click.ClickException("no demo installed (the console package provides it)")
    return found[0].load()


@main.command()
@config_option
def relay(config_path):
    """Run only the relay (publishes what the exchange log holds as unpublished).

    For a relay beside HTTP workers that run none (relay.enabled: false there). It accepts
    nothing itself, so it scans the log without the grace a worker's own relay is given."""
    settings = _settings(config_path)
    hub = _hub(settings)
    hub.relay.scan_grace = 0.0
    hub.start(relay=True, routes=False, adapters=False)
    run_until_stopped(hub)


@main.command()
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--as", "system", required=True, metavar="SYSTEM",
              help="The sending system's id, e.g. 320382.scjgj.djxt; each envelope's Source must match.")
def send(config_path, files, system):
    """Validate, log and publish canonical messages from FILES.

    Prints one result line per file and exits non-zero if any file was rejected."""
    settings = _settings(config_path)
    hub = _hub(settings)
    hub.log.start()
    rejected = accepted = 0
    try:
        for name in files:
            try:
                data = Path(name).read_bytes()
            except OSError as exc:
                click.echo(f"REJECTED  {name}  FILE_UNREADABLE: {exc.strerror}")
                rejected += 1
                continue
            receipt = hub.accept(data, system=system)
            if receipt.ok:
                accepted += 1
                click.echo(f"{receipt.status:<9} {name}  message {receipt.message_id}  receipt {receipt.receipt_id}")
            else:
                rejected += 1
                click.echo(f"REJECTED  {name}  receipt {receipt.receipt_id}")
                for error in receipt.errors:
                    click.echo(f"  {error.code} at {error.path}: {mask_text(error.text)}")
            sys.stdout.flush()
        if accepted and not settings.embedded_broker:
            try:
                published = hub.relay.drain()
                click.echo(f"published {published} message(s) to the exchange", err=True)
            except HuitongError as exc:
                click.echo(f"broker unavailable ({exc}); the messages wait in the exchange log "
                           "and the hub's relay publishes them", err=True)
        elif accepted:
            click.echo("in-memory broker: a running `huitong serve` on this database publishes them", err=True)
    finally:
        hub.stop()
    sys.exit(1 if rejected else 0)


@main.command()
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(config_path, files):
    """Validate canonical messages without logging them: report only."""
    from bus.envelope import parse_envelope
    from schemas.hardened import XmlLimits
    from schemas.validation import MessageValidator

    settings = _settings(config_path)
    validator = MessageValidator(XmlLimits(**settings.xml.model_dump()))
    bad = 0
    for name in files:
        try:
            envelope = parse_envelope(Path(name).read_bytes(), validator)
        except OSError as exc:
            click.echo(f"INVALID  {name}\n  FILE_UNREADABLE: {exc.strerror}")
            bad += 1
        except RejectedMessage as rejection:
            click.echo(f"INVALID  {name}")
            for error in rejection.errors:
                click.echo(f"  {error.code} at {error.path}: {mask_text(error.text)}")
            bad += 1
        else:
            click.echo(f"OK       {name}  {envelope.type} {envelope.message_id}")
    sys.exit(1 if bad else 0)


@main.group()
def db():
    """Database schema."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path):
    """Upgrade the exchange-log database to this release's schema."""
    from bus.database import current_revisions, make_engine, upgrade

    settings = _settings(config_path)
    engine = make_engine(settings.effective_database_url)
    before = current_revisions(engine)
    upgrade(engine)
    click.echo(f"database {_safe_url(settings.effective_database_url)}: {_revisions(before)} -> "
               f"{_revisions(current_revisions(engine))}")


@db.command("current")
@config_option
def db_current(config_path):
    """Show the database's schema revision and this release's."""
    from bus.database import current_revisions, head_revisions, make_engine

    settings = _settings(config_path)
    engine = make_engine(settings.effective_database_url)
    click.echo(f"current {_revisions(current_revisions(engine))}, release needs {_revisions(head_revisions())}")


def _revisions(revisions) -> str:
    """One revision per migration branch (exchange log, catalog, ...), or 'empty'."""
    return ", ".join(sorted(revisions)) or "empty"


@main.group(name="log")
def log_group():
    """The exchange log."""


@log_group.command("tail")
@config_option
@click.option("-n", "--lines", default=20, show_default=True, help="How many of the newest events.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events as they are appended.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
def log_tail(config_path, lines, follow, as_json):
    """Print the newest exchange-log events (personal data masked)."""
    from bus.database import make_engine
    from bus.exchange_log import ExchangeLog

    from bus.database import ensure_schema

    settings = _settings(config_path)
    engine = make_engine(settings.effective_database_url)
    try:
        ensure_schema(engine, auto_upgrade=False)
    except HuitongError as exc:
        raise click.ClickException(str(exc)) from None
    store = ExchangeLog(engine)
    last = 0
    try:
        while True:
            events = store.tail(lines, after_seq=last) if last else store.tail(lines)
            for event in events:
                click.echo(_format_event(event, as_json))
                last = event.seq
            if not follow:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def _format_event(event, as_json: bool) -> str:
    fields = {"seq": event.seq, "at": event.at.isoformat(timespec="milliseconds"), "kind": event.kind,
              "message_id": event.message_id, "source": event.source, "route": event.route,
              "code": event.code, "detail": json.loads(event.detail) if event.detail else None}
    if as_json:
        return mask_text(json.dumps(fields, ensure_ascii=False))
    parts = [f"{event.seq:>8}", fields["at"], f"{event.kind:<12}", event.message_id or "-", event.source or "-"]
    if event.route:
        parts.append(f"route={event.route}")
    if event.code:
        parts.append(event.code)
    return mask_text("  ".join(parts))


def _safe_url(url: str) -> str:
    """Never print a password that sits in a URL."""
    from sqlalchemy.engine import make_url
    if url.startswith(("memory", "sqlite")):
        return url
    try:
        return make_url(url.replace("amqp://", "postgresql://", 1)).render_as_string(hide_password=True).replace(
            "postgresql://", "amqp://", 1) if url.startswith("amqp") else make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _register_groups() -> None:
    from importlib.metadata import entry_points

    from bus.cli_systems import systems
    main.add_command(systems)
    # Commands of the packages beside bus/ (routes, dlq, worker ...), which bus/ does not import.
    for ep in entry_points(group="huitong.cli"):
        command, present = ep.load(), main.commands.get(ep.name)
        if isinstance(present, click.Group) and isinstance(command, click.Group):
            for name, sub in command.commands.items():  # e.g. replay's `log search|show` beside `log tail`
                present.add_command(sub, name)
        else:
            main.add_command(command, name=ep.name)


_register_groups()

if __name__ == "__main__":
    main()
