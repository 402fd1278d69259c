"""Three-level federation over the hub destination (SOAP between hubs): county → city →
province, answers back down, the county→city link down for a while — on the embedded default
(each hub a process with its own SQLite and in-memory broker) and on PostgreSQL + RabbitMQ
(each hub its own database and virtual host)."""
from __future__ import annotations

import uuid
from collections import Counter

import pytest
from sqlalchemy import select

from bus.models import Event, Message
from replay.lineage import LogQueries
from tests.conftest import AMQP_URL, create_database, drop_database, require_services
from tests.helpers.federation import (CASES, CITY, COUNTY, COUNTY_DEPARTMENT, NAMESPACES, PROVINCE,
                                      PROVINCE_DEPARTMENT, RETRY, SECRET, HubProcess, exchange_url, hub_destination,
                                      hub_system, targeted_to, vhost_url)
from tests.helpers.messages import sample, with_message_id
from tests.helpers.routing import wait_for
from tests.helpers.soap import free_port

RUN = uuid.uuid4().hex[:6]


@pytest.fixture
def three_levels(request, tmp_path):
    """Stores for the three hubs: (database url, broker url) each."""
    if request.param == "embedded":
        yield {level: (f"sqlite:///{tmp_path / f'{level}.db'}", "memory://") for level in ("county", "city", "province")}
        return
    require_services()
    urls = {level: create_database() for level in ("county", "city", "province")}
    try:
        yield {level: (url, vhost_url(AMQP_URL, f"huitong-fed-{level}-{RUN}")) for level, url in urls.items()}
    finally:
        for url in urls.values():
            drop_database(url)


def _hubs(tmp_path, stores) -> dict[str, HubProcess]:
    ports = {level: free_port() for level in stores}
    county = HubProcess(
        "county", tmp_path, *stores["county"], port=ports["county"],
        systems=[{"id": COUNTY_DEPARTMENT, "name": "登记系统 (sample)", "secret": SECRET, "grants": CASES},
                 hub_system(CITY, ["CaseResult", "FORWARD"], "徐州市交换平台")],
        destinations={"city-hub": hub_destination(exchange_url(ports["city"]), COUNTY),
                      "department-inbox": {"type": "filedrop", "dir": str(tmp_path / "county-department")}},
        routes=[{"id": "cases-up-to-city", "from": {"types": CASES, "regions": ["320382"]}, "to": ["city-hub"],
                 "retry": RETRY},
                {"id": "answers-to-department", "from": {"types": ["CaseResult"], "regions": ["32"]},
                 "namespaces": NAMESPACES, "when": f"/hx:Envelope/hx:Header/hx:Target = '{COUNTY_DEPARTMENT}'",
                 "to": ["department-inbox"]}])
    city = HubProcess(
        "city", tmp_path, *stores["city"], port=ports["city"],
        systems=[hub_system(COUNTY, [*CASES, "FORWARD"], "邳州市交换平台"),
                 hub_system(PROVINCE, ["CaseResult", "FORWARD"], "江苏省交换平台")],
        destinations={"province-hub": hub_destination(exchange_url(ports["province"]), CITY),
                      "county-hub": hub_destination(exchange_url(ports["county"]), CITY)},
        routes=[{"id": "cases-up-to-province", "from": {"types": CASES, "regions": ["3203"]}, "to": ["province-hub"],
                 "retry": RETRY},
                {"id": "answers-down-to-pizhou", "from": {"types": ["CaseResult"], "regions": ["3200"]},
                 "namespaces": NAMESPACES, "when": targeted_to("320382"), "to": ["county-hub"], "retry": RETRY}])
    province = HubProcess(
        "province", tmp_path, *stores["province"], port=ports["province"],
        systems=[hub_system(CITY, [*CASES, "FORWARD"], "徐州市交换平台"),
                 {"id": PROVINCE_DEPARTMENT, "name": "省审批系统 (sample)", "secret": SECRET, "grants": ["CaseResult"]}],
        destinations={"city-hub": hub_destination(exchange_url(ports["city"]), PROVINCE),
                      "province-archive": {"type": "filedrop", "dir": str(tmp_path / "province-archive"),
                                           "manifest": False}},
        routes=[{"id": "cases-archived", "from": {"types": CASES, "regions": ["32"]}, "to": ["province-archive"]},
                {"id": "answers-down-to-xuzhou", "from": {"types": ["CaseResult"], "regions": ["3200"]},
                 "namespaces": NAMESPACES, "when": targeted_to("3203"), "to": ["city-hub"], "retry": RETRY}])
    return {"county": county, "city": city, "province": province}


def _push(hub: HubProcess, data: bytes, system: str) -> str:
    from zeep import Client
    from zeep.wsse.username import UsernameToken
    client = Client(hub.url + "?wsdl", wsse=UsernameToken(system, SECRET, use_digest=True))
    return client.service.PushMessage(envelope=data.decode("utf-8")).status


def _cases(n: int) -> list[tuple[str, bytes]]:
    return [with_message_id(sample("CaseResult-approved.xml")) for _ in range(n)]


def _received(hub: HubProcess, source: str) -> Counter:
    with hub.engine.connect() as conn:
        return Counter(conn.scalars(select(Event.message_id).where(Event.kind == "RECEIVED", Event.source == source)))


def _archived(tmp_path) -> Counter:
    return Counter(p.name[len("CaseResult-"):-4] for p in (tmp_path / "province-archive").glob("CaseResult-*.xml"))


@pytest.mark.parametrize("three_levels", ["embedded", pytest.param("services", marks=pytest.mark.services)],
                         indirect=True)
def test_cases_go_up_two_levels_answers_come_down_and_a_link_outage_loses_and_doubles_nothing(three_levels,
                                                                                            tmp_path):
    hubs = _hubs(tmp_path, three_levels)
    county, city, province = hubs["county"], hubs["city"], hubs["province"]
    try:
        for hub in (province, city, county):
            hub.start()
        before = _cases(40)
        for _, data in before:
            assert _push(county, data, COUNTY_DEPARTMENT) == "ACCEPTED"
        wanted = {message_id for message_id, _ in before}
        wait_for(lambda: set(_archived(tmp_path)) == wanted, timeout=90)

        # The county→city link goes down hard (the city hub is killed); the county keeps taking cases.
        city.kill()
        during = _cases(40)
        for _, data in during:
            assert _push(county, data, COUNTY_DEPARTMENT) == "ACCEPTED"
        wait_for(lambda: len([e for e in _events(county, "FAILED") if e.route == "cases-up-to-city"]) >= 3, timeout=60)
        assert set(_archived(tmp_path)) == wanted  # nothing got through meanwhile
        city.start()  # the link is back: the county's retries go through, from its exchange log
        wanted |= {message_id for message_id, _ in during}
        wait_for(lambda: set(_archived(tmp_path)) == wanted, timeout=120)

        # Nothing lost, nothing doubled: every case once in each hub's log and once in the archive.
        for hub in (county, city, province):
            received = _received(hub, COUNTY_DEPARTMENT)
            assert set(received) == wanted and set(received.values()) == {1}, hub.name
        assert set(_archived(tmp_path).values()) == {1}
        delivered = Counter(e.message_id for e in _events(county, "DELIVERED") if e.route == "cases-up-to-city")
        assert set(delivered) == wanted and set(delivered.values()) == {1}

        # Traceable across hubs by its message id: each lower hub's delivery names the upper hub's receipt.
        message_id = during[0][0]
        for lower, upper in ((county, city), (city, province)):
            lineage = LogQueries(lower.engine).lineage("test:auditor", message_id, source=COUNTY_DEPARTMENT)
            [forwarded] = [e for e in lineage["events"] if e["event"] == "DELIVERED"]
            upper_lineage = LogQueries(upper.engine).lineage("test:auditor", message_id, source=COUNTY_DEPARTMENT)
            [received] = [e for e in upper_lineage["events"] if e["event"] == "RECEIVED"]
            assert forwarded["detail"]["reply"]["receiptId"] == received["detail"]["receipt_id"]

        # An answer comes down: the province's decision for a Pizhou department, via the city.
        answer_id, answer = with_message_id(_addressed(sample("CaseResult-approved.xml")))
        assert _push(province, answer, PROVINCE_DEPARTMENT) == "ACCEPTED"
        arrived = tmp_path / "county-department" / f"CaseResult-{answer_id}.xml"
        wait_for(arrived.exists, timeout=60)
        assert _received(county, PROVINCE_DEPARTMENT) == Counter({answer_id: 1})
        with county.engine.connect() as conn:
            assert conn.scalar(select(Message.target).where(Message.message_id == answer_id)) == COUNTY_DEPARTMENT
    finally:
        for hub in hubs.values():
            hub.stop()


def _addressed(data: bytes) -> bytes:
    """A province system's CaseResult addressed to the county's registration system."""
    return data.replace(f"<hx:Source>{COUNTY_DEPARTMENT}</hx:Source>".encode(),
                        f"<hx:Source>{PROVINCE_DEPARTMENT}</hx:Source><hx:Target>{COUNTY_DEPARTMENT}</hx:Target>".encode())


def _events(hub: HubProcess, kind: str) -> list:
    with hub.engine.connect() as conn:
        return list(conn.execute(select(Event).where(Event.kind == kind)))


def test_federation_over_rabbitmq_is_refused_on_the_embedded_broker_naming_the_way_that_works(tmp_path):
    from bus.errors import HuitongError
    from bus.hub import Hub
    from tests.conftest import Backend
    from tests.helpers.routing import route_file, settings_from, write_config

    backend = Backend("embedded", f"sqlite:///{tmp_path / 'hub.db'}", "memory://")
    routes = tmp_path / "routes"
    route_file(routes, "id: up-by-shovel\nfrom: {types: [CaseResult]}\nto: [city]\n")
    config = write_config(tmp_path, backend, routes_dir=routes, destinations={
        "city": {"type": "federation", "upstream": "city", "hub_id": COUNTY, "upstream_url_env": "CITY_AMQP_URL"}})
    with pytest.raises((HuitongError, ValueError)) as caught:
        Hub(settings_from(config))
    assert "needs RabbitMQ" in str(caught.value) and "hub destination" in str(caught.value)
    inbound = write_config(tmp_path / "city", backend, routes_dir="", destinations={},
                           federation={"inbound": [COUNTY]})
    with pytest.raises((HuitongError, ValueError)) as caught:
        Hub(settings_from(inbound))
    assert "federation.inbound needs RabbitMQ" in str(caught.value)
    bad = write_config(tmp_path / "bad", backend, routes_dir="", destinations={},
                       federation={"inbound": ["not-a-hub"]})
    with pytest.raises(HuitongError) as caught:
        settings_from(bad)
    assert "federation.inbound" in str(caught.value) and "not-a-hub" in str(caught.value)
