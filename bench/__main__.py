"""python -m bench [all|validation|publish|route|soap|ingest|catalog|audit|sealcost|log|replay|console|soak|supervision] [--messages N] [--seconds S] [--enterprises N] [--rounds N]

Runs on RabbitMQ + PostgreSQL when HUITONG_BENCH_AMQP_URL / HUITONG_BENCH_DATABASE_URL (or the
HUITONG_TEST_* ones) are set, else embedded. Prints a table, writes bench/results/<date>-<host>.json."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import time
from pathlib import Path

from bus.logs import configure_logging

ROOT = Path(__file__).resolve().parents[1]


from bench.audit import bench_audit, bench_seal_cost
from bench.catalog import bench_catalog
from bench.console import bench_console
from bench.logsearch import bench_log_search
from bench.replaying import bench_replay
from bench.ingest import bench_ingest
from bench.publish import bench_publish
from bench.route import bench_route
from bench.soak import bench_soak
from bench.soap import bench_soap
from bench.supervision import bench_supervision
from bench.validation import bench_validation


def vm_speed() -> float:
    """Seconds this Python takes to count to ten million: the VM's speed moves by 2x within
    a day here, so each part's figures carry it (before and after the run) to be compared by."""
    start = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return round(time.perf_counter() - start, 2)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("part", nargs="?", default="all", choices=["all", "validation", "publish", "soap", "route", "ingest", "catalog", "audit", "sealcost", "log", "replay", "console", "soak", "supervision"])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--enterprises", type=int, default=1_000_000, help="catalog: enterprises to load")
    parser.add_argument("--events", type=int, default=5_000_000, help="log: events in the searched log")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak: how long")
    parser.add_argument("--rate", type=float, default=300.0, help="soak: SOAP pushes per second offered")
    parser.add_argument("--server", choices=["serve", "uvicorn"], default="serve",
                        help="soak, console: what serves the hub (huitong serve's waitress, or uvicorn with bus.asgi)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="soap: hub/echo pairs per server; the figures are the rounds' medians")
    parser.add_argument("--open-cases", type=int, default=1_000_000, help="supervision: open cases recoloured")
    args = parser.parse_args()
    configure_logging("WARNING", "json")
    speed_before = vm_speed()
    results = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"host": socket.gethostname(), "cpus": os.cpu_count(),
                           "python": platform.python_version()}}
    if args.part in ("all", "validation"):
        results["validation"] = bench_validation(args.seconds)
    if args.part in ("all", "publish"):
        results["publish"] = bench_publish(args.messages)
    if args.part in ("all", "route"):
        results["route"] = bench_route(min(args.messages, 10000), args.seconds)
    if args.part in ("all", "soap"):
        results["soap"] = bench_soap(int(args.seconds * 4), args.rounds)
    if args.part in ("all", "ingest"):
        results["ingest"] = bench_ingest(min(args.messages, 50000))
    if args.part in ("all", "catalog"):
        results["catalog"] = bench_catalog(args.enterprises)
    if args.part in ("all", "audit"):
        results["audit"] = bench_audit(args.messages if args.part == "audit" else 300_000)
    if args.part in ("all", "sealcost"):
        results["sealcost"] = bench_seal_cost(min(args.messages, 20_000))
    if args.part in ("all", "log"):  # `all` searches a 1,000,000-event log (filling 5,000,000 takes 6 min)
        results["log"] = bench_log_search(args.events if args.part == "log" else min(args.events, 1_000_000))
    if args.part in ("all", "replay"):
        results["replay"] = bench_replay(min(args.messages, 20_000))
    if args.part in ("all", "soak"):  # `all` takes a short one, for the hub's memory under load
        results["soak"] = bench_soak(args.minutes if args.part == "soak" else 1.5, args.rate, args.server)
    if args.part in ("all", "supervision"):  # `all`: 200,000 open cases, on PostgreSQL only (the 1,000,000
        alone = args.part == "supervision"   # take 4 minutes a database: `bench supervision`)
        results["supervision" if alone else "supervision_in_all"] = bench_supervision(
            60_000, args.open_cases if alone else 200_000, sqlite_too=alone)
    if args.part in ("all", "console"):
        results["console"] = bench_console(max(args.seconds, 30.0) if args.part == "console" else 30.0,
                                           server=args.server)
    speed = [speed_before, vm_speed()]
    for value in results.values():
        if isinstance(value, dict) and value is not results["machine"]:
            value["vm_loop_10m_s"] = speed
    for part in ("validation", "publish", "route", "soap", "ingest", "catalog", "audit", "sealcost", "log", "replay",
                 "console", "soak", "supervision", "supervision_in_all"):
        if part in results:
            print(f"\n{part}")
            for key, value in results[part].items():
                print(f"  {key:<32} {value}")
    out = ROOT / "bench" / "results" / f"{dt.date.today()}-{socket.gethostname()}.json"
    if out.exists():  # a run of one part keeps the day's figures of the others, and a skip
        kept = json.loads(out.read_text())  # (no PostgreSQL in this shell) never hides a measurement
        results = {**kept, **{part: value for part, value in results.items()
                              if not (isinstance(value, dict) and "skipped" in value and part in kept)}}
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
