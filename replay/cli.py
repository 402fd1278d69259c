"""`huitong audit …`: the sealed chain from the command line: seal now, verify, keys."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bus.cli_common import Moment, _settings, config_option, engine_for


def _keys(settings, engine):
    from bus.secret_box import SecretBox
    from replay.keys import SealKeys
    return SealKeys(engine, SecretBox.from_settings(settings))


@click.group()
def audit() -> None:
    """Evidence over the exchange log: seals, verification, signing keys."""


@audit.command()
@config_option
def seal(config_path):
    """Seal every event not sealed yet, now (the hub also does this in the background)."""
    from replay.sealer import ChainSealer
    settings = _settings(config_path)
    engine = engine_for(settings)
    sealer = ChainSealer(engine, _keys(settings, engine), max_events=settings.audit.seal_max_events,
                         gap_wait_seconds=settings.audit.gap_wait_seconds)
    click.echo(f"sealed {sealer.seal_all()} events")


@audit.command()
@config_option
@click.option("--since", type=Moment(), help="Check only the seals made since then (default: the whole chain).")
@click.option("--keys", "keys_file", type=click.Path(exists=True, dir_okay=False),
              help="The hub's public keys as exported by `audit keys export` (default: those in the database, "
                   "which someone who can edit the database could also replace).")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.option("--max-findings", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Processes checking ranges of a long chain in parallel (default: the CPUs, at most 4).")
def verify(config_path, since, keys_file, as_json, max_findings, jobs):
    """Re-compute the hash chain and the seals' signatures over the exchange log.

    Names the first altered, missing or inserted event, altered body, or altered, missing or
    forged seal, and reports the events not sealed yet. Exits 1 when anything is wrong."""
    from replay.keys import read_keys_file
    from replay.verify import default_jobs, verify_log
    settings = _settings(config_path)
    engine = engine_for(settings)
    if keys_file:
        try:
            public = read_keys_file(Path(keys_file).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        public = _keys(settings, engine).public_keys()
    report = verify_log(engine, public, since=since, max_findings=max_findings, jobs=jobs or default_jobs())
    if as_json:
        click.echo(json.dumps(_report_dict(report, keys_file), ensure_ascii=False, indent=2))
    else:
        _echo_report(report, keys_file)
    sys.exit(0 if report.ok else 1)


def _report_dict(report, keys_file) -> dict:
    return {"ok": report.ok, "seals": report.seals, "events": report.events, "bodies": report.bodies,
            "first_seq": report.first_seq, "last_sealed_seq": report.last_sealed_seq,
            "unsealed": {"events": report.unsealed, "first_seq": report.unsealed_first_seq,
                         "first_at": report.unsealed_first_at},
            "keys": keys_file or "database", "anchor": report.anchor,
            "findings": [{"code": f.code, "seq": f.seq, "seal": f.seal, "text": f.text} for f in report.findings]}


def _echo_report(report, keys_file) -> None:
    if report.ok:
        click.echo(f"OK: {report.seals} seals, {report.events} events (#{report.first_seq}–#{report.last_sealed_seq}), "
                   f"{report.bodies} bodies verified" if report.seals else "OK: nothing sealed yet")
    else:
        click.echo(f"FAILED: first {report.first}")
        for finding in report.findings[1:]:
            click.echo(f"  then {finding}")
    if report.anchor:
        a = report.anchor
        click.echo(f"the chain continues from seal {a['seal_id']} (hash {a['seal_hash'][:16]}…, events up to "
                   f"#{a['last_seq']}), archived in {a['archive']} (sha256 {a['archive_sha256'][:16]}…)")
    if report.unsealed:
        click.echo(f"unsealed: {report.unsealed} events from #{report.unsealed_first_seq} "
                   f"(logged {report.unsealed_first_at}) are not covered by a seal yet")
    if not keys_file:
        click.echo("keys: read from the database; pass --keys with an exported copy for an independent check",
                   err=True)


@audit.group()
def keys() -> None:
    """The hub's Ed25519 signing keys."""


@keys.command("list")
@config_option
def keys_list(config_path):
    """Every key, the active one last."""
    settings = _settings(config_path)
    engine = engine_for(settings)
    for key in _keys(settings, engine).listing():
        state = f"retired {key['retired_at']}" if key["retired_at"] else "active"
        click.echo(f"{key['key_id']}  created {key['created_at']}  {state}")


@keys.command()
@config_option
def rotate(config_path):
    """Make a new signing key; the current one is retired (its public half is kept)."""
    settings = _settings(config_path)
    engine = engine_for(settings)
    signer = _keys(settings, engine).rotate()
    click.echo(f"new signing key {signer.key_id}; export the public keys again for the auditors")


@keys.command()
@config_option
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="Write to FILE (default: stdout).")
def export(config_path, out):
    """The public keys (JSON with PEM), for `audit verify --keys` and `audit verify-bundle`."""
    from replay.keys import export_keys
    settings = _settings(config_path)
    engine = engine_for(settings)
    keys = _keys(settings, engine)
    keys.signer()  # the first key exists once someone asks for it
    text = export_keys(keys.listing())
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"written {out}", err=True)
    else:
        click.echo(text, nl=False)


# -- `huitong log search|show` (joined to bus's `log` group) ------------------------------------
@click.group(name="log")
def log_commands() -> None:
    """The exchange log."""


def _log_queries(config_path):
    from replay.lineage import LogQueries
    settings = _settings(config_path)
    return LogQueries(engine_for(settings))


def _reader(operator: str | None) -> str:
    import getpass
    return f"operator:{operator or getpass.getuser()}"


def _fail(exc) -> None:
    raise click.ClickException(f"{getattr(exc, 'code', 'VALUE_INVALID')}: {exc}") from None


@log_commands.command("search")
@config_option
@click.option("--since", type=Moment(), help="Received at or after (Beijing time unless a zone is given).")
@click.option("--until", type=Moment(), help="Received before.")
@click.option("--system", help="The sending system, e.g. 320382.scjgj.djxt.")
@click.option("--route", help="Messages a route has handled.")
@click.option("--type", "message_type", help="CaseAccepted, CaseProcess, CaseResult, EnterpriseRecord, …")
@click.option("--status", help="Messages with such an event: RECEIVED PUBLISHED ROUTED DELIVERED FAILED DEAD_LETTERED "
                               "REPLAYED; or refused/repeated entries: REJECTED DUPLICATE.")
@click.option("--case", "case_number", help="Case number (办件编号).")
@click.option("--uscc", help="Enterprise USCC.")
@click.option("--citizen-id", help="Citizen id (shown masked in the results).")
@click.option("--project", "project_code", help="Project code.")
@click.option("-n", "--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--after", type=int, help="Continue after this cursor (the `next` of the previous page).")
@click.option("--operator", help="Who reads (recorded in the exchange log; default: your login name).")
@click.option("--json", "as_json", is_flag=True)
def log_search(config_path, since, until, system, route, message_type, status, case_number, uscc, citizen_id,
               project_code, limit, after, operator, as_json):
    """Search the exchange log, newest first. The search itself is recorded (AUDIT_READ)."""
    from bus.errors import HuitongError
    from replay.lineage import LogSearch
    criteria = LogSearch(since=since, until=until, system=system, route=route, type=message_type,
                         status=status.upper() if status else None, case_number=case_number, uscc=uscc,
                         citizen_id=citizen_id, project_code=project_code)
    try:
        found = _log_queries(config_path).search(_reader(operator), criteria, limit=limit, after=after)
    except HuitongError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    for item in found["items"]:
        if "event" in item:
            click.echo(f"{item['at']}  {item['event']:<10} {item['message_id'] or '-'}  {item['source'] or '-'}  "
                       f"{item['code'] or ''}")
        else:
            states = ", ".join(f"{d['route']}→{d['destination']} {d['status']}" for d in item["deliveries"])
            click.echo(f"{item['received_at']}  {item['type']:<16} {item['message_id']}  {item['source']}  "
                       f"{item['case_number'] or ''}  {states}")
    click.echo(f"{len(found['items'])} shown" + (f"; more: --after {found['next']}" if found["next"] else ""),
               err=True)


@log_commands.command("show")
@config_option
@click.argument("message_id")
@click.option("--source", help="The sending system, when two systems used the same message id.")
@click.option("--operator", help="Who reads (recorded in the exchange log; default: your login name).")
@click.option("--json", "as_json", is_flag=True)
def log_show(config_path, message_id, source, operator, as_json):
    """One message's lineage: every event with its timing, its deliveries, what derives from it."""
    from bus.errors import HuitongError
    try:
        lineage = _log_queries(config_path).lineage(_reader(operator), message_id, source=source)
    except HuitongError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(lineage, ensure_ascii=False, indent=2))
        return
    m = lineage["message"]
    if m:
        click.echo(f"{m['type']} {m['message_id']} from {m['source']}  case {m['case_number'] or '-'}  "
                   f"body sha256 {m['digest']}")
    for e in lineage["events"]:
        timing = f"+{e['since_received_ms']:.1f} ms" if e["since_received_ms"] is not None else ""
        where = e["route"] or ""
        detail = e["detail"] if isinstance(e["detail"], dict) else {}
        extra = detail.get("destination") or detail.get("to") or ""
        click.echo(f"#{e['seq']:<8} {e['at']}  {e['event']:<13} {timing:>12}  {where} {extra} {e['code'] or ''}".rstrip())
    for d in lineage["derived"]:
        click.echo(f"derived: {d['type']} {d['message_id']} from {d['source']} at {d['received_at']}")
    for o in lineage["outputs"]:
        click.echo(f"output: {o['route']} → {o['destination']} by {o['transform'] or '(as logged)'}, sha256 "
                   f"{o['payload_digest'][:16]}…" + (f", replay {o['replay_id']}" if o["replay_id"] else ""))
    for r in lineage["replays"]:
        click.echo(f"replayed: {r['replay_id']} ({r['mode']}) by {r['by']}: {r['reason']}")


@audit.command("export")
@config_option
@click.option("--case", "case_number", help="Every event of this case's messages.")
@click.option("--since", type=Moment(), help="Every event logged since then (with --until: a window).")
@click.option("--until", type=Moment(), help="Up to then.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True), help="The .zip to write.")
@click.option("--operator", help="Who exports (recorded in the exchange log; default: your login name).")
def export_command(config_path, case_number, since, until, out, operator):
    """Write an evidence bundle (zip) that `audit verify-bundle` checks offline."""
    from replay.bundle import NothingToExport, export_bundle
    if not case_number and not since and not until:
        raise click.UsageError("say what to export: --case CASE_NO, or --since/--until")
    settings = _settings(config_path)
    engine = engine_for(settings)
    try:
        manifest = export_bundle(engine, _keys(settings, engine), Path(out), case_number=case_number, since=since,
                                 until=until, reader=_reader(operator))
    except NothingToExport as exc:
        raise click.ClickException(f"NOT_FOUND: {exc}") from None
    left_out = manifest["unsealed_left_out"]
    click.echo(f"written {out}: {len(manifest['events'])} events, {len(manifest['bodies'])} bodies, "
               f"{len(manifest['seals'])} seals" + (f"; {left_out} events not sealed yet were left out" if left_out
                                                     else ""))


@audit.command("verify-bundle")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@click.option("--keys", "keys_file", type=click.Path(exists=True, dir_okay=False),
              help="The hub's public keys (`audit keys export`); default: the copy inside the bundle.")
def verify_bundle_command(bundle, keys_file):
    """Check an evidence bundle offline (no database needed). Exits 1 when anything is wrong."""
    from replay.bundle_verify import describe, verify_bundle
    from replay.verifier import read_public_keys
    try:
        keys = read_public_keys(Path(keys_file).read_text(encoding="utf-8")) if keys_file else None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    report = verify_bundle(bundle, keys)
    for line in describe(report, keys_given=bool(keys_file)):
        click.echo(line)
    sys.exit(0 if report.ok else 1)


@click.command("replay")
@config_option
@click.option("--since", type=Moment(), help="Messages received since then (Beijing time unless a zone is given).")
@click.option("--until", type=Moment(), help="Up to then (default: now).")
@click.option("--route", help="Only through this route.")
@click.option("--type", "message_type", help="Only messages of this type.")
@click.option("--case", "case_number", help="Only this case's messages.")
@click.option("--to-sandbox", "sandbox", type=click.Path(file_okay=False),
              help="Write the messages and what each destination would get under DIR instead of delivering.")
@click.option("--sandbox-zip", is_flag=True, help="With --to-sandbox: one zip per destination (and messages.zip) "
                                                  "instead of a file per message.")
@click.option("--dry-run", is_flag=True, help="Only list what would be delivered where, and what changed since.")
@click.option("--reason", required=True, help="Why (recorded with every replayed message).")
@click.option("--operator", help="Who replays (default: your login name).")
@click.option("--yes", is_flag=True, help="Deliver for real without asking.")
@click.option("--json", "as_json", is_flag=True, help="The plan and outcome as JSON.")
def replay_command(config_path, since, until, route, message_type, case_number, sandbox, sandbox_zip, dry_run, reason,
                   operator, yes, as_json):
    """Send logged messages through the routes again, as the routes stand now.

    --dry-run lists each message, route and destination: new, unchanged, changed (with the
    changed fields when a transform changed), failed, or no-longer (delivered then, not now).
    --to-sandbox DIR writes instead of delivering. Otherwise the destinations get the messages
    again under a new replay id. Every replay is recorded: who, why, what."""
    from bus.errors import HuitongError
    from replay.replayer import DELIVER, DRY_RUN, SANDBOX, ReplayRequest, Replayer
    from routes.destinations import DestinationContext
    from routes.loader import load_routes
    from schemas.hardened import HardenedParser, XmlLimits
    if dry_run and sandbox:
        raise click.UsageError("--dry-run and --to-sandbox are two different things; choose one")
    mode = DRY_RUN if dry_run else SANDBOX if sandbox else DELIVER
    settings = _settings(config_path)
    engine = engine_for(settings)
    parser = HardenedParser(XmlLimits(**settings.xml.model_dump()))
    try:
        routes = load_routes(settings.routes.dir or None, settings.destinations,
                             DestinationContext(settings, state_dir=settings.state_dir), parser=parser)
    except HuitongError as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from None
    request = ReplayRequest(reason=reason, by=_reader(operator), mode=mode, since=since, until=until, route=route,
                            type=message_type, case_number=case_number, sandbox=Path(sandbox) if sandbox else None,
                            sandbox_zip=sandbox_zip)
    replayer = Replayer(engine, routes, parser)
    try:
        if mode == DELIVER and not yes:
            preview = replayer.run(ReplayRequest(**{**request.__dict__, "mode": DRY_RUN}))
            click.echo(f"{preview.messages} messages, {len(preview.planned)} deliveries would be made again.")
            if not click.confirm("Deliver them now?", default=False):
                sys.exit(1)
        report = replayer.run(request)
    except HuitongError as exc:
        _fail(exc)
    finally:
        routes.close()
    if as_json:
        click.echo(json.dumps({"replay_id": report.replay_id, "mode": report.mode, "messages": report.messages,
                               "counts": report.counts(), "forwards_not_replayed": report.skipped_forwards,
                               "planned": [p.as_dict() for p in report.planned]}, ensure_ascii=False, indent=2))
        return
    for plan in report.planned:
        click.echo(f"{plan.message_id}  {plan.type:<14} {plan.route} → {plan.destination}  {plan.status}"
                   + (f"  ({plan.error})" if plan.error else ""))
        for change in plan.changes:
            click.echo(f"    {change['field']}: {change['then']!r} → {change['now']!r}")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.counts().items())) or "nothing to do"
    click.echo(f"replay {report.replay_id} ({report.mode}): {report.messages} messages; {counts}"
               + (f"; {report.skipped_forwards} forwards to other routes not replayed" if report.skipped_forwards
                  else ""))


@audit.command("retain")
@config_option
@click.option("--before", type=Moment(), help="Archive and remove what was sealed before then "
                                                "(default: audit.retention_days ago).")
@click.option("--archive-dir", type=click.Path(file_okay=False), help="Where the archive goes "
                                                                        "(default: audit.archive_dir, else <state_dir>/archive).")
@click.option("--operator", help="Who (recorded; default: your login name).")
@click.option("--yes", is_flag=True, help="Do it without asking.")
def retain_command(config_path, before, archive_dir, operator, yes):
    """Archive the oldest sealed part of the exchange log as a verified evidence bundle, then
    delete it; the chain stays verifiable from the anchor left in its place."""
    import datetime as dt

    from replay.retention import RetentionRefused, plan_cut, retain
    settings = _settings(config_path)
    if before is None:
        if not settings.audit.retention_days:
            raise click.UsageError("give --before, or set audit.retention_days in the configuration")
        before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=settings.audit.retention_days)
    engine = engine_for(settings)
    cut = plan_cut(engine, before)
    if cut is None or cut.events == 0:
        click.echo(f"nothing to retain: no seal was made before {before.isoformat()}")
        return
    directory = Path(archive_dir or settings.audit.archive_dir or Path(settings.state_dir) / "archive")
    if not yes and not click.confirm(f"Archive {cut.events} events (#{cut.first_seq}–#{cut.last_seq}, up to seal "
                                     f"{cut.seal_id}) into {directory} and remove them from the log?", default=False):
        sys.exit(1)
    try:
        outcome = retain(engine, _keys(settings, engine), cut, directory, by=_reader(operator))
    except RetentionRefused as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from None
    click.echo(f"archived {outcome['events']} events into {outcome['archive']} (sha256 {outcome['archive_sha256']}); "
               f"removed them, {outcome['messages']} messages and {outcome['bodies']} bodies; "
               f"{outcome['kept_messages']} messages kept (unpublished, waiting or dead-lettered, or still referenced)")
