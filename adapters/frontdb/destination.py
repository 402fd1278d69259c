"""frontdb destination: routed messages become rows in a department's front table, for its
system to pick up (syncsign 0). The record mapping read backwards gives the columns; the key
columns make it idempotent: a message redelivered after a crash finds its row and adds none."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import MetaData, Table, and_, select
from sqlalchemy.exc import IntegrityError, NoSuchTableError, SQLAlchemyError

from adapters.mapping import load_mapping
from bus.database import make_engine
from bus.errors import ConfigError, DeliveryError, RejectedMessage
from routes.destinations import Destination, Outgoing
from schemas.hardened import HardenedParser


class FrontDbDestination(Destination):
    type = "frontdb"
    secret_options = ("url",)
    options_schema = {
        "type": "object", "additionalProperties": False, "required": ["url", "table", "mapping", "key"],
        "properties": {
            "url": {"type": "string", "minLength": 1, "description": "SQLAlchemy URL of the front database."},
            "table": {"type": "string", "minLength": 1},
            "mapping": {"type": "string", "minLength": 1,
                        "description": "Record mapping (adapters/mappings name or path), read backwards."},
            "key": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                    "description": "Columns that identify a row: an existing row with these values is not written again."},
            "values": {"type": "object", "description": "Constant column values, e.g. {syncsign: 0}."},
        },
    }

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        try:
            self.mapping = load_mapping(options["mapping"])
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        self.key = [k.lower() for k in options["key"]]
        self.values = {k.lower(): v for k, v in options.get("values", {"syncsign": 0}).items()}
        self.engine = make_engine(options["url"])
        self.parser = HardenedParser()
        self.table: Table | None = None

    def _table(self) -> Table:
        if self.table is None:
            try:
                self.table = Table(self.options["table"], MetaData(), autoload_with=self.engine)
            except NoSuchTableError:
                raise DeliveryError(f"table {self.options['table']} does not exist in {self.name}",
                                    permanent=False) from None
        return self.table

    def row_for(self, item: Outgoing) -> dict:
        try:
            root = self.parser.parse(item.payload)
        except RejectedMessage as exc:
            raise DeliveryError(f"{self.name}: the payload is not XML: {exc}", code="TRANSFORM_FAILED",
                                permanent=True) from None
        body = self.mapping.body_in(root)
        if body is None:
            raise DeliveryError(f"{self.name} takes {self.mapping.type} messages, not {item.type}",
                                code="TRANSFORM_FAILED", permanent=True)
        row = {k.lower(): v for k, v in self.mapping.to_row(body).items()}
        return {**row, **self.values}

    def deliver(self, items: list[Outgoing]) -> list[dict | Exception]:
        try:
            table = self._table()
        except SQLAlchemyError as exc:
            return [DeliveryError(f"{self.name} cannot be reached: {exc.__class__.__name__}")] * len(items)
        except DeliveryError as exc:
            return [exc] * len(items)
        columns = {c.name.lower(): c for c in table.columns}
        outcomes: list[dict | Exception] = []
        try:
            with self.engine.begin() as conn:
                for item in items:
                    try:
                        row = self.row_for(item)
                    except DeliveryError as exc:
                        outcomes.append(exc)
                        continue
                    if "rowguid" in columns and "rowguid" not in row:
                        row["rowguid"] = item.message_id
                    if "syncdatetime" in columns:
                        row.setdefault("syncdatetime", dt.datetime.now().replace(microsecond=0))
                    unknown = [c for c in row if c not in columns]
                    if unknown:
                        outcomes.append(DeliveryError(f"table {table.name} has no column(s) {', '.join(unknown)}",
                                                      permanent=True))
                        continue
                    match = and_(*(columns[k] == row[k] for k in self.key))
                    if conn.execute(select(columns[self.key[0]]).where(match).limit(1)).first() is not None:
                        outcomes.append({"table": table.name, "written": False, "reason": "row already there"})
                        continue
                    try:
                        with conn.begin_nested():
                            conn.execute(table.insert().values({columns[k].name: v for k, v in row.items()}))
                        outcomes.append({"table": table.name, "written": True})
                    except IntegrityError:  # another worker wrote it a moment ago
                        outcomes.append({"table": table.name, "written": False, "reason": "row already there"})
        except SQLAlchemyError as exc:
            return [DeliveryError(f"{self.name}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")] * len(items)
        return outcomes

    def close(self) -> None:
        self.engine.dispose()
