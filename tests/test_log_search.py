"""Auditors search the exchange log and trace a message's lineage, by the CLI; every read is
itself logged. Real routes deliver (a file ferry) and dead-letter (a hub that is not there),
embedded and on RabbitMQ + PostgreSQL."""
from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import base64
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bus.cli import main
from bus.hub import Hub
from bus.models import Event
from replay.lineage import LogQueries, LogSearch, SearchInvalid
from tests.conftest import SAMPLES
from tests.helpers.messages import sample, with_message_id
from tests.helpers.routing import settings_from, wait_for, write_config
from tests.helpers.soap import delete_route_queues

SCJG, GAJ = "320382.scjgj.djxt", "320382.gaj.rkxt"
# Route queues are durable on RabbitMQ: ids of their own per run, deleted afterwards.
RUN = uuid.uuid4().hex[:6]
FERRY_ROUTE, CITY_ROUTE = f"cases-to-ferry-{RUN}", f"persons-to-city-{RUN}"
AUDITOR = "320382.jw.jcxt"  # the supervision system: reads the whole log
SECRET = "sample-secret-not-real"
CASE, PERSON_CASE = "320382-SCJG-20261120-0001", "320382-GA-20261120-0417"
USCC, CITIZEN = "91320382MA1Y2K3P9C", "320382199207040242"


@pytest.fixture
def logged(backend, tmp_path):
    """A log with routed, delivered, dead-lettered and refused messages."""
    yield from make_log(backend, tmp_path, FERRY_ROUTE, CITY_ROUTE)


def make_log(backend, tmp_path, ferry_route: str, city_route: str):
    """(Route ids of the caller's own: route queues are shared by every hub of the process on the
    in-memory broker, and by every run on RabbitMQ.)"""
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "ferry.yaml").write_text(f"id: {ferry_route}\nfrom: {{types: [CaseAccepted, CaseResult]}}\n"
                                       "to: [ferry]\n")
    (routes / "city.yaml").write_text(f"id: {city_route}\nfrom: {{types: [CaseAccepted], sources: ['*.gaj.*']}}\n"
                                      "to: [city]\nretry: {attempts: 1}\n")
    config = write_config(tmp_path, backend, routes_dir=routes, destinations={
        "ferry": {"type": "filedrop", "dir": str(tmp_path / "ferry")},
        "city": {"type": "hub", "url": "http://127.0.0.1:9/ws/exchange", "username": "320382.dsjj.hub",
                 "secret": "sample-not-real", "timeout": 1}},
        audit={"allow_http": True},
        systems=[{"id": s, "name": f"{s} (sample)", "secret": SECRET, "grants": g} for s, g in [
            (SCJG, ["CaseAccepted", "CaseProcess", "CaseResult"]), (GAJ, ["CaseAccepted"]), (AUDITOR, ["READ_LOG"])]])
    settings = settings_from(config)
    ids = {}
    with Hub(settings) as hub:
        for name, system in [("CaseAccepted-enterprise.xml", SCJG), ("CaseProcess-review.xml", SCJG),
                             ("CaseResult-approved.xml", SCJG), ("CaseAccepted-person-window.xml", GAJ)]:
            ids[name], data = with_message_id(sample(name))
            assert hub.accept(data, system=system).status == "ACCEPTED"
            time.sleep(0.01)  # distinct receive times, so the order is the log's
        hub.accept((SAMPLES / "invalid" / "applicant-uscc.USCC_CHECK.xml").read_bytes(), system=SCJG)
        wait_for(lambda: len([e for e in _kinds(hub.engine) if e in ("DELIVERED", "DEAD_LETTERED")]) == 4,
                 timeout=60)
    delete_route_queues(hub)
    yield settings, ids


def _kinds(engine):
    with engine.connect() as conn:
        return conn.execute(select(Event.kind)).scalars().all()


def _queries(settings):
    from bus.database import make_engine
    return LogQueries(make_engine(settings.effective_database_url))


def test_search_by_keys_route_status_and_time_and_every_read_is_logged(logged):
    settings, ids = logged
    queries = _queries(settings)
    reader = "operator:audit-li"

    def found(**criteria):
        return [i["message_id"] for i in queries.search(reader, LogSearch(**criteria))["items"]]

    by_case = queries.search(reader, LogSearch(case_number=CASE))["items"]
    assert [i["message_id"] for i in by_case] == [ids["CaseResult-approved.xml"], ids["CaseProcess-review.xml"],
                                                  ids["CaseAccepted-enterprise.xml"]]  # newest first
    assert by_case[0]["deliveries"] == [{"route": FERRY_ROUTE, "destination": "ferry", "status": "DELIVERED",
                                         "attempts": 1}]
    assert by_case[1]["deliveries"] == []  # no route takes CaseProcess
    assert found(uscc=USCC) == [ids["CaseAccepted-enterprise.xml"]]
    person = queries.search(reader, LogSearch(citizen_id=CITIZEN))["items"]
    assert [i["message_id"] for i in person] == [ids["CaseAccepted-person-window.xml"]]
    assert person[0]["citizen_id"] == "320382********0242"
    assert found(project_code="2026-320382-47-03-004512") == [ids["CaseAccepted-enterprise.xml"]]
    assert found(route=CITY_ROUTE) == [ids["CaseAccepted-person-window.xml"]]
    assert found(status="DEAD_LETTERED") == [ids["CaseAccepted-person-window.xml"]]
    assert set(found(status="DELIVERED")) == {ids["CaseAccepted-enterprise.xml"], ids["CaseResult-approved.xml"],
                                              ids["CaseAccepted-person-window.xml"]}  # to the ferry, not the city
    assert found(system=GAJ, type="CaseAccepted") == [ids["CaseAccepted-person-window.xml"]]
    assert found(type="CaseAccepted", system=SCJG, case_number=PERSON_CASE) == []
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
    assert found(since=later) == [] and len(found(until=later)) == 4
    refused = queries.search(reader, LogSearch(status="REJECTED"))["items"]
    assert [(i["code"], i["source"]) for i in refused] == [("USCC_CHECK", SCJG)]

    first = queries.search(reader, LogSearch(), limit=3)
    rest = queries.search(reader, LogSearch(), limit=3, after=first["next"])
    assert len(first["items"]) == 3 and len(rest["items"]) == 1 and rest["next"] is None

    with pytest.raises(SearchInvalid) as bad:
        queries.search(reader, LogSearch(uscc=USCC[:-1] + "0"))
    assert bad.value.code == "USCC_CHECK"
    with pytest.raises(SearchInvalid, match="status"):
        queries.search(reader, LogSearch(status="LOST"))

    with queries.engine.connect() as conn:
        reads = conn.execute(select(Event.source, Event.detail).where(Event.kind == "AUDIT_READ")).all()
    assert {source for source, _ in reads} == {reader}
    criteria = [json.loads(detail)["search"] for _, detail in reads]
    assert {"citizen_id": "320382********0242"} in criteria  # the search is recorded, the id masked
    assert {"case_number": CASE} in criteria
    queries.engine.dispose()


def test_lineage_of_a_delivered_and_a_dead_lettered_message(logged):
    settings, ids = logged
    queries = _queries(settings)
    delivered = queries.lineage("operator:audit-li", ids["CaseResult-approved.xml"])
    assert [e["event"] for e in delivered["events"]] == ["RECEIVED", "PUBLISHED", "ROUTED", "DELIVERED"]
    timings = [e["since_received_ms"] for e in delivered["events"]]
    assert timings[0] == 0 and timings == sorted(timings)
    assert delivered["events"][3]["route"] == FERRY_ROUTE
    assert delivered["events"][3]["detail"]["destination"] == "ferry"
    assert delivered["message"]["case_number"] == CASE

    dead = queries.lineage("operator:audit-li", ids["CaseAccepted-person-window.xml"].upper())
    kinds = [e["event"] for e in dead["events"]]
    assert kinds[:3] == ["RECEIVED", "PUBLISHED", "ROUTED"] and kinds.count("DEAD_LETTERED") == 1
    assert {e["route"] for e in dead["events"] if e["event"] in ("FAILED", "DEAD_LETTERED")} == {CITY_ROUTE}
    assert {(d["route"], d["status"]) for d in dead["deliveries"]} == {(FERRY_ROUTE, "DELIVERED"),
                                                                       (CITY_ROUTE, "DEAD")}
    assert dead["message"]["citizen_id"] == "320382********0242"
    queries.engine.dispose()


def test_cli_log_search_and_show(logged, tmp_path):
    settings, ids = logged
    runner = CliRunner()
    env = {"HUITONG_DATABASE_URL": settings.effective_database_url, "HUITONG_STATE_DIR": settings.state_dir}
    found = runner.invoke(main, ["log", "search", "--case", CASE, "--operator", "audit-li"], env=env)
    assert found.exit_code == 0, found.output
    lines = [line for line in found.output.splitlines() if CASE in line]
    assert len(lines) == 3 and ids["CaseResult-approved.xml"] in lines[0] and f"{FERRY_ROUTE}→ferry DELIVERED" in lines[0]
    as_json = json.loads(runner.invoke(main, ["log", "search", "--status", "dead_lettered", "--json"], env=env).stdout)
    assert [i["message_id"] for i in as_json["items"]] == [ids["CaseAccepted-person-window.xml"]]
    bad = runner.invoke(main, ["log", "search", "--citizen-id", CITIZEN[:-1] + "1"], env=env)
    assert bad.exit_code == 1 and "CITIZEN_ID_CHECK" in bad.output
    shown = runner.invoke(main, ["log", "show", ids["CaseResult-approved.xml"]], env=env)
    assert shown.exit_code == 0
    assert [line.split()[2] for line in shown.output.splitlines()[1:]] == ["RECEIVED", "PUBLISHED", "ROUTED", "DELIVERED"]
    assert f"{FERRY_ROUTE} ferry" in shown.output
    missing = runner.invoke(main, ["log", "show", "00000000-0000-4000-8000-000000000000"], env=env)
    assert missing.exit_code == 1 and "NOT_FOUND" in missing.output
    # The tail and the other log commands are still there beside search and show.
    assert runner.invoke(main, ["log", "tail", "-n", "3"], env=env).exit_code == 0


def _get(running, path: str, system: str | None, secret: str = SECRET) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{running.port}/api/v1/log{urllib.parse.quote(path, safe='/?=&')}")
    if system:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{system}:{secret}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_rest_log_api_reads_all_with_read_log_and_only_its_own_without(logged):
    from tests.helpers.soap import RunningHub
    settings, ids = logged
    running = RunningHub(settings)
    try:
        status, found = _get(running, f"/messages?case={CASE}", AUDITOR)
        assert status == 200 and [i["message_id"] for i in found["items"]] == [
            ids["CaseResult-approved.xml"], ids["CaseProcess-review.xml"], ids["CaseAccepted-enterprise.xml"]]
        status, own = _get(running, "/messages", SCJG)
        assert status == 200 and {i["source"] for i in own["items"]} == {SCJG} and len(own["items"]) == 3
        person_id = ids["CaseAccepted-person-window.xml"]
        assert _get(running, f"/messages/{person_id}", SCJG)[0] == 404  # not its message: not even there
        status, lineage = _get(running, f"/messages/{person_id}", GAJ)
        assert status == 200 and lineage["message"]["citizen_id"] == "320382********0242"
        assert [e["event"] for e in lineage["events"]][:3] == ["RECEIVED", "PUBLISHED", "ROUTED"]
        status, page = _get(running, "/messages?limit=2", AUDITOR)
        assert len(page["items"]) == 2 and page["next"]
        status, rest = _get(running, f"/messages?limit=2&after={page['next']}", AUDITOR)
        assert status == 200 and len(rest["items"]) == 2 and not {i["message_id"] for i in rest["items"]} & {
            i["message_id"] for i in page["items"]}
        assert _get(running, f"/messages?uscc={USCC[:-1]}0", AUDITOR)[1]["error"]["code"] == "USCC_CHECK"
        assert _get(running, "/messages?since=yesterday", AUDITOR) == (400, {"error": {
            "code": "DATE_FORMAT", "text": "since 'yesterday' is not an ISO 8601 date or time"}})
        assert _get(running, "/messages?status=lost", AUDITOR)[0] == 400
        assert _get(running, "/messages", AUDITOR, secret="wrong-secret-000")[0] == 401
        assert _get(running, "/messages", None)[0] == 401
        status, document = _get(running, "/openapi.json", None)
        assert status == 200 and "/messages/{message_id}" in document["paths"]
        with running.hub.engine.connect() as conn:
            readers = set(conn.execute(select(Event.source).where(Event.kind == "AUDIT_READ")).scalars())
        assert readers == {f"system:{AUDITOR}", f"system:{SCJG}", f"system:{GAJ}"}
    finally:
        running.close()
