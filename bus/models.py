"""Tables of the exchange log. Bodies are stored once by content digest; messages are
unique per (source, message_id); events are only ever appended."""
from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import (BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, MetaData,
                        String, Text, TypeDecorator, UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names on SQLite and PostgreSQL alike, so migrations can name them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator):
    """Always stored as UTC, always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the exchange log")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class MessageBody(Base):
    __tablename__ = "message_bodies"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)


class Message(Base):
    """One accepted message. Rejected ones live only as REJECTED events."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("source", "message_id"),
        # The relay's work list: small, because published rows leave it.
        Index("ix_messages_unpublished", "seq",
              postgresql_where=text("published_at IS NULL"), sqlite_where=text("published_at IS NULL")),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    receipt_id: Mapped[str] = mapped_column(String(36), unique=True)
    source: Mapped[str] = mapped_column(String(80))
    # Its own index: an auditor traces a message by its id alone (the unique key leads with source).
    message_id: Mapped[str] = mapped_column(String(36), index=True)
    type: Mapped[str] = mapped_column(String(40), index=True)
    schema_version: Mapped[str] = mapped_column(String(10))
    correlation_id: Mapped[Optional[str]] = mapped_column(String(36), index=True)
    target: Mapped[Optional[str]] = mapped_column(String(80))
    routing_key: Mapped[str] = mapped_column(String(160))
    digest: Mapped[str] = mapped_column(ForeignKey("message_bodies.digest"))
    sent_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    published_at: Mapped[Optional[dt.datetime]] = mapped_column(UtcDateTime())
    case_number: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    uscc: Mapped[Optional[str]] = mapped_column(String(18), index=True)
    citizen_id: Mapped[Optional[str]] = mapped_column(String(18), index=True)
    project_code: Mapped[Optional[str]] = mapped_column(String(24), index=True)


class Event(Base):
    """Every hop of every message, in log order. Never updated; deleted only by retention
    (`huitong audit retain`), after an archive of them has been verified."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_kind_at", "kind", "at"),)

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    message_seq: Mapped[Optional[int]] = mapped_column(ForeignKey("messages.seq"), index=True)
    message_id: Mapped[Optional[str]] = mapped_column(String(36), index=True)
    source: Mapped[Optional[str]] = mapped_column(String(80), index=True)
    route: Mapped[Optional[str]] = mapped_column(String(80))
    code: Mapped[Optional[str]] = mapped_column(String(40))
    digest: Mapped[Optional[str]] = mapped_column(String(64))
    detail: Mapped[Optional[str]] = mapped_column(Text)  # JSON


class HubState(Base):
    """Small named values the hub keeps across restarts (e.g. the embedded broker's drain mark)."""

    __tablename__ = "hub_state"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class System(Base):
    """A registered department system (X-Road style member/subsystem): who may connect and
    which message types it may send. Deny by default: no grant, no message."""

    __tablename__ = "systems"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # <region>.<department>.<system>
    name: Mapped[str] = mapped_column(String(200))
    # Encrypted, not hashed: WS-Security PasswordDigest needs the secret itself to check.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    grants: Mapped[str] = mapped_column(Text)  # JSON list of message types
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class UsedNonce(Base):
    """WS-Security nonces seen within the freshness window, shared by every worker process,
    so a captured request cannot be replayed to another one."""

    __tablename__ = "used_nonces"

    system_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(100), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)


class RouteDelivery(Base):
    """Where one message stands with one destination of one route. The unique key is the
    idempotency key of delivery (a message redelivered by the broker finds DELIVERED and is
    not sent again); RETRY rows are the backoff schedule, DEAD rows the dead-letter list.

    status: DELIVERED, RETRY (waits for due_at), RETRYING (handed to the route queue; due_at is
    the lease after which it is handed again), DEAD, DISCARDED."""

    __tablename__ = "route_deliveries"
    __table_args__ = (
        UniqueConstraint("message_seq", "route", "destination"),
        Index("ix_route_deliveries_due", "due_at",
              postgresql_where=text("status IN ('RETRY', 'RETRYING')"),
              sqlite_where=text("status IN ('RETRY', 'RETRYING')")),
        Index("ix_route_deliveries_route_status", "route", "status"),
    )

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    message_seq: Mapped[int] = mapped_column(ForeignKey("messages.seq"))
    message_id: Mapped[str] = mapped_column(String(36))
    route: Mapped[str] = mapped_column(String(80))
    destination: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[Optional[dt.datetime]] = mapped_column(UtcDateTime())
    error_code: Mapped[Optional[str]] = mapped_column(String(40))
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class RoutePause(Base):
    """A route an operator paused: its workers stop taking from its queue (messages wait there,
    nothing is lost) until it is resumed. A row present means paused; who and why are also in
    the exchange log (ROUTE_PAUSED / ROUTE_RESUMED events)."""

    __tablename__ = "route_pauses"

    route: Mapped[str] = mapped_column(String(80), primary_key=True)
    paused_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    paused_by: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)
