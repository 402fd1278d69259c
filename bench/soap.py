"""SOAP push throughput: 16 concurrent clients (wrk) pushing CaseResult with WS-Security
PasswordDigest to /ws/exchange under gunicorn, against a bare spyne echo of the same operation
served the same way, in the same run. Every request carries its own nonce, so the requests are
made beforehand and wrk's Lua script hands them out."""
from __future__ import annotations

import os
import re
import shutil
import signal
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


def _gunicorn(target: str, port: int, env: dict, workers: int, threads: int, cwd: str):
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen([str(gunicorn), "--workers", str(workers), "--threads", str(threads),
                             "--bind", f"127.0.0.1:{port}", "--backlog", "256", target],
                            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            break
        except urllib.error.HTTPError:
            break  # it answers
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn {target} did not come up")
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


def bench_soap(seconds: int = 20, connections: int = 16, workers: int = 2, threads: int = 8) -> dict:
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
    try:
        settings = load_settings(environ=env)
        with Hub(settings).start(relay=False) as hub:
            hub.systems.add(SYSTEM, name="bench (sample)", secret=SECRET, grants=["CaseResult"])

        # Distinct requests (a nonce is good once): enough for the run at up to 4,000/s, and
        # separate ones for each warm-up and run, since every wrk run starts at the first.
        scripts = {}
        for name, count in (("hub-warm", 12_000), ("hub", 4000 * seconds), ("echo-warm", 12_000),
                            ("echo", 4000 * seconds)):
            scripts[name] = _requests(Path(tmp), name, count,
                                      "/ws/exchange" if name.startswith("hub") else "/")

        port = free_port()
        hub_proc = _gunicorn("bus.wsgi:application()", port, env, workers, threads, tmp)
        try:
            _wrk(f"http://127.0.0.1:{port}/ws/exchange", scripts["hub-warm"], 3, connections, 2)
            engine = create_engine(settings.effective_database_url.replace("postgresql://", "postgresql+psycopg://"))
            with engine.connect() as conn:
                before = conn.scalar(select(func.count()).select_from(Message))
            hub_run = _wrk(f"http://127.0.0.1:{port}/ws/exchange", scripts["hub"], seconds, connections, 2)
            time.sleep(1)
            with engine.connect() as conn:
                accepted = conn.scalar(select(func.count()).select_from(Message)) - before
            engine.dispose()
        finally:
            _stop(hub_proc)

        port = free_port()
        echo_proc = _gunicorn("bench.soap_echo:application()", port, env, workers, threads, tmp)
        try:
            _wrk(f"http://127.0.0.1:{port}/", scripts["echo-warm"], 3, connections, 2)
            echo_run = _wrk(f"http://127.0.0.1:{port}/", scripts["echo"], seconds, connections, 2)
        finally:
            _stop(echo_proc)
    finally:
        if database:
            _drop_pg(database, db_url)
        shutil.rmtree(tmp, ignore_errors=True)

    accepted_rate = accepted / seconds
    return {"backend": f"gunicorn {workers}x{threads} + {'PostgreSQL' if database else 'SQLite'} + "
                       f"{'RabbitMQ' if amqp else 'in-memory'}",
            "clients": connections, "seconds": seconds,
            "hub_requests_s": hub_run["requests_s"], "hub_accepted_s": round(accepted_rate),
            "hub_non_2xx": hub_run["non_2xx"], "hub_p99_ms": hub_run["p99_ms"],
            "echo_requests_s": echo_run["requests_s"], "echo_p99_ms": echo_run["p99_ms"],
            "ratio_accepted_vs_echo": round(accepted_rate / echo_run["requests_s"], 2)}
