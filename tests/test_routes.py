"""Routes end to end over real HTTP: a department system pushes with zeep, the hub routes by
XPath, transforms with XSLT and calls a separate spyne department service; failures retry
with backoff, exhausted messages wait in the dead-letter queue until an operator acts.
Each test runs embedded and on RabbitMQ + PostgreSQL."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Connection

from sqlalchemy import select

from bus.topology import dead_queue_name
from catalog.models import CaseIndex
from tests.conftest import ROOT, create_database, drop_database
from tests.helpers.department import Department
from tests.helpers.routing import (DEMO_ROUTES, SECRET, ZJJ_SYSTEM, construction_case, detail, events,
                                   route_file, settings_from, wait_for, write_config)
from tests.helpers.soap import RunningHub

ROUTE = "construction-permits-to-fgw"


def fgw(department: Department) -> dict:
    return {"type": "soap", "wsdl": department.wsdl, "operation": "ReceiveProjectCase",
            "username": "320382.dsjj.hub", "secret": "sample-fgw-secret-not-real", "timeout": 5}


def fast_retry_route(directory, attempts: int):
    """The demo construction-permit route with a short backoff."""
    return route_file(directory, f"""
id: {ROUTE}
from: {{types: [CaseAccepted], sources: ["*.zjj.*"]}}
namespaces: {{hx: "urn:huitong:envelope:1", c: "urn:huitong:case:1"}}
when: /hx:Envelope/hx:Body/c:CaseAccepted/c:ProjectCode
transform: {{xslt: {DEMO_ROUTES / 'xslt' / 'fgw-project-case.xsl'}}}
to: [fgw-tzxm]
retry: {{attempts: {attempts}, first_delay: 0.2, max_delay: 0.4}}
""")


@pytest.fixture
def department():
    d = Department()
    yield d
    d.close()


def zeep_push(hub: RunningHub, data: bytes, system: str = ZJJ_SYSTEM):
    from zeep import Client
    from zeep.wsse.username import UsernameToken
    client = Client(hub.url + "?wsdl", wsse=UsernameToken(system, SECRET, use_digest=True))
    return client.service.PushMessage(envelope=data.decode("utf-8"))


def cli(*args, config):
    return subprocess.run([sys.executable, "-m", "bus.cli", *args, "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_pushed_case_reaches_the_department_through_xpath_and_xslt(backend, tmp_path, department):
    config = write_config(tmp_path, backend, routes_dir=DEMO_ROUTES, destinations={
        "fgw-tzxm": fgw(department), "city-hub": {"type": "hub", "url": "http://127.0.0.1:9/ws/exchange",
                                                  "username": "320382.dsjj.hub", "secret": "sample"},
        "archive-ferry": {"type": "filedrop", "dir": str(tmp_path / "ferry")}, "registries": {"type": "catalog"}})
    hub = RunningHub(settings_from(config))
    try:
        wanted_id, wanted = construction_case()
        other_id, other = construction_case(project_code=False)
        assert zeep_push(hub, wanted).status == "ACCEPTED"
        assert zeep_push(hub, other).status == "ACCEPTED"
        wait_for(lambda: department.received)
        call = department.received[0]
        # What the XSLT made of the canonical CaseAccepted, as the department's WSDL has it.
        assert call == {"projectCode": "2026-320382-47-03-004512", "caseNumber": "320382-SCJG-20261120-0001",
                        "itemName": "食品经营许可", "applicantName": "邳州市恒润建材有限公司",
                        "acceptedAt": "2026-11-20T09:30:00+08:00", "messageId": wanted_id}
        assert department.usernames == ["320382.dsjj.hub"]  # signed with the configured credentials
        delivered = wait_for(lambda: events(hub.hub.engine, "DELIVERED", ROUTE))
        assert delivered[0].message_id == wanted_id
        assert detail(delivered[0])["reply"] == "OK 320382-SCJG-20261120-0001"  # the department's answer
        # The message without a project code was published too, but the predicate kept it out.
        wait_for(lambda: len(events(hub.hub.engine, "PUBLISHED")) == 2)
        hub.hub.relay.drain()
        routed = events(hub.hub.engine, "ROUTED", ROUTE)
        assert [e.message_id for e in routed] == [wanted_id]
        assert other_id not in department.counts()
    finally:
        hub.close()


def test_a_destination_that_fails_then_recovers_receives_the_message_exactly_once(backend, tmp_path, department):
    routes_dir = tmp_path / "routes"
    fast_retry_route(routes_dir, attempts=6)
    config = write_config(tmp_path, backend, routes_dir=routes_dir, destinations={"fgw-tzxm": fgw(department)})
    department.fail_next = 3
    hub = RunningHub(settings_from(config))
    try:
        message_id, data = construction_case()
        assert zeep_push(hub, data).status == "ACCEPTED"
        wait_for(lambda: events(hub.hub.engine, "DELIVERED", ROUTE))
        assert department.counts() == {message_id: 1}
        failed = events(hub.hub.engine, "FAILED", ROUTE)
        assert [detail(e)["attempt"] for e in failed] == [1, 2, 3]
        assert all(e.code == "DESTINATION_FAULT" and "busy" in detail(e)["error"] for e in failed)
        assert detail(events(hub.hub.engine, "DELIVERED", ROUTE)[0])["attempt"] == 4
        # A redelivery of the same message (the broker may send it again) is not sent twice.
        hub.hub.relay.drain()
        assert department.counts() == {message_id: 1}
    finally:
        hub.close()


def _dead_queue_ids(broker_url: str, route: str) -> list[str]:
    """Message ids in the route's dead-letter queue (looked at, then put back)."""
    with Connection(broker_url, transport_options={"polling_interval": 0.01}) as conn:
        channel = conn.channel()
        from bus.topology import dead_queue
        queue = dead_queue(route, quorum=not broker_url.startswith("memory"))(channel)
        queue.declare()
        held = []
        while (message := queue.get(no_ack=False)) is not None:
            held.append(message)
        ids = [m.properties.get("message_id") for m in held]
        for m in held:
            m.reject(requeue=True)
        return ids


def test_an_exhausted_message_waits_in_the_dead_letter_queue_and_dlq_retry_delivers_it_once(
        backend, tmp_path, department):
    routes_dir = tmp_path / "routes"
    fast_retry_route(routes_dir, attempts=3)
    config = write_config(tmp_path, backend, routes_dir=routes_dir, destinations={"fgw-tzxm": fgw(department)})
    department.fail_always = True
    hub = RunningHub(settings_from(config))
    try:
        dead_id, data = construction_case()
        kept_id, kept = construction_case()
        for message in (data, kept):
            assert zeep_push(hub, message).status == "ACCEPTED"
        wait_for(lambda: len(events(hub.hub.engine, "DEAD_LETTERED", ROUTE)) == 2)
        letter = detail(events(hub.hub.engine, "DEAD_LETTERED", ROUTE)[0])
        assert letter["attempts"] == 3 and letter["queue"] == dead_queue_name(ROUTE)
        # The dead-letter queue holds the original canonical messages.
        # (Both: the two may be dead-lettered in different batches.)
        assert sorted(wait_for(lambda: len(ids := _dead_queue_ids(backend.broker_url, ROUTE)) >= 2 and ids)) \
            == sorted([dead_id, kept_id])

        listed = cli("dlq", "list", ROUTE, "--json", config=config)
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert {r["message_id"] for r in rows} == {dead_id, kept_id}
        assert all(r["code"] == "DESTINATION_FAULT" and r["attempts"] == 3 for r in rows)
        first = next(r["id"] for r in rows if r["message_id"] == dead_id)
        other = next(r["id"] for r in rows if r["message_id"] == kept_id)

        department.fail_always = False  # the department is fixed
        retried = cli("dlq", "retry", ROUTE, str(first), "--reason", "fgw system back", "--operator", "zhang.wei",
                      config=config)
        assert retried.returncode == 0, retried.stderr
        wait_for(lambda: department.counts().get(dead_id) == 1)
        discarded = cli("dlq", "discard", ROUTE, str(other), "--reason", "case withdrawn by the applicant",
                        "--operator", "li.na", config=config)
        assert discarded.returncode == 0, discarded.stderr

        [retry_event] = events(hub.hub.engine, "RETRIED", ROUTE)
        assert detail(retry_event)["by"] == "zhang.wei" and detail(retry_event)["reason"] == "fgw system back"
        [discard_event] = events(hub.hub.engine, "DISCARDED", ROUTE)
        assert discard_event.message_id == kept_id and detail(discard_event)["by"] == "li.na"
        # A second retry of the same letter finds nothing dead: nothing is sent twice.
        again = cli("dlq", "retry", ROUTE, "--all", config=config)
        assert "0 dead letter(s)" in again.stdout
        hub.hub.service("routes").scheduler.mirror_dead_letters()
        assert _dead_queue_ids(backend.broker_url, ROUTE) == []
        hub.hub.relay.drain()
        assert department.counts() == {dead_id: 1}
        assert not hub.hub.service("routes").store.dead_letters(ROUTE)
    finally:
        hub.close()


def test_a_failing_transform_is_dead_lettered_at_once(backend, tmp_path):
    routes_dir = tmp_path / "routes"
    (routes_dir / "xslt").mkdir(parents=True)
    (routes_dir / "xslt" / "halt.xsl").write_text(
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        '<xsl:template match="/"><xsl:message terminate="yes">no mapping for this case type</xsl:message>'
        '</xsl:template></xsl:stylesheet>', encoding="utf-8")
    route_file(routes_dir, "id: halting\nfrom: {types: [CaseAccepted]}\ntransform: {xslt: xslt/halt.xsl}\n"
                           "to: [ferry]\nretry: {attempts: 5}\n")
    config = write_config(tmp_path, backend, routes_dir=routes_dir,
                          destinations={"ferry": {"type": "filedrop", "dir": str(tmp_path / "out")}})
    hub = RunningHub(settings_from(config))
    try:
        message_id, data = construction_case()
        assert hub.hub.accept(data, system=ZJJ_SYSTEM).ok
        [dead] = wait_for(lambda: events(hub.hub.engine, "DEAD_LETTERED", "halting"))
        assert dead.code == "TRANSFORM_FAILED" and detail(dead)["attempts"] == 1
        assert "no mapping for this case type" in detail(dead)["error"]
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
        assert [d.message_id for d in hub.hub.service("routes").store.dead_letters("halting")] == [message_id]
    finally:
        hub.close()


def test_filedrop_writes_whole_files_with_a_sha256_sidecar_once_per_message(backend, tmp_path):
    import hashlib

    routes_dir = tmp_path / "routes"
    route_file(routes_dir, "id: to-ferry\nfrom: {types: [CaseAccepted], regions: ['3203']}\nto: [ferry]\n")
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path, backend, routes_dir=routes_dir,
                          destinations={"ferry": {"type": "filedrop", "dir": str(outbox)}})
    hub = RunningHub(settings_from(config))
    try:
        message_id, data = construction_case()
        assert hub.hub.accept(data, system=ZJJ_SYSTEM).ok
        wait_for(lambda: events(hub.hub.engine, "DELIVERED", "to-ferry"))
        hub.hub.relay.drain()
        files = sorted(p.name for p in outbox.iterdir() if not p.name.startswith("manifest-"))
        assert files == [f"CaseAccepted-{message_id}.xml", f"CaseAccepted-{message_id}.xml.sha256"]
        body = (outbox / files[0]).read_bytes()
        assert body == data  # the canonical message as accepted
        assert (outbox / files[1]).read_text() == f"{hashlib.sha256(body).hexdigest()}  {files[0]}\n"
        assert len(events(hub.hub.engine, "DELIVERED", "to-ferry")) == 1
        # The batch's manifest names the file, its size and digest, and has a sidecar of its own.
        [manifest] = [p for p in outbox.glob("manifest-*.json")]
        listed = json.loads(manifest.read_text(encoding="utf-8"))
        assert listed["count"] == 1 and listed["files"] == [
            {"file": files[0], "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(), "message_id": message_id}]
        assert Path(f"{manifest}.sha256").read_text().split()[0] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    finally:
        hub.close()


def test_filedrop_writes_a_department_csv_in_gbk(backend, tmp_path):
    routes_dir = tmp_path / "routes"
    route_file(routes_dir, "id: to-zjj-csv\nfrom: {types: [CaseAccepted]}\nto: [zjj-export]\n")
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path, backend, routes_dir=routes_dir, destinations={"zjj-export": {
        "type": "filedrop", "dir": str(outbox), "format": "csv", "mapping": "zjj-sgxk-accepted"}})
    hub = RunningHub(settings_from(config))
    try:
        message_id, data = construction_case()
        assert hub.hub.accept(data, system=ZJJ_SYSTEM).ok
        wait_for(lambda: events(hub.hub.engine, "DELIVERED", "to-zjj-csv"))
        written = (outbox / f"CaseAccepted-{message_id}.csv").read_bytes()
        header, row = written.decode("gbk").splitlines()
        assert header.startswith("办件编号,行政区划代码,受理部门")
        assert row.startswith("320382-SCJG-20261120-0001,320382,邳州市市场监督管理局")
        assert ",企业,邳州市恒润建材有限公司,统一社会信用代码,91320382MA1Y2K3P9C," in row
        assert ",网上申报,2026-11-20 09:02:11,2026-11-20 09:30:00,5,2026-11-27,2026-320382-47-03-004512" in row
    finally:
        hub.close()


def test_results_go_up_to_the_city_hub_which_keeps_the_original_source(backend, tmp_path, department):
    """The demo route county-results-to-city: the hub destination pushes to another hub's
    /ws/exchange, signed in as this hub, which the city hub registered with FORWARD."""
    from tests.helpers.messages import case_results
    from tests.helpers.routing import HUB_SECRET, SCJG_SYSTEM

    # The city keeps its own log; its relay is off, so nothing it holds reaches the county's
    # route queues on the shared broker.
    if backend.name == "services":
        city_db = create_database()
    else:
        city_db = f"sqlite:///{tmp_path / 'city.db'}"
    city_config = write_config(tmp_path / "city", backend, routes_dir="", destinations={}, database_url=city_db,
                               relay={"enabled": False}, soap={"registry_cache_seconds": 0})
    city = RunningHub(settings_from(city_config))
    city.hub.systems.add("320382.dsjj.hub", name="邳州市交换平台 (sample)", secret=HUB_SECRET,
                         grants=["CaseResult", "FORWARD"])
    config = write_config(tmp_path, backend, routes_dir=DEMO_ROUTES, destinations={
        "fgw-tzxm": fgw(department),
        "city-hub": {"type": "hub", "url": city.url, "username": "320382.dsjj.hub", "secret": HUB_SECRET},
        "archive-ferry": {"type": "filedrop", "dir": str(tmp_path / "archive")}, "registries": {"type": "catalog"}})
    county = RunningHub(settings_from(config))
    try:
        [(message_id, data)] = case_results(1)
        assert zeep_push(county, data, system=SCJG_SYSTEM).status == "ACCEPTED"
        delivered = wait_for(lambda: len(events(county.hub.engine, "DELIVERED", "county-results-to-city")) == 3
                             and events(county.hub.engine, "DELIVERED", "county-results-to-city"))
        by_destination = {detail(e)["destination"]: detail(e) for e in delivered}
        # The registries' case index has the result (this route or cases-to-registries applied it; once).
        with county.hub.engine.connect() as conn:
            assert conn.execute(select(CaseIndex.status, CaseIndex.result)).all() == [("FINISHED", "APPROVED")]
        assert by_destination["city-hub"]["reply"]["status"] == "ACCEPTED"
        assert by_destination["archive-ferry"]["file"] == f"CaseResult-{message_id}.xml"
        assert city.hub.log.find_receipt(SCJG_SYSTEM, message_id).receipt_id == \
            by_destination["city-hub"]["reply"]["receiptId"]

        # Without FORWARD the city refuses (SOURCE_MISMATCH): that will not change on a retry.
        city.hub.systems.grant("320382.dsjj.hub", ["CaseResult"])
        [(refused_id, refused)] = case_results(1)
        assert zeep_push(county, refused, system=SCJG_SYSTEM).status == "ACCEPTED"
        [dead] = wait_for(lambda: events(county.hub.engine, "DEAD_LETTERED", "county-results-to-city"))
        assert dead.message_id == refused_id and "SOURCE_MISMATCH" in detail(dead)["error"]
        assert detail(dead)["attempts"] == 1
    finally:
        county.close()
        city.close()
        if backend.name == "services":
            drop_database(city_db)


def test_a_named_python_mapper_transforms_for_one_destination(backend, tmp_path):
    """An adapter registers a mapper by name; a route uses it for one destination only."""
    from lxml import etree

    from routes.transforms import register_mapper

    def case_summary(root):
        ns = {"hx": "urn:huitong:envelope:1", "c": "urn:huitong:case:1"}
        summary = etree.Element("Summary")
        summary.set("case", root.findtext(".//c:CaseNumber", namespaces=ns))
        summary.set("project", root.findtext(".//c:ProjectCode", namespaces=ns))
        return summary

    register_mapper("test-case-summary", case_summary)
    routes_dir = tmp_path / "routes"
    route_file(routes_dir, "id: summaries\nfrom: {types: [CaseAccepted]}\n"
                           "to:\n  - {destination: summary, transform: {mapper: test-case-summary}}\n  - whole\n")
    config = write_config(tmp_path, backend, routes_dir=routes_dir, destinations={
        "summary": {"type": "filedrop", "dir": str(tmp_path / "summary")},
        "whole": {"type": "filedrop", "dir": str(tmp_path / "whole")}})
    hub = RunningHub(settings_from(config))
    try:
        message_id, data = construction_case()
        assert hub.hub.accept(data, system=ZJJ_SYSTEM).ok
        wait_for(lambda: len(events(hub.hub.engine, "DELIVERED", "summaries")) == 2)
        summary = (tmp_path / "summary" / f"CaseAccepted-{message_id}.xml").read_bytes()
        assert b'<Summary case="320382-SCJG-20261120-0001" project="2026-320382-47-03-004512"/>' in summary
        assert (tmp_path / "whole" / f"CaseAccepted-{message_id}.xml").read_bytes() == data
    finally:
        hub.close()


def test_messages_the_broker_lost_are_redriven_from_the_log(backend, tmp_path):
    """The log is the truth: what was published but never reached the route (here: purged
    from its queue) is sent to the route again after routes.redrive_after_seconds."""
    from bus.broker import connect
    from bus.hub import Hub
    from bus.topology import route_queue
    from tests.helpers.messages import case_results
    from tests.helpers.routing import SCJG_SYSTEM

    routes_dir = tmp_path / "routes"
    route_file(routes_dir, "id: lossy\nfrom: {types: [CaseResult]}\nto: [ferry]\n")
    destinations = {"ferry": {"type": "filedrop", "dir": str(tmp_path / "out"), "fsync": False}}
    publishing = write_config(tmp_path, backend, routes_dir=routes_dir, destinations=destinations,
                              routes={"run": False}, name="a.yaml")
    routing = write_config(tmp_path, backend, routes_dir=routes_dir, destinations=destinations,
                           routes={"redrive_after_seconds": 1}, name="b.yaml")
    hub = Hub(settings_from(publishing)).start()
    ids = []
    try:
        conn = connect(backend.broker_url)
        queue = route_queue("lossy", ["CaseResult.#"], quorum=backend.name == "services")(conn.channel())
        queue.declare()
        queue.purge()  # nothing left by an interrupted earlier run counts
        for message_id, data in case_results(20):
            assert hub.accept(data, system=SCJG_SYSTEM).ok
            ids.append(message_id)
        hub.relay.drain()
        assert queue.purge() == 20  # the broker "loses" them all
        conn.release()
    finally:
        hub.stop()
    hub = Hub(settings_from(routing)).start()
    try:
        delivered = wait_for(lambda: len(events(hub.engine, "DELIVERED", "lossy")) == 20
                             and events(hub.engine, "DELIVERED", "lossy"), timeout=30)
        assert sorted(e.message_id for e in delivered) == sorted(ids)
    finally:
        hub.stop()
        from tests.helpers.soap import delete_route_queues
        delete_route_queues(hub)


def test_the_redrive_sweep_passes_a_hole_in_the_log_longer_than_its_window(backend):
    """The sweep reads the next `limit` seqs after its mark; a hole at least that long (rolled
    back acceptances) must not stop it for good."""
    import datetime as dt

    from sqlalchemy import delete, update

    from bus.hub import Hub
    from bus.models import Event, Message
    from routes.deliveries import DeliveryStore
    from tests.helpers.messages import case_results
    from tests.helpers.routing import SCJG_SYSTEM

    with Hub(backend.settings(audit__seal="false")).start(relay=False) as hub:
        store = DeliveryStore(hub.engine)
        store.start_sweep_marks(["lossy"])
        receipts = hub.acceptance.accept_many([data for _, data in case_results(12)], system=SCJG_SYSTEM)
        assert {r.status for r in receipts} == {"ACCEPTED"}
        with hub.engine.begin() as conn:
            seqs = conn.scalars(select(Message.seq).order_by(Message.seq)).all()
            hole = Message.seq.between(seqs[2], seqs[8])  # as if a batch of seven had rolled back
            conn.execute(delete(Event).where(Event.message_seq.in_(select(Message.seq).where(hole))))
            conn.execute(delete(Message).where(hole))
            conn.execute(update(Message).values(published_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)))
        found = []
        for _ in range(6):
            found += [due.message_seq for due in store.unrouted("lossy", ("CaseResult",), older_than=60, limit=3)]
        assert found == seqs[:2] + seqs[9:]


def test_two_worker_threads_holding_copies_of_one_message_deliver_it_once(backend, tmp_path):
    """The relay may publish a message twice, and two consumer threads of one process
    (routes.threads) can then hold a copy each at the same moment, before either has
    committed. The second copy delivers nothing: the first thread's outcome is the only one."""
    import threading
    from bus.hub import Hub
    from bus.models import Message
    from bus.topology import route_queue_name
    from bus.worker import Delivery
    from routes.in_flight import InFlight
    from routes.router import Router

    routes_dir = tmp_path / "routes"
    route_file(routes_dir, "id: to-ferry\nfrom: {types: [CaseAccepted]}\nto: [ferry]\n")
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path, backend, routes_dir=routes_dir, routes={"run": False},
                          destinations={"ferry": {"type": "filedrop", "dir": str(outbox), "fsync": False}})
    hub = Hub(settings_from(config)).start(relay=False)
    writing, go_on = threading.Event(), threading.Event()
    try:
        message_id, data = construction_case()
        assert hub.accept(data, system=ZJJ_SYSTEM).ok
        with hub.engine.connect() as conn:
            seq = conn.scalar(select(Message.seq).where(Message.message_id == message_id))
        copy = Delivery(queue=route_queue_name("to-ferry"), message_id=message_id, routing_key="", body=data,
                        headers={"x-huitong-seq": seq, "x-huitong-source": ZJJ_SYSTEM,
                                 "x-huitong-type": "CaseAccepted"}, redelivered=False)
        runtime = hub.service("routes")
        shared = InFlight()
        first, second = (Router(runtime.routes, runtime.store, runtime.parser, None, shared) for _ in range(2))
        ferry = runtime.routes.destinations["ferry"]
        deliver, calls = ferry.deliver, []

        def first_call_pauses(items):  # the first thread is writing its files when the copy arrives
            calls.append(len(items))
            if len(calls) == 1:
                writing.set()
                go_on.wait(10)
            return deliver(items)

        ferry.deliver = first_call_pauses
        thread = threading.Thread(target=first.handle, args=([copy],))
        thread.start()
        assert writing.wait(10)
        second.handle([copy])  # returns at once, having delivered nothing
        assert calls == [1]
        go_on.set()
        thread.join(10)
        second.handle([copy])  # a later copy finds the message delivered
        assert calls == [1]
        assert len(events(hub.engine, "DELIVERED", "to-ferry")) == 1
        assert len(events(hub.engine, "ROUTED", "to-ferry")) == 1
        assert sorted(p.name for p in outbox.glob("CaseAccepted-*")) == [
            f"CaseAccepted-{message_id}.xml", f"CaseAccepted-{message_id}.xml.sha256"]
    finally:
        go_on.set()  # (a failed assertion must not leave the first thread waiting)
        hub.stop()


def test_in_flight_lets_one_thread_hold_a_message_of_a_route_at_a_time():
    from routes.in_flight import InFlight
    shared = InFlight()
    assert shared.claim("a", [1, 2]) == {1, 2}
    assert shared.claim("a", [2, 3]) == {3}
    assert shared.claim("b", [2]) == {2}  # another route's delivery of the same message
    shared.release("a", {1, 2})
    assert shared.claim("a", [1, 2, 3]) == {1, 2}
