"""`huitong audit retain`: archive, then delete, the oldest part of the exchange log, keeping
the chain verifiable across the cut.

The cut is always at a seal: every event up to the last seal made before the cut-off goes, with
those seals. First the range is written as an evidence bundle (every event, every body they
name, every seal with its event hashes) and the bundle is verified; only then are the rows
deleted, in one transaction that records the anchor: the last removed seal's id, hash and last
seq, and the archive's name and SHA-256. Sealing and `audit verify` carry on from the anchor;
an auditor checks an archive on its own (`audit verify-bundle`) and against the anchor (its
last seal hashes to the anchor's hash).

What stays although old: a message not published yet, or with a delivery waiting (RETRY,
RETRYING) or dead-lettered, keeps its row and body (its events are archived and go), and so
does a message a newer event still points at."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, and_, delete, exists, func, insert, select

from bus.exchange_log import event_row
from bus.logs import get_logger
from bus.models import Event, Message, MessageBody, RouteDelivery
from replay.bundle import export_bundle
from replay.bundle_verify import verify_bundle
from replay.chain import latest_anchor
from replay.keys import SealKeys
from replay.models import ChainAnchor, Seal

log = get_logger("huitong.audit")
WAITING = ("RETRY", "RETRYING", "DEAD")
CHUNK = 1000


class RetentionRefused(Exception):
    code = "RETENTION_REFUSED"


@dataclass(frozen=True)
class Cut:
    seal_id: int
    seal_hash: str
    first_seq: int
    last_seq: int
    events: int


def plan_cut(engine: Engine, before: dt.datetime) -> Cut | None:
    """Up to the newest seal made before the cut-off (its events were all logged before it)."""
    with engine.connect() as conn:
        seal = conn.execute(select(Seal.id, Seal.seal_hash, Seal.last_seq).where(Seal.sealed_at < before)
                            .order_by(Seal.id.desc()).limit(1)).first()
        if seal is None:
            return None
        anchor = latest_anchor(conn)
        first_seq = anchor.last_seq + 1 if anchor else 1
        events = conn.scalar(select(func.count()).select_from(Event)
                             .where(Event.seq >= first_seq, Event.seq <= seal.last_seq))
    return Cut(seal.id, seal.seal_hash, first_seq, seal.last_seq, events)


def retain(engine: Engine, keys: SealKeys, cut: Cut, archive_dir: Path, *, by: str) -> dict:
    """Archive the cut, verify the archive, then delete what it holds and record the anchor."""
    archive = Path(archive_dir) / f"huitong-log-{cut.first_seq:012d}-{cut.last_seq:012d}.zip"
    manifest = export_bundle(engine, keys, archive, seq_range=(cut.first_seq, cut.last_seq), reader=by)
    report = verify_bundle(str(archive), keys.public_keys())
    if not report.ok or len(manifest["events"]) != cut.events:
        raise RetentionRefused(f"the archive {archive} does not hold the cut whole "
                               f"({report.first or len(manifest['events'])}); nothing was deleted")
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    with engine.begin() as conn:
        in_cut = and_(Event.seq >= cut.first_seq, Event.seq <= cut.last_seq)
        message_seqs = list(conn.scalars(select(Event.message_seq).where(in_cut, Event.message_seq.is_not(None))
                                         .distinct()))
        digests = set(conn.scalars(select(Event.digest).where(in_cut, Event.digest.is_not(None)).distinct()))
        removed_events = conn.execute(delete(Event).where(in_cut)).rowcount
        gone = []
        for i in range(0, len(message_seqs), CHUNK):
            gone += conn.execute(select(Message.seq, Message.digest).where(
                Message.seq.in_(message_seqs[i:i + CHUNK]), Message.published_at.is_not(None),
                ~exists().where(Event.message_seq == Message.seq),
                ~exists().where(RouteDelivery.message_seq == Message.seq, RouteDelivery.status.in_(WAITING)))).all()
        gone_seqs = [g.seq for g in gone]
        for i in range(0, len(gone_seqs), CHUNK):
            chunk = gone_seqs[i:i + CHUNK]
            conn.execute(delete(RouteDelivery).where(RouteDelivery.message_seq.in_(chunk)))
            conn.execute(delete(Message).where(Message.seq.in_(chunk)))
        digests |= {g.digest for g in gone}
        digest_list = sorted(digests)
        removed_bodies = 0
        for i in range(0, len(digest_list), CHUNK):
            removed_bodies += conn.execute(delete(MessageBody).where(
                MessageBody.digest.in_(digest_list[i:i + CHUNK]),
                ~exists().where(Message.digest == MessageBody.digest),
                ~exists().where(Event.digest == MessageBody.digest))).rowcount
        conn.execute(delete(Seal).where(Seal.id <= cut.seal_id))
        conn.execute(insert(Event.__table__).values(event_row(
            "RETAINED", dt.datetime.now(dt.timezone.utc), source=by,
            detail={"archive": archive.name, "archive_sha256": sha256, "events": removed_events,
                    "messages": len(gone_seqs), "bodies": removed_bodies, "up_to_seal": cut.seal_id,
                    "up_to_seq": cut.last_seq})))
        conn.execute(insert(ChainAnchor).values(
            seal_id=cut.seal_id, seal_hash=cut.seal_hash, last_seq=cut.last_seq, archive=archive.name,
            archive_sha256=sha256, events_removed=removed_events, cut_at=dt.datetime.now(dt.timezone.utc), by=by))
    outcome = {"archive": str(archive), "archive_sha256": sha256, "events": removed_events,
               "messages": len(gone_seqs), "bodies": removed_bodies, "seals": cut.seal_id,
               "kept_messages": len(message_seqs) - len(gone_seqs)}
    log.info("audit.retained", **outcome)
    return outcome
