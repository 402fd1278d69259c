"""Evidence bundles: exported per case or window, deterministic, and checked offline by a
verifier that needs nothing of the hub; any change to a bundle is found and named."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest
from click.testing import CliRunner

from bus.cli import main
from bus.database import make_engine
from bus.hub import Hub
from bus.secret_box import SecretBox
from replay.bundle import export_bundle
from replay.bundle_verify import verify_bundle
from replay.keys import SealKeys, export_keys, read_keys_file
from replay.sealer import ChainSealer
from tests.conftest import ROOT
from tests.helpers.messages import sample, with_message_id

SCJG = "320382.scjgj.djxt"
CASE = "320382-SCJG-20261120-0001"


@pytest.fixture
def exported(backend, tmp_path):
    settings = backend.settings(audit__seal="false")
    with Hub(settings) as hub:
        for name, system in [("CaseAccepted-enterprise.xml", SCJG), ("CaseAccepted-person-window.xml",
                                                                     "320382.gaj.rkxt"),
                             ("CaseProcess-review.xml", SCJG), ("CaseResult-approved.xml", SCJG)]:
            assert hub.accept(with_message_id(sample(name))[1], system=system).status == "ACCEPTED"
        while hub.log.unpublished_count():
            pass
    engine = make_engine(settings.effective_database_url)
    keys = SealKeys(engine, SecretBox.from_settings(settings))
    ChainSealer(engine, keys, max_events=3).seal_all()
    bundle = tmp_path / "case.zip"
    manifest = export_bundle(engine, keys, bundle, case_number=CASE, reader="operator:audit-li")
    yield engine, keys, bundle, manifest, tmp_path
    engine.dispose()


def _rewrite(bundle, out, name, change):
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == name:
                data = change(data)
                if data is None:
                    continue
            target.writestr(info, data)
    return out


def test_a_case_bundle_holds_its_events_only_verifies_offline_and_is_deterministic(exported):
    engine, keys, bundle, manifest, tmp_path = exported
    auditor_keys = read_keys_file(export_keys(keys.listing()))
    report = verify_bundle(str(bundle), auditor_keys)
    assert report.ok, report.findings
    with zipfile.ZipFile(bundle) as archive:
        events = [json.loads(line) for line in archive.read("events.jsonl").decode().splitlines()]
        names = archive.namelist()
    # The three SCJG case messages, received and published; the other case's message is not in it.
    assert sorted(e["kind"] for e in events) == ["PUBLISHED"] * 3 + ["RECEIVED"] * 3
    assert len([n for n in names if n.startswith("bodies/")]) == 3
    assert not any(b"320382199207040242" in open(bundle, "rb").read() for _ in [0])
    assert report.events == 6 and report.bodies == 3 and report.seals >= 2
    again = tmp_path / "again.zip"
    export_bundle(engine, keys, again, case_number=CASE)
    assert again.read_bytes() == bundle.read_bytes()  # deterministic
    # The standalone verifier, run as a program with nothing but the bundle and the keys.
    keys_file = tmp_path / "hub-keys.json"
    keys_file.write_text(export_keys(keys.listing()))
    run = subprocess.run([sys.executable, "-m", "replay.bundle_verify", str(bundle), "--keys", str(keys_file)],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("OK: 6 events, 3 bodies"), run.stdout + run.stderr


def test_every_change_to_a_bundle_is_found_and_named(exported):
    engine, keys, bundle, manifest, tmp_path = exported
    auditor_keys = read_keys_file(export_keys(keys.listing()))
    with zipfile.ZipFile(bundle) as archive:
        lines = archive.read("events.jsonl").decode().splitlines()
        seals = [json.loads(line) for line in archive.read("seals.jsonl").decode().splitlines()]
    events = [json.loads(line) for line in lines]
    received = next(e for e in events if e["kind"] == "RECEIVED")

    def first(name, change):
        report = verify_bundle(str(_rewrite(bundle, tmp_path / "bad.zip", name, change)), auditor_keys)
        assert not report.ok
        return report.first

    def edit_event(seq, **fields):
        def change(data):
            out = []
            for line in data.decode().splitlines():
                event = json.loads(line)
                if event["seq"] == seq:
                    event.update(fields)
                out.append(json.dumps(event, ensure_ascii=False, sort_keys=True))
            return ("\n".join(out) + "\n").encode()
        return change

    body = f"bodies/{received['digest']}.xml"
    for position in (0, 200, -3):
        def flip(data, position=position):
            data = bytearray(data)
            data[position] ^= 1
            return bytes(data)
        finding = first(body, flip)
        assert (finding.code, finding.seq) == ("BODY_ALTERED", received["seq"])

    for field, value in [("source", "320382.other.system"), ("at", received["at"] + 1), ("kind", "REJECTED")]:
        finding = first("events.jsonl", edit_event(received["seq"], **{field: value}))
        assert (finding.code, finding.seq) == ("EVENT_ALTERED", received["seq"])

    deleted = events[2]["seq"]
    finding = first("events.jsonl", lambda d: ("\n".join(l for l in d.decode().splitlines()
                                                       if json.loads(l)["seq"] != deleted) + "\n").encode())
    assert (finding.code, finding.seq) == ("EVENT_MISSING", deleted)

    a, b = events[0], events[3]  # two events trade places (their contents swap seqs)
    swapped = {a["seq"]: {**b, "seq": a["seq"]}, b["seq"]: {**a, "seq": b["seq"]}}
    finding = first("events.jsonl", lambda d: "".join(
        json.dumps(swapped.get(json.loads(l)["seq"], json.loads(l)), sort_keys=True, ensure_ascii=False) + "\n"
        for l in d.decode().splitlines()).encode())
    assert (finding.code, finding.seq) == ("EVENT_ALTERED", a["seq"])

    seal = seals[0]

    def edit_seal(**fields):
        return lambda d: "".join(json.dumps({**s, **fields} if s["id"] == seal["id"] else s, sort_keys=True) + "\n"
                                 for s in map(json.loads, d.decode().splitlines())).encode()

    assert first("seals.jsonl", edit_seal(events_hash="0" * 64)).code == "SEAL_ALTERED"
    forged = seal["signature"][:-2] + ("00" if not seal["signature"].endswith("00") else "01")
    finding = first("seals.jsonl", edit_seal(signature=forged))
    assert (finding.code, finding.seal) == ("SEAL_SIGNATURE", seal["id"])
    if len(seals) > 2:
        middle = seals[1]["id"]
        finding = first("seals.jsonl", lambda d: "".join(l + "\n" for l in d.decode().splitlines()
                                                          if json.loads(l)["id"] != middle).encode())
        assert finding.code in ("SEAL_MISSING", "EVENT_NOT_SEALED")

    assert first("manifest.json", lambda d: d.replace(b'"huitong_evidence": 1', b'"huitong_evidence": 2')).code \
        == "MANIFEST_SIGNATURE"
    assert first("keys.json", lambda d: None).code == "BUNDLE_INCOMPLETE"
    # Verified against the bundle's own keys, a bundle re-signed by someone else is consistent;
    # against the auditor's copy of the hub's keys it is not.
    assert verify_bundle(str(bundle)).ok


def test_cli_export_and_verify_bundle(exported, backend):
    engine, keys, bundle, manifest, tmp_path = exported
    runner = CliRunner()
    env = backend.env()
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(export_keys(keys.listing()))
    out = tmp_path / "window.zip"
    made = runner.invoke(main, ["audit", "export", "--since", "2000-01-01", "--out", str(out)], env=env)
    assert made.exit_code == 0, made.output
    checked = runner.invoke(main, ["audit", "verify-bundle", str(out), "--keys", str(keys_file)], env=env)
    assert checked.exit_code == 0 and checked.output.startswith("OK: "), checked.output
    none = runner.invoke(main, ["audit", "export", "--case", "320382-NONE-0", "--out", str(tmp_path / "x.zip")],
                         env=env)
    assert none.exit_code == 1 and "NOT_FOUND" in none.output
    usage = runner.invoke(main, ["audit", "export", "--out", str(tmp_path / "x.zip")], env=env)
    assert usage.exit_code == 2 and "--case" in usage.output
