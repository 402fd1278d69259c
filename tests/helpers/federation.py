"""Hubs of three levels for federation tests, each a `huitong serve` process of its own with its
own database and its own broker (an in-memory one per process, or a RabbitMQ virtual host
each), registered with each other as systems."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from sqlalchemy import create_engine

from tests.conftest import ROOT

HUB_SECRET = "sample-hub-secret-not-real"
SECRET = "sample-secret-not-real"
COUNTY, CITY, PROVINCE = "320382.dsjj.hub", "320300.dsjj.hub", "320000.dsjj.hub"
COUNTY_DEPARTMENT, PROVINCE_DEPARTMENT = "320382.scjgj.djxt", "320000.scjgj.spxt"
CASES = ["CaseAccepted", "CaseProcess", "CaseResult"]
NAMESPACES = {"hx": "urn:huitong:envelope:1"}
RETRY = {"attempts": 100, "first_delay": 0.2, "max_delay": 1.0}  # 100 s of outage at least


def vhost_url(amqp_url: str, name: str) -> str:
    """A RabbitMQ virtual host of this name (made if missing) on the test broker."""
    from urllib.parse import urlsplit
    subprocess.run(["rabbitmqctl", "add_vhost", name], capture_output=True, timeout=60)
    done = subprocess.run(["rabbitmqctl", "set_permissions", "-p", name, urlsplit(amqp_url).username or "guest",
                           ".*", ".*", ".*"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return urlsplit(amqp_url)._replace(path="/" + name).geturl()


class HubProcess:
    def __init__(self, name: str, tmp: Path, database_url: str, broker_url: str, *, port: int, systems: list[dict],
                 destinations: dict, routes: list[dict], **extra):
        self.name = name
        self.tmp = tmp / name
        self.tmp.mkdir(parents=True)
        self.database_url = database_url
        self.port = port
        self.url = exchange_url(port)
        routes_dir = self.tmp / "routes"
        routes_dir.mkdir()
        for route in routes:
            (routes_dir / f"{route['id']}.yaml").write_text(yaml.safe_dump(route, allow_unicode=True))
        self.config = self.tmp / "huitong.yaml"
        self.config.write_text(yaml.safe_dump({
            "database_url": database_url, "broker_url": broker_url, "state_dir": str(self.tmp / "var"),
            "http": {"port": self.port}, "relay": {"poll_interval": 0.05},
            "routes": {"dir": str(routes_dir), "retry_poll_interval": 0.1, "batch_wait": 0.02},
            "soap": {"rate_limit_per_system": 100_000, "registry_cache_seconds": 0},
            "audit": {"seal": False}, "logging": {"level": "WARNING", "format": "json"},
            "systems": systems, "destinations": destinations, **extra}, allow_unicode=True), encoding="utf-8")
        self.proc: subprocess.Popen | None = None
        self.engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1)
                                    if database_url.startswith("postgresql://") else database_url)

    def start(self) -> "HubProcess":
        self.proc = subprocess.Popen([sys.executable, "-m", "bus.cli", "serve", "--config", str(self.config)],
                                     cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                     stdout=subprocess.DEVNULL, stderr=open(self.tmp / "hub.log", "ab"))
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                assert self.proc.poll() is None, f"the {self.name} hub died: {self.log_tail()}"
                assert time.monotonic() < deadline, f"the {self.name} hub did not come up"
                time.sleep(0.2)

    def kill(self) -> None:
        """The link to this hub goes down hard: no goodbye to anyone."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.engine.dispose()

    def log_tail(self) -> str:
        path = self.tmp / "hub.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def exchange_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/ws/exchange"


def hub_system(system_id: str, grants: list[str], name: str) -> dict:
    return {"id": system_id, "name": f"{name} (sample)", "secret": HUB_SECRET, "grants": grants}


def hub_destination(url: str, as_system: str) -> dict:
    return {"type": "hub", "url": url, "username": as_system, "secret": HUB_SECRET, "timeout": 3}


def targeted_to(prefix: str) -> str:
    return f"starts-with(/hx:Envelope/hx:Header/hx:Target, '{prefix}')"
