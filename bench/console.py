"""Console responsiveness under load: page latencies (p50/p99) of the console's pages and JSON,
fetched by a signed-in browser-like client in another process, first with the hub idle and
then while it accepts, logs, publishes and routes 1,000 msg/s (issue 8: page p99 <= 300 ms).

Production layout, as `huitong serve` runs it: this process is the hub (acceptance with group
commit, relay, the HTTP app with the console, its pulse) on PostgreSQL + RabbitMQ, with one
`huitong worker` process delivering the route to a filedrop outbox."""
from __future__ import annotations

import contextlib
import http.client
import json
import re
import tempfile
import time
import urllib.parse
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import yaml

from bench.publish import _dropped_after, _env, _fresh_pg
from bench.route import ROUTE, SYSTEM, _delivered_count, _paced, _purge_route_queue, _settings, _wait_consuming, _worker

USER, PASSWORD = "bench-operator", "bench-password-sample"
CASE = "320382-SCJG-20261121-0777"


def bench_console(seconds: float = 30.0, rate: float = 1000.0, server: str = "serve") -> dict:
    """server: "serve" (waitress, as `huitong serve`) or "uvicorn" (bus.asgi, the console through
    its a2wsgi thread pool)."""
    from console.users import UserStore
    from tests.helpers.messages import case_results, sample, with_message_id
    from tests.helpers.soap import RunningHub

    amqp, database = _env("AMQP_URL"), _env("DATABASE_URL")
    embedded = not (amqp and database)  # then SQLite + the in-memory broker, routes in the hub process
    tmp = Path(tempfile.mkdtemp(prefix="huitong-console-bench-"))
    (tmp / "routes").mkdir()
    (tmp / "routes" / "route.yaml").write_text(f"id: {ROUTE}\nfrom: {{types: [CaseResult, CaseAccepted]}}\n"
                                               "to: [ferry]\n")
    db = f"sqlite:///{tmp / 'hub.db'}" if embedded else _fresh_pg(database)
    serving = "waitress 8 threads" if server == "serve" else "uvicorn, the console in 8 a2wsgi threads"
    result = {"backend": "SQLite + in-memory broker (embedded)" if embedded else "PostgreSQL + RabbitMQ",
              "offered_msg_s": rate, "seconds": seconds,
              "layout": (f"one hub process (accept + relay + route worker thread + HTTP console, {serving})"
                         if embedded else f"hub process (accept + relay + HTTP console, {serving}) + one "
                         "`huitong worker`") + "; pages fetched one after another by a client process"}
    with contextlib.nullcontext() if embedded else _dropped_after(database, db):
        path = tmp / "huitong.yaml"
        path.write_text(yaml.safe_dump({
            "database_url": db, "broker_url": "memory://" if embedded else amqp, "state_dir": str(tmp / "var"),
            "routes": {"dir": str(tmp / "routes"), "run": embedded},
            "destinations": {"ferry": {"type": "filedrop", "dir": str(tmp / "outbox"), "fsync": False}},
            "audit": {"seal": True}, "logging": {"level": "WARNING", "format": "json"}}))
        running = RunningHub(_settings(path), asgi=server == "uvicorn")
        hub = running.hub
        if not embedded:
            _purge_route_queue(hub)
        try:
            UserStore(hub.engine).add(USER, "operator", PASSWORD, by="bench")
            base = f"http://127.0.0.1:{running.port}"
            # Something to show: a case of its own, and a first load of messages.
            ids = []
            for name in ("CaseAccepted-enterprise.xml", "CaseProcess-review.xml", "CaseResult-approved.xml"):
                mid, data = with_message_id(sample(name))
                data = data.replace(b"320382-SCJG-20261120-0001", CASE.encode())
                assert hub.accept(data, system=SYSTEM).ok
                ids.append(mid)
            with contextlib.nullcontext() if embedded else _worker(path):
                if not embedded:
                    _wait_consuming(hub)
                hub.acceptance.accept_many([b for _, b in case_results(5000)], system=SYSTEM)
                time.sleep(3)
                pages = ["/", "/routes", "/systems", "/dead-letters", "/audit", "/api/v1/console/routes",
                         "/api/v1/console/overview", f"/messages?case_number={CASE}", f"/cases/{CASE}",
                         f"/messages/{ids[0]}", "/metrics"]
                with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                    result["idle"] = pool.submit(_browse, base, pages, min(10.0, seconds)).result()
                    before, started = _delivered_count(hub), time.monotonic()
                    browsing = pool.submit(_browse, base, pages, seconds)
                    submitted = _paced(hub, rate, seconds)
                    loaded = browsing.result()
                    took = time.monotonic() - started
                    delivered = _delivered_count(hub) - before
                result["accepted_msg_s"] = round(len(submitted) / took)
                result["delivered_msg_s_during"] = round(delivered / took)
                result["under_load"] = loaded
                result["p99_ratio_loaded_vs_idle"] = round(loaded["all"]["p99_ms"] / max(0.1, result["idle"]["all"]["p99_ms"]), 2)
        finally:
            running.close()  # the server, the hub, and on RabbitMQ the route queues
    return result


def _browse(base: str, pages: list[str], seconds: float) -> dict:
    """Sign in, then fetch the pages round after round for `seconds`; latencies per page."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)

    def fetch(method, path, body=None, headers=None):
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response, response.read()

    response, page = fetch("GET", "/login")
    login_cookie = response.getheader("Set-Cookie").split(";")[0]
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
    form = urllib.parse.urlencode({"csrf_token": token, "username": USER, "password": PASSWORD, "next": "/"})
    response, _ = fetch("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded",
                                                 "Cookie": login_cookie})
    session = [c for c in response.getheader("Set-Cookie").split(", ") if c.startswith("huitong_session=")][0]
    cookie = {"Cookie": session.split(";")[0]}
    times: dict[str, list[float]] = {p: [] for p in pages}
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for page in pages:
            start = time.perf_counter()
            response, _ = fetch("GET", page, headers=cookie)
            times[page].append(time.perf_counter() - start)
            statuses[response.status] = statuses.get(response.status, 0) + 1
    every = sorted(t for values in times.values() for t in values)
    return {"requests": len(every), "statuses": statuses, "all": _summary(every),
            "pages": {page: _summary(sorted(values)) for page, values in times.items()}}


def _summary(values: list[float]) -> dict:
    if not values:
        return {}
    pick = lambda p: round(values[min(len(values) - 1, int(len(values) * p / 100))] * 1000, 1)  # noqa: E731
    return {"n": len(values), "p50_ms": pick(50), "p99_ms": pick(99), "max_ms": round(values[-1] * 1000, 1)}


if __name__ == "__main__":
    print(json.dumps(bench_console(), indent=2))
