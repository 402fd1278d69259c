"""Tables of the shared registries (信息资源库): enterprise, person, project and service item
golden records; registration numbers; the case index and the links of records to their
cases; the change history, recorded conflicts and the messages already applied.

Every golden record keeps `sources`: per field, the system, message and time its current
value came from and that system's authority rank (catalog.authority)."""
from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, Optional

from sqlalchemy import JSON, Boolean, Date, Index, Integer, MetaData, Numeric, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bus.models import NAMING, SeqType, UtcDateTime

# Names sort and prefix-match by code point on both databases: PostgreSQL's "C" collation
# lets the plain B-tree index serve `name >= prefix AND name < next(prefix) ORDER BY name`
# (a language collation could not), and SQLite's BINARY order is the same.
NameType = String(200).with_variant(String(200, collation="C"), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class GoldenRecord:
    """Columns every registry record has besides its own fields."""

    sources: Mapped[dict[str, Any]] = mapped_column(JSON)
    # False until the record is first changed: until then its row is its creation (values and
    # sources as created), so the CREATED entry of its history is written only at the first
    # change, from the row as it was. A bulk import writes one row per record, not two.
    history_written: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class Enterprise(GoldenRecord, Base):
    __tablename__ = "catalog_enterprises"
    # Name search reads pages off these indexes in its own order (name, uscc), within a region
    # when one is given; no other index, since every one costs each of a million imported rows.
    __table_args__ = (Index("ix_catalog_enterprises_name_uscc", "name", "uscc"),
                      Index("ix_catalog_enterprises_region_name", "region_code", "name", "uscc"))

    uscc: Mapped[str] = mapped_column(String(18), primary_key=True)
    name: Mapped[Optional[str]] = mapped_column(NameType)
    legal_representative: Mapped[Optional[str]] = mapped_column(String(100))
    legal_representative_id: Mapped[Optional[str]] = mapped_column(String(64))  # personal
    registered_at: Mapped[Optional[dt.date]] = mapped_column(Date)
    address: Mapped[Optional[str]] = mapped_column(Text)
    region_code: Mapped[Optional[str]] = mapped_column(String(6))
    status: Mapped[Optional[str]] = mapped_column(String(12))
    qualifications: Mapped[Optional[list]] = mapped_column(JSON(none_as_null=True))
    credit_records: Mapped[Optional[list]] = mapped_column(JSON(none_as_null=True))


class Person(GoldenRecord, Base):
    __tablename__ = "catalog_persons"

    citizen_id: Mapped[str] = mapped_column(String(18), primary_key=True)
    name: Mapped[Optional[str]] = mapped_column(String(100))
    gender: Mapped[Optional[str]] = mapped_column(String(6))
    birth_date: Mapped[Optional[dt.date]] = mapped_column(Date)
    address: Mapped[Optional[str]] = mapped_column(Text)
    phone: Mapped[Optional[str]] = mapped_column(String(20))


class Project(GoldenRecord, Base):
    __tablename__ = "catalog_projects"

    project_code: Mapped[str] = mapped_column(String(24), primary_key=True)
    name: Mapped[Optional[str]] = mapped_column(String(200))
    owner_uscc: Mapped[Optional[str]] = mapped_column(String(18), index=True)
    region_code: Mapped[Optional[str]] = mapped_column(String(6))
    total_investment: Mapped[Optional[decimal.Decimal]] = mapped_column(Numeric(18, 4))  # 万元
    status: Mapped[Optional[str]] = mapped_column(String(20))


class ServiceItem(GoldenRecord, Base):
    __tablename__ = "catalog_service_items"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[Optional[str]] = mapped_column(String(200))
    department_code: Mapped[Optional[str]] = mapped_column(String(64))
    department_name: Mapped[Optional[str]] = mapped_column(String(200))
    region_code: Mapped[Optional[str]] = mapped_column(String(6))
    statutory_days: Mapped[Optional[int]] = mapped_column(Integer)
    promised_days: Mapped[Optional[int]] = mapped_column(Integer)
    case_type: Mapped[Optional[str]] = mapped_column(String(12))
    fees: Mapped[Optional[list]] = mapped_column(JSON(none_as_null=True))
    materials: Mapped[Optional[list]] = mapped_column(JSON(none_as_null=True))


class Registration(Base):
    """登记号: one per applicant (一号制); the applicant's cases share it."""

    __tablename__ = "catalog_registrations"

    registration_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    applicant_kind: Mapped[str] = mapped_column(String(12))
    applicant_name: Mapped[str] = mapped_column(String(200))
    applicant_id_type: Mapped[Optional[str]] = mapped_column(String(20))
    applicant_id: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    first_case_number: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(80))
    message_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class CaseIndex(Base):
    """One row per case number: what it is for, who applied, where it stands."""

    __tablename__ = "catalog_cases"

    case_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    region_code: Mapped[Optional[str]] = mapped_column(String(6))
    department_code: Mapped[Optional[str]] = mapped_column(String(64))
    department_name: Mapped[Optional[str]] = mapped_column(String(200))
    item_code: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    item_version: Mapped[Optional[str]] = mapped_column(String(64))
    item_name: Mapped[Optional[str]] = mapped_column(String(200))
    case_type: Mapped[Optional[str]] = mapped_column(String(12))
    applicant_kind: Mapped[Optional[str]] = mapped_column(String(12))
    applicant_name: Mapped[Optional[str]] = mapped_column(String(200))
    applicant_id_type: Mapped[Optional[str]] = mapped_column(String(20))
    applicant_id: Mapped[Optional[str]] = mapped_column(String(64))  # personal when a citizen id
    registration_number: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    project_code: Mapped[Optional[str]] = mapped_column(String(24))
    channel: Mapped[Optional[str]] = mapped_column(String(10))
    # ACCEPTED, IN_PROCESS or FINISHED; the furthest stage any message reported (they may
    # arrive out of order).
    status: Mapped[str] = mapped_column(String(12))
    result: Mapped[Optional[str]] = mapped_column(String(12))
    last_step: Mapped[Optional[str]] = mapped_column(String(200))
    applied_at: Mapped[Optional[dt.datetime]] = mapped_column(UtcDateTime())
    accepted_at: Mapped[Optional[dt.datetime]] = mapped_column(UtcDateTime())
    promised_date: Mapped[Optional[dt.date]] = mapped_column(Date)
    last_step_at: Mapped[Optional[dt.datetime]] = mapped_column(UtcDateTime())
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(UtcDateTime())
    certificate_number: Mapped[Optional[str]] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(80))  # the system that reported it first
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class CaseLink(Base):
    """A record's part in a case: an enterprise or person APPLICANT, LEGAL_REPRESENTATIVE or
    AGENT, a PROJECT. A record's application history is its links."""

    __tablename__ = "catalog_case_links"
    __table_args__ = (Index("ix_catalog_case_links_case_number", "case_number"),)

    record_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(140), primary_key=True)
    case_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(24), primary_key=True)
    linked_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class Change(Base):
    """The history of a record: which message changed which fields, from what to what."""

    __tablename__ = "catalog_changes"
    __table_args__ = (Index("ix_catalog_changes_record", "record_type", "key", "id"),)

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    record_type: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(140))
    action: Mapped[str] = mapped_column(String(8))  # CREATED or UPDATED
    system: Mapped[str] = mapped_column(String(80))
    message_id: Mapped[str] = mapped_column(String(80))
    message_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    applied_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)  # field -> [old, new]


class Conflict(Base):
    """A value a less authoritative system offered that differs from the one kept."""

    __tablename__ = "catalog_conflicts"
    __table_args__ = (Index("ix_catalog_conflicts_record", "record_type", "key", "id"),)

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    record_type: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(140))
    field: Mapped[str] = mapped_column(String(40))
    kept: Mapped[Any] = mapped_column(JSON)
    kept_system: Mapped[str] = mapped_column(String(80))
    offered: Mapped[Any] = mapped_column(JSON)
    offered_system: Mapped[str] = mapped_column(String(80))
    offered_message_id: Mapped[str] = mapped_column(String(80))
    offered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    recorded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class AppliedMessage(Base):
    """Messages whose effect is in the registries: one applied again changes nothing."""

    __tablename__ = "catalog_applied_messages"

    source: Mapped[str] = mapped_column(String(80), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    applied_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
