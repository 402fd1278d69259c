"""`huitong status`: the routes table and the hub's health from the command line, with real
route deliveries (one route delivered, one dead-lettered) embedded and on RabbitMQ + PostgreSQL."""
from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner

from bus.cli import main
from tests.test_log_search import make_log

RUN = uuid.uuid4().hex[:6]
FERRY_ROUTE, CITY_ROUTE = f"status-ferry-{RUN}", f"status-city-{RUN}"


@pytest.fixture
def logged(backend, tmp_path):
    yield from make_log(backend, tmp_path, FERRY_ROUTE, CITY_ROUTE)


def test_status_shows_each_route_and_the_health(logged, tmp_path, backend):
    config = str(tmp_path / "huitong.yaml")
    runner = CliRunner()
    result = runner.invoke(main, ["status", "--config", config, "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    routes = {r["id"]: r for r in answer["routes"]}
    assert (routes[FERRY_ROUTE]["delivered"], routes[FERRY_ROUTE]["dead"]) == (3, 0)  # no route takes CaseProcess
    assert (routes[CITY_ROUTE]["delivered"], routes[CITY_ROUTE]["dead"]) == (0, 1)
    assert "ConnectionError" in routes[CITY_ROUTE]["last_error"] or "unavailable" in routes[CITY_ROUTE]["last_error"]
    assert routes[FERRY_ROUTE]["delivered_per_s"] > 0  # delivered within the last minute
    if backend.name == "services":  # the route queues are RabbitMQ's to count (deleted: unknown)
        assert routes[FERRY_ROUTE]["queue_depth"] is None
    health = answer["health"]
    assert health["ok"] and health["checks"]["database"]["ok"] and health["checks"]["broker"]["ok"]
    assert health["checks"]["relay"]["unpublished"] == 0
    assert isinstance(health["checks"]["sealing"]["unsealed_events"], int)
    table = runner.invoke(main, ["status", "--config", config])
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].startswith("ROUTE") and any(l.startswith(CITY_ROUTE) and " 1 " in l for l in lines)
    assert any(l.startswith("database  ok") for l in lines)


def test_routes_pause_and_resume_from_the_terminal(logged, tmp_path, backend):
    config = str(tmp_path / "huitong.yaml")
    runner = CliRunner()
    no_reason = runner.invoke(main, ["routes", "pause", FERRY_ROUTE, "--config", config])
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    unknown = runner.invoke(main, ["routes", "pause", "no-such-route", "--reason", "x", "--config", config])
    assert unknown.exit_code != 0 and "no-such-route" in unknown.output
    paused = runner.invoke(main, ["routes", "pause", FERRY_ROUTE, "--reason", "ferry disk full",
                                  "--operator", "wang.ops", "--config", config])
    assert paused.exit_code == 0 and "paused" in paused.stdout
    again = runner.invoke(main, ["routes", "pause", FERRY_ROUTE, "--reason", "x", "--config", config])
    assert "paused already" in again.stdout
    table = runner.invoke(main, ["status", "--config", config]).stdout.splitlines()
    assert any(line.startswith(FERRY_ROUTE) and " paused " in line for line in table)
    routes = {r["id"]: r for r in json.loads(runner.invoke(main, ["status", "--config", config, "--json"]).stdout)["routes"]}
    assert routes[FERRY_ROUTE]["paused"] is True and routes[CITY_ROUTE]["paused"] is False
    resumed = runner.invoke(main, ["routes", "resume", FERRY_ROUTE, "--config", config])
    assert resumed.exit_code == 0 and "resumed" in resumed.stdout
    assert "was not paused" in runner.invoke(main, ["routes", "resume", FERRY_ROUTE, "--config", config]).stdout
