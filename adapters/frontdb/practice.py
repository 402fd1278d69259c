"""The provincial practice front tables (T_BM_CASEBASEINFO, T_BM_CASEPROCESS,
T_BM_CASERESULT) as SQLAlchemy tables, for `huitong frontdb create-tables` (a demo or a
department starting fresh) and the tests. The adapter itself reflects whatever tables the
configuration names; these are only the agreed shape, with the sync columns every front
table carries."""
from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, Numeric, String, Table

metadata = MetaData()


def _sync_columns() -> list[Column]:
    return [Column("syncsign", Integer, nullable=False, server_default="0", index=True),  # 0 new, 1 taken, 2 failed
            Column("syncerrormsg", String(1000)), Column("syncdatetime", DateTime)]


casebaseinfo = Table(
    "t_bm_casebaseinfo", metadata,
    Column("rowguid", String(50), primary_key=True), Column("caseno", String(64), nullable=False),
    Column("areacode", String(6)), Column("deptcode", String(64)), Column("deptname", String(200)),
    Column("itemcode", String(64)), Column("itemversion", String(16)), Column("itemname", String(200)),
    Column("casetype", String(2)), Column("applyertype", String(2)), Column("applyername", String(200)),
    Column("applyercardtype", String(3)), Column("applyercardno", String(64)), Column("legalman", String(100)),
    Column("contactphone", String(32)), Column("channel", String(2)), Column("applydate", DateTime),
    Column("acceptdate", DateTime), Column("promiseday", Integer), Column("promisedate", DateTime),
    Column("projectcode", String(32)), *_sync_columns())

caseprocess = Table(
    "t_bm_caseprocess", metadata,
    Column("rowguid", String(50), primary_key=True), Column("caseno", String(64), nullable=False),
    Column("stepno", Integer, nullable=False), Column("stepname", String(100)), Column("action", String(2)),
    Column("handlername", String(100)), Column("opinion", String(2000)), Column("starttime", DateTime),
    Column("endtime", DateTime), Column("nextstepname", String(100)), *_sync_columns())

caseresult = Table(
    "t_bm_caseresult", metadata,
    Column("rowguid", String(50), primary_key=True), Column("caseno", String(64), nullable=False),
    Column("resultcode", String(2)), Column("acceptdate", DateTime), Column("finishdate", DateTime),
    Column("handlername", String(100)), Column("resultdesc", String(2000)), Column("certname", String(200)),
    Column("certno", String(64)), Column("fee", Numeric(12, 2)), *_sync_columns())

MAPPINGS = {"t_bm_casebaseinfo": "provincial-casebaseinfo", "t_bm_caseprocess": "provincial-caseprocess",
            "t_bm_caseresult": "provincial-caseresult"}
