"""Electronic supervision at size. Two figures, on PostgreSQL when configured, else SQLite:

1. Case messages per second through the supervision destination, in route-worker batches
   (200): hardened parse, facts, the case's whole history reread, clock, alerts — a stream
   where each batch mixes acceptances, steps and results of different cases, as a county's
   traffic does.
2. Recolouring 1,000,000 open cases: the daily sweep (the cases whose yellow or red day has
   come) and a full recompute after a holiday was added to the calendar (every clock again)."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.publish import _dropped_after, _env, _fresh_pg

TZ = ZoneInfo("Asia/Shanghai")
HOLIDAYS = {"years": {2026: {"holidays": ["2026-10-01..2026-10-07"], "workdays": ["2026-10-10"]}}}
ALERTS_FROM = "320382.huitong.jiancha"


def _stream(cases_count: int) -> list:
    """Outgoing items: case i's acceptance, then 60 messages later its review step, then 60
    later its result (some finished late, some with a supplement request)."""
    from routes.destinations import Outgoing
    from tests.helpers import cases

    # Accepted over the last days, so most cases are green when their messages arrive.
    start = dt.datetime.now().replace(microsecond=0) - dt.timedelta(days=6)
    per_case = []
    for i in range(cases_count):
        number = f"320382-SCJG-B{i:07d}"
        accepted_at = start + dt.timedelta(minutes=i % 2000)
        stamp = lambda days: (accepted_at + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S")  # noqa: E731
        step = (cases.process(number, 2, "SUPPLEMENT_REQUESTED", stamp(1), name="补正告知") if i % 10 == 0
                else cases.process(number, 2, "REVIEW", stamp(1)))
        per_case.append([cases.accepted(number, stamp(0), days=5 + i % 15), step, cases.result(number, stamp(3))])
    stream = []
    lag = 60
    for i in range(cases_count + 2 * lag):
        for k in range(3):
            j = i - k * lag
            if 0 <= j < cases_count:
                stream.append(per_case[j][k])
    kinds = ("CaseAccepted", "CaseProcess", "CaseResult")
    items = []
    for message_id, data in stream:
        kind = next(t for t in kinds if f"<hx:Type>{t}<".encode() in data)
        items.append(Outgoing(0, message_id, cases.SOURCE, kind, None, "cases-to-supervision", data, data))
    return items


def _throughput(url: str, messages: int, tmp: Path) -> dict:
    from bus.config import Settings
    from bus.database import ensure_schema, make_engine
    from routes.destinations import DestinationContext
    from supervision.destination import SupervisionDestination

    engine = make_engine(url)
    ensure_schema(engine, auto_upgrade=True)
    calendar = tmp / "calendar.yaml"
    calendar.write_text(json.dumps(HOLIDAYS))
    settings = Settings(database_url=url, state_dir=str(tmp / "var"),
                        supervision={"calendar": str(calendar), "alert_source": ALERTS_FROM})
    destination = SupervisionDestination("supervision", {}, DestinationContext(settings, state_dir=str(tmp)))
    items = _stream(messages // 3)
    batch = 200
    started = time.perf_counter()
    for i in range(0, len(items), batch):
        outcomes = destination.deliver(items[i:i + batch])
        failed = [o for o in outcomes if isinstance(o, Exception)]
        if failed:
            raise RuntimeError(f"supervision refused a message: {failed[0]}")
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        from sqlalchemy import func, select

        from supervision.models import SupervisedCase, SupervisionAlert
        finished = conn.scalar(select(func.count()).select_from(SupervisedCase).where(SupervisedCase.state == "FINISHED"))
        alerts = conn.scalar(select(func.count()).select_from(SupervisionAlert))
    destination.close()
    engine.dispose()
    return {"case_messages": len(items), "case_messages_per_s": round(len(items) / seconds),
            "cases_finished": finished, "alerts_raised": alerts, "seconds": round(seconds, 1)}


def _fill_open_cases(engine, count: int) -> None:
    """count open cases, accepted over the 60 days before 2026-11-23 with limits of 1-20 working
    days, one in ten with a closed supplement pause; no clocks yet. Written by the database
    itself (a recursive series), so the fill is seconds, not the part measured."""
    from sqlalchemy import text

    if engine.dialect.name == "postgresql":
        day = "(DATE '2026-11-23' - (i * 7 % 60))"
        plus = lambda n: f"({day} + {n})"  # noqa: E731
        iso = lambda e: f"to_char({e}, 'YYYY-MM-DD')"  # noqa: E731
        stamp, true, concat = f"({day}::timestamp AT TIME ZONE 'UTC')", "TRUE", "||"
        number = "'320382-B-' || lpad(i::text, 8, '0')"
    else:
        day = "date('2026-11-23', '-' || (i * 7 % 60) || ' days')"
        plus = lambda n: f"date({day}, '+{n} days')"  # noqa: E731
        iso = lambda e: e  # noqa: E731
        stamp, true, concat = f"({day} || ' 01:00:00.000000')", "1", "||"
        number = "'320382-B-' || substr('00000000' || i, -8)"
    pauses = (f"CASE WHEN i % 10 = 0 THEN '[[\"' {concat} {iso(plus(2))} {concat} '\", \"' {concat} {iso(plus(6))} "
              f"{concat} '\"]]' ELSE '[]' END")
    with engine.begin() as conn:
        conn.execute(text(
            "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < :last) "
            "INSERT INTO supervision_cases (case_number, state, is_open, region, department_code, case_type, source, "
            "accepted_at, accepted_day, limit_days, pauses, updated_at) "
            f"SELECT {number}, 'IN_PROGRESS', {true}, '320382', 'd' || (i % 40), 'PROMISED', '320382.scjgj.djxt', "
            f"{stamp}, {day}, 1 + i % 20, {pauses}, {stamp} FROM s"), {"last": count - 1})


def _recolour(url: str, count: int) -> dict:
    from sqlalchemy import func, select

    from bus.database import ensure_schema, make_engine
    from supervision.calendar import parse_calendar
    from supervision.clock import Thresholds
    from supervision.models import SupervisedCase
    from supervision.store import Policy, SupervisionStore

    engine = make_engine(url)
    ensure_schema(engine, auto_upgrade=True)
    started = time.perf_counter()
    _fill_open_cases(engine, count)
    fill_seconds = time.perf_counter() - started

    def store(holidays):
        return SupervisionStore(engine, Policy(parse_calendar(holidays), Thresholds(), TZ, dt.timedelta(minutes=30),
                                               ALERTS_FROM))

    # Every case's clock from nothing: the worst case, every row written.
    yesterday = dt.datetime(2026, 11, 22, 12, 0, tzinfo=TZ)
    started = time.perf_counter()
    first = store(HOLIDAYS).recompute(yesterday)
    first_seconds = time.perf_counter() - started
    # A new day: the cases whose yellow or red day has come (an index range).
    now = dt.datetime(2026, 11, 23, 0, 5, tzinfo=TZ)
    started = time.perf_counter()
    swept = store(HOLIDAYS).sweep(now)
    sweep_seconds = time.perf_counter() - started
    # A holiday announced late (two days next week): every clock again, the changed ones written.
    later = {"years": {2026: {"holidays": ["2026-10-01..2026-10-07", "2026-11-26..2026-11-27"],
                              "workdays": ["2026-10-10"]}}}
    started = time.perf_counter()
    recomputed = store(later).recompute(now)
    recompute_seconds = time.perf_counter() - started
    with engine.connect() as conn:
        colours = dict(conn.execute(select(SupervisedCase.colour, func.count()).group_by(SupervisedCase.colour)).all())
    engine.dispose()
    return {"open_cases": count, "fill_seconds": round(fill_seconds, 1),
            "first_clocks_seconds": round(first_seconds, 1), "first_clocks_written": first["changed"],
            "sweep_seconds": round(sweep_seconds, 1), "sweep_recoloured": swept["recoloured"],
            "holiday_recompute_seconds": round(recompute_seconds, 1), "holiday_recompute_changed": recomputed["changed"],
            "worst_cases_per_s": round(count / max(first_seconds, recompute_seconds)), "colours_after": colours}


def bench_supervision(messages: int = 60_000, open_cases: int = 1_000_000, *, sqlite_too: bool = True) -> dict:
    """On PostgreSQL when configured and, with sqlite_too (or without PostgreSQL), on SQLite."""
    database = _env("DATABASE_URL")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="huitong-bench-supervision-") as tmp:
        tmp = Path(tmp)
        for name, fresh in (("postgresql", database), ("sqlite", None)):
            if (name == "postgresql" and not database) or (name == "sqlite" and database and not sqlite_too):
                continue
            for part, run in (("messages", lambda url: _throughput(url, messages, tmp)),
                              ("recolour", lambda url: _recolour(url, open_cases))):
                url = _fresh_pg(fresh) if fresh else f"sqlite:///{tmp / f'{part}.db'}"
                with _dropped_after(fresh, url) if fresh else contextlib.nullcontext():
                    results[f"{name}_{part}"] = run(url)
    return results

