"""Soak: a steady stream of SOAP pushes into `huitong serve` (with a separate `huitong worker`
routing to a filedrop outbox) for N minutes, sampling every 10 s the hub's and the worker's
resident memory (VmRSS; VmHWM is the peak) and the backlog (unpublished messages, route queue,
retries). Growth is judged between the second quarter and the last: memory that keeps climbing,
or a backlog that does, is a leak or a hub that cannot keep up.

    python -m bench soak --minutes 10 [--rate 300]

On RabbitMQ + PostgreSQL when HUITONG_BENCH_* (or HUITONG_TEST_*) are set, else embedded (SQLite
and the in-memory broker: then the hub routes itself, there is no worker process)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from bench.publish import _dropped_after, _env, _fresh_pg

SYSTEM = "320382.scjgj.djxt"
SECRET = "sample-soak-secret-not-real"
ROUTE = "soak-to-ferry"


# What serves the hub: `huitong serve` (waitress), or uvicorn in one process (bus.asgi).
SERVERS = {"serve": "huitong serve", "uvicorn": "uvicorn bus.asgi"}


def bench_soak(minutes: float = 10.0, rate: float = 300.0, server: str = "serve") -> dict:
    amqp, database = _env("AMQP_URL"), _env("DATABASE_URL")
    tmp = Path(tempfile.mkdtemp(prefix="huitong-soak-"))
    if amqp and database:
        db = _fresh_pg(database)
        with _dropped_after(database, db):
            return _soak(tmp, db, amqp, minutes, rate, worker=True, server=server)
    return _soak(tmp, f"sqlite:///{tmp / 'hub.db'}", "memory://", minutes, rate, worker=False, server=server)


def _soak(tmp: Path, database_url: str, broker_url: str, minutes: float, rate: float, *, worker: bool,
          server: str) -> dict:
    from tests.helpers.soap import free_port
    (tmp / "routes").mkdir()
    (tmp / "routes" / "route.yaml").write_text(f"id: {ROUTE}\nfrom: {{types: [CaseResult]}}\nto: [ferry]\n")
    port = free_port()
    config = tmp / "huitong.yaml"
    config.write_text(yaml.safe_dump({
        "database_url": database_url, "broker_url": broker_url, "state_dir": str(tmp / "var"),
        "http": {"port": port, "threads": 16}, "routes": {"dir": str(tmp / "routes"), "run": not worker},
        "destinations": {"ferry": {"type": "filedrop", "dir": str(tmp / "outbox"), "fsync": False}},
        "soap": {"rate_limit_per_system": 100_000},
        "systems": [{"id": SYSTEM, "name": "soak (sample)", "secret": SECRET, "grants": ["CaseResult"]}],
        "logging": {"level": "WARNING", "format": "json"}}))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    hub = ([sys.executable, "-m", "bus.cli", "serve", "--config", str(config)] if server == "serve" else
           [str(Path(sys.executable).with_name("uvicorn")), "--factory", "bus.asgi:application",
            "--timeout-graceful-shutdown", "10", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning"])
    procs = {"hub": subprocess.Popen(hub, env={**env, "HUITONG_CONFIG": str(config)},
                                     stdout=subprocess.DEVNULL, stderr=open(tmp / "hub.log", "wb"))}
    if worker:
        procs["worker"] = subprocess.Popen([sys.executable, "-m", "bus.cli", "worker", "--config", str(config)],
                                           env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "worker.log", "wb"))
    url = f"http://127.0.0.1:{port}/ws/exchange"
    _wait_up(f"http://127.0.0.1:{port}/healthz", procs["hub"])
    stop = threading.Event()
    counts = {"accepted": 0, "failed": 0}
    senders = [threading.Thread(target=_send, args=(url, rate / 8, stop, counts), daemon=True) for _ in range(8)]
    samples = []
    started = time.monotonic()
    try:
        for t in senders:
            t.start()
        while time.monotonic() - started < minutes * 60:
            time.sleep(10)
            samples.append(_sample(procs, database_url, broker_url, time.monotonic() - started, counts))
    finally:
        stop.set()
        for t in senders:
            t.join(timeout=30)
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if broker_url.startswith("amqp"):
            _delete_queue(broker_url)
    return _verdict(samples, minutes, rate, counts, worker, SERVERS[server])


def _wait_up(url: str, proc) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the hub did not start")
            time.sleep(0.2)


def _send(url: str, rate: float, stop: threading.Event, counts: dict) -> None:
    from tests.helpers.messages import sample, with_message_id
    from tests.helpers.soap import envelope, push_message, security_header
    base = sample("CaseResult-approved.xml")
    interval, next_at = 1.0 / rate, time.monotonic()
    while not stop.is_set():
        _, data = with_message_id(base)
        body = envelope(push_message(data), security_header(SYSTEM, SECRET))
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                ok = b"ACCEPTED" in response.read()
        except (urllib.error.URLError, OSError):
            ok = False
        counts["accepted" if ok else "failed"] += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def _memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, amount = line.split(":")
            values[key] = int(amount.split()[0]) / 1024
    return round(values.get("VmRSS", 0), 1), round(values.get("VmHWM", 0), 1)


def _sample(procs: dict, database_url: str, broker_url: str, at: float, counts: dict) -> dict:
    from sqlalchemy import create_engine, func, select
    from bus.models import Message, RouteDelivery
    out = {"at_s": round(at), "accepted": counts["accepted"], "failed": counts["failed"]}
    for name, proc in procs.items():
        out[f"{name}_rss_mb"], out[f"{name}_peak_mb"] = _memory(proc.pid)
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            out["unpublished"] = conn.scalar(select(func.count()).select_from(Message)
                                             .where(Message.published_at.is_(None)))
            out["retrying"] = conn.scalar(select(func.count()).select_from(RouteDelivery)
                                          .where(RouteDelivery.status.in_(("RETRY", "RETRYING"))))
            delivered = conn.scalar(select(func.count()).select_from(RouteDelivery)
                                    .where(RouteDelivery.status == "DELIVERED"))
            out["not_yet_delivered"] = conn.scalar(select(func.count()).select_from(Message)) - delivered
    finally:
        engine.dispose()
    if broker_url.startswith("amqp"):
        out["queued"] = _queue_depth(broker_url)
    print("  soak", out, flush=True)
    return out


def _queue_depth(broker_url: str) -> int | None:
    from bus.broker import connect
    from bus.topology import route_queue_name
    try:
        with connect(broker_url) as conn:
            return conn.channel().queue_declare(route_queue_name(ROUTE), passive=True)[1]
    except Exception:
        return None


def _delete_queue(broker_url: str) -> None:
    from bus.broker import connect
    from bus.topology import dead_queue_name, route_queue_name
    with connect(broker_url) as conn:
        for name in (route_queue_name(ROUTE), dead_queue_name(ROUTE)):
            try:
                conn.channel().queue_delete(name)
            except Exception:
                pass


def _verdict(samples: list[dict], minutes: float, rate: float, counts: dict, worker: bool, server: str) -> dict:
    result = {"minutes": minutes, "offered_msg_s": rate, "accepted": counts["accepted"], "failed": counts["failed"],
              "accepted_msg_s": round(counts["accepted"] / (minutes * 60), 1),
              "layout": f"{server} + huitong worker (PostgreSQL + RabbitMQ)" if worker
              else f"{server} alone (embedded: SQLite + in-memory broker)", "samples": samples}
    if len(samples) < 4:
        return result
    quarter = len(samples) // 4
    early, late = samples[quarter:2 * quarter], samples[-quarter:]

    def mean(rows, key):
        values = [r[key] for r in rows if r.get(key) is not None]
        return sum(values) / len(values) if values else 0.0
    for name in ("hub", "worker") if worker else ("hub",):
        result[f"{name}_rss_mb_second_quarter"] = round(mean(early, f"{name}_rss_mb"), 1)
        result[f"{name}_rss_mb_last_quarter"] = round(mean(late, f"{name}_rss_mb"), 1)
        result[f"{name}_rss_growth"] = round(mean(late, f"{name}_rss_mb") / max(1.0, mean(early, f"{name}_rss_mb")), 3)
        result[f"{name}_peak_rss_mb"] = max(r[f"{name}_peak_mb"] for r in samples)
    result["backlog_second_quarter"] = round(mean(early, "not_yet_delivered"))
    result["backlog_last_quarter"] = round(mean(late, "not_yet_delivered"))
    return result
