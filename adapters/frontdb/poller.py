"""Polling one front database: rows with syncsign = 0 become canonical messages.

One poll of one table is one transaction of the front database:

    select up to batch_size rows with syncsign = 0, locked (SKIP LOCKED on PostgreSQL, the
    write lock on SQLite) -> accept them all in one group commit of the exchange log ->
    write back syncsign 1 (taken) or 2 (failed, syncerrormsg says why) and syncdatetime ->
    commit.

The exchange log commits before the front database does. A crash between the two leaves the
rows at 0; the next poll takes them again, and as every row's message id derives from its
content, the log answers DUPLICATE and the row is marked 1: never lost, never taken twice."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import MetaData, Table, bindparam, func, select, update
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

from adapters.mapping import RecordError, RecordMapping, load_mapping, message_id_for
from bus.acceptance import Acceptance, Refused
from bus.config import FrontDbSettings
from bus.database import make_engine
from bus.envelope import envelope_text
from bus.errors import ConfigError, HuitongError, RejectedMessage
from bus.logs import get_logger
from bus.masking import mask_text
from bus.receipts import ACCEPTED, DUPLICATE

log = get_logger("huitong.frontdb")
NEW, TAKEN, FAILED = 0, 1, 2
SYNC_COLUMNS = ("syncsign", "syncerrormsg", "syncdatetime")


class FrontDbUnavailable(HuitongError):
    code = "FRONTDB_UNAVAILABLE"


class FrontTable:
    def __init__(self, name: str, mapping: RecordMapping, key: list[str]):
        self.name = name
        self.mapping = mapping
        self.key = [k.lower() for k in key]
        self.table: Table | None = None  # reflected on first use: the front database may be down now

    def reflect(self, engine) -> Table:
        if self.table is None:
            try:
                table = Table(self.name, MetaData(), autoload_with=engine)
            except NoSuchTableError:
                raise FrontDbUnavailable(f"table {self.name} does not exist in the front database") from None
            columns = {c.name.lower() for c in table.columns}
            missing = [c for c in (*SYNC_COLUMNS, *self.key, *(c.lower() for c in self.mapping.columns))
                       if c not in columns]
            if missing:
                raise FrontDbUnavailable(f"table {self.name} lacks column(s) {', '.join(missing)}")
            self.table = table
        return self.table


class FrontDbPoller:
    def __init__(self, name: str, settings: FrontDbSettings, acceptance: Acceptance, *, systems=None):
        self.name = name
        self.settings = settings
        self.system = settings.system
        self.acceptance = acceptance
        self.systems = systems
        self.engine = make_engine(settings.url)
        self.tables = []
        for table_name, table in settings.tables.items():
            try:
                self.tables.append(FrontTable(table_name, load_mapping(table.mapping), table.key))
            except ConfigError as exc:
                raise ConfigError(f"frontdb {name}, table {table_name}: {exc}") from None

    def close(self) -> None:
        self.engine.dispose()

    def poll_once(self) -> int:
        """One batch from each table; returns how many rows were taken or failed."""
        done = 0
        for table in self.tables:
            try:
                done += self._poll_table(table)
            except SQLAlchemyError as exc:
                raise FrontDbUnavailable(f"front database {self.name}: {exc.__class__.__name__}: "
                                         f"{str(exc).splitlines()[0]}") from None
        return done

    def _poll_table(self, front: FrontTable) -> int:
        table = front.reflect(self.engine)
        columns = {c.name.lower(): c for c in table.columns}
        syncsign = columns["syncsign"]
        query = (select(table).where(syncsign == NEW)
                 .order_by(*(columns[k] for k in front.key)).limit(self.settings.batch_size))
        postgres = self.engine.dialect.name == "postgresql"
        if postgres:
            query = query.with_for_update(skip_locked=True)  # two hubs split the rows
        with self.engine.begin() as conn:
            if not postgres:
                # SQLite: take the write lock before reading, so a second poller waits.
                conn.execute(update(table).where(syncsign == -1).values(syncsign=-1))
            rows = [{k.lower(): v for k, v in row.items()} for row in conn.execute(query).mappings()]
            if not rows:
                return 0
            receipts = self.acceptance.accept_many([self._item(front, row) for row in rows], system=self.system,
                                                   grants=self._grants())
            now = dt.datetime.now().replace(microsecond=0)
            marks = []
            for row, receipt in zip(rows, receipts):
                taken = receipt.status in (ACCEPTED, DUPLICATE)
                error = None if taken else _error_text(receipt, self.settings.error_text_max)
                marks.append({**{f"k_{k}": row[k] for k in front.key},
                              "s": TAKEN if taken else FAILED, "e": error, "t": now})
            conn.execute(update(table).where(*(columns[k] == bindparam(f"k_{k}") for k in front.key))
                         .values({columns["syncsign"].name: bindparam("s"), columns["syncerrormsg"].name: bindparam("e"),
                                  columns["syncdatetime"].name: bindparam("t")}), marks)
        failed = sum(1 for m in marks if m["s"] == FAILED)
        log.info("frontdb.polled", frontdb=self.name, table=front.name, taken=len(marks) - failed, failed=failed)
        return len(marks)

    def _item(self, front: FrontTable, row: dict) -> bytes | Refused:
        mapping = front.mapping
        try:
            body = mapping.body_text(row)
        except RecordError as exc:
            key = ", ".join(f"{k}={row[k]}" for k in front.key)
            return Refused(RejectedMessage.single(exc.code, f"{front.name} row {key}: {exc.text}", exc.path),
                           repr({k: v for k, v in row.items() if k not in SYNC_COLUMNS}).encode("utf-8"))
        return envelope_text(mapping.type, body, self.system, message_id=message_id_for(self.system, body),
                             sent_at=dt.datetime.now(dt.timezone.utc))

    def _grants(self) -> frozenset[str] | None:
        if self.systems is None:
            return None
        identity = self.systems.get(self.system)
        if identity is None or not identity.enabled:
            raise FrontDbUnavailable(f"the front database's system {self.system} is not registered or disabled")
        return identity.grants

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per table by syncsign, for `huitong frontdb status`."""
        out = {}
        for front in self.tables:
            table = front.reflect(self.engine)
            sign = next(c for c in table.columns if c.name.lower() == "syncsign")
            when = next(c for c in table.columns if c.name.lower() == "syncdatetime")
            with self.engine.connect() as conn:
                by_sign = dict(conn.execute(select(sign, func.count()).group_by(sign)).all())
                last = conn.scalar(select(func.max(when)))
            out[front.name] = {"new": by_sign.get(NEW, 0), "taken": by_sign.get(TAKEN, 0),
                               "failed": by_sign.get(FAILED, 0), "last_sync": last.isoformat() if last else None}
        return out


def _error_text(receipt, limit: int) -> str:
    text = "; ".join(f"{e.code} at {e.path}: {e.text}" for e in receipt.errors) or receipt.status
    return mask_text(text)[:limit]
