"""Accept -> publish throughput through the hub (32 concurrent senders, group commit, relay
with pipelined confirms) against raw confirmed publishing of the same bodies, same run."""
from __future__ import annotations

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

    # Baseline: the same bodies straight to the broker, pipelined confirms, batches of 500.
    publisher = Publisher(broker)
    pend = [Pending(i, mid, "320382.scjgj.djxt", "CaseResult", "bench.baseline", None, body)
            for i, (mid, body) in enumerate(batch)]
    start = time.perf_counter()
    for i in range(0, len(pend), 500):
        publisher.publish_batch(pend[i:i + 500])
    raw = messages / (time.perf_counter() - start)
    publisher.close()

    def run(label, accept_all):
        fresh = _fresh_pg(database) if database else f"sqlite:///{tmp}/{label}.db"
        cfg = load_settings(environ={"HUITONG_DATABASE_URL": fresh, "HUITONG_BROKER_URL": broker})
        with Hub(cfg) as hub:
            start = time.perf_counter()
            receipts = accept_all(hub)
            accepted_at = time.perf_counter()
            while hub.log.unpublished_count():
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
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
    result.update(run("single", single))
    result.update(run("batched", batched))
    return result


def _fresh_pg(url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    parsed = make_url(url).set(drivername="postgresql+psycopg")
    name = f"huitong_bench_{int(time.time())}"
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return parsed.set(database=name).render_as_string(hide_password=False)


