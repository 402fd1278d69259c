"""Hubs with routes for tests: a configuration file written per test, messages built from the
samples, and waiting on the exchange log."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import yaml
from sqlalchemy import select

from bus.config import load_settings
from bus.models import Event
from tests.conftest import ROOT
from tests.helpers.messages import sample, with_message_id

DEMO_ROUTES = ROOT / "routes" / "demo"
ZJJ_SYSTEM = "320382.zjj.spxt"
SCJG_SYSTEM = "320382.scjgj.djxt"
SECRET = "sample-secret-not-real"
HUB_SECRET = "sample-hub-secret-not-real"


def write_config(tmp_path: Path, backend, *, routes_dir, destinations: dict, name="huitong.yaml", **extra) -> Path:
    config = {"state_dir": str(tmp_path / "var"), "database_url": backend.database_url,
              "broker_url": backend.broker_url, "routes": {"dir": str(routes_dir), "batch_wait": 0.02,
                                                           "retry_poll_interval": 0.1},
              "relay": {"poll_interval": 0.05}, "destinations": destinations,
              "soap": {"rate_limit_per_system": 5000},
              "systems": [{"id": ZJJ_SYSTEM, "name": "审批系统 (sample)", "secret": SECRET, "grants": ["CaseAccepted"]},
                          {"id": SCJG_SYSTEM, "name": "登记系统 (sample)", "secret": SECRET,
                           "grants": ["CaseAccepted", "CaseResult"]}]}
    for key, value in extra.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def settings_from(path: Path):
    return load_settings(path, environ={})


def construction_case(*, project_code: bool = True, message_id: str | None = None) -> tuple[str, bytes]:
    """A CaseAccepted of the housing-and-construction approval system, with or without a project code."""
    data = sample("CaseAccepted-enterprise.xml")
    data = data.replace(b"<hx:Source>320382.scjgj.djxt</hx:Source>", f"<hx:Source>{ZJJ_SYSTEM}</hx:Source>".encode())
    data = data.replace(b"<m:Code>scjgj</m:Code>", b"<m:Code>zjj</m:Code>")
    if not project_code:
        start = data.index(b"<m:ProjectCode>")
        data = data[:start] + data[data.index(b"</m:ProjectCode>") + len(b"</m:ProjectCode>"):]
    return with_message_id(data, message_id or str(uuid.uuid4()))


def events(engine, kind: str | None = None, route: str | None = None) -> list[Event]:
    query = select(Event).order_by(Event.seq)
    if kind:
        query = query.where(Event.kind == kind)
    if route:
        query = query.where(Event.route == route)
    with engine.connect() as conn:
        return list(conn.execute(query))


def detail(event) -> dict:
    return json.loads(event.detail) if event.detail else {}


def wait_for(condition, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def route_file(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(text)
    path = directory / f"{data['id']}.yaml"
    path.write_text(text, encoding="utf-8")
    return path
