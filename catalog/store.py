"""Writing the registries: golden records merged field by field (catalog.merge), their history
and conflicts, the case index, links and registrations, and the applied-message mark that
makes a replayed message change nothing twice.

Records are written in bulk (one SELECT … FOR UPDATE and one executemany per batch), so a
bulk import and a single message go through the same code. Two writers racing to create the
same record: one gets an IntegrityError, its transaction is retried and finds the record."""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar

from sqlalchemy import JSON, Connection, Engine, any_, bindparam, func, insert, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from bus.logs import get_logger
from catalog.authority import Authority
from catalog.feed import Feed, Offer
from catalog.merge import Origin, merge
from catalog.models import AppliedMessage, CaseIndex, CaseLink, Change, Conflict, Registration
from catalog.registries import RECORD_TYPES, RecordType

log = get_logger("huitong.catalog")
T = TypeVar("T")
_STAGES = {"ACCEPTED": 1, "IN_PROCESS": 2, "FINISHED": 3}
_RETRYABLE_PG = {"40001", "40P01"}  # serialization failure, deadlock


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(slots=True)
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: int = 0

    def add(self, other: "Tally") -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.conflicts += other.conflicts


@dataclass(slots=True)
class _State:
    values: dict[str, Any]
    sources: dict
    exists: bool  # in the database before this batch
    created_at: dt.datetime
    history_written: bool = False
    dirty: bool = False


_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


_FIELD, _ROW, _NULL = "\x1f", "\x1e", "\x1d"  # separators no registry value holds (checked)


def _plain_text(value: Any) -> str:
    kind = type(value)
    if kind is bool:
        return "t" if value else "f"
    if kind is dt.date or kind is dt.datetime:
        return value.isoformat()
    return str(value)


def copy_text_rows(rows: list[dict], columns: list[str], json_columns: set[str]) -> str:
    """Rows in PostgreSQL's COPY text format. Values are joined with control separators and
    the whole batch is escaped by four str.replace calls, not value by value: formatting was a
    third of an import's time."""
    nulls = 0
    lines = []
    memo: dict[int, str] = {}  # by id: rows of one batch share their time and, in imports, their sources
    for row in rows:
        cells = []
        for column in columns:
            value = row[column]
            if value is None:
                cells.append(_NULL)
                nulls += 1
            elif type(value) is str:
                cells.append(value)
            else:
                text = memo.get(id(value))
                if text is None:
                    text = memo[id(value)] = _encode_json(value) if column in json_columns else _plain_text(value)
                cells.append(text)
        lines.append(_FIELD.join(cells))
    text = _ROW.join(lines)
    if (text.count(_FIELD) != len(rows) * (len(columns) - 1) or text.count(_ROW) != len(rows) - 1
            or text.count(_NULL) != nulls):
        raise ValueError("a value holds a control character (U+001D..U+001F) that COPY cannot carry here")
    text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text.replace(_NULL, "\\N").replace(_FIELD, "\t").replace(_ROW, "\n") + "\n"


def creation_entry(record_type: RecordType, key_text: str, values: dict, sources: dict,
                   created_at: dt.datetime) -> dict:
    """The CREATED entry of a record's history, from the record as it was created: all its
    values then came from one origin (the first)."""
    system, message_id, at = sources["origins"][0]
    return {"record_type": record_type.name, "key": key_text, "action": "CREATED", "system": system,
            "message_id": message_id, "message_at": dt.datetime.fromisoformat(at), "applied_at": created_at,
            "changes": {name: [None, value] for name, value in values.items()}}


class CatalogStore:
    def __init__(self, engine: Engine, authority: Authority):
        self.engine = engine
        self.authority = authority
        self.postgres = engine.dialect.name == "postgresql"
        self._insert = (postgresql if self.postgres else sqlite).insert

    # -- transactions ---------------------------------------------------------------------------
    def transaction(self, work: Callable[[Connection], T], *, attempts: int = 5) -> T:
        """Run work in one transaction; a lost race (duplicate key, deadlock) runs it again."""
        for attempt in range(1, attempts + 1):
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except IntegrityError:
                if attempt == attempts:
                    raise
            except DBAPIError as exc:
                code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
                if code not in _RETRYABLE_PG or attempt == attempts:
                    raise
            time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    # -- golden records -------------------------------------------------------------------------
    def write_offers(self, conn: Connection, record_type: RecordType,
                     offers: Iterable[tuple[tuple[str, ...], dict[str, Any], Origin]],
                     now: dt.datetime | None = None) -> Tally:
        offers = list(offers)
        now = now or utcnow()
        table = record_type.model.__table__
        key_columns = [table.c[f.name] for f in record_type.keys]
        states = self._load(conn, record_type, list(dict.fromkeys(key for key, _, _ in offers)))
        changes, conflicts, tally = [], [], Tally()
        message_at: dict[str, dt.datetime] = {}
        for key, values, origin in offers:
            state = states.get(key)
            if state is None:
                state = states[key] = _State({}, {}, False, now)
            merged = merge(record_type.name, state.values, state.sources, values, origin, self.authority)
            key_text = record_type.key_text(key)
            dirty = bool(merged.changes) or merged.sources != state.sources
            if dirty and state.values and not state.history_written:
                # The record's first change: the row as it stands is still its creation.
                changes.append(creation_entry(record_type, key_text, state.values, state.sources,
                                              state.created_at))
                state.history_written = True
            if merged.changes and not state.values:
                tally.created += 1  # its CREATED entry is written at its first change
            elif merged.changes:
                tally.updated += 1
                at = message_at.get(origin.at) or message_at.setdefault(origin.at, dt.datetime.fromisoformat(origin.at))
                changes.append({"record_type": record_type.name, "key": key_text, "action": "UPDATED",
                                "system": origin.system, "message_id": origin.message_id, "message_at": at,
                                "applied_at": now, "changes": merged.changes})
            else:
                tally.unchanged += 1
            for name, kept, kept_system, offered in merged.conflicts:
                at = message_at.get(origin.at) or message_at.setdefault(origin.at, dt.datetime.fromisoformat(origin.at))
                conflicts.append({"record_type": record_type.name, "key": key_text, "field": name, "kept": kept,
                                  "kept_system": kept_system, "offered": offered, "offered_system": origin.system,
                                  "offered_message_id": origin.message_id, "offered_at": at, "recorded_at": now})
            tally.conflicts += len(merged.conflicts)
            state.dirty = state.dirty or dirty
            state.values, state.sources = merged.values, merged.sources

        inserts, updates = [], []
        field_names = [f.name for f in record_type.fields]
        for key, state in states.items():
            if not state.dirty:
                continue
            if self.postgres and not state.exists:  # COPY takes the plain text forms (ISO dates, decimals)
                row = dict.fromkeys(field_names)
                row.update(state.values)
            else:
                row = {f.name: f.column(state.values.get(f.name)) for f in record_type.fields}
            row.update(sources=state.sources, history_written=state.history_written, updated_at=now)
            if state.exists:
                updates.append({**{f"k_{f.name}": v for f, v in zip(record_type.keys, key)}, **row})
            else:
                inserts.append({**{f.name: v for f, v in zip(record_type.keys, key)}, **row, "created_at": now})
        self._insert_rows(conn, table, inserts)
        if updates:
            where = [column == bindparam(f"k_{column.name}") for column in key_columns]
            conn.execute(update(table).where(*where), updates)
        self._insert_rows(conn, Change.__table__, changes)
        self._insert_rows(conn, Conflict.__table__, conflicts)
        return tally

    def _insert_rows(self, conn: Connection, table, rows: list[dict]) -> None:
        """executemany; on PostgreSQL, COPY (a row costs a few microseconds instead of a
        statement's bind-and-send: what lets an import pass 20,000 rows/s)."""
        if not rows:
            return
        if not self.postgres or len(rows) < 20:
            conn.execute(insert(table), rows)
            return
        columns = list(rows[0])
        try:
            data = copy_text_rows(rows, columns, {c.name for c in table.columns if isinstance(c.type, JSON)})
        except ValueError:  # a value holds one of the separators: the slow way for this batch
            conn.execute(insert(table), rows)
            return
        with conn.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                copy.write(data.encode("utf-8"))

    def _load(self, conn: Connection, record_type: RecordType, keys: list[tuple[str, ...]]) -> dict:
        table = record_type.model.__table__
        key_columns = [table.c[f.name] for f in record_type.keys]
        states: dict[tuple[str, ...], _State] = {}
        if self.postgres and len(key_columns) == 1 and not any("," in k[0] for k in keys):
            # One array parameter instead of thousands of placeholders (an import's batch).
            # Key lookups always probe the primary key: on a table that grew in this import
            # the planner would otherwise read all of it for each batch (a seq scan of a
            # million rows per 5,000 keys). SET LOCAL ends with this transaction.
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            # Keys as one comma-joined text (identifiers hold no comma; an array parameter of
            # 5,000 strings costs more to send than the lookups take).
            chunks = [key_columns[0] == any_(func.string_to_array(bindparam("keys", ",".join(k[0] for k in keys)),
                                                                  ","))] if keys else []
        else:
            chunks = []
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                chunks.append(key_columns[0].in_([k[0] for k in chunk]) if len(key_columns) == 1
                              else tuple_(*key_columns).in_(chunk))
        for where in chunks:
            query = select(table).where(where)
            if self.postgres:
                query = query.with_for_update()
            for row in conn.execute(query).mappings():
                key = tuple(row[f.name] for f in record_type.keys)
                values = {f.name: f.plain(row[f.name]) for f in record_type.fields if row[f.name] is not None}
                states[key] = _State(values, row["sources"] or {}, True, row["created_at"], row["history_written"])
        return states

    # -- messages -------------------------------------------------------------------------------
    def apply(self, feed: Feed) -> dict:
        """Apply one message's feed once; the answer says what it changed."""
        return self.transaction(lambda conn: self._apply(conn, feed))

    def _apply(self, conn: Connection, feed: Feed) -> dict:
        now = utcnow()
        already = conn.execute(select(AppliedMessage.applied_at).where(
            AppliedMessage.source == feed.source, AppliedMessage.message_id == feed.message_id)).first()
        if already is not None:
            return {"applied": False, "reason": f"applied already at {already[0].isoformat(timespec='seconds')}"}
        # Claimed first: a second worker applying the same message waits here, then fails and
        # finds it applied when its transaction is retried.
        conn.execute(insert(AppliedMessage.__table__).values(source=feed.source, message_id=feed.message_id,
                                                             applied_at=now))
        tally = Tally()
        by_type: dict[str, list[Offer]] = {}
        for offer in feed.offers:
            by_type.setdefault(offer.record_type, []).append(offer)
        for name, offers in by_type.items():
            tally.add(self.write_offers(conn, RECORD_TYPES[name],
                                        ((o.key, o.values, feed.origin) for o in offers), now))
        if feed.case:
            self._write_case(conn, feed.case, feed.source, now)
            for record_type, key, role in feed.links:
                conn.execute(self._insert(CaseLink.__table__).values(
                    record_type=record_type, key=key, case_number=feed.case["case_number"], role=role,
                    linked_at=now).on_conflict_do_nothing())
        if feed.registration:
            conn.execute(self._insert(Registration.__table__).values(
                **feed.registration, source=feed.source, message_id=feed.message_id,
                created_at=now).on_conflict_do_nothing())
        return {"applied": True, "created": tally.created, "updated": tally.updated,
                "conflicts": tally.conflicts, "case": (feed.case or {}).get("case_number")}

    def _write_case(self, conn: Connection, reported: dict, source: str, now: dt.datetime) -> None:
        table = CaseIndex.__table__
        query = select(table).where(table.c.case_number == reported["case_number"])
        if self.postgres:
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            conn.execute(insert(table).values(**reported, source=source, updated_at=now))
            return
        values = {k: v for k, v in reported.items() if v is not None and k not in ("case_number", "status")}
        if _STAGES[reported["status"]] > _STAGES[row["status"]]:
            values["status"] = reported["status"]
        # Steps may arrive out of order: the latest one stays the last step.
        if row["last_step_at"] is not None and reported.get("last_step_at") is not None \
                and reported["last_step_at"] < row["last_step_at"]:
            values.pop("last_step", None)
            values.pop("last_step_at", None)
        conn.execute(update(table).where(table.c.case_number == reported["case_number"])
                     .values(**values, updated_at=now))
