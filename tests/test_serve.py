"""`huitong serve` as a process: real HTTP health and readiness, clean stop on SIGTERM."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_answers_health_and_readiness_then_stops_cleanly(backend, tmp_path):
    port = _free_port()
    env = {**os.environ, **backend.env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "bus.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/healthz")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and proc.poll() is None, "hub did not come up"
                time.sleep(0.2)
        assert status == 200 and body == {"status": "alive"}
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200 and body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
        try:  # what no mount claims is the console's: a page it does not have
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing-here", timeout=5)
            raise AssertionError("an unknown path was answered")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        # the console's pages want a session first: redirected to the sign-in page
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/routes", timeout=5) as response:
            assert response.url.endswith("/login?next=%2Froutes") and b'name="password"' in response.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Huitong stopped." in err
