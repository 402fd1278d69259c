"""Exchange-log search at size, on PostgreSQL: a log of N events (default 5,000,000: a third
each RECEIVED, PUBLISHED, DELIVERED, four messages per case), then searches by case number
and lineage reads, one at a time, through the library (each read also commits its AUDIT_READ
event) and through the REST API of a `huitong serve` process on a kept-alive connection."""
from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.audit import _fill
from bench.catalog import _connect, _percentiles
from bench.publish import _dropped_after, _env, _fresh_pg

ROOT = Path(__file__).resolve().parents[1]
AUDITOR = "320382.jw.jcxt"
SECRET = "sample-bench-secret-not-real"


def bench_log_search(events: int = 5_000_000, searches: int = 2000) -> dict:
    from bus.database import make_engine, upgrade
    from replay.lineage import LogQueries, LogSearch

    database = _env("DATABASE_URL")
    if not database:
        return {"skipped": "needs PostgreSQL (HUITONG_BENCH_DATABASE_URL or HUITONG_TEST_DATABASE_URL)"}
    messages = events // 3
    out: dict = {"events": messages * 3, "messages": messages, "cases": messages // 4}
    url = _fresh_pg(database)
    with _dropped_after(database, url):
        engine = make_engine(url)
        upgrade(engine)
        start = time.perf_counter()
        _fill(engine, messages, chunk=5000)
        out["fill_seconds"] = round(time.perf_counter() - start)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        rng = random.Random(5)
        cases = [f"320382-{rng.randrange(messages // 4):010d}" for _ in range(searches)]
        queries = LogQueries(engine)
        for case in cases[:100]:  # warm
            queries.search("operator:bench", LogSearch(case_number=case))
        timings, found = [], 0
        for case in cases:
            start = time.perf_counter()
            found += len(queries.search("operator:bench", LogSearch(case_number=case))["items"])
            timings.append(time.perf_counter() - start)
        out["library_search_by_case"] = _percentiles(timings)
        out["messages_per_case_found"] = round(found / len(cases), 2)
        out.update(_rest(url, cases))
        engine.dispose()
    return out


def _rest(url: str, cases: list[str]) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="huitong-log-bench-"))
    port = 18500 + os.getpid() % 500
    config = {"database_url": url, "broker_url": "memory://", "state_dir": str(tmp / "var"),
              "http": {"port": port, "threads": 8}, "audit": {"allow_http": True, "seal": False},
              # A reader only: no relay (with the in-memory broker it would re-publish the whole log).
              "relay": {"enabled": False},
              "logging": {"level": "WARNING", "format": "json"},
              "systems": [{"id": AUDITOR, "name": "supervision (sample)", "secret": SECRET, "grants": ["READ_LOG"]}]}
    (tmp / "huitong.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    server = subprocess.Popen([sys.executable, "-m", "bus.cli", "serve", "--config", str(tmp / "huitong.yaml")],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    auth = {"Authorization": "Basic " + base64.b64encode(f"{AUDITOR}:{SECRET}".encode()).decode()}
    try:
        conn = _connect(port)

        def get(path: str) -> dict:
            conn.request("GET", path, headers=auth)
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200, (response.status, body[:200])
            return json.loads(body)

        for case in cases[:100]:
            get(f"/api/v1/log/messages?case={case}")
        search, lineage = [], []
        for case in cases:
            start = time.perf_counter()
            items = get(f"/api/v1/log/messages?case={case}")["items"]
            search.append(time.perf_counter() - start)
            start = time.perf_counter()
            get(f"/api/v1/log/messages/{items[0]['message_id']}")
            lineage.append(time.perf_counter() - start)
        conn.close()
    finally:
        server.terminate()
        server.wait(30)
    return {"rest_search_by_case": _percentiles(search), "rest_lineage": _percentiles(lineage)}
