"""Fixtures. Every pipeline test runs twice: embedded (SQLite + in-memory broker) and on
real RabbitMQ + PostgreSQL when HUITONG_TEST_AMQP_URL / HUITONG_TEST_DATABASE_URL are set.
With HUITONG_TEST_REQUIRE_SERVICES=1 (CI) a missing service fails the test instead of skipping."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bus.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "schemas" / "samples"
AMQP_URL = os.environ.get("HUITONG_TEST_AMQP_URL")
DATABASE_URL = os.environ.get("HUITONG_TEST_DATABASE_URL")


def _vhost_of_this_worker(url: str | None) -> str | None:
    """Under pytest-xdist each worker process gets a RabbitMQ virtual host of its own: route
    queues bind by message type on the one exchange, so tests running side by side would
    otherwise receive each other's messages (harmless, the router drops what is not in its
    log, but slow)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    import subprocess
    from urllib.parse import urlsplit
    vhost = f"huitong-test-{worker}"
    try:
        subprocess.run(["rabbitmqctl", "add_vhost", vhost], capture_output=True, timeout=60)
    except FileNotFoundError:  # a broker on another machine: the workers share its default vhost
        return url
    done = subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, urlsplit(url).username or "guest",
                           ".*", ".*", ".*"], capture_output=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"cannot give the test worker its RabbitMQ vhost {vhost}: {done.stderr.decode()[-300:]}")
    return urlsplit(url)._replace(path="/" + vhost).geturl()


AMQP_URL = _vhost_of_this_worker(AMQP_URL)
REQUIRE_SERVICES = os.environ.get("HUITONG_TEST_REQUIRE_SERVICES") == "1"


@dataclass
class Backend:
    name: str
    database_url: str
    broker_url: str

    def settings(self, **overrides):
        env = {"HUITONG_DATABASE_URL": self.database_url, "HUITONG_BROKER_URL": self.broker_url,
               "HUITONG_RELAY__POLL_INTERVAL": "0.05"}
        env.update({f"HUITONG_{k.upper()}": str(v) for k, v in overrides.items()})
        return load_settings(environ=env)

    def env(self) -> dict[str, str]:
        return {"HUITONG_DATABASE_URL": self.database_url, "HUITONG_BROKER_URL": self.broker_url}


def require_services() -> None:
    if AMQP_URL and DATABASE_URL:
        return
    if REQUIRE_SERVICES:
        pytest.fail("HUITONG_TEST_REQUIRE_SERVICES=1 but HUITONG_TEST_AMQP_URL / HUITONG_TEST_DATABASE_URL are not set")
    pytest.skip("RabbitMQ and PostgreSQL are not configured (set HUITONG_TEST_AMQP_URL and HUITONG_TEST_DATABASE_URL)")


def _admin_engine():
    url = make_url(DATABASE_URL)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, isolation_level="AUTOCOMMIT"), url


def create_database() -> str:
    """A fresh PostgreSQL database on the test server; returns its URL."""
    admin, url = _admin_engine()
    name = f"huitong_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def drop_database(database_url: str) -> None:
    admin, _ = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(database_url).database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database per test, dropped afterwards."""
    require_services()
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=["embedded", pytest.param("services", marks=pytest.mark.services)])
def backend(request, tmp_path):
    if request.param == "embedded":
        yield Backend("embedded", f"sqlite:///{tmp_path / 'hub.db'}", "memory://")
    else:
        db_url = request.getfixturevalue("postgres_url")
        yield Backend("services", db_url, AMQP_URL)


@pytest.fixture
def front_url(backend, tmp_path):
    """The department's front database: a SQLite file beside the embedded hub, a database of
    its own on the PostgreSQL server beside the services hub."""
    if backend.name == "embedded":
        yield f"sqlite:///{tmp_path / 'front.db'}"
        return
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def valid_samples() -> list[Path]:
    return sorted((SAMPLES / "valid").glob("*.xml"))


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs():
    """JSON logs at WARNING during tests; tests that check logging configure their own."""
    from bus.logs import configure_logging
    configure_logging("WARNING", "json")
