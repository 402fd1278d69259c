"""10,000 messages through a route while RabbitMQ restarts, and while a route worker is killed
with SIGKILL: nothing is lost and nothing is delivered twice (every message id has exactly
one file in the outbox and one DELIVERED record). Real RabbitMQ and PostgreSQL only."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import select

from bus.hub import Hub
from bus.models import Event
from tests.conftest import AMQP_URL, ROOT, Backend
from tests.helpers.messages import case_results
from tests.helpers.soap import delete_route_queues
from tests.helpers.routing import SCJG_SYSTEM, route_file, settings_from, wait_for, write_config

pytestmark = pytest.mark.services
TOTAL = 10_000


@pytest.fixture
def services(postgres_url):
    return Backend("services", postgres_url, AMQP_URL)  # postgres_url fails or skips without services


def setup(tmp_path, backend, *, run_routes: bool):
    routes_dir = tmp_path / "routes"
    route_file(routes_dir, "id: fault-run\nfrom: {types: [CaseResult]}\nto: [ferry]\n"
                           "retry: {attempts: 20, first_delay: 0.5, max_delay: 2}\n")
    outbox = tmp_path / "outbox"
    config = write_config(tmp_path, backend, routes_dir=routes_dir,
                          routes={"run": run_routes, "redrive_after_seconds": 3},
                          destinations={"ferry": {"type": "filedrop", "dir": str(outbox), "fsync": False}})
    return config, outbox


def accept_all(hub: Hub) -> list[str]:
    ids = []
    messages = case_results(TOTAL)
    for start in range(0, TOTAL, 500):
        chunk = messages[start:start + 500]
        receipts = hub.acceptance.accept_many([data for _, data in chunk], system=SCJG_SYSTEM)
        assert all(r.status == "ACCEPTED" for r in receipts)
        ids += [mid for mid, _ in chunk]
    return ids


def delivered(hub: Hub) -> Counter:
    with hub.engine.connect() as conn:
        return Counter(conn.scalars(select(Event.message_id).where(Event.kind == "DELIVERED",
                                                                   Event.route == "fault-run")))


def check_exactly_once(hub: Hub, ids: list[str], outbox) -> None:
    counts = wait_for(lambda: (c := delivered(hub)) and len(c) == TOTAL and c, timeout=240, interval=0.5)
    assert set(counts) == set(ids), "every accepted message reached the destination"
    twice = [m for m, n in counts.items() if n != 1]
    assert not twice, f"{len(twice)} messages were delivered more than once"
    files = Counter(p.name.split("-", 1)[1][:-4] for p in outbox.glob("CaseResult-*.xml"))
    assert set(files) == set(ids) and all(n == 1 for n in files.values())
    assert not list(outbox.glob(".*.tmp")), "no half-written file is left behind"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def test_restarting_rabbitmq_mid_run_loses_nothing_and_delivers_nothing_twice(services, tmp_path):
    config, outbox = setup(tmp_path, services, run_routes=True)
    hub = Hub(settings_from(config)).start()
    try:
        ids = accept_all(hub)
        wait_for(lambda: sum(delivered(hub).values()) >= 2_000, timeout=120, interval=0.2)
        rabbitmqctl("stop_app")
        time.sleep(2)
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
        check_exactly_once(hub, ids, outbox)
    finally:
        try:
            rabbitmqctl("start_app")  # never leave the broker down for the next test
        finally:
            hub.stop()
            delete_route_queues(hub)


def start_worker(config) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bus.cli", "worker", "--config", str(config)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_killing_a_route_worker_mid_run_loses_nothing_and_delivers_nothing_twice(services, tmp_path):
    config, outbox = setup(tmp_path, services, run_routes=False)
    hub = Hub(settings_from(config)).start()  # accepts and relays; the worker processes route
    worker = start_worker(config)
    try:
        ids = accept_all(hub)
        wait_for(lambda: sum(delivered(hub).values()) >= 2_000, timeout=120, interval=0.1)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        done_at_kill = sum(delivered(hub).values())
        assert done_at_kill < TOTAL, "the kill must land mid-run"
        worker = start_worker(config)
        check_exactly_once(hub, ids, outbox)
    finally:
        worker.kill()
        worker.wait(timeout=30)
        hub.stop()
        delete_route_queues(hub)
