"""The stored chain as the verifier sees it: event rows as the values it hashes, seal rows as
headers. Shared by the sealer, `audit verify` and the evidence export."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, select

from bus.models import Event, Message, MessageBody
from replay.models import ChainAnchor, Seal
from replay.verifier import GENESIS, SealHeader, leaf

EVENT_COLUMNS = (Event.seq, Event.kind, Event.at, Event.message_seq, Event.message_id, Event.source,
                 Event.route, Event.code, Event.digest, Event.detail)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
MICROSECOND = dt.timedelta(microseconds=1)


def micros(value: dt.datetime) -> int:
    """A stored time as the chain hashes it: whole microseconds since the epoch, UTC."""
    return (value - EPOCH) // MICROSECOND


def iso_utc(value: dt.datetime) -> str:
    """The text form of a time in seals and bundles: UTC, microseconds, Z."""
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_values(row) -> list:
    """An event row's EVENT_FIELDS values (its first ten columns, EVENT_COLUMNS), as hashed."""
    seq, kind, at, message_seq, message_id, source, route, code, digest, detail = row[:10]
    return [seq, kind, (at - EPOCH) // MICROSECOND, message_seq, message_id, source, route, code, digest, detail]


def row_leaf(row) -> bytes:
    return leaf(row_values(row))


def event_dict(row) -> dict:
    """An event for a bundle or a report: the hashed values, and `at` as text for people."""
    values = dict(zip(("seq", "kind", "at", "message_seq", "message_id", "source", "route", "code", "digest",
                       "detail"), row_values(row)))
    values["at_text"] = iso_utc(row.at)
    return values


def events_from(seq: int):
    return select(*EVENT_COLUMNS).where(Event.seq >= seq).order_by(Event.seq)


def events_with_evidence_from(seq: int, until: int | None = None):
    """Events with the body each names (to re-hash) and, for RECEIVED, the digest its message
    row points at now, in one stream: no query per seal."""
    query = (select(*EVENT_COLUMNS, MessageBody.content.label("body"), Message.digest.label("message_digest"))
             .outerjoin(MessageBody, MessageBody.digest == Event.digest)
             .outerjoin(Message, and_(Event.kind == "RECEIVED", Message.seq == Event.message_seq))
             .where(Event.seq >= seq).order_by(Event.seq))
    return query if until is None else query.where(Event.seq <= until)


def header_of(seal) -> SealHeader:
    return SealHeader(id=seal.id, first_seq=seal.first_seq, last_seq=seal.last_seq, event_count=seal.event_count,
                      skipped=tuple(tuple(r) for r in seal.skipped), events_hash=seal.events_hash,
                      prev_hash=seal.prev_hash, key_id=seal.key_id, sealed_at=iso_utc(seal.sealed_at))


def latest_anchor(conn):
    """Where the chain continues after retention (None when nothing was ever cut)."""
    return conn.execute(select(ChainAnchor).order_by(ChainAnchor.id.desc()).limit(1)).first()


@dataclass(frozen=True)
class ChainHead:
    """Where the chain stands: the next seal's id, the first seq it will cover, the hash it
    follows (the last seal, else the retention anchor, else the start), and when it was sealed."""

    next_id: int
    next_seq: int
    prev_hash: str
    sealed_at: dt.datetime | None = None


def chain_head(conn) -> ChainHead:
    seal = conn.execute(select(Seal.id, Seal.last_seq, Seal.seal_hash, Seal.sealed_at)
                        .order_by(Seal.id.desc()).limit(1)).first()
    if seal is not None:
        return ChainHead(seal.id + 1, seal.last_seq + 1, seal.seal_hash, seal.sealed_at)
    anchor = latest_anchor(conn)
    if anchor is not None:
        return ChainHead(anchor.seal_id + 1, anchor.last_seq + 1, anchor.seal_hash)
    return ChainHead(1, 1, GENESIS)
