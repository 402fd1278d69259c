"""Tables of the sealed chain: the hub's signing keys and the seals. Kept beside the exchange
log in the same database, in their own Alembic branch ("replay")."""
from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import JSON, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bus.models import NAMING, SeqType, UtcDateTime


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SealKey(Base):
    """An Ed25519 key of the hub. The newest one not retired signs; retired ones stay so old
    seals verify. The private half is encrypted with the hub's secret_key."""

    __tablename__ = "seal_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)  # sha256(public)[:16] hex
    public_key: Mapped[str] = mapped_column(String(64))  # raw 32 bytes, hex
    private_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    retired_at: Mapped[Optional[dt.datetime]] = mapped_column(UtcDateTime())


class ChainAnchor(Base):
    """Where the chain continues after retention removed its start: the last removed seal's id,
    hash and last seq, and the archive that holds what was removed."""

    __tablename__ = "chain_anchors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seal_id: Mapped[int] = mapped_column(SeqType)
    seal_hash: Mapped[str] = mapped_column(String(64))
    last_seq: Mapped[int] = mapped_column(SeqType)
    archive: Mapped[str] = mapped_column(String(200))
    archive_sha256: Mapped[str] = mapped_column(String(64))
    events_removed: Mapped[int] = mapped_column(Integer)
    cut_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    by: Mapped[str] = mapped_column(String(120))


class Seal(Base):
    """One link of the chain: a signed hash over the events first_seq..last_seq (without the
    skipped seqs) and the previous seal. `leaves` keeps every covered event's hash (32 bytes
    each, in order), so verification names the altered event and an evidence bundle can prove
    one case's events without carrying anyone else's. The id is the chain position: two
    sealers racing for the same one cannot both insert it."""

    __tablename__ = "seals"

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=False)
    first_seq: Mapped[int] = mapped_column(SeqType, index=True)
    last_seq: Mapped[int] = mapped_column(SeqType, unique=True)
    event_count: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[list] = mapped_column(JSON)
    events_hash: Mapped[str] = mapped_column(String(64))
    leaves: Mapped[bytes] = mapped_column(LargeBinary)
    prev_hash: Mapped[str] = mapped_column(String(64))
    seal_hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(128))  # hex
    sealed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
