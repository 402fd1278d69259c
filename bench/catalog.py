"""The registries at size, on PostgreSQL: a CSV of N enterprises (1,000,000 by default) imported
through the same code as `huitong catalog import` (every USCC checked, merged with provenance
and history), then lookups by USCC and name-prefix searches through the REST API of a
`huitong serve` process, one request at a time on a kept-alive connection. Same run, for the
ratio: the same lookups and searches as bare SQL, so the API's own share shows."""
from __future__ import annotations

import base64
import csv
import http.client
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import yaml

from bench.publish import _dropped_after, _env, _fresh_pg

ROOT = Path(__file__).resolve().parents[1]
READER = "320382.zwb.portal"
SECRET = "sample-bench-secret-not-real"
CITIES = [("邳州市", "320382"), ("徐州市", "320300"), ("新沂市", "320381"), ("睢宁县", "320324"),
          ("南京市", "320100"), ("苏州市", "320500"), ("无锡市", "320200"), ("北京市", "110105"),
          ("上海市", "310115"), ("杭州市", "330106")]
WORDS = list("恒润华通鑫源瑞达宏盛永安泰和金鼎隆兴正阳嘉禾天成博远中科新程汇丰德昌佳信宇航明辉祥云"
             "东方海川立诚广源长江运河凯旋春晖锦绣盛世百川万家群英")
TRADES = ["建材", "建设工程", "商贸", "食品", "物流", "科技", "机械", "置业", "餐饮", "农业"]


def make_uscc(serial: int, region: str) -> str:
    from schemas.identifiers import org_code_check_char, uscc_check_char
    org8 = f"{serial:08d}"
    first17 = f"91{region}{org8}{org_code_check_char(org8)}"
    return first17 + uscc_check_char(first17)


def write_enterprises(path: Path, count: int, seed: int = 7) -> list[tuple[str, str, str]]:
    """The CSV, and a sample of (uscc, name, region) to look up."""
    rng = random.Random(seed)
    sample = []
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["uscc", "name", "legal_representative", "registered_at", "address", "region_code", "status"])
        for i in range(1, count + 1):
            city, region = CITIES[i % len(CITIES)]
            name = f"{city}{rng.choice(WORDS)}{rng.choice(WORDS)}{rng.choice(WORDS)}{rng.choice(TRADES)}有限公司{i}"
            uscc = make_uscc(i, region)
            writer.writerow([uscc, name, "王建国", f"20{i % 25:02d}-0{1 + i % 9}-1{i % 9}",
                             f"{city}运河街道{i % 300}号", region, "ACTIVE"])
            if i % max(1, count // 5000) == 0:
                sample.append((uscc, name, region))
    return sample


def bench_catalog(count: int = 1_000_000, lookups: int = 3000, searches: int = 1000) -> dict:
    database = _env("DATABASE_URL")
    if not database:
        return {"skipped": "needs PostgreSQL (HUITONG_BENCH_DATABASE_URL or HUITONG_TEST_DATABASE_URL)"}
    out: dict = {"enterprises": count}
    tmp = Path(tempfile.mkdtemp(prefix="huitong-catalog-bench-"))
    csv_path = tmp / "enterprises.csv"
    sample = write_enterprises(csv_path, count)
    out["csv_mb"] = round(csv_path.stat().st_size / 1e6, 1)
    db = _fresh_pg(database)
    with _dropped_after(database, db):
        out.update(_import(db, csv_path))
        out.update(_queries(db, tmp, sample, lookups, searches))
    out["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def _import(db: str, csv_path: Path) -> dict:
    from bus.config import Settings
    from bus.database import make_engine, upgrade
    from catalog.authority import Authority
    from catalog.csvio import import_csv
    from catalog.registries import ENTERPRISE
    from catalog.store import CatalogStore

    engine = make_engine(db)
    upgrade(engine)
    store = CatalogStore(engine, Authority.from_settings(Settings()))
    start = time.perf_counter()
    report = import_csv(store, ENTERPRISE, csv_path, system="320382.scjgj.djxt")
    seconds = time.perf_counter() - start
    assert report.tally.created == report.rows and not report.errors, (report.tally, report.errors[:3])
    start = time.perf_counter()
    again = import_csv(store, ENTERPRISE, csv_path, system="320382.scjgj.djxt")  # nothing changes
    rerun = time.perf_counter() - start
    assert again.tally.unchanged == report.rows
    engine.dispose()
    return {"import_rows_per_s": round(report.rows / seconds), "import_seconds": round(seconds, 1),
            "reimport_unchanged_rows_per_s": round(report.rows / rerun)}


def _percentiles(samples: list[float]) -> dict:
    samples = sorted(samples)
    return {"p50_ms": round(statistics.median(samples) * 1000, 2),
            "p99_ms": round(samples[int(len(samples) * 0.99) - 1] * 1000, 2),
            "max_ms": round(samples[-1] * 1000, 2)}


def _queries(db: str, tmp: Path, sample: list, lookups: int, searches: int) -> dict:
    from sqlalchemy import text

    from bus.database import make_engine

    rng = random.Random(11)
    port = 18000 + os.getpid() % 1000
    config = {"database_url": db, "broker_url": "memory://", "state_dir": str(tmp / "var"),
              "http": {"port": port, "threads": 8}, "catalog": {"allow_http": True},
              "logging": {"level": "WARNING", "format": "json"},
              "systems": [{"id": READER, "name": "portal (sample)", "secret": SECRET, "grants": ["READ_ENTERPRISE"]}]}
    (tmp / "huitong.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    server = subprocess.Popen([sys.executable, "-m", "bus.cli", "serve", "--config", str(tmp / "huitong.yaml")],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = _connect(port)
        auth = {"Authorization": "Basic " + base64.b64encode(f"{READER}:{SECRET}".encode()).decode()}
        keys = [rng.choice(sample) for _ in range(lookups)]
        prefixes = []
        for _ in range(searches):
            uscc, name, region = rng.choice(sample)
            prefix = name[:rng.choice((3, 4, 5))]  # the city, then one or two characters of the name
            prefixes.append((prefix, region if rng.random() < 0.5 else None))

        def get(path: str) -> dict:
            conn.request("GET", urllib.parse.quote(path, safe="/?=&"), headers=auth)
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200, (response.status, body[:200])
            return json.loads(body)

        for uscc, _, _ in keys[:200]:  # warm the caches and the connection
            get(f"/api/v1/catalog/enterprises/{uscc}")
        lookup_times = []
        for uscc, name, _ in keys:
            start = time.perf_counter()
            record = get(f"/api/v1/catalog/enterprises/{uscc}")
            lookup_times.append(time.perf_counter() - start)
            assert record["name"] == name
        search_times, found = [], 0
        for prefix, region in prefixes:
            path = f"/api/v1/catalog/enterprises?prefix={prefix}&limit=20" + (f"&region={region}" if region else "")
            start = time.perf_counter()
            result = get(path)
            search_times.append(time.perf_counter() - start)
            found += len(result["items"])
        # The worst case the region index is for: a common prefix searched in a region where
        # none of its enterprises are (without it, every match of the prefix was walked).
        elsewhere_times = []
        for prefix, _ in prefixes[:200]:
            path = f"/api/v1/catalog/enterprises?prefix={prefix[:3]}&limit=20&region=440305"
            start = time.perf_counter()
            assert get(path)["items"] == []
            elsewhere_times.append(time.perf_counter() - start)
        conn.close()
    finally:
        server.terminate()
        server.wait(30)

    # The same work as bare SQL, same run, for the ratio.
    engine = make_engine(db)
    with engine.connect() as sql:
        start = time.perf_counter()
        for uscc, _, _ in keys:
            sql.execute(text("SELECT * FROM catalog_enterprises WHERE uscc = :u"), {"u": uscc}).first()
        sql_lookup = (time.perf_counter() - start) / len(keys)
        start = time.perf_counter()
        for prefix, _ in prefixes:
            sql.execute(text("SELECT uscc, name FROM catalog_enterprises WHERE name >= :p AND name < :q "
                             "ORDER BY name LIMIT 21"), {"p": prefix, "q": prefix[:-1] + chr(ord(prefix[-1]) + 1)}).all()
        sql_search = (time.perf_counter() - start) / len(prefixes)
    engine.dispose()
    lookup, search = _percentiles(lookup_times), _percentiles(search_times)
    return {"rest_lookup_by_uscc": lookup, "rest_name_prefix_search": search,
            "rest_search_in_a_region_without_matches": _percentiles(elsewhere_times),
            "search_results_per_query": round(found / len(prefixes), 1),
            "sql_only_lookup_ms": round(sql_lookup * 1000, 3), "sql_only_search_ms": round(sql_search * 1000, 3),
            "rest_over_sql_lookup_p50_ratio": round(lookup["p50_ms"] / (sql_lookup * 1000), 1),
            "rest_over_sql_search_p50_ratio": round(search["p50_ms"] / (sql_search * 1000), 1)}


def _connect(port: int) -> http.client.HTTPConnection:
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return conn
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
