"""Front databases (前置库) on SQLite and PostgreSQL: rows with syncsign 0 become messages and
are marked 1, bad rows 2 with the reason; a SIGKILL during a poll loses and doubles nothing;
the frontdb destination writes routed results into a department's table once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import func, select, update

from bus.cli import main
from bus.config import load_settings
from bus.database import make_engine
from bus.hub import Hub
from bus.models import Event, Message
from tests.conftest import AMQP_URL, ROOT, Backend, create_database, drop_database
from tests.helpers.frontdb import (GAJ_SYSTEM, by_sign, case_row, casebaseinfo, caseresult, fill, front_engine,
                                   result_row)
from tests.helpers.routing import route_file, wait_for
from tests.helpers.soap import delete_route_queues

SECRET = "sample-secret-not-real"


def frontdb_config(tmp_path, backend, front_url, *, poll: bool = True, **extra) -> str:
    config = {"state_dir": str(tmp_path / "var"), "database_url": backend.database_url,
              "broker_url": backend.broker_url, "relay": {"poll_interval": 0.05},
              "systems": [{"id": GAJ_SYSTEM, "name": "户籍系统 (sample)", "secret": SECRET,
                           "grants": ["CaseAccepted", "CaseResult"]}],
              "frontdb": {"gaj": {"system": GAJ_SYSTEM, "url": front_url, "poll_interval": 0.1, "batch_size": 100,
                                  "tables": {"t_bm_casebaseinfo": {"mapping": "provincial-casebaseinfo", "key": ["rowguid"]},
                                             "t_bm_caseresult": {"mapping": "provincial-caseresult", "key": ["rowguid"]}}}},
              **extra}
    if not poll:
        del config["frontdb"]
    path = tmp_path / "huitong.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_rows_become_messages_and_syncsign_says_so(tmp_path, backend, front_url):
    front = front_engine(front_url)
    fill(front, casebaseinfo, [case_row(i) for i in range(1, 301)])
    fill(front, caseresult, [result_row(i) for i in range(1, 101)])
    with front.begin() as conn:  # two bad rows: a wrong check digit, a case type nobody agreed
        conn.execute(update(casebaseinfo).where(casebaseinfo.c.caseno.like("%-00007"))
                     .values(applyercardno=case_row(7)["applyercardno"][:-1] + "0"))
        conn.execute(update(casebaseinfo).where(casebaseinfo.c.caseno.like("%-00008")).values(casetype="7"))
    config = frontdb_config(tmp_path, backend, front_url)
    hub = Hub(load_settings(config, environ={})).start()
    try:
        wait_for(lambda: by_sign(front, casebaseinfo).get(0, 0) == 0 and by_sign(front, caseresult).get(0, 0) == 0, 60)
        assert by_sign(front, casebaseinfo) == {1: 298, 2: 2}
        assert by_sign(front, caseresult) == {1: 100}
        with front.connect() as conn:
            failed = dict(conn.execute(select(casebaseinfo.c.caseno, casebaseinfo.c.syncerrormsg)
                                       .where(casebaseinfo.c.syncsign == 2)).all())
            stamped = conn.scalar(select(func.count()).where(casebaseinfo.c.syncdatetime.is_not(None)))
        assert "CITIZEN_ID_CHECK" in failed["320382-GAJ-20261121-00007"]
        assert "RECORD_MAPPING" in failed["320382-GAJ-20261121-00008"] and "casetype" in failed["320382-GAJ-20261121-00008"]
        assert stamped == 300
        with hub.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Message).where(Message.source == GAJ_SYSTEM)) == 398
        # The department fixes row 8 and sets it back to 0: it is taken on the next poll.
        with front.begin() as conn:
            conn.execute(update(casebaseinfo).where(casebaseinfo.c.caseno.like("%-00008")).values(casetype="2", syncsign=0))
        wait_for(lambda: by_sign(front, casebaseinfo) == {1: 299, 2: 1}, 30)
    finally:
        hub.stop()
    result = CliRunner().invoke(main, ["frontdb", "status", "--config", config, "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["gaj"]["t_bm_casebaseinfo"]["taken"] == 299 and status["gaj"]["t_bm_casebaseinfo"]["failed"] == 1
    front.dispose()


@pytest.mark.services
def test_sigkill_during_a_poll_loses_nothing_and_takes_nothing_twice(tmp_path, postgres_url):
    backend = Backend("services", postgres_url, AMQP_URL)
    front_url = create_database()
    front = front_engine(front_url)
    total = 6_000
    try:
        fill(front, casebaseinfo, [case_row(i) for i in range(1, total + 1)])
        config = frontdb_config(tmp_path, backend, front_url)

        def ingest():
            return subprocess.Popen([sys.executable, "-m", "bus.cli", "ingest", "--config", config], cwd=ROOT,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        first = ingest()
        wait_for(lambda: by_sign(front, casebaseinfo).get(1, 0) >= 1_000, 60, 0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        left = by_sign(front, casebaseinfo).get(0, 0)
        assert 0 < left < total  # killed part-way
        second = ingest()
        try:
            wait_for(lambda: by_sign(front, casebaseinfo).get(0, 0) == 0, 120)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
        assert by_sign(front, casebaseinfo) == {1: total}
        hub_engine = make_engine(postgres_url)  # the hub's own log
        with hub_engine.connect() as conn:
            messages = conn.scalar(select(func.count()).select_from(Message).where(Message.source == GAJ_SYSTEM))
            received = conn.scalar(select(func.count()).select_from(Event).where(Event.kind == "RECEIVED"))
            cases = conn.scalar(select(func.count(func.distinct(Message.case_number))))
        hub_engine.dispose()
        assert messages == received == cases == total  # every row accepted exactly once
    finally:
        front.dispose()
        drop_database(front_url)


def test_frontdb_destination_writes_each_result_once(tmp_path, backend, front_url):
    front = front_engine(front_url)
    routes_dir = tmp_path / "routes"
    route = f"results-to-gaj-{uuid.uuid4().hex[:8]}"  # a durable queue of its own on RabbitMQ
    route_file(routes_dir, f"id: {route}\nfrom: {{types: [CaseResult]}}\nto: [gaj-front]\n")
    config = frontdb_config(tmp_path, backend, front_url, poll=False, routes={"dir": str(routes_dir), "batch_wait": 0.02},
                            destinations={"gaj-front": {"type": "frontdb", "url": front_url, "table": "t_bm_caseresult",
                                                        "mapping": "provincial-caseresult", "key": ["caseno"]}})
    hub = Hub(load_settings(config, environ={})).start()
    try:
        from tests.helpers.messages import sample
        from tests.helpers.routing import SCJG_SYSTEM
        data = sample("CaseResult-approved.xml")
        hub.systems.add(SCJG_SYSTEM, name="登记系统 (sample)", secret=SECRET, grants=["CaseResult"])
        assert hub.accept(data, system=SCJG_SYSTEM).ok
        wait_for(lambda: by_sign(front, caseresult).get(0, 0) == 1, 30)
        with front.connect() as conn:
            row = conn.execute(select(caseresult)).mappings().one()
        assert row["caseno"] == "320382-SCJG-20261120-0001" and row["resultcode"] == "1"
        assert row["certno"] == "JY23203820012345" and float(row["fee"]) == 0.0
        assert str(row["finishdate"]).startswith("2026-11-24 16:40")  # Beijing time, as the table keeps it
        # The same result delivered again (a redelivery after a crash) adds no row.
        destination = hub.service("routes").routes.destinations["gaj-front"]
        from routes.destinations import Outgoing
        outcome = destination.deliver([Outgoing(1, "m", SCJG_SYSTEM, "CaseResult", None, route, data, data)])
        assert outcome == [{"table": "t_bm_caseresult", "written": False, "reason": "row already there"}]
        assert by_sign(front, caseresult) == {0: 1}
    finally:
        hub.stop()
        delete_route_queues(hub)
        front.dispose()
