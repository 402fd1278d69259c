"""`huitong inbox`, `huitong frontdb` and `huitong ingest` (huitong.cli entry points)."""
from __future__ import annotations

import json

import click

from bus.cli_common import _hub, _settings, config_option, run_until_stopped


@click.command()
@config_option
def ingest(config_path):
    """Run the file-drop inboxes and front-database pollers (and the relay), nothing else.

    For a process beside the ferry's directories or the front databases; `huitong serve`
    runs them too unless adapters.run is false."""
    settings = _settings(config_path)
    if not settings.inboxes and not settings.frontdb:
        raise click.ClickException("no inboxes and no frontdb are configured: nothing to ingest")
    hub = _hub(settings)
    hub.start(routes=False, adapters=True)
    click.echo(f"Huitong ingesting: {len(settings.inboxes)} inbox(es), {len(settings.frontdb)} front database(s)",
               err=True)
    run_until_stopped(hub)


@click.group()
def inbox():
    """File-drop inboxes of department systems."""


@inbox.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per inbox.")
def inbox_status_command(config_path, as_json):
    """Per inbox: files waiting, in progress, archived and in error today."""
    from adapters.filedrop.status import inbox_status

    settings = _settings(config_path)
    if not settings.inboxes:
        raise click.ClickException("no inboxes are configured (inboxes: in the configuration)")
    rows = [inbox_status(name, inbox_settings) for name, inbox_settings in settings.inboxes.items()]
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], ensure_ascii=False, indent=1))
        return
    click.echo(f"{'INBOX':<20} {'SYSTEM':<24} {'WAITING':>7} {'IN PROGRESS':>11} {'ARCHIVED TODAY':>14} "
               f"{'ERRORS TODAY':>12}  OLDEST WAITING")
    for r in rows:
        oldest = f"{r.oldest_waiting_seconds:.0f} s" if r.oldest_waiting_seconds is not None else "-"
        click.echo(f"{r.inbox:<20} {r.system:<24} {r.waiting:>7} {r.in_progress:>11} {r.archived_today:>14} "
                   f"{r.errors_today:>12}  {oldest}")


@click.group()
def frontdb():
    """Front databases (前置库) of department systems."""


@frontdb.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="{frontdb: {table: counts}} as JSON.")
def frontdb_status(config_path, as_json):
    """Per front table: rows new (syncsign 0), taken (1), failed (2), and the last sync time."""
    from adapters.frontdb.poller import FrontDbPoller

    settings = _settings(config_path)
    if not settings.frontdb:
        raise click.ClickException("no front databases are configured (frontdb: in the configuration)")
    report, failed = {}, False
    for name, front in settings.frontdb.items():
        poller = FrontDbPoller(name, front, acceptance=None)
        try:
            report[name] = poller.counts()
        except Exception as exc:  # one unreachable front database does not hide the others
            report[name] = {"error": f"{getattr(exc, 'code', exc.__class__.__name__)}: {exc}"}
            failed = True
        finally:
            poller.close()
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        click.echo(f"{'FRONTDB':<16} {'TABLE':<24} {'NEW':>7} {'TAKEN':>9} {'FAILED':>7}  LAST SYNC")
        for name, tables in report.items():
            if "error" in tables:
                click.echo(f"{name:<16} {tables['error']}")
                continue
            for table, c in tables.items():
                click.echo(f"{name:<16} {table:<24} {c['new']:>7} {c['taken']:>9} {c['failed']:>7}  {c['last_sync'] or '-'}")
    if failed:
        raise SystemExit(1)
