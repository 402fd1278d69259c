"""Federation over RabbitMQ: the county's route hands cases to its out-queue (federation
destination), a shovel written by `huitong federation plan` carries them to the city's
in-queue, and the city accepts them into its log as the county hub. The shovel is stopped for a
while (the link between the brokers is down): nothing is lost or doubled when it comes back.
RabbitMQ only (a shovel cannot reach the embedded broker), each hub its own virtual host."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy import select

from bus.hub import Hub
from bus.models import Event
from tests.conftest import AMQP_URL, ROOT, create_database, drop_database, require_services
from tests.helpers.federation import COUNTY, COUNTY_DEPARTMENT, HUB_SECRET, SECRET, vhost_url
from tests.helpers.messages import sample, with_message_id
from tests.helpers.routing import route_file, settings_from, wait_for, write_config

pytestmark = pytest.mark.services
RUN = uuid.uuid4().hex[:6]
URL_ENV = "CITY_AMQP_URL_FOR_TEST"


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def two_hubs(tmp_path):
    require_services()
    done = subprocess.run(["rabbitmq-plugins", "enable", "rabbitmq_shovel"], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, f"cannot enable the shovel plugin: {done.stderr}"
    vhosts = {level: f"huitong-shovel-{level}-{RUN}" for level in ("county", "city")}
    databases = {level: create_database() for level in vhosts}
    brokers = {level: vhost_url(AMQP_URL, name) for level, name in vhosts.items()}
    try:
        yield databases, brokers, vhosts
    finally:
        for name in vhosts.values():
            _rabbitmqctl("delete_vhost", name)
        for url in databases.values():
            drop_database(url)


def _configs(tmp_path, databases, brokers):
    class Backend:  # write_config's view of a store
        def __init__(self, level):
            self.database_url, self.broker_url = databases[level], brokers[level]

    county_routes = tmp_path / "county-routes"
    route_file(county_routes, "id: cases-up-by-shovel\nfrom: {types: [CaseResult], regions: ['320382']}\n"
                              "to: [city]\n")
    county = write_config(tmp_path / "county", Backend("county"), routes_dir=county_routes, destinations={
        "city": {"type": "federation", "upstream": "city", "hub_id": COUNTY, "upstream_url_env": URL_ENV}})
    city_routes = tmp_path / "city-routes"
    route_file(city_routes, "id: city-archive\nfrom: {types: [CaseResult]}\nto: [archive]\n")
    city = write_config(tmp_path / "city", Backend("city"), routes_dir=city_routes, destinations={
        "archive": {"type": "filedrop", "dir": str(tmp_path / "city-archive"), "manifest": False}},
        federation={"inbound": [COUNTY]},
        systems=[{"id": COUNTY, "name": "邳州市交换平台 (sample)", "secret": HUB_SECRET,
                  "grants": ["CaseResult", "FORWARD"]}])
    return county, city


def _plan(config, env) -> dict:
    done = subprocess.run([sys.executable, "-m", "bus.cli", "federation", "plan", "--json", "--config", str(config)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _plan_text(config) -> str:
    done = subprocess.run([sys.executable, "-m", "bus.cli", "federation", "plan", "--config", str(config)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and URL_ENV in done.stdout, done.stderr
    return done.stdout


def _received(hub: Hub) -> Counter:
    with hub.engine.connect() as conn:
        return Counter(conn.scalars(select(Event.message_id).where(Event.kind == "RECEIVED",
                                                                   Event.source == COUNTY_DEPARTMENT)))


def _archived(tmp_path) -> Counter:
    return Counter(p.name[len("CaseResult-"):-4] for p in (tmp_path / "city-archive").glob("CaseResult-*.xml"))


def test_a_shovel_carries_routed_cases_to_the_city_and_an_outage_loses_and_doubles_nothing(two_hubs, tmp_path):
    databases, brokers, vhosts = two_hubs
    county_config, city_config = _configs(tmp_path, databases, brokers)
    city = Hub(settings_from(city_config)).start()
    county = Hub(settings_from(county_config)).start()
    try:
        plan = _plan(county_config, {URL_ENV: brokers["city"]})
        [shovel] = plan["parameters"]
        assert shovel["vhost"] == vhosts["county"] and shovel["value"]["dest-uri"] == brokers["city"]
        assert shovel["value"]["dest-queue"] == f"huitong.federation.in.{COUNTY}"
        assert plan["upstream_needs"][0]["grants"] == ["FORWARD", "CaseResult"]
        # Without the URL in the environment the plan says so and leaves a placeholder.
        assert _plan(county_config, {})["parameters"][0]["value"]["dest-uri"] == f"${{{URL_ENV}}}"

        def link_up():
            done = _rabbitmqctl("set_parameter", "-p", shovel["vhost"], "shovel", shovel["name"],
                                json.dumps(shovel["value"]))
            assert done.returncode == 0, done.stderr

        link_up()
        first = [with_message_id(sample("CaseResult-approved.xml")) for _ in range(30)]
        for _, data in first:
            assert county.accept(data, system=COUNTY_DEPARTMENT).status == "ACCEPTED"
        wanted = {message_id for message_id, _ in first}
        wait_for(lambda: set(_archived(tmp_path)) == wanted, timeout=90)

        # The link goes down: the county still delivers to its out-queue, where the cases wait.
        assert _rabbitmqctl("clear_parameter", "-p", shovel["vhost"], "shovel", shovel["name"]).returncode == 0
        second = [with_message_id(sample("CaseResult-approved.xml")) for _ in range(30)]
        for _, data in second:
            assert county.accept(data, system=COUNTY_DEPARTMENT).status == "ACCEPTED"
        county_delivered = lambda: Counter(e.message_id for e in _events(county, "DELIVERED"))  # noqa: E731
        wait_for(lambda: len(county_delivered()) == 60, timeout=60)
        assert set(_archived(tmp_path)) == wanted
        # The link comes back with the command the plan prints for an operator (the shell puts
        # the URL in from the environment).
        printed = _plan_text(county_config)
        [command] = [line for line in printed.splitlines() if line.startswith("rabbitmqctl set_parameter")]
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120,
                              env={**os.environ, URL_ENV: brokers["city"]})
        assert done.returncode == 0, done.stderr
        wanted |= {message_id for message_id, _ in second}
        wait_for(lambda: set(_archived(tmp_path)) == wanted, timeout=90)

        assert set(_received(city).values()) == {1} and set(_received(city)) == wanted
        assert set(_archived(tmp_path).values()) == {1} and set(county_delivered().values()) == {1}
        # The city took them as the county hub's forwards, keeping the department as the source.
        with city.engine.connect() as conn:
            sources = set(conn.scalars(select(Event.source).where(Event.kind == "RECEIVED")))
        assert sources == {COUNTY_DEPARTMENT}
    finally:
        _rabbitmqctl("clear_parameter", "-p", vhosts["county"], "shovel", f"huitong-{COUNTY}-to-city")
        county.stop()
        city.stop()


def test_a_hub_the_city_does_not_know_waits_in_its_queue_and_is_taken_once_registered(two_hubs, tmp_path):
    """Deny by default: messages in the in-queue of a hub not (yet) registered stay there."""
    from bus.broker import Publisher
    from federation.queues import federation_queue, in_queue_name

    databases, brokers, _ = two_hubs
    _, city_config = _configs(tmp_path, databases, brokers)
    settings = settings_from(city_config)
    settings = settings.model_copy(update={"systems": []})
    city = Hub(settings).start()
    try:
        message_id, data = with_message_id(sample("CaseResult-approved.xml"))
        queue = in_queue_name(COUNTY)
        publisher = Publisher(brokers["city"], queues=[federation_queue(queue)])
        publisher.publish_raw([(queue, data, {"message_id": message_id})])
        publisher.close()
        time.sleep(2)
        assert _received(city) == Counter()
        city.systems.add(COUNTY, name="邳州市交换平台 (sample)", secret=SECRET, grants=["CaseResult", "FORWARD"])
        wait_for(lambda: _received(city) == Counter({message_id: 1}), timeout=60)
    finally:
        city.stop()


def _events(hub: Hub, kind: str) -> list:
    with hub.engine.connect() as conn:
        return list(conn.execute(select(Event).where(Event.kind == kind)))
