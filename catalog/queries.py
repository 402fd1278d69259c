"""Reading the registries on behalf of someone: a system (through SOAP or REST, with its
grants) or an operator (the CLI, the console). Deny by default: a registry is read only with
its READ_* grant; citizen ids and phone numbers are masked unless the reader holds UNMASK,
and every unmasked answer is recorded as a DISCLOSED event in the exchange log (who, what,
why), beside a log line."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, bindparam, insert, select, tuple_

from bus.errors import HuitongError
from bus.exchange_log import event_row
from bus.logs import get_logger
from bus.masking import mask_text
from bus.models import Event
from bus.systems import UNMASK
from catalog.merge import origin_of
from catalog.models import CaseIndex, CaseLink, Change, Conflict, Enterprise, Registration, ServiceItem
from catalog.registries import ENTERPRISE, RECORD_TYPES, RecordType
from catalog.store import creation_entry

log = get_logger("huitong.catalog")
READ_GRANTS = frozenset(t.read_grant for t in RECORD_TYPES.values())
MAX_CASES = 1_000  # per record answer; older cases are in the case index

# The read statements are built once, with bind parameters: building and keying a select on
# every request was half of a lookup's time in the hub (PostgreSQL answers it in 0.04 ms).
_RECORD = {name: select(t.model.__table__).where(and_(*(
               getattr(t.model, f.name) == bindparam(f"key{i}") for i, f in enumerate(t.keys))))
           for name, t in RECORD_TYPES.items()}
_CASES = (select(CaseLink.role, CaseIndex.__table__)
          .join(CaseIndex, CaseIndex.case_number == CaseLink.case_number)
          .where(CaseLink.record_type == bindparam("record_type"), CaseLink.key == bindparam("key"))
          .order_by(CaseIndex.accepted_at.desc().nulls_last(), CaseIndex.case_number)
          .limit(MAX_CASES))


class ReadNotGranted(HuitongError):
    code = "READ_NOT_GRANTED"


class NotFound(HuitongError):
    code = "NOT_FOUND"


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads. An operator's id is `operator:<login>`; reason says why data is unmasked."""

    id: str
    grants: frozenset[str]
    reason: str | None = None

    @property
    def unmasks(self) -> bool:
        return UNMASK in self.grants

    def require(self, record_type: RecordType) -> None:
        if record_type.read_grant not in self.grants:
            raise ReadNotGranted(f"{self.id} may not read the {record_type.title} registry "
                                 f"(it needs the {record_type.read_grant} grant)")

    @classmethod
    def operator(cls, login: str, *, unmask_reason: str | None = None) -> "Reader":
        """Operators read every registry, masked; unmasked only saying why."""
        grants = READ_GRANTS | ({UNMASK} if unmask_reason else set())
        return cls(f"operator:{login}", frozenset(grants), unmask_reason)


class CatalogQueries:
    def __init__(self, engine: Engine, *, max_search_results: int = 100):
        self.engine = engine
        # Reads run without a transaction: no BEGIN and ROLLBACK round trips per answer, which
        # were a third of a lookup's time on PostgreSQL; an answer needs no snapshot across its
        # two statements (a case linked a moment later simply shows on the next read).
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.max_search_results = max_search_results

    # -- records --------------------------------------------------------------------------------
    def get(self, reader: Reader, record_type: RecordType, key: tuple[str, ...], *,
            with_cases: bool = True) -> dict[str, Any]:
        reader.require(record_type)
        with self.reads.connect() as conn:
            if len(record_type.keys) > 1 and not key[1]:  # a service item's latest version
                key = self._latest_item(conn, key[0])
            row = conn.execute(_RECORD[record_type.name], _key_params(key)).mappings().first()
            if row is None:
                raise NotFound(f"no {record_type.name} {self._shown_key(reader, record_type, key)} "
                               "in the registry")
            record = self._record(reader, record_type, row)
            if with_cases and record_type.name != "service_item":
                record["cases"] = self._cases(conn, reader, record_type.name, record_type.key_text(key))
        self._disclosed(reader, record_type, key, record)
        return record

    def _latest_item(self, conn, code: str) -> tuple[str, str]:
        versions = conn.execute(select(ServiceItem.version).where(ServiceItem.code == code)).scalars().all()
        if not versions:
            return code, ""
        return code, max(versions, key=lambda v: (v.isdigit(), int(v) if v.isdigit() else 0, v))

    def _record(self, reader: Reader, record_type: RecordType, row) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in record_type.all_fields:
            value = f.plain(row[f.name])
            out[f.name] = self._shown(reader, f.personal, value)
        sources = row["sources"] or {}
        out["sources"] = {}
        for f in record_type.fields:
            origin = origin_of(sources, f.name)
            if origin:
                out["sources"][f.name] = {"system": origin.system, "message_id": origin.message_id, "at": origin.at}
        out["created_at"] = _iso(row["created_at"])
        out["updated_at"] = _iso(row["updated_at"])
        return out

    def _cases(self, conn, reader: Reader, record_type: str, key: str) -> list[dict[str, Any]]:
        rows = conn.execute(_CASES, {"record_type": record_type, "key": key}).mappings()
        return [self._case(reader, r) for r in rows]

    def _case(self, reader: Reader, r) -> dict[str, Any]:
        return {
            "case_number": r["case_number"], "role": r.get("role"), "status": r["status"], "result": r["result"],
            "item_code": r["item_code"], "item_version": r["item_version"], "item_name": r["item_name"],
            "department_code": r["department_code"], "department_name": r["department_name"],
            "region_code": r["region_code"], "case_type": r["case_type"], "channel": r["channel"],
            "applicant_kind": r["applicant_kind"], "applicant_name": r["applicant_name"],
            "applicant_id_type": r["applicant_id_type"],
            "applicant_id": self._shown(reader, r["applicant_id_type"] == "CITIZEN_ID", r["applicant_id"]),
            "registration_number": r["registration_number"], "project_code": r["project_code"],
            "applied_at": _iso(r["applied_at"]), "accepted_at": _iso(r["accepted_at"]),
            "promised_date": r["promised_date"].isoformat() if r["promised_date"] else None,
            "last_step": r["last_step"], "last_step_at": _iso(r["last_step_at"]),
            "finished_at": _iso(r["finished_at"]), "certificate_number": r["certificate_number"],
            "source": r["source"]}

    def case(self, reader: Reader, case_number: str) -> dict[str, Any]:
        """One case of the index with its applicant's registration; needs READ_ENTERPRISE or
        READ_PERSON according to who applied."""
        with self.reads.connect() as conn:
            row = conn.execute(select(CaseIndex.__table__).where(CaseIndex.case_number == case_number)).mappings().first()
            if row is None:
                raise NotFound(f"no case {case_number} in the case index")
            reader.require(RECORD_TYPES["person" if row["applicant_kind"] == "PERSON" else "enterprise"])
            out = self._case(reader, row)
            if row["registration_number"]:
                registration = conn.execute(select(Registration.__table__).where(
                    Registration.registration_number == row["registration_number"])).mappings().first()
                out["registration"] = registration and {
                    "registration_number": registration["registration_number"],
                    "applicant_name": registration["applicant_name"],
                    "applicant_id": self._shown(reader, registration["applicant_id_type"] == "CITIZEN_ID",
                                                registration["applicant_id"]),
                    "first_case_number": registration["first_case_number"]}
        return out

    # -- search ---------------------------------------------------------------------------------
    def search_enterprises(self, reader: Reader, prefix: str, *, region: str | None = None,
                           limit: int = 20, after: str | None = None) -> dict[str, Any]:
        """Enterprises whose name starts with prefix (code-point order), optionally within a
        region (a 2-, 4- or 6-digit region code prefix). `after` is the last name|uscc seen."""
        reader.require(ENTERPRISE)
        prefix = prefix.strip()
        if not prefix:
            raise ValueError("give the start of a name")
        limit = max(1, min(limit, self.max_search_results))
        query = select(Enterprise.uscc, Enterprise.name, Enterprise.region_code, Enterprise.status,
                       Enterprise.legal_representative).where(
            Enterprise.name >= prefix, Enterprise.name < _next_prefix(prefix))
        if region:
            query = query.where(*_within_region(region))
        if after:
            name, _, uscc = after.rpartition("|")
            query = query.where(tuple_(Enterprise.name, Enterprise.uscc) > tuple_(name, uscc))
        query = query.order_by(Enterprise.name, Enterprise.uscc).limit(limit + 1)
        with self.reads.connect() as conn:
            rows = conn.execute(query).all()
        items = [{"uscc": r.uscc, "name": r.name, "region_code": r.region_code, "status": r.status,
                  "legal_representative": r.legal_representative} for r in rows[:limit]]
        more = len(rows) > limit
        return {"items": items, "next": f"{items[-1]['name']}|{items[-1]['uscc']}" if more else None}

    # -- history and conflicts ------------------------------------------------------------------
    def history(self, reader: Reader, record_type: RecordType, key: tuple[str, ...]) -> list[dict[str, Any]]:
        reader.require(record_type)
        key_text = record_type.key_text(key)
        with self.reads.connect() as conn:
            record = conn.execute(_RECORD[record_type.name], _key_params(key)).mappings().first()
            rows = conn.execute(select(Change.__table__).where(
                Change.record_type == record_type.name, Change.key == key_text).order_by(Change.id)).mappings().all()
        if record is None:
            raise NotFound(f"no {record_type.name} {self._shown_key(reader, record_type, key)} in the registry")
        if not record["history_written"]:  # never changed: the row is its creation
            values = {f.name: f.plain(record[f.name]) for f in record_type.fields if record[f.name] is not None}
            rows = [{"id": 0, **creation_entry(record_type, key_text, values, record["sources"], record["created_at"])}]
        out = []
        for row in rows:
            changes = {name: [self._shown(reader, record_type.field(name).personal, v) for v in pair]
                       for name, pair in row["changes"].items()}
            out.append({"id": row["id"], "action": row["action"], "system": row["system"],
                        "message_id": row["message_id"], "message_at": _iso(row["message_at"]),
                        "applied_at": _iso(row["applied_at"]), "changes": changes})
        self._disclosed(reader, record_type, key, out)
        return out

    def conflicts(self, reader: Reader, record_type: RecordType | None = None, key: tuple[str, ...] | None = None,
                  *, limit: int = 100) -> list[dict[str, Any]]:
        types = [record_type] if record_type else [t for t in RECORD_TYPES.values() if t.read_grant in reader.grants]
        if record_type:
            reader.require(record_type)
        query = select(Conflict.__table__).where(Conflict.record_type.in_([t.name for t in types]))
        if record_type and key:
            query = query.where(Conflict.key == record_type.key_text(key))
        with self.reads.connect() as conn:
            rows = conn.execute(query.order_by(Conflict.id.desc()).limit(limit)).mappings().all()
        out = []
        for row in rows:
            rt = RECORD_TYPES[row["record_type"]]
            personal = rt.field(row["field"]).personal
            out.append({"id": row["id"], "record_type": row["record_type"],
                        "key": self._shown(reader, rt.keys[0].personal, row["key"]), "field": row["field"],
                        "kept": self._shown(reader, personal, row["kept"]), "kept_system": row["kept_system"],
                        "offered": self._shown(reader, personal, row["offered"]),
                        "offered_system": row["offered_system"], "offered_message_id": row["offered_message_id"],
                        "offered_at": _iso(row["offered_at"]), "recorded_at": _iso(row["recorded_at"])})
        return out

    # -- personal data --------------------------------------------------------------------------
    def _shown(self, reader: Reader, personal: bool, value: Any) -> Any:
        if not personal or value is None or reader.unmasks:
            return value
        return mask_personal(str(value))

    def _shown_key(self, reader: Reader, record_type: RecordType, key: tuple[str, ...]) -> str:
        return self._shown(reader, record_type.keys[0].personal, record_type.key_text(key))

    def _disclosed(self, reader: Reader, record_type: RecordType, key: tuple[str, ...], answer: Any) -> None:
        """Record an unmasked answer that held personal data: who saw whose, and why."""
        if not reader.unmasks or not _has_personal(record_type, answer):
            return
        key_text = record_type.key_text(key)
        self._record_disclosure(reader, {"record_type": record_type.name,
                                         "key": mask_personal(key_text) if record_type.keys[0].personal else key_text,
                                         "reason": reader.reason})

    def record_export(self, reader: Reader, record_type: RecordType, count: int) -> None:
        """An unmasked export: every record of the registry was disclosed."""
        if reader.unmasks:
            self._record_disclosure(reader, {"record_type": record_type.name, "export": count,
                                             "reason": reader.reason})

    def _record_disclosure(self, reader: Reader, detail: dict) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(Event.__table__).values(
                event_row("DISCLOSED", dt.datetime.now(dt.timezone.utc), source=reader.id, code=UNMASK,
                          detail=detail)))
        log.info("catalog.unmasked_read", reader=reader.id, **detail)


def _has_personal(record_type: RecordType, answer: Any) -> bool:
    if record_type.keys[0].personal:
        return True
    if isinstance(answer, dict):
        return any(answer.get(f.name) for f in record_type.fields if f.personal) or any(
            c.get("applicant_id_type") == "CITIZEN_ID" for c in answer.get("cases", []))
    return any(any(record_type.field(name).personal for name in c["changes"]) for c in answer)


def mask_personal(value: str) -> str:
    """A citizen id or phone as PIPL displays it; another document number keeps only its ends."""
    masked = mask_text(value)
    if masked != value or len(value) <= 4:
        return masked if len(value) > 4 else "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def _within_region(region: str) -> tuple:
    """A county (320382) is an equality; a city or province (320300 or 3203, 320000 or 32) a
    range of codes. Both walk the (region_code, name, uscc) index; ranges of equal-length digit
    strings order the same under any collation."""
    if len(region) == 6:
        region = region[:2] if region[2:] == "0000" else region[:4] if region[4:] == "00" else region
    if len(region) == 6:
        return (Enterprise.region_code == region,)
    upper = str(int(region) + 1).zfill(len(region))
    return Enterprise.region_code >= region, Enterprise.region_code < upper


def _next_prefix(prefix: str) -> str:
    """The smallest string above every string that starts with prefix."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _key_params(key: tuple[str, ...]) -> dict[str, str]:
    """A record key as the parameters of _RECORD's statements."""
    return {f"key{i}": value for i, value in enumerate(key)}
