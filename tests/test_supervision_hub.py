"""Supervision inside a running hub: case messages routed to the supervision destination,
alerts coming back on the bus as SupervisionAlert messages and routed on to the supervision
system's file ferry, and `huitong cases` reading the result — on the embedded default and on
RabbitMQ + PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys

from bus.hub import Hub
from schemas.hardened import HardenedParser
from tests.conftest import ROOT
from tests.helpers import cases
from tests.helpers.routing import events, route_file, settings_from, wait_for, write_config
from tests.helpers.soap import delete_route_queues

JIANCHA = "320382.huitong.jiancha"
S = "{urn:huitong:supervision:1}"


def _config(tmp_path, backend):
    routes_dir = tmp_path / "routes"
    route_file(routes_dir, "id: cases-to-supervision\nfrom: {types: [CaseAccepted, CaseProcess, CaseResult]}\n"
                           "to: [supervision]\n")
    route_file(routes_dir, "id: alerts-to-jiancha\nfrom: {types: [SupervisionAlert]}\nto: [jiancha-ferry]\n")
    calendar = tmp_path / "calendar.yaml"
    calendar.write_text("years:\n  2026:\n    holidays: ['2026-10-01..2026-10-07']\n    workdays: ['2026-10-10']\n")
    return write_config(tmp_path, backend, routes_dir=routes_dir, destinations={
        "supervision": {"type": "supervision"},
        "jiancha-ferry": {"type": "filedrop", "dir": str(tmp_path / "ferry")}},
        supervision={"calendar": str(calendar), "alert_source": JIANCHA, "anomaly_grace_minutes": 0,
                     "sweep_interval_seconds": 0.2})


def _alert_files(ferry):
    parser = HardenedParser()
    found = {}
    for path in ferry.glob("SupervisionAlert-*.xml"):
        body = parser.parse(path.read_bytes()).find(".//" + S + "SupervisionAlert")
        found[(body.findtext(S + "CaseNumber"), body.findtext(S + "Kind"))] = body
    return found


def test_overdue_cases_and_anomalies_become_alerts_routed_to_the_supervision_system(backend, tmp_path):
    config = _config(tmp_path, backend)
    hub = Hub(settings_from(config)).start()
    try:
        late = "320382-SCJG-20260901-0001"  # accepted in September with 5 days: long overdue
        twice = "320382-SCJG-20261116-0002"
        first, second = cases.result(twice, "2026-11-18T10:00:00"), cases.result(twice, "2026-11-19T10:00:00")
        for _, data in (cases.accepted(late, "2026-09-01T09:00:00", days=5),
                        cases.accepted(twice, "2026-11-16T09:00:00", days=20), first, second):
            assert hub.accept(data, system=cases.SOURCE).status == "ACCEPTED"
        ferry = tmp_path / "ferry"
        alerts = wait_for(lambda: (lambda f: f if len(f) >= 2 else None)(_alert_files(ferry)), timeout=60)
        red = alerts[(late, "RED")]
        assert red.findtext(S + "Deadline") == "2026-09-08"  # 2, 3, 4, 7, 8 September
        assert red.findtext(S + "LimitWorkingDays") == "5" and int(red.findtext(S + "UsedWorkingDays")) > 50
        assert red.findtext(f"{S}Department/{S}Code") == "scjgj"
        two = alerts[(twice, "TWO_RESULTS")]
        assert [c.findtext(S + "MessageId") for c in two.findall(S + "Cause")] == [first[0], second[0]]
        assert {c.findtext(S + "Source") for c in two.findall(S + "Cause")} == {cases.SOURCE}
        # The alerts are messages of the exchange log like any other, sent by the hub's own id.
        received = [e for e in events(hub.engine, "RECEIVED") if e.source == JIANCHA]
        assert len(received) == 2
        # Redelivering the case messages (a replay, a broker redelivery) raises nothing twice.
        store = hub.service("supervision").store
        assert hub.service("supervision").run_once()["alerts_sent"] == 0
        again = store.apply([{"type": "CaseResult", "message_id": second[0], "source": cases.SOURCE,
                              "case_number": twice, "at": "2026-11-19T10:00:00+08:00", "result": "APPROVED"}])
        assert again[0]["already_read"]
        _console_shows_them(hub, late, twice)
    finally:
        hub.stop()
        delete_route_queues(hub)  # durable on RabbitMQ: a later test's hub would find these messages

    env = {**os.environ, "HUITONG_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    run = lambda *args: subprocess.run([sys.executable, "-m", "bus.cli", "cases", *args], capture_output=True,  # noqa: E731
                                       text=True, timeout=120, env=env, cwd=tmp_path)
    overdue = run("overdue")
    assert overdue.returncode == 0, overdue.stderr
    assert late in overdue.stdout and twice not in overdue.stdout
    shown = run("show", twice)
    assert shown.returncode == 0 and "TWO_RESULTS" in shown.stdout and "FINISHED" in shown.stdout
    board = run("board")
    assert "scjgj" in board.stdout
    missing = run("show", "320382-NONE-0000")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def _console_shows_them(hub, late: str, twice: str) -> None:
    """The console's supervision page: per department, the overdue list, the anomalies."""
    from bus.http import create_app
    from console.users import UserStore
    from tests.test_console import Client, _login

    UserStore(hub.engine).add("op-wang", "operator", "sample-operator-pw", by="test")
    app = create_app(hub)
    client, _ = _login(app, "op-wang")
    page = client.get("/supervision?department=scjgj").get_data(as_text=True)
    overdue = page[page.index('id="overdue-table"'):page.index('id="yellow-table"')]
    assert f'data-case="{late}"' in overdue and twice not in overdue
    anomalies = page[page.index('id="anomalies-table"'):]
    assert "TWO_RESULTS" in anomalies and twice in anomalies
    data = client.get("/api/v1/console/supervision").get_json()
    [scjgj] = [d for d in data["departments"] if d["department_code"] == "scjgj"]
    assert scjgj["RED"] == 1 and scjgj["anomalies"] == 1
    assert Client(app).get("/supervision").status_code == 303  # no session: to the sign-in page


def test_a_supervision_destination_without_an_alert_source_is_refused_at_start(backend, tmp_path):
    import pytest

    from bus.errors import HuitongError
    config = _config(tmp_path, backend)
    settings = settings_from(config)
    settings = settings.model_copy(update={"supervision": settings.supervision.model_copy(update={"alert_source": ""})})
    with pytest.raises((HuitongError, ValueError)) as caught:
        Hub(settings)
    assert "supervision.alert_source is not set" in str(caught.value)

