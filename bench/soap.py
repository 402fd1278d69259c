"""SOAP push throughput: 16 concurrent clients (wrk) pushing CaseResult with WS-Security
PasswordDigest to /ws/exchange, against a bare spyne echo of the same operation, each served by
both production servers in turn, in the same run: gunicorn with 2 workers x 8 threads (the WSGI
app) and uvicorn with 2 workers (bus.asgi; the echo through the same a2wsgi bridge the hub uses
for its WSGI parts). Every request carries its own nonce, so the requests are made beforehand
and wrk's Lua script hands them out."""
from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "320382.scjgj.djxt"
SECRET = "sample-secret-not-real"

LUA = r"""
local bodies, i, n = {}, 0, 0
local path = "%(path)s"
function setup(thread)
  thread:set("tid", n)  -- each wrk thread takes every k-th request
  n = n + 1
end
function init(args)
  local f = assert(io.open("%(file)s", "rb"))
  local data = f:read("*a")
  f:close()
  local k = 0
  for body in string.gmatch(data, "([^\30]+)\30") do
    if k %% %(threads)d == tid then table.insert(bodies, body) end
    k = k + 1
  end
end
function request()
  i = i + 1
  if i > #bodies then i = 1 end
  return wrk.format("POST", path, {["Content-Type"] = "text/xml; charset=utf-8",
                                    ["SOAPAction"] = '"PushCaseResult"'}, bodies[i])
end
"""


def _case_result_request(message_id: str) -> bytes:
    from tests.helpers.soap import envelope, security_header
    body = ("<ex:PushCaseResult>"
            f"<ex:messageId>{message_id}</ex:messageId><ex:caseResult>"
            "<ex:CaseNumber>320382-SCJG-20261120-0001</ex:CaseNumber><ex:Result>APPROVED</ex:Result>"
            "<ex:AcceptedAt>2026-11-20T09:30:00+08:00</ex:AcceptedAt>"
            "<ex:FinishedAt>2026-11-21T16:20:00+08:00</ex:FinishedAt><ex:Handler>李四</ex:Handler>"
            "<ex:Certificate><ex:Name>食品经营许可证</ex:Name><ex:Number>JY13203820012345</ex:Number></ex:Certificate>"
            "</ex:caseResult></ex:PushCaseResult>")
    return envelope(body, security_header(SYSTEM, SECRET))


def _requests(tmp: Path, name: str, count: int, path: str) -> Path:
    import uuid
    data = tmp / f"{name}.bin"
    with data.open("wb") as out:
        for _ in range(count):
            out.write(_case_result_request(str(uuid.uuid4())) + b"\x1e")
    lua = tmp / f"{name}.lua"
    lua.write_text(LUA % {"path": path, "file": str(data), "threads": 2}, encoding="utf-8")
    return lua


# How each server runs each app: (program, arguments); {port}, {workers}, {threads} filled in.
SERVERS = {
    "gunicorn": {"hub": ["gunicorn", "bus.wsgi:application()"], "echo": ["gunicorn", "bench.soap_echo:application()"]},
    "uvicorn": {"hub": ["uvicorn", "bus.asgi:application"], "echo": ["uvicorn", "bench.soap_echo:asgi_application"]},
}


def _serve(server: str, app: str, port: int, env: dict, workers: int, threads: int, cwd: str):
    program, target = SERVERS[server][app]
    executable = str(Path(sys.executable).with_name(program))
    if program == "gunicorn":
        command = [executable, "--workers", str(workers), "--threads", str(threads), "--graceful-timeout", "10",
                   "--bind", f"127.0.0.1:{port}", "--backlog", "256", target]
    else:
        command = [executable, "--factory", target, "--workers", str(workers), "--timeout-graceful-shutdown", "10",
                   "--host", "127.0.0.1",
                   "--port", str(port), "--backlog", "256", "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=cwd, env={**env, "HUITONG_HTTP__THREADS": str(threads)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            break
        except urllib.error.HTTPError:
            break  # it answers
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{program} {target} did not come up")
            time.sleep(0.3)
    return proc


def _stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def _wrk(url: str, lua: Path, seconds: int, connections: int, threads: int) -> dict:
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "-s", str(lua), url], capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {"requests_s": round(rate), "requests": total, "non_2xx": int(bad.group(1)) if bad else 0,
            "p99_ms": round(float(p99.group(1)) * scale, 1), "raw": out}


def bench_soap(seconds: int = 20, rounds: int = 3, connections: int = 16, workers: int = 2, threads: int = 8) -> dict:
    """Each round runs, on each server, the hub and then the echo; a ratio is taken within a
    round (minutes apart at most) and the figures reported are the rounds' medians, because
    this VM's speed drifts by 15 % between runs and a single pair can land either side of a goal."""
    if shutil.which("wrk") is None:
        raise SystemExit("the SOAP benchmark needs wrk (Debian: apt-get install wrk)")
    from sqlalchemy import create_engine, func, select

    from bench.publish import _drop_pg, _env, _fresh_pg
    from bus.config import load_settings
    from bus.hub import Hub
    from bus.models import Message
    from tests.helpers.soap import free_port

    amqp, database = _env("AMQP_URL"), _env("DATABASE_URL")
    tmp = tempfile.mkdtemp(prefix="huitong-soap-bench-")
    db_url = _fresh_pg(database) if database else f"sqlite:///{tmp}/hub.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUITONG_DATABASE_URL": db_url,
           "HUITONG_BROKER_URL": amqp or "memory://", "HUITONG_STATE_DIR": f"{tmp}/state",
           "HUITONG_LOGGING__LEVEL": "WARNING", "HUITONG_SOAP__RATE_LIMIT_PER_SYSTEM": "100000"}
    settings = load_settings(environ=env)
    engine = create_engine(settings.effective_database_url.replace("postgresql://", "postgresql+psycopg://"))

    def logged() -> int:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Message))

    runs: dict[tuple[str, str], list[dict]] = {(server, app): [] for server in SERVERS for app in ("hub", "echo")}
    try:
        with Hub(settings).start(relay=False) as hub:
            hub.systems.add(SYSTEM, name="bench (sample)", secret=SECRET, grants=["CaseResult"])
        # Alternating hub and echo, so a change in the VM's speed touches both alike.
        for _ in range(rounds):
            for server in SERVERS:
                for app in ("hub", "echo"):
                    # Distinct requests (a nonce is good once): enough for the run at up to 4,000/s,
                    # and separate ones for the warm-up, since every wrk run starts at the first.
                    path = "/ws/exchange" if app == "hub" else "/"
                    warm = _requests(Path(tmp), f"{server}-{app}-warm", 12_000, path)
                    script = _requests(Path(tmp), f"{server}-{app}", 4000 * seconds, path)
                    port = free_port()
                    proc = _serve(server, app, port, env, workers, threads, tmp)
                    try:
                        _wrk(f"http://127.0.0.1:{port}{path}", warm, 3, connections, 2)
                        before = logged() if app == "hub" else 0
                        run = _wrk(f"http://127.0.0.1:{port}{path}", script, seconds, connections, 2)
                        time.sleep(1)
                        if app == "hub":
                            run["accepted_s"] = round((logged() - before) / seconds)
                    finally:
                        _stop(proc)
                    del run["raw"]
                    runs[(server, app)].append(run)
    finally:
        engine.dispose()
        if database:
            _drop_pg(database, db_url)
        shutil.rmtree(tmp, ignore_errors=True)

    per_server = {server: _server_summary(runs[(server, "hub")], runs[(server, "echo")]) for server in SERVERS}
    best_hub = max(SERVERS, key=lambda server: per_server[server]["hub_accepted_s"])
    best_echo = max(SERVERS, key=lambda server: per_server[server]["echo_requests_s"])
    hub, echo = per_server[best_hub], per_server[best_echo]
    # The headline compares the hub's best server with the echo's best, whichever each is.
    against_best = [h["accepted_s"] / e["requests_s"] for h, e in zip(runs[(best_hub, "hub")], runs[(best_echo, "echo")])]
    return {"backend": f"{workers} workers ({', '.join(SERVERS)}) + {'PostgreSQL' if database else 'SQLite'} + "
                       f"{'RabbitMQ' if amqp else 'in-memory'}",
            "clients": connections, "seconds": seconds, "rounds": rounds,
            "hub_server": best_hub, "hub_accepted_s": hub["hub_accepted_s"], "hub_non_2xx": hub["hub_non_2xx"],
            "hub_p99_ms": hub["hub_p99_ms"], "echo_server": best_echo, "echo_requests_s": echo["echo_requests_s"],
            "ratio_accepted_vs_echo": round(statistics.median(against_best), 2),
            "ratio_accepted_vs_echo_rounds": [round(r, 2) for r in against_best],
            "servers": per_server}


def _server_summary(hubs: list[dict], echoes: list[dict]) -> dict:
    """One server's rounds: medians, the worst p99 and non-2xx count, and each round's ratio."""
    ratios = [h["accepted_s"] / e["requests_s"] for h, e in zip(hubs, echoes)]
    return {"hub_accepted_s": round(statistics.median(h["accepted_s"] for h in hubs)),
            "hub_requests_s": round(statistics.median(h["requests_s"] for h in hubs)),
            "hub_non_2xx": sum(h["non_2xx"] for h in hubs),
            "hub_p99_ms": max(h["p99_ms"] for h in hubs),
            "echo_requests_s": round(statistics.median(e["requests_s"] for e in echoes)),
            "echo_p99_ms": max(e["p99_ms"] for e in echoes),
            "ratio_same_server": round(statistics.median(ratios), 2),
            "ratio_same_server_rounds": [round(r, 2) for r in ratios],
            "hub_accepted_s_rounds": [h["accepted_s"] for h in hubs],
            "echo_requests_s_rounds": [e["requests_s"] for e in echoes]}
