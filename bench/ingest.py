"""File ingestion end to end: a department's GBK CSV export dropped into an inbox of a running
hub (watcher, claim, decode, mapping, validation, group commit into the exchange log, relay
on) until its receipt is written, i.e. every record is committed. Same run, for the ratio:
the same records, already canonical, handed to the acceptance directly (validation and
commit only). Embedded (SQLite + in-memory broker) always; PostgreSQL + RabbitMQ when the
HUITONG_BENCH_* (or HUITONG_TEST_*) URLs are set."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.publish import _dropped_after, _env, _fresh_pg

SYSTEM = "320382.zjj.sgxk"
ROOT = Path(__file__).resolve().parents[1]


def bench_ingest(records: int = 10000) -> dict:
    amqp, database = _env("AMQP_URL"), _env("DATABASE_URL")
    out = {"records": records, "file": "GBK CSV, zjj-sgxk-accepted mapping (CaseAccepted)"}
    out.update(_run("embedded", records, None, "memory://"))
    if amqp and database:
        db = _fresh_pg(database)
        with _dropped_after(database, db):
            out.update(_run("postgres", records, db, amqp))
        # Production layout: the ingesting process leaves publishing to a `huitong relay`
        # process (relay.enabled: false), so the two share the two cores instead of one GIL.
        db = _fresh_pg(database)
        with _dropped_after(database, db):
            out.update(_run("postgres_separate_relay", records, db, amqp, separate_relay=True))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def _run(label: str, records: int, database_url: str | None, broker_url: str, *,
         separate_relay: bool = False) -> dict:
    from adapters.filedrop.files import Part
    from bus.config import load_settings
    from bus.hub import Hub
    from tests.helpers.filedrop import drop, zjj_csv

    tmp = Path(tempfile.mkdtemp(prefix=f"huitong-ingest-bench-{label}-"))
    inbox = tmp / "inbox"
    config = {"state_dir": str(tmp / "var"), "broker_url": broker_url,
              "logging": {"level": "WARNING", "format": "json"}, "adapters": {"poll_interval": 0.2},
              "systems": [{"id": SYSTEM, "name": "bench (sample)", "secret": "sample-bench-secret-not-real",
                           "grants": ["CaseAccepted"]}],
              "inboxes": {"zjj": {"system": SYSTEM, "dir": str(inbox), "format": "csv",
                                  "mapping": "zjj-sgxk-accepted", "complete": "marker"}}}
    if database_url:
        config["database_url"] = database_url
    if separate_relay:
        config["relay"] = {"enabled": False}
    (tmp / "huitong.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    hub = Hub(load_settings(tmp / "huitong.yaml", environ={})).start()
    relay = None
    if separate_relay:
        relay = subprocess.Popen([sys.executable, "-m", "bus.cli", "relay", "--config", str(tmp / "huitong.yaml")],
                                 cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "HUITONG_RELAY__ENABLED": "true"},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # 1. the same records, canonical already: acceptance only (same run, for the ratio)
        reader = hub.service("inboxes").inboxes[0].reader
        items = [r.item for r in reader.records(Part("warm.csv", zjj_csv(records, tag="20261101")), SYSTEM)]
        start = time.perf_counter()
        for offset in range(0, len(items), 500):
            hub.acceptance.accept_many(items[offset:offset + 500], system=SYSTEM)
        accept_only = records / (time.perf_counter() - start)

        # 2. the file, end to end (fresh records: a different day's export)
        data = zjj_csv(records, tag="20261121")
        drop(inbox, "sgxk.csv", data)
        start = time.perf_counter()
        (inbox / "sgxk.csv.done").write_bytes(b"")
        while not list((inbox / "archive").glob("*/sgxk.csv.receipt.json")):
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
        receipt = json.loads(next((inbox / "archive").glob("*/sgxk.csv.receipt.json")).read_text(encoding="utf-8"))
        assert receipt["accepted"] == records, receipt
        while hub.log.unpublished_count():  # and on the broker
            time.sleep(0.01)
        published = time.perf_counter() - start
    finally:
        hub.stop()
        if relay is not None:
            relay.send_signal(signal.SIGTERM)
            relay.wait(timeout=30)
    rate = records / elapsed
    return {f"{label}_file_records_per_s": round(rate), f"{label}_file_published_per_s": round(records / published),
            f"{label}_accept_only_per_s": round(accept_only),
            f"{label}_file_vs_accept_only": round(rate / accept_only, 2),
            f"{label}_mb_per_s": round(len(data) / elapsed / 1e6, 2)}
