"""20,000 messages (SOAP pushes and file-drop rows) stream through a production-shaped hub on
RabbitMQ + PostgreSQL while, in turn, RabbitMQ restarts, the route worker is killed with
SIGKILL, the hub process is killed with SIGKILL, PostgreSQL restarts, and the destination
flaps. The stream must end with lost = duplicated = unexpected = 0, every SOAP sender holding a
receipt (having seen only retryable faults on the way), and every dropped file archived with
all its rows accepted.

Each runs twice: the hub as `huitong serve`, and under uvicorn (`bus.asgi`).
`test_stream_survives_every_fault_in_turn` (CI) paces one stream over a minute and lets the five
faults strike one after another during it; `test_stream_survives[...]` (marker `long`, run with
`pytest -m long`) streams 20,000 messages as fast as they go for each fault alone.

HUITONG_TEST_FAULT_MESSAGES sets the stream's size (default 20,000: a tenth by SOAP, the rest in
files of 1,000 rows)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import AMQP_URL
from tests.faults.harness import FaultHub, Outcomes, check, drop_files, soap_messages, soap_sender

pytestmark = [pytest.mark.services, pytest.mark.faults]
TOTAL = int(os.environ.get("HUITONG_TEST_FAULT_MESSAGES", "20000"))
SOAP_SHARE = TOTAL // 10
ROWS_PER_FILE = 1000
SENDERS = 4
SCENARIO_SECONDS = 300  # each test is bounded: the stream, the faults and the catching up


def _run(cmd: list[str], timeout: float = 120) -> None:
    done = subprocess.run(cmd, capture_output=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr.decode()[-500:]}"


def restart_rabbitmq(hub: FaultHub) -> None:
    _run(["rabbitmqctl", "stop_app"])
    time.sleep(3)
    _run(["rabbitmqctl", "start_app"])
    _run(["rabbitmqctl", "await_startup"])


def kill_worker(hub: FaultHub) -> None:
    hub.kill("worker")
    time.sleep(1)
    hub.start_worker()


def kill_hub(hub: FaultHub) -> None:
    hub.kill("hub")  # SOAP senders lose their connections mid-request; a file may be half read
    time.sleep(1)
    hub.start_hub()


def restart_postgresql(hub: FaultHub) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    _run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], timeout=180)


def flap_destination(hub: FaultHub) -> None:
    """The ferry's share goes away three times (a plain file stands where the directory was,
    so every write fails) and comes back."""
    away = hub.outbox.with_name("outbox.away")
    for _ in range(3):
        hub.outbox.rename(away)
        hub.outbox.write_text("the ferry share is not mounted")
        time.sleep(2)
        hub.outbox.unlink()
        away.rename(hub.outbox)
        time.sleep(1)


SCENARIOS = {"rabbitmq-restart": restart_rabbitmq, "worker-kill-9": kill_worker, "hub-kill-9": kill_hub,
             "postgresql-restart": restart_postgresql, "destination-flaps": flap_destination}


@pytest.fixture(params=["serve", "uvicorn"])
def fault_hub(request, postgres_url, tmp_path):
    """The hub as `huitong serve` runs it, and again under uvicorn (bus.asgi)."""
    hub = FaultHub(tmp_path, postgres_url, AMQP_URL, server=request.param)
    hub.start_hub()
    hub.start_worker()
    try:
        yield hub
    finally:
        if not hub.outbox.is_dir() and hub.outbox.with_name("outbox.away").is_dir():  # a flap cut short
            hub.outbox.unlink(missing_ok=True)
            hub.outbox.with_name("outbox.away").rename(hub.outbox)
        hub.stop()
        _delete_route_queue()
        if os.environ.get("HUITONG_TEST_ARTIFACTS"):  # the processes' logs, for a failed run
            target = Path(os.environ["HUITONG_TEST_ARTIFACTS"]) / "faults" / tmp_path.name
            target.mkdir(parents=True, exist_ok=True)
            for name in ("hub.log", "worker.log"):
                if (tmp_path / name).exists():
                    shutil.copy(tmp_path / name, target / name)


def _delete_route_queue() -> None:
    from bus.broker import connect
    from bus.topology import dead_queue_name, route_queue_name
    from tests.faults.harness import ROUTE
    conn = connect(AMQP_URL)
    try:
        for name in (route_queue_name(ROUTE), dead_queue_name(ROUTE)):
            try:
                conn.channel().queue_delete(name)
            except Exception:
                pass
    finally:
        conn.release()


def _stream(hub: FaultHub, faults, *, stream_seconds: float | None) -> None:
    """Streams TOTAL messages (paced over stream_seconds, or as fast as they go), runs
    faults(hub) meanwhile, then checks every message."""
    deadline = time.monotonic() + SCENARIO_SECONDS
    outcomes = Outcomes()
    soap = soap_messages(SOAP_SHARE)
    file_ids: set[str] = set()
    files = max(1, (TOTAL - SOAP_SHARE) // ROWS_PER_FILE)
    pace = SOAP_SHARE / SENDERS / stream_seconds if stream_seconds else None
    threads = [threading.Thread(target=soap_sender, args=(hub, soap[i::SENDERS], outcomes, deadline, pace))
               for i in range(SENDERS)]
    threads.append(threading.Thread(target=drop_files, args=(
        hub, files, ROWS_PER_FILE, stream_seconds / files if stream_seconds else 0.2, file_ids)))
    for t in threads:
        t.start()
    faults(hub)
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "the senders did not finish in time"

    assert not outcomes.refused, f"pushes refused for good: {list(outcomes.refused.items())[:5]}"
    assert outcomes.accepted == {mid for mid, _ in soap}, "every SOAP push ended with a receipt"
    expected = outcomes.accepted | file_ids
    assert len(expected) == SOAP_SHARE + files * ROWS_PER_FILE
    verdict = check(hub, expected, timeout=max(30.0, deadline - time.monotonic()))
    print(f"{verdict}; senders sent again after {dict(outcomes.retries)}")
    assert (verdict.lost, verdict.duplicated, verdict.unexpected) == ([], [], []), str(verdict)
    assert verdict.delivered_once == len(expected) and not verdict.files_wrong, str(verdict)
    # every dropped file archived, every row accepted (or found accepted already, after a crash)
    receipts = [json.loads(p.read_text(encoding="utf-8")) for p in hub.inbox.glob("archive/*/*.receipt.json")]
    assert len(receipts) == files, f"{len(receipts)} of {files} files archived"
    assert all(r["accepted"] + r["duplicate"] == ROWS_PER_FILE and r["rejected"] == 0 for r in receipts)
    assert not list(hub.inbox.glob("error/*/*"))


def test_stream_survives_every_fault_in_turn(fault_hub):
    """One stream paced over 60 s; every 10 s the next fault, each after the last is over."""
    def in_turn(hub):
        start = time.monotonic()
        for n, (name, fault) in enumerate(SCENARIOS.items()):
            time.sleep(max(0.0, start + 5 + 10 * n - time.monotonic()))
            print(f"{time.monotonic() - start:5.1f}s {name}", flush=True)
            fault(hub)
    _stream(fault_hub, in_turn, stream_seconds=60)


@pytest.mark.long
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_stream_survives(scenario, fault_hub):
    def once_a_fifth_is_through(hub):
        start = time.monotonic()
        while sum(hub.delivered_events().values()) < TOTAL // 5:
            assert time.monotonic() - start < 120, "the stream did not get going"
            time.sleep(0.2)
        SCENARIOS[scenario](hub)
    _stream(fault_hub, once_a_fifth_is_through, stream_seconds=None)
