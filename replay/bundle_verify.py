"""Checking an evidence bundle offline: `huitong audit verify-bundle FILE.zip`, or on a machine
with nothing of the hub but this file and `replay/verifier.py`:

    python -m replay.bundle_verify FILE.zip [--keys hub-keys.json]

What a bundle proves: its events are, byte for byte, events the hub sealed (each event's hash
sits at its place among the hashes of its seal, which hash to the seal's events_hash); the seals
are one unbroken stretch of the hub's chain, each signed by a hub key; every body hashes to the
digest its events name; and nothing listed was left out or changed, because the manifest that
lists every event, body and file is signed by the hub too. Findings name the event seq, seal id,
body digest or file that is wrong."""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile

try:
    from replay.verifier import (GENESIS, Finding, Report, SealHeader, event_leaf, events_hash,
                                 read_public_keys)
except ImportError:  # copied beside verifier.py, outside the hub
    from verifier import (GENESIS, Finding, Report, SealHeader, event_leaf, events_hash,  # type: ignore
                          read_public_keys)

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"


def verify_bundle(path: str, keys: dict[str, bytes] | None = None) -> Report:
    """keys: the auditor's copy of the hub's public keys; without it, the bundle's own copy
    (which proves the bundle is consistent, not who made it)."""
    report = Report()
    add = report.findings.append
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        add(Finding("BUNDLE_UNREADABLE", f"{path}: {exc}"))
        return report
    with archive:
        names = set(archive.namelist())
        for needed in (MANIFEST, SIGNATURE, "events.jsonl", "seals.jsonl", "keys.json"):
            if needed not in names:
                add(Finding("BUNDLE_INCOMPLETE", f"{needed} is missing from the bundle"))
        if report.findings:
            return report
        manifest_bytes = archive.read(MANIFEST)
        manifest = json.loads(manifest_bytes)
        if keys is None:
            keys = read_public_keys(archive.read("keys.json").decode("utf-8"))
        public = {key_id: Ed25519PublicKey.from_public_bytes(raw) for key_id, raw in keys.items()}

        seals = [json.loads(line) for line in archive.read("seals.jsonl").decode("utf-8").splitlines() if line]
        events = [json.loads(line) for line in archive.read("events.jsonl").decode("utf-8").splitlines() if line]
        _check_seals(seals, public, manifest, add, report)
        _check_events(events, seals, manifest, add, report)
        _check_bodies(archive, names, events, manifest, add, report)
        _check_manifest(archive, names, manifest, manifest_bytes, public, add)
    return report


def _check_seals(seals: list[dict], public: dict, manifest: dict, add, report: Report) -> None:
    previous = None
    for seal in seals:
        header = SealHeader.from_dict(seal)
        report.seals += 1
        computed = header.hash()
        if computed != seal["seal_hash"]:
            add(Finding("SEAL_ALTERED", f"seal {header.id}'s header hashes to {computed[:16]}…, not the "
                        f"{seal['seal_hash'][:16]}… it was signed as", seal=header.id))
        if previous is not None:
            if header.id != previous[0] + 1:
                add(Finding("SEAL_MISSING", f"seal {previous[0] + 1} is missing between seals {previous[0]} and "
                            f"{header.id}", seal=previous[0] + 1))
            elif header.prev_hash != previous[1]:
                add(Finding("CHAIN_BROKEN", f"seal {header.id} does not follow seal {previous[0]}", seal=header.id))
        elif header.id == 1 and header.prev_hash != GENESIS:
            add(Finding("CHAIN_BROKEN", "seal 1 does not start the chain", seal=1))
        key = public.get(header.key_id)
        if key is None:
            add(Finding("SEAL_KEY_UNKNOWN", f"seal {header.id} is signed with key {header.key_id}, not a hub key",
                        seal=header.id))
        else:
            try:
                key.verify(bytes.fromhex(seal["signature"]), bytes.fromhex(computed))
            except (InvalidSignature, ValueError):
                add(Finding("SEAL_SIGNATURE", f"seal {header.id}'s signature does not verify: a forged or altered "
                            "seal", seal=header.id))
        leaves = seal.get("leaves")
        if leaves is not None and events_hash(bytes.fromhex(leaves)) != header.events_hash:
            add(Finding("SEAL_ALTERED", f"seal {header.id}'s event hashes do not give its events_hash",
                        seal=header.id))
        previous = (header.id, computed)
        report.last_sealed_seq = header.last_seq
        if report.first_seq is None:
            report.first_seq = header.first_seq


def _check_events(events: list[dict], seals: list[dict], manifest: dict, add, report: Report) -> None:
    by_seal = [(SealHeader.from_dict(s), bytes.fromhex(s["leaves"]) if s.get("leaves") else None) for s in seals]
    listed = manifest.get("events", [])
    seqs = [e.get("seq") for e in events]
    if seqs != listed:
        for seq in sorted(set(listed) - set(seqs)):
            add(Finding("EVENT_MISSING", f"event #{seq} is listed in the manifest but not in the bundle", seq=seq))
        for seq in sorted(set(seqs) - set(listed)):
            add(Finding("EVENT_NOT_SEALED", f"event #{seq} is in the bundle but not in its manifest", seq=seq))
        if set(seqs) == set(listed):
            add(Finding("EVENT_ORDER", "the events are not in log order"))
    for event in events:
        report.events += 1
        seq = event["seq"]
        covering = next(((h, leaves) for h, leaves in by_seal if h.first_seq <= seq <= h.last_seq), None)
        if covering is None or not covering[0].covers(seq):
            add(Finding("EVENT_NOT_SEALED", f"event #{seq} is covered by none of the bundle's seals", seq=seq))
            continue
        header, leaves = covering
        if leaves is None:
            add(Finding("BUNDLE_INCOMPLETE", f"seal {header.id} covers event #{seq} but its event hashes are not in "
                        "the bundle", seq=seq, seal=header.id))
            continue
        position = header.position(seq)
        if leaves[position * 32:(position + 1) * 32] != event_leaf(event):
            add(Finding("EVENT_ALTERED", f"event #{seq} ({event.get('kind')}) is not the event seal {header.id} "
                        "sealed", seq=seq, seal=header.id))


def _check_bodies(archive, names: set, events: list[dict], manifest: dict, add, report: Report) -> None:
    named = {}
    for event in events:
        if event.get("digest"):
            named.setdefault(event["digest"], event["seq"])
    for digest in manifest.get("bodies", []):
        named.setdefault(digest, None)
    for digest, seq in named.items():
        name = f"bodies/{digest}.xml"
        report.bodies += 1
        if name not in names:
            add(Finding("BODY_MISSING", f"the body {digest[:16]}… is not in the bundle", seq=seq))
        elif hashlib.sha256(archive.read(name)).hexdigest() != digest:
            add(Finding("BODY_ALTERED", f"{name} no longer hashes to its digest", seq=seq))


def _check_manifest(archive, names: set, manifest: dict, manifest_bytes: bytes, public: dict, add) -> None:
    key = public.get(manifest.get("key_id"))
    signature = archive.read(SIGNATURE).decode("ascii").strip()
    try:
        if key is None:
            raise InvalidSignature
        key.verify(bytes.fromhex(signature), hashlib.sha256(manifest_bytes).digest())
    except (InvalidSignature, ValueError):
        add(Finding("MANIFEST_SIGNATURE", "the manifest's signature does not verify with a hub key: the list of "
                    "what the bundle holds was changed"))
    for name, digest in sorted(manifest.get("files", {}).items()):
        if name not in names:
            add(Finding("BUNDLE_INCOMPLETE", f"{name} is listed in the manifest but missing"))
        elif hashlib.sha256(archive.read(name)).hexdigest() != digest:
            add(Finding("FILE_ALTERED", f"{name} differs from the file the manifest lists"))
    extra = names - set(manifest.get("files", {})) - {MANIFEST, SIGNATURE}
    for name in sorted(extra):
        add(Finding("BUNDLE_EXTRA", f"{name} is not listed in the manifest"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m replay.bundle_verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--keys", help="the hub's public keys (audit keys export); default: the bundle's copy")
    args = parser.parse_args(argv)
    keys = read_public_keys(open(args.keys, encoding="utf-8").read()) if args.keys else None
    report = verify_bundle(args.bundle, keys)
    for line in describe(report, keys_given=bool(args.keys)):
        print(line)
    return 0 if report.ok else 1


def describe(report: Report, *, keys_given: bool) -> list[str]:
    if report.ok:
        lines = [f"OK: {report.events} events, {report.bodies} bodies, {report.seals} seals verified"]
    else:
        lines = [f"FAILED: first {report.first}"] + [f"  then {f}" for f in report.findings[1:]]
    if not keys_given:
        lines.append("keys: the bundle's own copy; pass --keys with the hub's exported keys to know who signed it")
    return lines


if __name__ == "__main__":
    sys.exit(main())
