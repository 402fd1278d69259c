"""`huitong audit export`: an evidence bundle for one case or one time window, checkable offline
by `huitong audit verify-bundle` (replay/bundle_verify.py).

The archive is deterministic (the same log and the same question give the same bytes: fixed
entry times, sorted entries, no export time inside): manifest.json and its signature, the
events (as the chain hashed them, with their time as text beside), the bodies they name, the
seals that cover them with the hashes of all the events each seal covers (hashes only: another
case's events stay out) and the headers of the seals in between (the chain links), the hub's
public keys, and a README for whoever receives it. The export is itself an AUDIT_EXPORT event."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile
from pathlib import Path

from sqlalchemy import Engine, and_, insert, or_, select

from bus.exchange_log import event_row
from bus.models import Event, Message, MessageBody
from replay.chain import EVENT_COLUMNS, event_dict, header_of
from replay.keys import SealKeys, export_keys
from replay.models import Seal

FIXED_TIME = (2000, 1, 1, 0, 0, 0)
README = """Huitong evidence bundle
=======================

manifest.json   what this bundle holds (events, bodies, seals, files with their SHA-256), signed
manifest.sig    Ed25519 signature (hex) of SHA-256(manifest.json) by the key named in it
events.jsonl    the exchange-log events, one JSON object per line, in log order; "at" is the
                time as hashed (microseconds since 1970-01-01 UTC), "at_text" the same for people
seals.jsonl     the seals covering the events (with the hashes of every event each covers) and
                the seals between them, each chained to the one before and signed
bodies/         the canonical messages, each named by its SHA-256
keys.json       the hub's public keys (check them against the copy the hub gave you)

Check it:  huitong audit verify-bundle THIS.zip --keys hub-keys.json
      or:  python -m replay.bundle_verify THIS.zip --keys hub-keys.json
"""


class NothingToExport(Exception):
    code = "NOT_FOUND"


def export_bundle(engine: Engine, keys: SealKeys, out: Path, *, case_number: str | None = None,
                  since: dt.datetime | None = None, until: dt.datetime | None = None,
                  seq_range: tuple[int, int] | None = None, reader: str = "operator") -> dict:
    """Write the bundle; returns its manifest. Only sealed events go in (an unsealed one could
    not be proved); how many were left out for that is in the manifest."""
    with engine.connect() as conn:
        events = conn.execute(_events_query(case_number, since, until, seq_range)).all()
        if not events:
            raise NothingToExport("no events match" + (f" case {case_number}" if case_number else " the window"))
        top = conn.execute(select(Seal.last_seq).order_by(Seal.id.desc()).limit(1)).scalar() or 0
        sealed = [e for e in events if e.seq <= top]
        if not sealed:
            raise NothingToExport(f"none of the {len(events)} matching events is sealed yet; seal first "
                                  "(`huitong audit seal`)")
        seals = conn.execute(select(Seal).where(Seal.last_seq >= sealed[0].seq,
                                                Seal.first_seq <= sealed[-1].seq).order_by(Seal.id)).all()
        digests = sorted({e.digest for e in sealed if e.digest})
        bodies = dict(conn.execute(select(MessageBody.digest, MessageBody.content)
                                   .where(MessageBody.digest.in_(digests))).all()) if digests else {}
    signer = keys.signer()
    covering = set()
    for e in sealed:
        covering.add(next(s.id for s in seals if s.first_seq <= e.seq <= s.last_seq))
    files: dict[str, bytes] = {
        "events.jsonl": "".join(json.dumps(event_dict(e), ensure_ascii=False, sort_keys=True) + "\n"
                                for e in sealed).encode("utf-8"),
        "seals.jsonl": "".join(json.dumps(_seal(s, with_leaves=s.id in covering), sort_keys=True) + "\n"
                               for s in seals).encode("utf-8"),
        "keys.json": export_keys(keys.listing()).encode("utf-8"),
        "README.txt": README.encode("utf-8"),
    }
    for digest in digests:
        if digest in bodies:
            files[f"bodies/{digest}.xml"] = bodies[digest]
    manifest = {"huitong_evidence": 1,
                "criteria": {k: v for k, v in {"case_number": case_number,
                                               "since": since.isoformat() if since else None,
                                               "until": until.isoformat() if until else None,
                                               "seqs": list(seq_range) if seq_range else None}.items() if v},
                "events": [e.seq for e in sealed], "unsealed_left_out": len(events) - len(sealed),
                "bodies": digests, "seals": [s.id for s in seals], "key_id": signer.key_id,
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}}
    manifest_bytes = json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")
    files["manifest.json"] = manifest_bytes
    files["manifest.sig"] = signer.private.sign(hashlib.sha256(manifest_bytes).digest()).hex().encode("ascii")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buffer.getvalue())
    with engine.begin() as conn:
        conn.execute(insert(Event.__table__).values(event_row(
            "AUDIT_EXPORT", dt.datetime.now(dt.timezone.utc), source=reader,
            detail={"criteria": manifest["criteria"], "events": len(sealed), "bodies": len(digests),
                    "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()})))
    return manifest


def _events_query(case_number, since, until, seq_range=None):
    query = select(*EVENT_COLUMNS)
    if seq_range:
        query = query.where(Event.seq >= seq_range[0], Event.seq <= seq_range[1])
    if case_number:
        seqs = select(Message.seq).where(Message.case_number == case_number)
        ids = select(Message.message_id).where(Message.case_number == case_number)
        # The messages' own events, and events that name them without a message row link
        # (a DUPLICATE or a later REJECTED reuse of the id).
        query = query.where(or_(Event.message_seq.in_(seqs),
                                and_(Event.message_seq.is_(None), Event.message_id.in_(ids))))
    if since:
        query = query.where(Event.at >= since)
    if until:
        query = query.where(Event.at < until)
    return query.order_by(Event.seq)


def _seal(seal, *, with_leaves: bool) -> dict:
    out = {**header_of(seal).as_dict(), "seal_hash": seal.seal_hash, "signature": seal.signature}
    if with_leaves:
        out["leaves"] = seal.leaves.hex()
    return out
