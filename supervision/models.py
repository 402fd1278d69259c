"""Tables of electronic supervision (电子监察): the case messages it has read, each case's state
and clock, and the alerts it raised. Beside the exchange log in the same database (or one
of their own), in their own Alembic branch ("supervision")."""
from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import Boolean, Date, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bus.models import NAMING, UtcDateTime


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SupervisedMessage(Base):
    """One case message as supervision read it (its facts as JSON). Keyed like the exchange
    log, by sender and message id, so a redelivered or replayed message is read once."""

    __tablename__ = "supervision_messages"

    # message id first: a batch's "read before?" look-up is one index range by id
    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(String(80), primary_key=True)
    case_number: Mapped[str] = mapped_column(String(64), index=True)
    facts: Mapped[str] = mapped_column(Text)
    arrived_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class SupervisedCase(Base):
    """A case's state and clock. yellow_on and red_on are the days its colour changes, so the
    daily recolouring is a range query; colour is the colour last evaluated (and alerted)."""

    __tablename__ = "supervision_cases"

    case_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    is_open: Mapped[bool] = mapped_column(Boolean)
    region: Mapped[Optional[str]] = mapped_column(String(6))
    department_code: Mapped[Optional[str]] = mapped_column(String(64))
    department_name: Mapped[Optional[str]] = mapped_column(String(200))
    service_item: Mapped[Optional[str]] = mapped_column(String(300))
    case_type: Mapped[Optional[str]] = mapped_column(String(20))
    source: Mapped[Optional[str]] = mapped_column(String(80))
    accepted_at: Mapped[Optional[dt.datetime]] = mapped_column(UtcDateTime())
    accepted_day: Mapped[Optional[dt.date]] = mapped_column(Date)
    # The binding limit: the promised one, or the statutory one of the service item (from the
    # catalog) where a department promised more than the law allows.
    limit_days: Mapped[Optional[int]] = mapped_column(Integer)
    promised_days: Mapped[Optional[int]] = mapped_column(Integer)
    statutory_days: Mapped[Optional[int]] = mapped_column(Integer)
    pauses: Mapped[str] = mapped_column(Text, default="[]")  # [[start, end or null], ...] as ISO dates
    deadline: Mapped[Optional[dt.date]] = mapped_column(Date)
    yellow_on: Mapped[Optional[dt.date]] = mapped_column(Date)
    red_on: Mapped[Optional[dt.date]] = mapped_column(Date)
    colour: Mapped[Optional[str]] = mapped_column(String(8))
    result: Mapped[Optional[str]] = mapped_column(String(20))
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(UtcDateTime())
    last_step: Mapped[Optional[str]] = mapped_column(String(300))
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_supervision_cases_open_case_number", "is_open", "case_number"),  # recompute's pages
        Index("ix_supervision_cases_open_colour_red_on", "is_open", "colour", "red_on"),  # the daily sweep
        Index("ix_supervision_cases_open_colour_yellow_on", "is_open", "colour", "yellow_on"),
        Index("ix_supervision_cases_department_colour", "department_code", "colour"),
    )


class SupervisionAlert(Base):
    """A colour change or an order anomaly. PENDING: a provisional anomaly inside its grace
    period (a late message may still explain it); RAISED: to be (or already) sent on the bus
    as a SupervisionAlert message; RESOLVED: its cause went away (a late message explained
    it). alert_key makes raising idempotent across redeliveries and processes."""

    __tablename__ = "supervision_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_key: Mapped[str] = mapped_column(String(400), unique=True)
    case_number: Mapped[str] = mapped_column(String(64), index=True)
    department_code: Mapped[Optional[str]] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10))  # indexed first in (status, sent_at)
    text: Mapped[str] = mapped_column(Text)
    message_ids: Mapped[str] = mapped_column(Text)  # JSON list of the messages that caused it
    noticed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    due_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())  # when a PENDING one is raised
    raised_at: Mapped[Optional[dt.datetime]] = mapped_column(UtcDateTime())
    resolved_at: Mapped[Optional[dt.datetime]] = mapped_column(UtcDateTime())
    alert_message_id: Mapped[str] = mapped_column(String(36))
    sent_at: Mapped[Optional[dt.datetime]] = mapped_column(UtcDateTime())
    send_error: Mapped[Optional[str]] = mapped_column(Text)

    __table_args__ = (Index("ix_supervision_alerts_unsent", "status", "sent_at"),)
