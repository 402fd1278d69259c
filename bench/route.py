"""Route throughput and latency: accept -> exchange log -> relay -> route queue -> route worker ->
filedrop destination (fsync on) -> delivery records committed.

Production layout: the hub (acceptance, group commit, relay) in this process, the route
worker as a separate `huitong worker` process. Same run, for the ratio: accept -> published
without routes. Latency: messages offered at half the measured throughput, from the moment a
sender hands a message over to the DELIVERED record's commit time."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bench.publish import _dropped_after, _env, _fresh_pg

SYSTEM = "320382.scjgj.djxt"
ROUTE = "bench-to-ferry"


def bench_route(messages: int = 10000, latency_seconds: float = 5.0) -> dict:
    """On PostgreSQL + RabbitMQ with `huitong worker` processes when configured; else embedded
    (SQLite + in-memory broker), where the route workers are threads of the hub process."""
    from bus.hub import Hub
    from tests.helpers.messages import case_results

    amqp, database = _env("AMQP_URL"), _env("DATABASE_URL")
    embedded = not (amqp and database)
    tmp = Path(tempfile.mkdtemp(prefix="huitong-route-bench-"))
    (tmp / "routes").mkdir()
    (tmp / "routes" / "route.yaml").write_text(f"id: {ROUTE}\nfrom: {{types: [CaseResult]}}\nto: [ferry]\n")
    result = {"backend": "SQLite + in-memory broker (embedded)" if embedded else "PostgreSQL + RabbitMQ",
              "messages": messages, "destination": "filedrop (fsync)" if _fsync() else "filedrop (no fsync)",
              "layout": ("one hub process: accept, relay and route worker threads" if embedded
                         else "hub process (accept + relay) + one `huitong worker` process")}

    def config(label: str, db: str, routes: bool, workers: int = 1) -> Path:
        path = tmp / f"{label}.yaml"
        path.write_text(yaml.safe_dump({
            "database_url": db, "broker_url": "memory://" if embedded else amqp, "state_dir": str(tmp / "var"),
            "routes": {"dir": str(tmp / "routes") if routes else "", "run": embedded, "threads": workers},
            "destinations": {"ferry": {"type": "filedrop", "dir": str(tmp / f"outbox-{label}"), "fsync": _fsync()}},
            "logging": {"level": "WARNING", "format": "json"}}))
        return path

    @contextlib.contextmanager
    def store(label: str):
        """A database of its own for each phase."""
        if embedded:
            yield f"sqlite:///{tmp / f'{label}.db'}"
            return
        db = _fresh_pg(database)
        with _dropped_after(database, db):
            yield db

    # 1. accept -> published, no routes (the same run's baseline)
    with store("publish") as db:
        hub = Hub(_settings(config("publish", db, routes=False))).start()
        try:
            batch = case_results(messages)  # made before the clock starts
            start = time.perf_counter()
            _accept_batched(hub, batch)
            while hub.log.unpublished_count():
                time.sleep(0.01)
            published = messages / (time.perf_counter() - start)
        finally:
            hub.stop()
    result["accept_to_published_msg_s"] = round(published)

    # 2. accept -> delivered, and 3. latency at half that load (one worker)
    result.update(_routed(store, config, "route", messages, published, workers=1, embedded=embedded,
                          latency_seconds=latency_seconds))
    # 4. scaling: the same with two workers (processes; threads on the embedded broker), same run
    two = _routed(store, config, "route2", messages, published, workers=2, embedded=embedded, latency_seconds=0)
    result["accept_to_delivered_msg_s_2_workers"] = two["accept_to_delivered_msg_s"]
    result["scaling_2_vs_1_workers"] = round(two["accept_to_delivered_msg_s"] / result["accept_to_delivered_msg_s"], 2)
    return result


def _routed(store, config, label: str, messages: int, published: float, *, workers: int, embedded: bool,
            latency_seconds: float) -> dict:
    from bus.hub import Hub
    from tests.helpers.messages import case_results
    out: dict = {}
    with store(label) as db:
        path = config(label, db, routes=True, workers=workers)
        hub = Hub(_settings(path)).start()
        if not embedded:
            _purge_route_queue(hub)
        try:
            out["workers"] = f"{workers} {'route worker thread' if embedded else '`huitong worker` process'}" + \
                ("s" if workers > 1 and embedded else "es" if workers > 1 else "")
            with contextlib.nullcontext() if embedded else _worker(path, workers):
                if not embedded:
                    _wait_consuming(hub)
                batch = case_results(messages)
                start = time.perf_counter()
                _accept_batched(hub, batch)
                _wait_delivered(hub, messages)
                routed = messages / (time.perf_counter() - start)
                out["accept_to_delivered_msg_s"] = round(routed)
                out["ratio_vs_published"] = round(routed / published, 2)
                if latency_seconds:
                    rate = routed / 2
                    submitted = _paced(hub, rate, latency_seconds)
                    latencies = _latencies(hub, submitted, messages)
                    out["latency_offered_msg_s"] = round(rate)
                    out["latency_messages"] = len(latencies)
                    out["latency_p50_ms"] = round(_pct(latencies, 50) * 1000, 1)
                    out["latency_p99_ms"] = round(_pct(latencies, 99) * 1000, 1)
        finally:
            hub.stop()
            if not embedded:
                from tests.helpers.soap import delete_route_queues
                delete_route_queues(hub)
    return out


def _settings(path: Path):
    from bus.config import load_settings
    return load_settings(path, environ={})


def _accept_batched(hub, batch) -> None:
    chunks = [[body for _, body in batch[i:i + 250]] for i in range(0, len(batch), 250)]
    with ThreadPoolExecutor(4) as pool:
        for receipts in pool.map(lambda c: hub.acceptance.accept_many(c, system=SYSTEM), chunks):
            assert all(r.status == "ACCEPTED" for r in receipts)


def _delivered_count(hub) -> int:
    from sqlalchemy import func, select
    from bus.models import RouteDelivery
    with hub.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(RouteDelivery).where(RouteDelivery.status == "DELIVERED"))


def _wait_delivered(hub, total: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while _delivered_count(hub) < total:
        if time.monotonic() > deadline:
            raise RuntimeError("route bench: deliveries stalled")
        # Each count reads every delivery record so far, on the cores the run measures; at
        # 50 ms (was 20) the rate is under-stated by under 1 % of a 10,000-message run.
        time.sleep(0.05)


def _wait_consuming(hub, timeout: float = 60) -> None:
    from bus.broker import connect
    from bus.topology import route_queue
    conn = connect(hub.settings.broker_url)
    try:
        queue = route_queue(ROUTE, ["CaseResult.#"], quorum=True)(conn.channel())
        deadline = time.monotonic() + timeout
        while queue.queue_declare(passive=True)[2] == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the route worker did not start")
            time.sleep(0.1)
    finally:
        conn.release()


def _purge_route_queue(hub) -> None:
    from bus.broker import connect
    from bus.topology import route_queue
    conn = connect(hub.settings.broker_url)
    try:
        queue = route_queue(ROUTE, ["CaseResult.#"], quorum=True)(conn.channel())
        queue.declare()
        queue.purge()
    finally:
        conn.release()


def _paced(hub, rate: float, seconds: float) -> dict[str, float]:
    """Offer `rate` messages per second for `seconds`, in small handovers every 20 ms."""
    from tests.helpers.messages import case_results

    tick = 0.02
    per_tick = max(1, round(rate * tick))
    ticks = int(seconds / tick)
    batch = case_results(per_tick * ticks)
    submitted: dict[str, float] = {}
    lock = threading.Lock()
    pool = ThreadPoolExecutor(16)
    start = time.perf_counter()
    for i in range(ticks):
        chunk = batch[i * per_tick:(i + 1) * per_tick]
        now = time.time()
        with lock:
            submitted.update((mid, now) for mid, _ in chunk)
        pool.submit(hub.acceptance.accept_many, [body for _, body in chunk], system=SYSTEM)
        delay = start + (i + 1) * tick - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    pool.shutdown(wait=True)
    return submitted


def _latencies(hub, submitted: dict[str, float], already: int) -> list[float]:
    from sqlalchemy import select
    from bus.models import Event
    _wait_delivered(hub, already + len(submitted))
    with hub.engine.connect() as conn:
        rows = conn.execute(select(Event.message_id, Event.at).where(Event.kind == "DELIVERED",
                                                                     Event.message_id.in_(list(submitted))))
        return sorted(at.timestamp() - submitted[mid] for mid, at in rows)


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p / 100))]


@contextlib.contextmanager
def _worker(config: Path, processes: int = 1):
    procs = [subprocess.Popen([sys.executable, "-m", "bus.cli", "worker", "--config", str(config)],
                              env={**os.environ, "HUITONG_LOGGING__LEVEL": "WARNING"})
             for _ in range(processes)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


def _fsync() -> bool:
    """HUITONG_BENCH_ROUTE_FSYNC=0 measures the outbox without flushing to disk."""
    return os.environ.get("HUITONG_BENCH_ROUTE_FSYNC", "1") != "0"
