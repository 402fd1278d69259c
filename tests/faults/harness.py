"""The fault-injection harness: a production-shaped hub on RabbitMQ + PostgreSQL (`huitong serve`,
or uvicorn serving bus.asgi, accepting SOAP pushes and watching a file-drop inbox, and a separate `huitong worker` routing
every message to a filedrop outbox), fed by department senders that behave as real ones must:
a push that gets no answer, or a Server fault, is sent again with the same message id until it
gets a receipt. The checker then sorts every message id, as RabbitMQ's Jepsen suite does, into
delivered once, lost, duplicated and unexpected."""
from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sqlalchemy import create_engine, select

from adapters.filedrop.files import Part
from adapters.filedrop.readers import RecordReader
from bus.config import InboxSettings
from bus.models import Event
from tests.conftest import ROOT
from tests.helpers.filedrop import ZJJ_SYSTEM, zjj_csv
from tests.helpers.messages import case_results
from tests.helpers.soap import envelope, fault_of, parse_xml, push_message, receipt_of, security_header

SCJG_SYSTEM = "320382.scjgj.djxt"
SECRET = "sample-fault-secret-not-real"
ROUTE = "fault-stream"
_MESSAGE_ID = re.compile(rb"<hx:MessageId>([^<]+)</hx:MessageId>")
# Faults a sender may see while the hub is in trouble: it sends the same message again.
RETRYABLE = {"STORE_UNAVAILABLE", "BROKER_UNAVAILABLE", "INTERNAL", "RATE_LIMITED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Outcomes:
    accepted: set[str] = field(default_factory=set)  # ACCEPTED or DUPLICATE (accepted earlier)
    refused: dict[str, str] = field(default_factory=dict)  # a final answer other than a receipt
    retries: Counter = field(default_factory=Counter)  # why pushes were sent again
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultHub:
    def __init__(self, tmp: Path, database_url: str, amqp_url: str, server: str = "serve"):
        self.tmp = tmp
        self.server = server  # "serve" (waitress) or "uvicorn" (bus.asgi, one process)
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/ws/exchange"
        self.inbox = tmp / "inbox"
        self.outbox = tmp / "outbox"
        self.inbox.mkdir(parents=True)
        routes = tmp / "routes"
        routes.mkdir()
        (routes / "stream.yaml").write_text(
            f"id: {ROUTE}\nfrom: {{types: [CaseResult, CaseAccepted]}}\nto: [ferry]\n"
            # a destination that flaps must never turn into dead letters here: attempts enough
            "retry: {attempts: 100, first_delay: 0.3, max_delay: 1}\n")
        self.config = tmp / "huitong.yaml"
        self.config.write_text(yaml.safe_dump({
            "database_url": database_url, "broker_url": amqp_url, "state_dir": str(tmp / "var"),
            "http": {"port": self.port, "threads": 16},
            "routes": {"dir": str(routes), "run": False, "redrive_after_seconds": 5, "retry_poll_interval": 0.2},
            "relay": {"poll_interval": 0.1},
            "destinations": {"ferry": {"type": "filedrop", "dir": str(self.outbox), "fsync": False,
                                       "manifest": False}},
            "inboxes": {"zjj": {"system": ZJJ_SYSTEM, "dir": str(self.inbox), "format": "csv",
                                "mapping": "zjj-sgxk-accepted", "complete": "marker", "claim_timeout_seconds": 10}},
            "adapters": {"poll_interval": 0.5},
            "soap": {"rate_limit_per_system": 100_000},
            "audit": {"seal": False},
            "logging": {"level": "WARNING", "format": "json"},
            "systems": [{"id": SCJG_SYSTEM, "name": "登记系统 (sample)", "secret": SECRET, "grants": ["CaseResult"]},
                        {"id": ZJJ_SYSTEM, "name": "施工许可 (sample)", "secret": SECRET, "grants": ["CaseAccepted"]}],
        }, allow_unicode=True), encoding="utf-8")
        self.hub: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1)
                                    if database_url.startswith("postgresql://") else database_url,
                                    pool_pre_ping=True)

    # -- processes ------------------------------------------------------------------------------
    def _start(self, *args: str, log: str) -> subprocess.Popen:
        return self._run([sys.executable, "-m", "bus.cli", *args, "--config", str(self.config)], log)

    def _run(self, command: list[str], log: str) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                        "HUITONG_CONFIG": str(self.config)},
                                stdout=subprocess.DEVNULL, stderr=open(self.tmp / log, "ab"))

    def start_hub(self) -> None:
        if self.server == "uvicorn":
            self.hub = self._run([str(Path(sys.executable).with_name("uvicorn")), "--factory", "bus.asgi:application",
                                  "--timeout-graceful-shutdown", "10", "--host", "127.0.0.1", "--port", str(self.port),
                                  "--log-level", "warning"], "hub.log")
        else:
            self.hub = self._start("serve", log="hub.log")
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                assert self.hub.poll() is None, f"the hub died: {self.log_tail('hub.log')}"
                assert time.monotonic() < deadline, "the hub did not come up"
                time.sleep(0.2)

    def start_worker(self) -> None:
        self.worker = self._start("worker", log="worker.log")

    def kill(self, which: str) -> None:
        proc = getattr(self, which)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in (self.hub, self.worker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.engine.dispose()

    def log_tail(self, name: str) -> str:
        path = self.tmp / name
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # -- what was delivered -------------------------------------------------------------------
    def delivered_events(self) -> Counter:
        with self.engine.connect() as conn:
            return Counter(conn.scalars(select(Event.message_id).where(Event.kind == "DELIVERED",
                                                                       Event.route == ROUTE)))

    def delivered_files(self) -> Counter:
        return Counter(p.name.split("-", 1)[1][:-4] for p in self.outbox.glob("Case*.xml"))


# -- the senders ------------------------------------------------------------------------------------
def soap_sender(hub: FaultHub, messages: list[tuple[str, bytes]], outcomes: Outcomes, stop_at: float,
                per_second: float | None = None) -> None:
    """Pushes each message until it has a receipt (or the deadline passes); per_second paces
    the sender, so that the stream lasts while the faults come."""
    next_at = time.monotonic()
    for message_id, data in messages:
        if per_second:
            next_at += 1 / per_second
            time.sleep(max(0.0, next_at - time.monotonic()))
        while time.monotonic() < stop_at:
            body = envelope(push_message(data), security_header(SCJG_SYSTEM, SECRET))
            request = urllib.request.Request(hub.url, data=body, method="POST", headers={
                "Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    doc = parse_xml(response.read())
            except urllib.error.HTTPError as exc:
                doc = _parsed(exc)
                if doc is None:
                    _retry(outcomes, f"HTTP {exc.code}")
                    continue
            except (urllib.error.URLError, ConnectionError, OSError, TimeoutError,
                    http.client.HTTPException) as exc:
                # HTTPException: the hub died while answering (IncompleteRead: the headers came,
                # the receipt did not), so the sender cannot know and sends the same id again.
                _retry(outcomes, exc.__class__.__name__)
                continue
            fault = fault_of(doc)
            if fault is None:
                status = receipt_of(doc).get("status")
                with outcomes.lock:
                    if status in ("ACCEPTED", "DUPLICATE"):
                        outcomes.accepted.add(message_id)
                    else:
                        outcomes.refused[message_id] = f"receipt {status}"
                break
            faultcode, code, text = fault
            if faultcode.endswith(f"Server.{code}") and code in RETRYABLE:
                _retry(outcomes, code)
                continue
            with outcomes.lock:
                outcomes.refused[message_id] = f"{faultcode} {code}: {text}"
            break


def _parsed(exc: urllib.error.HTTPError):
    try:
        return parse_xml(exc.read())
    except Exception:
        return None


def _retry(outcomes: Outcomes, why: str) -> None:
    with outcomes.lock:
        outcomes.retries[why] += 1
    time.sleep(0.2)


def drop_files(hub: FaultHub, files: int, rows: int, pause: float, expected: set[str]) -> None:
    """The department's export: CSV files written whole then marked done (NAME.done), one
    after another; every row's message id is what the inbox will derive from it."""
    reader = RecordReader(InboxSettings(system=ZJJ_SYSTEM, dir=str(hub.inbox), format="csv",
                                        mapping="zjj-sgxk-accepted"))
    for n in range(files):
        data = zjj_csv(rows, tag=f"F{n:03d}{os.getpid() % 1000:03d}")
        for record in reader.records(Part(f"export-{n}.csv", data), ZJJ_SYSTEM):
            expected.add(_MESSAGE_ID.search(record.item).group(1).decode())
        target = hub.inbox / f"export-{n}.csv"
        temporary = hub.inbox / f".export-{n}.csv.tmp"
        temporary.write_bytes(data)
        os.replace(temporary, target)
        (hub.inbox / f"export-{n}.csv.done").touch()
        time.sleep(pause)


def soap_messages(count: int) -> list[tuple[str, bytes]]:
    return case_results(count)


@dataclass
class Verdict:
    expected: int
    delivered_once: int
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]
    files_wrong: list[str]
    lost_where: dict = field(default_factory=dict)  # where the lost ones stand in the log

    def __str__(self) -> str:
        return (f"expected {self.expected}: delivered once {self.delivered_once}, lost {len(self.lost)}, "
                f"duplicated {len(self.duplicated)}, unexpected {len(self.unexpected)}, "
                f"outbox files wrong {len(self.files_wrong)}"
                + (f"; the lost ones: {self.lost_where}" if self.lost_where else ""))


def check(hub: FaultHub, expected: set[str], timeout: float) -> Verdict:
    """Waits until every expected message is delivered (or the time is up), then sorts."""
    deadline = time.monotonic() + timeout
    while True:
        events = hub.delivered_events()
        if set(expected) <= set(events) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    time.sleep(1)  # anything still in flight would show up as a duplicate now
    events, files = hub.delivered_events(), hub.delivered_files()
    return Verdict(
        expected=len(expected),
        delivered_once=sum(1 for m in expected if events.get(m) == 1),
        lost=sorted(expected - set(events)),
        duplicated=sorted(m for m, n in events.items() if n > 1),
        unexpected=sorted(set(events) - expected),
        files_wrong=sorted(m for m in expected if files.get(m) != 1) + sorted(set(files) - expected)
        + [p.name for p in hub.outbox.glob(".*.tmp")],  # and no half-written file left behind
        lost_where=_where(hub, expected - set(events)))


def _where(hub: FaultHub, lost: set[str]) -> dict:
    """How many of the lost messages are not logged, waiting for the relay, published with no
    route outcome, or have a delivery record of some status: where the chain broke."""
    if not lost:
        return {}
    from bus.models import Message, RouteDelivery
    where: Counter = Counter()
    with hub.engine.connect() as conn:
        rows = {r.message_id: r for r in conn.execute(
            select(Message.message_id, Message.published_at, RouteDelivery.status)
            .outerjoin(RouteDelivery, RouteDelivery.message_seq == Message.seq)
            .where(Message.message_id.in_(sorted(lost))))}
    for message_id in lost:
        where[_stage_of(rows.get(message_id))] += 1
    return dict(where)


def _stage_of(row) -> str:
    if row is None:
        return "not logged"
    if row.published_at is None:
        return "not published"
    return f"delivery {row.status}" if row.status else "published, no route outcome"
