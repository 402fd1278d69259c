"""`huitong catalog get|search|history|conflicts|import|export`: the shared registries from
the command line. The operator reads every registry with ids and phones masked; --unmask
shows them whole only with --reason, and the read is recorded (who, whose, why)."""
from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import click

from bus.cli_common import _settings, config_option, engine_for as _engine
from bus.errors import HuitongError

TYPES = {"enterprise": "enterprise", "enterprises": "enterprise", "person": "person", "persons": "person",
         "project": "project", "projects": "project", "item": "service_item", "items": "service_item",
         "service_item": "service_item"}
type_argument = click.argument("record_type", metavar="TYPE", type=click.Choice(sorted(TYPES)))
json_option = click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
unmask_option = click.option("--unmask", "unmask_reason", metavar="REASON", default=None,
                             help="Show citizen ids and phones whole, saying why (recorded in the exchange log).")
operator_option = click.option("--operator", default=None, metavar="NAME",
                               help="Who reads (recorded with an unmasked read; default: your login name).")


def _queries(config_path, operator, unmask_reason):
    from catalog.queries import CatalogQueries, Reader
    if unmask_reason is not None and not unmask_reason.strip():
        raise click.UsageError("--unmask needs a reason")
    settings = _settings(config_path)
    queries = CatalogQueries(_engine(settings), max_search_results=settings.catalog.max_search_results)
    return queries, Reader.operator(operator or getpass.getuser(), unmask_reason=unmask_reason)


def _run(action):
    try:
        return action()
    except (HuitongError, ValueError) as exc:
        code = getattr(exc, "code", "VALUE_INVALID")
        raise click.ClickException(f"{code}: {exc}") from None


def _echo_record(record: dict) -> None:
    sources = record.pop("sources", {})
    cases = record.pop("cases", None)
    for name, value in record.items():
        origin = sources.get(name)
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value
        click.echo(f"{name:<24} {'' if shown is None else shown}"
                   + (f"   [{origin['system']} {origin['message_id']} {origin['at']}]" if origin else ""))
    if cases is not None:
        click.echo(f"cases ({len(cases)}):")
        for c in cases:
            click.echo(f"  {c['case_number']:<28} {c['role'] or '':<20} {c['status']:<10} {c['result'] or '':<9} "
                       f"{c['item_name'] or c['item_code'] or ''}  {c['accepted_at'] or ''}")


@click.group()
def catalog():
    """The shared registries: enterprise, person, project, service item (信息资源库)."""


@catalog.command("get")
@config_option
@type_argument
@click.argument("key")
@click.option("--version", default=None, help="A service item's version (default: the latest).")
@json_option
@unmask_option
@operator_option
def get(config_path, record_type, key, version, as_json, unmask_reason, operator):
    """One record by its key (USCC, citizen id, project code, item code) with where each value
    came from and the record's cases."""
    from catalog.registries import RECORD_TYPES
    rt = RECORD_TYPES[TYPES[record_type]]
    queries, reader = _queries(config_path, operator, unmask_reason)
    record = _run(lambda: queries.get(reader, rt, rt.lookup_key(key, version)))
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False, indent=2))
    else:
        _echo_record(record)


@catalog.command("search")
@config_option
@click.argument("prefix")
@click.option("--region", default=None, help="Only this region (2, 4 or 6 digits, e.g. 3203).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@json_option
def search(config_path, prefix, region, limit, as_json):
    """Enterprises whose name starts with PREFIX."""
    queries, reader = _queries(config_path, None, None)
    found = _run(lambda: queries.search_enterprises(reader, prefix, region=region, limit=limit))
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False))
        return
    for item in found["items"]:
        click.echo(f"{item['uscc']}  {item['region_code'] or '':<6}  {item['status'] or '':<9}  {item['name']}")
    click.echo(f"{len(found['items'])} enterprise(s)" + (" (more: narrow the prefix or raise --limit)"
                                                         if found["next"] else ""), err=True)


@catalog.command("history")
@config_option
@type_argument
@click.argument("key")
@click.option("--version", default=None, help="A service item's version.")
@json_option
@unmask_option
@operator_option
def history(config_path, record_type, key, version, as_json, unmask_reason, operator):
    """Every change of a record: which message of which system changed what, from what."""
    from catalog.registries import RECORD_TYPES
    rt = RECORD_TYPES[TYPES[record_type]]
    queries, reader = _queries(config_path, operator, unmask_reason)
    if len(rt.keys) > 1 and not version:
        raise click.UsageError("give the service item's --version")
    changes = _run(lambda: queries.history(reader, rt, rt.lookup_key(key, version)))
    for change in changes:
        if as_json:
            click.echo(json.dumps(change, ensure_ascii=False))
            continue
        click.echo(f"#{change['id']} {change['action']} by {change['system']} message {change['message_id']} "
                   f"(sent {change['message_at']})")
        for name, (old, new) in change["changes"].items():
            click.echo(f"    {name}: {json.dumps(old, ensure_ascii=False)} -> {json.dumps(new, ensure_ascii=False)}")


@catalog.command("conflicts")
@config_option
@click.argument("record_type", metavar="[TYPE", required=False, type=click.Choice(sorted(TYPES)))
@click.argument("key", metavar="[KEY]]", required=False)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@json_option
def conflicts(config_path, record_type, key, limit, as_json):
    """Values a less authoritative system offered that differ from the ones kept, newest first."""
    from catalog.registries import RECORD_TYPES
    rt = RECORD_TYPES[TYPES[record_type]] if record_type else None
    queries, reader = _queries(config_path, None, None)
    found = _run(lambda: queries.conflicts(reader, rt, rt.key_of(key) if rt and key else None, limit=limit))
    for c in found:
        if as_json:
            click.echo(json.dumps(c, ensure_ascii=False))
        else:
            click.echo(f"#{c['id']} {c['record_type']} {c['key']} {c['field']}: kept "
                       f"{json.dumps(c['kept'], ensure_ascii=False)} ({c['kept_system']}), offered "
                       f"{json.dumps(c['offered'], ensure_ascii=False)} by {c['offered_system']} "
                       f"message {c['offered_message_id']}")
    if not as_json:
        click.echo(f"{len(found)} conflict(s)", err=True)


@catalog.command("import")
@config_option
@type_argument
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--encoding", default="utf-8", show_default=True, type=click.Choice(["utf-8", "gbk", "gb18030"]))
@click.option("--as", "system", default="import", show_default=True, metavar="SYSTEM",
              help="Whose authority the rows carry, e.g. 320382.scjgj.djxt for the registration system's export.")
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the per-row error report (default: FILE.errors.csv, when there are errors).")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 100_000))
def import_(config_path, record_type, file, encoding, system, errors_path, batch_size):
    """Import records from a CSV FILE (English or Chinese column names). Each row is checked
    like a message; bad rows are reported and skipped; running the file again changes nothing."""
    from catalog.authority import Authority
    from catalog.csvio import ImportRefused, import_csv, write_error_report
    from catalog.registries import RECORD_TYPES
    from catalog.store import CatalogStore

    rt = RECORD_TYPES[TYPES[record_type]]
    settings = _settings(config_path)
    store = CatalogStore(_engine(settings), _run(lambda: Authority.from_settings(settings)))
    with open(file, "rb") as handle:
        total = max(sum(1 for _ in handle) - 1, 0)
    try:
        with click.progressbar(length=total, label=f"importing {rt.plural}", file=sys.stderr,
                               show_pos=True) as bar:
            report = import_csv(store, rt, file, encoding=encoding, system=system, batch_size=batch_size,
                                progress=bar.update)
    except ImportRefused as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from None
    t = report.tally
    click.echo(f"{report.rows} row(s): {t.created} created, {t.updated} updated, {t.unchanged} unchanged, "
               f"{t.conflicts} conflict(s) recorded, {report.refused_rows} refused")
    if report.ignored_columns:
        click.echo(f"ignored column(s): {', '.join(report.ignored_columns)}", err=True)
    if report.errors:
        target = errors_path or file.with_name(file.name + ".errors.csv")
        write_error_report(report, target)
        for e in report.errors[:10]:
            click.echo(f"  line {e.line} {e.column}: {e.code} {e.text}", err=True)
        click.echo(f"{len(report.errors)} error(s); all of them in {target}", err=True)
        sys.exit(1)


@catalog.command("export")
@config_option
@type_argument
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The CSV file to write (default: standard output).")
@click.option("--encoding", default="utf-8", show_default=True, type=click.Choice(["utf-8", "gbk", "gb18030"]))
@unmask_option
@operator_option
def export(config_path, record_type, out_path, encoding, unmask_reason, operator):
    """Export a registry as CSV (the import's columns). Ids and phones are masked unless --unmask."""
    from catalog.csvio import export_csv
    from catalog.queries import mask_personal
    from catalog.registries import RECORD_TYPES

    rt = RECORD_TYPES[TYPES[record_type]]
    queries, reader = _queries(config_path, operator, unmask_reason)
    reader.require(rt)
    mask = None if reader.unmasks else mask_personal
    if out_path:
        with open(out_path, "w", encoding=encoding, newline="", errors="strict") as handle:
            count = export_csv(queries.engine, rt, handle, mask=mask)
    else:
        count = export_csv(queries.engine, rt, sys.stdout, mask=mask)
    if reader.unmasks:
        queries.record_export(reader, rt, count)
    click.echo(f"exported {count} {rt.plural}" + (f" to {out_path}" if out_path else ""), err=True)
