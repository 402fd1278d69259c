"""Two `huitong ingest` processes on one inbox (PostgreSQL + RabbitMQ): each file is taken by
exactly one of them; a process killed with SIGKILL while it reads a file leaves a claim that
the other takes over, and every record is in the log exactly once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import func, select

from bus.database import make_engine
from bus.models import Event, Message
from tests.conftest import AMQP_URL, ROOT, Backend
from tests.helpers.filedrop import ZJJ_SYSTEM, drop, zjj_csv
from tests.helpers.routing import wait_for
from tests.test_filedrop import inbox_config, receipts, zjj_inbox

pytestmark = pytest.mark.services


def ingest(config, log_path):
    return subprocess.Popen([sys.executable, "-m", "bus.cli", "ingest", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"),
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_two_processes_take_each_file_once_and_a_killed_ones_claim_is_taken_over(tmp_path, postgres_url):
    backend = Backend("services", postgres_url, AMQP_URL)
    inbox_dir = tmp_path / "inbox" / "zjj"
    config = inbox_config(tmp_path, backend, {"zjj": zjj_inbox(tmp_path, settle_seconds=0.2)},
                          adapters={"file_workers": 2})
    first, second = ingest(config, tmp_path / "first.log"), ingest(config, tmp_path / "second.log")
    engine = make_engine(postgres_url)
    try:
        for index in range(20):
            drop(inbox_dir, f"part-{index:02d}.csv", zjj_csv(200, tag=f"2026112{index % 10}{index // 10}"))
        wait_for(lambda: len(receipts(inbox_dir, "archive")) == 20, 120)
        done = receipts(inbox_dir, "archive")
        assert Counter(r["file"] for r in done) == Counter(f"part-{i:02d}.csv" for i in range(20))
        assert all(r["accepted"] == 200 and r["duplicate"] == 0 for r in done)  # nobody read a file twice
        assert not receipts(inbox_dir, "error")
        claimers = {p.name for p in (inbox_dir / ".claims").iterdir()}
        assert len(claimers) == 2  # both processes took part

        # SIGKILL one while it reads a big file: the other takes its claim over.
        drop(inbox_dir, "big.csv", zjj_csv(20_000, tag="20261130"))

        def some_in():
            with engine.connect() as conn:
                return conn.scalar(select(func.count()).select_from(Message)) > 4_000 + 200
        wait_for(some_in, 60, 0.01)
        owner = next(p for p in (inbox_dir / ".claims").iterdir() if any(p.iterdir()))
        pid = int(owner.name.rpartition(".")[2])
        victim, survivor = (first, second) if pid == first.pid else (second, first)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        wait_for(lambda: any(r["file"] == "big.csv" for r in receipts(inbox_dir, "archive")), 120)
        big = next(r for r in receipts(inbox_dir, "archive") if r["file"] == "big.csv")
        assert big["accepted"] + big["duplicate"] == 20_000 and big["duplicate"] > 0
        with engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(Message).where(Message.source == ZJJ_SYSTEM))
            received = conn.scalar(select(func.count()).select_from(Event).where(Event.kind == "RECEIVED"))
        assert total == received == 24_000  # every record once, none twice
        assert survivor.poll() is None
    finally:
        stop(first)
        stop(second)
        engine.dispose()
