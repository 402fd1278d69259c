"""`huitong cases overdue|board|anomalies|show|recompute|sweep`: electronic supervision from the
command line. Dates are the deployment's (supervision.timezone); a case's days are working
days of the configured calendar."""
from __future__ import annotations

import json

import click

from bus.cli_common import _settings, config_option
from bus.errors import HuitongError

json_option = click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
department_option = click.option("--department", default=None, metavar="CODE",
                                 help="Only this department's cases (its code, e.g. scjgj).")


def _store(config_path):
    from bus.database import ensure_schema, make_engine
    from supervision.store import Policy, SupervisionStore, database_url
    settings = _settings(config_path)
    engine = make_engine(database_url(settings) or settings.effective_database_url)
    try:
        ensure_schema(engine, auto_upgrade=settings.auto_upgrade)
        return SupervisionStore(engine, Policy.from_settings(settings))
    except HuitongError as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from None


def _echo_cases(rows: list[dict]) -> None:
    if not rows:
        click.echo("no cases")
        return
    click.echo(f"{'case':<28} {'colour':<7} {'state':<12} {'deadline':<11} {'limit':>5}  department")
    for r in rows:
        click.echo(f"{r['case_number']:<28} {r['colour'] or '':<7} {r['state']:<12} {r['deadline'] or '':<11} "
                   f"{r['limit_days'] if r['limit_days'] is not None else '':>5}  "
                   f"{r['department_code'] or ''} {r['department_name'] or ''}")


@click.group()
def cases():
    """Electronic supervision (电子监察) of cases: colours, deadlines, anomalies."""


@cases.command()
@config_option
@department_option
@click.option("--yellow", is_flag=True, help="Cases close to their limit instead of overdue ones.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@json_option
def overdue(config_path, department, yellow, limit, as_json):
    """Open cases past their deadline (red), the longest overdue first."""
    rows = _store(config_path).overdue(department=department, colour="YELLOW" if yellow else "RED", limit=limit)
    click.echo(json.dumps(rows, ensure_ascii=False, indent=2)) if as_json else _echo_cases(rows)


@cases.command()
@config_option
@json_option
def board(config_path, as_json):
    """Per department: open cases by colour and the anomalies raised."""
    rows = _store(config_path).by_department()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    click.echo(f"{'department':<36} {'green':>6} {'yellow':>6} {'red':>6} {'anomalies':>9}")
    for r in rows:
        name = f"{r['department_code'] or '?'} {r['department_name'] or ''}"
        click.echo(f"{name:<36} {r['GREEN']:>6} {r['YELLOW']:>6} {r['RED']:>6} {r['anomalies']:>9}")


@cases.command()
@config_option
@department_option
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@json_option
def anomalies(config_path, department, limit, as_json):
    """Order anomalies raised (newest first), with the messages that caused them."""
    rows = _store(config_path).anomalies(department=department, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("no anomalies")
    for a in rows:
        click.echo(f"{a['raised_at']}  {a['case_number']:<28} {a['kind']:<26} {a['text']}")
        click.echo(f"{'':<28}messages: {', '.join(a['message_ids'])}")


@cases.command()
@config_option
@click.argument("case_number")
@json_option
def show(config_path, case_number, as_json):
    """One case: its state, clock, messages in business-time order, and alerts."""
    record = _store(config_path).case(case_number)
    if record is None:
        raise click.ClickException(f"NOT_FOUND: supervision has no case {case_number}")
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False, indent=2))
        return
    messages, alerts = record.pop("messages"), record.pop("alerts")
    for name, value in record.items():
        click.echo(f"{name:<18} {json.dumps(value, ensure_ascii=False) if isinstance(value, list) else value}")
    click.echo(f"messages ({len(messages)}):")
    for m in messages:
        what = {"CaseAccepted": f"accepted, {m.get('limit')} working days",
                "CaseProcess": f"step {m.get('step')} {m.get('step_name')} {m.get('action')}",
                "CaseResult": f"result {m.get('result')}"}[m["type"]]
        click.echo(f"  {m['at']}  {what:<40} {m['message_id']} from {m['source']}")
    click.echo(f"alerts ({len(alerts)}):")
    for a in alerts:
        click.echo(f"  {a['kind']:<26} {a['status']:<9} {a['raised_at'] or a['noticed_at']}  {a['text']}")


@cases.command()
@config_option
def recompute(config_path):
    """Recompute every open case's clock, e.g. after the calendar file changed. Alerts for
    cases that got worse are sent by the running hub."""
    result = _store(config_path).recompute()
    click.echo(f"{result['open']} open cases, {result['changed']} changed")


@cases.command()
@config_option
def sweep(config_path):
    """Recolour the cases whose yellow or red day has come and raise anomalies whose grace is
    over, now (the hub does this every supervision.sweep_interval_seconds)."""
    result = _store(config_path).sweep()
    click.echo(f"{result['recoloured']} cases recoloured, {result['anomalies_raised']} anomalies raised")
