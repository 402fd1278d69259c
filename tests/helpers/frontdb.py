"""Front databases for the tests: the provincial practice tables filled with case rows."""
from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, insert, select

from adapters.frontdb.practice import casebaseinfo, caseresult, metadata
from bus.database import make_engine
from tests.helpers.filedrop import citizen_id

GAJ_SYSTEM = "320382.gaj.hjxt"


def front_engine(url: str):
    engine = make_engine(url)
    metadata.create_all(engine)
    return engine


def case_row(index: int, **changes) -> dict:
    row = {"rowguid": str(uuid.UUID(int=index)), "caseno": f"320382-GAJ-20261121-{index:05d}", "areacode": "320382",
           "deptcode": "gaj", "deptname": "邳州市公安局", "itemcode": "320382-GA-HJ-0003", "itemversion": "1",
           "itemname": "户口迁移", "casetype": "2", "applyertype": "1", "applyername": f"王{index % 50}芳",
           "applyercardtype": "111", "applyercardno": citizen_id(index), "contactphone": "13852161234",
           "channel": "2", "applydate": dt.datetime(2026, 11, 20, 9, 0), "acceptdate": dt.datetime(2026, 11, 20, 9, 30),
           "promiseday": 5, "promisedate": dt.datetime(2026, 11, 27), "syncsign": 0}
    row.update(changes)
    return row


def result_row(index: int, **changes) -> dict:
    row = {"rowguid": str(uuid.UUID(int=10**9 + index)), "caseno": f"320382-GAJ-20261121-{index:05d}",
           "resultcode": "1", "acceptdate": dt.datetime(2026, 11, 20, 9, 30), "finishdate": dt.datetime(2026, 11, 24, 16, 0),
           "handlername": "赵敏", "resultdesc": "准予迁移", "fee": 0, "syncsign": 0}
    row.update(changes)
    return row


def fill(engine, table, rows: list[dict]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(table), rows)


def by_sign(engine, table) -> dict[int, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(table.c.syncsign, func.count()).group_by(table.c.syncsign)).all())


__all__ = ["GAJ_SYSTEM", "front_engine", "case_row", "result_row", "fill", "by_sign", "casebaseinfo", "caseresult"]
