"""Accept -> publish throughput through the hub (32 concurrent senders, group commit, relay
with pipelined confirms) against raw confirmed publishing of the same bodies, same run.

On RabbitMQ a durable quorum queue is bound to every routing key for the run, as a route
would be: a confirm then means the broker has stored the message, not that it dropped an
unroutable one. Baseline and hub publish to the same exchange and queue."""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor


def _env(name):
    return os.environ.get(f"HUITONG_BENCH_{name}") or os.environ.get(f"HUITONG_TEST_{name}")


def bench_publish(messages: int = 20000, senders: int = 32) -> dict:
    from bus.broker import Publisher
    from bus.config import load_settings
    from bus.exchange_log import Pending
    from bus.hub import Hub
    from tests.helpers.messages import case_results

    amqp, database = _env("AMQP_URL"), _env("DATABASE_URL")
    tmp = tempfile.mkdtemp(prefix="huitong-bench-")
    broker = amqp or "memory://"
    batch = case_results(messages)

    sink = _Sink(broker)
    # Baseline: the same bodies straight to the broker, pipelined confirms, batches of 500.
    publisher = Publisher(broker)
    pend = [Pending(i, mid, "320382.scjgj.djxt", "CaseResult", "CaseResult.320382.scjgj.djxt", None, body)
            for i, (mid, body) in enumerate(batch)]
    start = time.perf_counter()
    for i in range(0, len(pend), 500):
        publisher.publish_batch(pend[i:i + 500])
    raw = messages / (time.perf_counter() - start)
    publisher.close()
    sink.purge()

    def run(label, accept_all, relay_process=False):
        fresh = _fresh_pg(database) if database else f"sqlite:///{tmp}/{label}.db"
        environ = {"HUITONG_DATABASE_URL": fresh, "HUITONG_BROKER_URL": broker}
        cfg = load_settings(environ=environ)
        with _dropped_after(database, fresh), Hub(cfg).start(relay=not relay_process) as hub, \
                _relay_process(environ if relay_process else None):
            start = time.perf_counter()
            receipts = accept_all(hub)
            accepted_at = time.perf_counter()
            while hub.log.unpublished_count():
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
        sink.purge()
        assert all(r.status == "ACCEPTED" for r in receipts), label
        rate = messages / elapsed
        return {f"{label}_accept_msg_s": round(messages / (accepted_at - start)),
                f"{label}_accept_to_published_msg_s": round(rate),
                f"{label}_ratio_vs_raw": round(rate / raw, 2)}

    def single(hub):  # every sender waits for its own receipt, one message at a time
        with ThreadPoolExecutor(senders) as pool:
            return list(pool.map(lambda m: hub.accept(m[1], system="320382.scjgj.djxt"), batch))

    def batched(hub):  # 4 senders handing over 250 messages at a time (files, front-db polls)
        chunks = [[body for _, body in batch[i:i + 250]] for i in range(0, len(batch), 250)]
        with ThreadPoolExecutor(4) as pool:
            return [r for rs in pool.map(lambda c: hub.acceptance.accept_many(c, system="320382.scjgj.djxt"), chunks)
                    for r in rs]

    result = {"backend": f"{'PostgreSQL' if database else 'SQLite'} + {'RabbitMQ' if amqp else 'in-memory'}",
              "messages": messages, "raw_confirmed_publish_msg_s": round(raw),
              "single_senders": senders}
    try:
        result.update(run("single", single))
        result.update(run("batched", batched))
        if database:  # production layout: `huitong relay` as its own process beside the hub
            result.update(run("batched_relay_process", batched, relay_process=True))
    finally:
        sink.delete()
    return result


class _Sink:
    """The durable queue a route would have, bound to everything, emptied between runs."""

    def __init__(self, url: str):
        from bus.broker import connect
        from bus.topology import declare, durable_queue
        self.conn = connect(url)
        channel = self.conn.channel()
        self.queue = durable_queue("huitong.bench.sink", "#", quorum=not url.startswith("memory"))(channel)
        declare(channel, [self.queue])

    def purge(self) -> None:
        self.queue.purge()

    def delete(self) -> None:
        self.queue.delete()
        self.conn.release()


@contextlib.contextmanager
def _relay_process(environ: dict | None):
    if environ is None:
        yield
        return
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "bus.cli", "relay"],
                            env={**os.environ, **environ, "HUITONG_LOGGING__LEVEL": "WARNING"})
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def _dropped_after(admin_url: str | None, url: str):
    """The bench's PostgreSQL database goes away with the run."""
    try:
        yield
    finally:
        if admin_url:
            _drop_pg(admin_url, url)


def _drop_pg(admin_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    name = make_url(url).database
    admin = create_engine(make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _fresh_pg(url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    parsed = make_url(url).set(drivername="postgresql+psycopg")
    name = f"huitong_bench_{int(time.time() * 1000)}"
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return parsed.set(database=name).render_as_string(hide_password=False)


