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
            "keys": keys_file or "database",
            "findings": [{"code": f.code, "seq": f.seq, "seal": f.seal, "text": f.text} for f in report.findings]}


def _echo_report(report, keys_file) -> None:
    if report.ok:
        click.echo(f"OK: {report.seals} seals, {report.events} events (#{report.first_seq}–#{report.last_sealed_seq}), "
                   f"{report.bodies} bodies verified" if report.seals else "OK: nothing sealed yet")
    else:
        click.echo(f"FAILED: first {report.first}")
        for finding in report.findings[1:]:
            click.echo(f"  then {finding}")
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
