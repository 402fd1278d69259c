"""The HTTP app under a multi-worker server, on PostgreSQL + RabbitMQ: what production runs,
with gunicorn (bus.wsgi) and with uvicorn (bus.asgi). Pushes from concurrent clients are all
accepted and routed once, a nonce used with one worker cannot be replayed to another, and the
console, WSDL and queries are served too."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bus.hub import Hub
from tests.conftest import ROOT, require_services
from tests.helpers.capture import Capture
from tests.helpers.messages import sample, with_message_id
from tests.helpers.soap import (SECRET, envelope, fault_of, free_port, post, push_message, receipt_of,
                                security_header)

SYSTEM = "320382.scjgj.djxt"


SERVERS = {
    "gunicorn": ["gunicorn", "--workers", "2", "--threads", "4", "--graceful-timeout", "10", "--bind", "127.0.0.1:{port}",
                 "bus.wsgi:application()"],
    "uvicorn": ["uvicorn", "--factory", "bus.asgi:application", "--workers", "2", "--timeout-graceful-shutdown", "10",
                "--host", "127.0.0.1", "--port", "{port}"],
}


@pytest.fixture(params=list(SERVERS))
def served_hub(request, postgres_url, tmp_path):
    require_services()
    from tests.conftest import AMQP_URL, Backend
    backend = Backend("services", postgres_url, AMQP_URL)
    env = {**os.environ, **backend.env(), "PYTHONPATH": str(ROOT), "HUITONG_STATE_DIR": str(tmp_path / "state"),
           "HUITONG_LOGGING__LEVEL": "WARNING", "HUITONG_SOAP__RATE_LIMIT_PER_SYSTEM": "1000"}
    with Hub(backend.settings(state_dir=tmp_path / "state")).start(relay=False) as hub:
        hub.systems.add(SYSTEM, name="sample", secret=SECRET, grants=["CaseResult", "CaseProcess"])
    port = free_port()
    program, *arguments = SERVERS[request.param]
    command = [str(Path(sys.executable).with_name(program))] + [a.format(port=port) for a in arguments]
    output = tmp_path / "server.log"  # read back by a failing test: what the workers said
    with output.open("w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.output = output
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, f"{program} did not come up"
            time.sleep(0.3)
    try:
        yield proc, f"http://127.0.0.1:{port}", backend
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.returncode == 0, _said(proc)


def _said(proc) -> str:
    return proc.output.read_text(errors="replace")[-3000:]


def _workers(proc) -> list[int]:
    """The server's worker processes (uvicorn's multiprocessing also starts a resource tracker)."""
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(proc.pid)], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "resource_tracker" not in line]


@pytest.mark.services
def test_two_workers_accept_concurrent_pushes_and_route_each_once(served_hub):
    proc, base, backend = served_hub
    assert len(_workers(proc)) == 2
    capture = Capture(backend.broker_url, f"CaseResult.{SYSTEM}")
    try:
        messages = [with_message_id(sample("CaseResult-approved.xml")) for _ in range(60)]

        def push(item):
            status, doc = post(f"{base}/ws/exchange", envelope(push_message(item[1]), security_header(SYSTEM, SECRET)))
            return receipt_of(doc)["status"]

        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(push, messages))
        assert statuses == ["ACCEPTED"] * len(messages)
        ids = {mid for mid, _ in messages}
        seen = capture.collect(ids, timeout=30)
        assert {mid: seen[mid] for mid in ids} == {mid: 1 for mid in ids}, _said(proc)
    finally:
        capture.close()


@pytest.mark.services
def test_a_nonce_used_with_one_worker_is_refused_by_every_worker(served_hub):
    _, base, _ = served_hub
    request = envelope(push_message(with_message_id(sample("CaseResult-approved.xml"))[1]),
                       security_header(SYSTEM, SECRET, nonce=uuid.uuid4().bytes))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(f"{base}/ws/exchange", request)[1], range(16)))
    outcomes = sorted(fault_of(doc)[1] if fault_of(doc) else receipt_of(doc)["status"] for doc in answers)
    assert outcomes == ["ACCEPTED"] + ["WSSE_NONCE_REPLAYED"] * 15


@pytest.mark.services
def test_zeep_pushes_and_queries_from_the_wsdl_and_the_console_is_served(served_hub):
    """What the ASGI server hands to the WSGI app (WSDL, QueryReceipt, the console) works
    beside the pushes it answers itself."""
    from zeep import Client
    from zeep.wsse.username import UsernameToken

    from tests.test_soap import CASE_RESULT
    _, base, _ = served_hub
    client = Client(f"{base}/ws/exchange?wsdl", wsse=UsernameToken(SYSTEM, SECRET, use_digest=True))
    message_id = str(uuid.uuid4())
    first = client.service.PushCaseResult(messageId=message_id, caseResult=CASE_RESULT)
    again = client.service.PushCaseResult(messageId=message_id, caseResult=CASE_RESULT)
    found = client.service.QueryReceipt(messageId=message_id)
    assert (first.status, again.status, found.status) == ("ACCEPTED", "DUPLICATE", "ACCEPTED")
    assert again.receiptId == found.receiptId == first.receiptId
    with urllib.request.urlopen(f"{base}/login", timeout=10) as page:
        assert page.status == 200 and b"<form" in page.read()


@pytest.mark.services
def test_a_client_stalled_mid_request_does_not_keep_the_server_from_stopping(served_hub):
    """A stop (SIGTERM, as systemd sends) waits for requests in progress only so long: a client
    that sent half a push and went quiet must not hold the server up for good (uvicorn waits for
    it without --timeout-graceful-shutdown, and a bench worker was found still waiting an hour later)."""
    import socket
    proc, base, _ = served_hub
    port = int(base.rsplit(":", 1)[1])
    stalled = socket.create_connection(("127.0.0.1", port))
    try:
        stalled.sendall(b"POST /ws/exchange HTTP/1.1\r\nHost: hub\r\nContent-Type: text/xml\r\n"
                        b"Content-Length: 5000\r\n\r\n<soapenv:Envelope")
        time.sleep(1)  # the request is now in progress: headers read, the body awaited
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server was still waiting for the stalled request 45 s after SIGTERM\n{_said(proc)}")
        assert time.monotonic() - started < 30
        assert proc.returncode == 0, _said(proc)
    finally:
        stalled.close()
