"""The operator console over HTTP (werkzeug's test client on the hub's real WSGI app, embedded
and on RabbitMQ + PostgreSQL): nothing without a session, sign-in and its limits, CSRF, what
each role may do, pause and resume, dead letters retried and discarded with who and why in the
exchange log, masking, and the Prometheus metrics."""
from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update
from werkzeug.test import Client as WerkzeugClient

from bus.cli import main
from bus.http import create_app
from bus.hub import Hub
from bus.models import Event
from console.models import ConsoleSession, ConsoleUser
from console.users import UserStore
from tests.helpers.messages import sample, with_message_id
from tests.helpers.routing import SCJG_SYSTEM, settings_from, wait_for, write_config
from tests.helpers.soap import delete_route_queues

RUN = uuid.uuid4().hex[:6]
PASSWORDS = {"op-wang": "sample-operator-pw", "au-li": "sample-auditor-pw", "ad-zhao": "sample-admin-pw"}
ROLES = {"op-wang": "operator", "au-li": "auditor", "ad-zhao": "admin"}
CITIZEN = "320382199207040242"
PAGES = ["/", "/routes", "/systems", "/dead-letters", "/dead-letters/1", "/messages", "/messages?case_number=x",
         f"/messages/{uuid.uuid4()}", "/cases/320382-SCJG-20261120-0001", "/audit", "/users"]


class Client(WerkzeugClient):
    """A browser on this machine (the console takes plain-HTTP sign-ins from loopback only)."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("environ_base", {"REMOTE_ADDR": "127.0.0.1"})
        return super().open(*args, **kwargs)


def _hub(backend, tmp_path, flaky: str, ferry: str, **extra) -> Hub:
    routes = tmp_path / "routes"
    routes.mkdir(exist_ok=True)
    (routes / "flaky.yaml").write_text(f"id: {flaky}\nfrom: {{types: [CaseAccepted, CaseResult]}}\nto: [province]\n"
                                       "retry: {attempts: 1}\n")
    (routes / "ferry.yaml").write_text(f"id: {ferry}\nfrom: {{types: [CaseAccepted, CaseResult]}}\nto: [ferry]\n")
    config = write_config(tmp_path, backend, routes_dir=routes, destinations={
        # every message fails its first attempt (then dead-lettered: one attempt) and is taken after that
        "province": {"type": "demo_flaky", "fail_one_in": 1, "failures": 1},
        "ferry": {"type": "filedrop", "dir": str(tmp_path / "ferry"), "fsync": False}}, **extra)
    hub = Hub(settings_from(config)).start()
    store = UserStore(hub.engine)
    for name, role in ROLES.items():
        store.add(name, role, PASSWORDS[name], by="test")
    return hub


@pytest.fixture
def console(backend, tmp_path):
    flaky, ferry = f"console-flaky-{RUN}-{backend.name}", f"console-ferry-{RUN}-{backend.name}"
    hub = _hub(backend, tmp_path, flaky, ferry)
    try:
        yield hub, create_app(hub), flaky, ferry
    finally:
        hub.stop()
        delete_route_queues(hub)


def _login(app, username: str, password: str | None = None) -> tuple[Client, str]:
    """A browser signed in as username: (client, the session's CSRF token)."""
    client = Client(app)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    answer = client.post("/login", data={"csrf_token": token, "username": username,
                                         "password": password or PASSWORDS[username], "next": "/routes"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/routes", answer.get_data(as_text=True)
    overview = client.get("/").get_data(as_text=True)
    return client, re.search(r'data-csrf="([^"]+)"', overview).group(1)


def _post(client: Client, path: str, csrf: str | None, body: dict):
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    return client.post(path, json=body, headers=headers)


def _events(engine, kind: str) -> list:
    with engine.connect() as conn:
        return list(conn.execute(select(Event).where(Event.kind == kind).order_by(Event.seq)))


def _accept(hub, name: str, n: int = 1) -> list[str]:
    ids = []
    for _ in range(n):
        message_id, data = with_message_id(sample(name))
        assert hub.accept(data, system=SCJG_SYSTEM).ok
        ids.append(message_id)
    return ids


def test_nothing_but_health_without_a_session(tmp_path):
    from tests.conftest import Backend
    hub = _hub(Backend("embedded", f"sqlite:///{tmp_path / 'hub.db'}", "memory://"), tmp_path,
               f"console-a-{RUN}", f"console-b-{RUN}")
    try:
        client = Client(create_app(hub))
        for page in PAGES:
            answer = client.get(page)
            assert answer.status_code == 303, page
            assert answer.headers["Location"].startswith("/login?next=%2F"), page
            api = client.get("/api/v1/console" + ("/overview" if page == "/" else page))
            assert api.status_code == 401 and api.json["error"]["code"] == "UNAUTHENTICATED", page
        for path in ("/routes/x/pause", "/dead-letters/act", "/audit/verify", "/users"):
            assert client.post(path, data={"reason": "r"}).status_code == 303
            assert client.post("/api/v1/console" + path, json={"reason": "r"}).status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer guessed"}).status_code == 401
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/api/v1/console/openapi.json").json["openapi"].startswith("3.")
        # the sign-in form's own CSRF: a post without the cookie's twin is refused
        refused = client.post("/login", data={"csrf_token": "forged", "username": "op-wang",
                                              "password": PASSWORDS["op-wang"]})
        assert refused.status_code == 403 and "CSRF_FAILED" in refused.get_data(as_text=True)
        # an open redirect is not offered: next must be a path of this site
        client2 = Client(create_app(hub))
        token = re.search(r'name="csrf_token" value="([^"]+)"',
                          client2.get("/login").get_data(as_text=True)).group(1)
        answer = client2.post("/login", data={"csrf_token": token, "username": "op-wang",
                                              "password": PASSWORDS["op-wang"], "next": "//evil.example/"})
        assert answer.headers.get("Location") == "/", answer.get_data(as_text=True)
        # from another host over plain HTTP the password is not taken (it would cross the wire bare)
        remote = WerkzeugClient(create_app(hub))
        page = remote.get("/login", environ_base={"REMOTE_ADDR": "10.1.2.3"})
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
        bare = remote.post("/login", environ_base={"REMOTE_ADDR": "10.1.2.3"},
                           data={"csrf_token": token, "username": "op-wang", "password": PASSWORDS["op-wang"]})
        assert bare.status_code == 403 and "https only" in bare.get_data(as_text=True)
        behind_tls = remote.post("/login", environ_base={"REMOTE_ADDR": "10.1.2.3"},
                                 headers={"X-Forwarded-Proto": "https"},
                                 data={"csrf_token": token, "username": "op-wang", "password": PASSWORDS["op-wang"]})
        assert behind_tls.status_code == 303 and "Secure" in behind_tls.headers["Set-Cookie"]
    finally:
        hub.stop()


def test_sign_in_failures_lockout_expiry_and_sign_out(console):
    hub, app, flaky, ferry = console
    client = Client(app)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    wrong = client.post("/login", data={"csrf_token": token, "username": "op-wang", "password": "not-it"})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.get_data(as_text=True)
    assert "set-cookie" not in {k.lower() for k, v in wrong.headers if v.startswith("huitong_session")}
    failed = _events(hub.engine, "LOGIN_FAILED")
    assert [e.source for e in failed] == ["console:op-wang"]
    # five failures lock the user for a while, even with the right password then
    for _ in range(4):
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
        client.post("/login", data={"csrf_token": token, "username": "op-wang", "password": "still-not-it"})
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    locked = client.post("/login", data={"csrf_token": token, "username": "op-wang",
                                         "password": PASSWORDS["op-wang"]})
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.get_data(as_text=True)

    # another user signs in; the password is stored as an Argon2id hash only
    admin, csrf = _login(app, "ad-zhao")
    with hub.engine.connect() as conn:
        hashed = conn.scalar(select(ConsoleUser.password_hash).where(ConsoleUser.username == "ad-zhao"))
    assert hashed.startswith("$argon2id$") and PASSWORDS["ad-zhao"] not in hashed
    assert admin.get("/routes").status_code == 200
    assert _events(hub.engine, "LOGIN")[-1].source == "console:ad-zhao"
    # idle for longer than console.session_idle_minutes: the session is over
    with hub.engine.begin() as conn:
        conn.execute(update(ConsoleSession).values(
            last_seen_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=31)))
    assert admin.get("/routes").status_code == 303
    assert admin.get("/api/v1/console/routes").status_code == 401

    auditor, csrf = _login(app, "au-li")
    assert auditor.get("/audit").status_code == 200
    assert auditor.post("/logout", data={"csrf_token": "forged"}).status_code == 403  # a forged sign-out
    assert auditor.get("/audit").status_code == 200
    assert auditor.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert auditor.get("/audit").status_code == 303
    # a disabled user's open session ends at once
    operator_hub_user, _ = _login(app, "ad-zhao")
    UserStore(hub.engine).set_enabled("ad-zhao", False, by="test")
    assert operator_hub_user.get("/").status_code == 303


def test_operator_retries_discards_pauses_and_every_act_is_logged(console):
    hub, app, flaky, ferry = console
    ids = _accept(hub, "CaseResult-approved.xml", 3)
    wait_for(lambda: len([e for e in _events(hub.engine, "DEAD_LETTERED") if e.route == flaky]) == 3, timeout=60)
    wait_for(lambda: len([e for e in _events(hub.engine, "DELIVERED") if e.route == ferry]) == 3, timeout=60)

    operator, csrf = _login(app, "op-wang")
    letters = operator.get(f"/api/v1/console/dead-letters?route={flaky}").json["letters"]
    assert sorted(d["message_id"] for d in letters) == sorted(ids)
    assert letters[0]["code"] == "DESTINATION_TIMEOUT" and "demo timeout" in letters[0]["error"]
    first, second, third = (d["id"] for d in letters)
    page = operator.get(f"/dead-letters/{first}").get_data(as_text=True)
    assert "Retry" in page and "CaseResult" in page and "&lt;hx:Envelope" in page  # the original, escaped

    # a forged or missing CSRF token changes nothing
    forged = _post(operator, "/api/v1/console/dead-letters/act", "forged", {"action": "retry", "ids": [first]})
    assert forged.status_code == 403 and forged.json["error"]["code"] == "CSRF_FAILED"
    form = operator.post("/dead-letters/act", data={"action": "retry", "ids": [str(first)]})
    assert form.status_code == 403
    assert len(operator.get(f"/api/v1/console/dead-letters?route={flaky}").json["letters"]) == 3

    # the auditor sees them but may not act: refused by the API, not offered on the page
    auditor, auditor_csrf = _login(app, "au-li")
    assert "Retry" not in auditor.get(f"/dead-letters/{first}").get_data(as_text=True)
    refused = _post(auditor, "/api/v1/console/dead-letters/act", auditor_csrf, {"action": "retry", "ids": [first]})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "FORBIDDEN"
    assert _post(auditor, f"/api/v1/console/routes/{ferry}/pause", auditor_csrf,
                 {"reason": "x"}).status_code == 403

    # retry one: delivered (the destination takes it on its second attempt)
    retried = _post(operator, "/api/v1/console/dead-letters/act", csrf, {"action": "retry", "ids": [first]})
    assert retried.status_code == 200 and retried.json == {"done": 1, "not_dead": []}
    wait_for(lambda: any(e.route == flaky and e.message_id == letters[0]["message_id"]
                         for e in _events(hub.engine, "DELIVERED")), timeout=30)
    assert operator.get(f"/api/v1/console/dead-letters/{first}").json["letter"]["status"] == "DELIVERED"
    retried_event = [e for e in _events(hub.engine, "RETRIED")][-1]
    assert json.loads(retried_event.detail)["by"] == "op-wang"

    # discard needs a reason; with one, the reason and the user are in the log
    no_reason = _post(operator, "/api/v1/console/dead-letters/act", csrf, {"action": "discard", "ids": [second]})
    assert no_reason.status_code == 400 and "reason" in no_reason.json["error"]["text"]
    done = operator.post("/dead-letters/act", data={"csrf_token": csrf, "action": "discard", "ids": [str(second)],
                                                    "reason": "the province registered it by hand",
                                                    "next": "/dead-letters"})
    assert done.status_code == 303 and done.headers["Location"] == "/dead-letters"
    discarded = json.loads(_events(hub.engine, "DISCARDED")[-1].detail)
    assert discarded["by"] == "op-wang" and discarded["reason"] == "the province registered it by hand"
    remaining = operator.get(f"/api/v1/console/dead-letters?route={flaky}").json["letters"]
    assert [d["id"] for d in remaining] == [third]

    # pause the ferry route: its messages wait (the other route goes on); resume: delivered
    assert _post(operator, f"/api/v1/console/routes/{ferry}/pause", csrf, {}).status_code == 400  # no reason
    paused = _post(operator, f"/api/v1/console/routes/{ferry}/pause", csrf, {"reason": "ferry disk full"})
    assert paused.status_code == 200 and paused.json["changed"] is True
    row = next(r for r in operator.get("/api/v1/console/routes").json["routes"] if r["id"] == ferry)
    assert (row["state"], row["paused_by"], row["paused_reason"]) == ("paused", "op-wang", "ferry disk full")
    time.sleep(2.5)  # the workers see the pause within a second
    waiting = _accept(hub, "CaseAccepted-enterprise.xml", 2)
    wait_for(lambda: len([e for e in _events(hub.engine, "DEAD_LETTERED") if e.message_id in waiting]) == 2,
             timeout=60)  # the flaky route took them: the hub goes on
    time.sleep(1.5)
    assert not [e for e in _events(hub.engine, "DELIVERED") if e.route == ferry and e.message_id in waiting]
    assert _post(operator, f"/api/v1/console/routes/{ferry}/resume", csrf, {"reason": "disk cleaned"}).json["changed"]
    wait_for(lambda: len([e for e in _events(hub.engine, "DELIVERED")
                          if e.route == ferry and e.message_id in waiting]) == 2, timeout=30)
    assert [json.loads(e.detail)["reason"] for e in _events(hub.engine, "ROUTE_PAUSED")] == ["ferry disk full"]
    assert json.loads(_events(hub.engine, "ROUTE_RESUMED")[-1].detail)["by"] == "op-wang"


def test_pages_mask_personal_data_and_metrics_count(console, monkeypatch):
    hub, app, flaky, ferry = console
    message_id, data = with_message_id(sample("CaseAccepted-person-window.xml"))
    assert hub.accept(data.replace(b"320382.gaj.rkxt", SCJG_SYSTEM.encode()), system=SCJG_SYSTEM).ok
    _accept(hub, "CaseResult-approved.xml", 2)
    bad = sample("CaseResult-approved.xml").replace(b"<hx:MessageId>", b"<hx:MessageId>x", 1)
    assert not hub.accept(bad, system=SCJG_SYSTEM).ok
    wait_for(lambda: len([e for e in _events(hub.engine, "DELIVERED") if e.route == ferry]) == 3, timeout=60)
    wait_for(lambda: len([e for e in _events(hub.engine, "DEAD_LETTERED") if e.route == flaky]) == 3, timeout=60)

    auditor, _ = _login(app, "au-li")
    pages = [f"/messages?citizen_id={CITIZEN}", f"/messages/{message_id}", "/cases/320382-GA-20261120-0417",
             "/dead-letters", f"/api/v1/console/messages?citizen_id={CITIZEN}", f"/api/v1/console/messages/{message_id}"]
    letter = next(d for d in auditor.get("/api/v1/console/dead-letters").json["letters"] if d["message_id"] == message_id)
    pages.append(f"/dead-letters/{letter['id']}")
    for page in pages:
        text = auditor.get(page).get_data(as_text=True)
        assert CITIZEN not in text and "320311197801301359" not in text, page
    found = auditor.get(f"/messages?citizen_id={CITIZEN}").get_data(as_text=True)
    assert message_id in found and "320382********0242" in found, found[found.index("<main>"):]
    body = auditor.get(f"/dead-letters/{letter['id']}").get_data(as_text=True)
    assert "320382********0242" in body
    # searching is evidence: the read is in the log with who read
    assert any(e.source == "console:au-li" for e in _events(hub.engine, "AUDIT_READ"))
    bad_search = auditor.get("/api/v1/console/messages?uscc=91320382MA1Y2K3P9A")
    assert bad_search.status_code == 400 and "USCC" in bad_search.json["error"]["text"]

    # Prometheus: with the configured bearer token, or a signed-in user (and the token's
    # variable is not taken for a setting: a hub starts with it set)
    monkeypatch.setenv("HUITONG_METRICS_TOKEN", "sample-metrics-token")
    from bus.config import load_settings
    assert load_settings(environ={"HUITONG_METRICS_TOKEN": "x"}).console.metrics_token_env == "HUITONG_METRICS_TOKEN"
    scraper = Client(app)  # (a second app would have a pulse of its own, counting from its start)
    wait_for(lambda: 'outcome="rejected"' in scraper.get(
        "/metrics", headers={"Authorization": "Bearer sample-metrics-token"}).get_data(as_text=True), timeout=15)
    text = scraper.get("/metrics", headers={"Authorization": "Bearer sample-metrics-token"}).get_data(as_text=True)
    assert f'huitong_messages_total{{outcome="accepted",system="{SCJG_SYSTEM}",type="CaseResult"}} 2.0' in text
    assert f'huitong_messages_total{{outcome="accepted",system="{SCJG_SYSTEM}",type="CaseAccepted"}} 1.0' in text
    assert f'huitong_route_deliveries_total{{outcome="delivered",route="{ferry}"}} 3.0' in text
    assert f'huitong_route_deliveries_total{{outcome="dead_lettered",route="{flaky}"}} 3.0' in text
    assert f'huitong_route_seconds_count{{route="{ferry}"}} 3.0' in text
    assert f'huitong_route_seconds_bucket{{le="+Inf",route="{ferry}"}} 3.0' in text
    assert f'huitong_dead_letters{{route="{flaky}"}} 3.0' in text
    assert "huitong_relay_lag_seconds" in text and "huitong_database_up 1.0" in text
    assert auditor.get("/metrics").status_code == 200

    # the pages behind the figures
    overview = auditor.get("/api/v1/console/overview").json
    assert overview["last_hour"]["accepted"] >= 3 and overview["last_hour"]["rejected"] >= 1
    assert overview["dead_letters"] == 3 and overview["health"]["checks"]["database"]["ok"]
    systems = {s["id"]: s for s in auditor.get("/api/v1/console/systems").json["systems"]}
    assert systems[SCJG_SYSTEM]["pushes_today"] >= 4 and systems[SCJG_SYSTEM]["rejected_today"] >= 1
    assert systems[SCJG_SYSTEM]["top_reasons"][0]["code"] == "XSD_INVALID"
    routes = {r["id"]: r for r in auditor.get("/api/v1/console/routes").json["routes"]}
    assert routes[ferry]["delivered"] == 3 and routes[ferry]["p99_ms"] is not None
    assert routes[flaky]["dead"] == 3 and routes[flaky]["state"] == "running"


def test_admin_manages_users_and_systems_others_may_not(console):
    hub, app, flaky, ferry = console
    operator, csrf = _login(app, "op-wang")
    assert operator.get("/users").status_code == 403
    assert _post(operator, "/api/v1/console/users", csrf, {"username": "x-new", "role": "admin",
                                                            "password": "sample-password-1"}).status_code == 403
    assert "Users" not in operator.get("/routes").get_data(as_text=True).split("<main>")[0]
    admin, admin_csrf = _login(app, "ad-zhao")
    short = _post(admin, "/api/v1/console/users", admin_csrf, {"username": "x-new", "role": "auditor",
                                                                "password": "short"})
    assert short.status_code == 400 and "10 characters" in short.json["error"]["text"]
    added = admin.post("/users", data={"csrf_token": admin_csrf, "username": "qian-audit", "role": "auditor",
                                       "password": "sample-password-2", "next": "/users"})
    assert added.status_code == 303
    assert "qian-audit" in admin.get("/users").get_data(as_text=True)
    assert _login(app, "qian-audit", "sample-password-2")[0].get("/audit").status_code == 200
    changed = json.loads(_events(hub.engine, "USER_CHANGED")[-1].detail)
    assert changed == {"action": "add", "user": "qian-audit", "role": "auditor"}
    disable = _post(admin, f"/api/v1/console/systems/{SCJG_SYSTEM}/enabled", admin_csrf,
                    {"enabled": False, "reason": "certificate leaked"})
    assert disable.status_code == 200
    assert hub.systems.get(SCJG_SYSTEM, fresh=True).enabled is False
    record = json.loads(_events(hub.engine, "SYSTEM_CHANGED")[-1].detail)
    assert record == {"by": "ad-zhao", "system": SCJG_SYSTEM, "enabled": False, "reason": "certificate leaked"}
    assert _post(operator, f"/api/v1/console/systems/{SCJG_SYSTEM}/enabled", csrf,
                 {"enabled": True, "reason": "x"}).status_code == 403


def test_users_command(tmp_path):
    config = tmp_path / "huitong.yaml"
    config.write_text(f"state_dir: {tmp_path / 'var'}\n")
    runner = CliRunner()
    added = runner.invoke(main, ["users", "add", "sun-ops", "--role", "operator", "--password-stdin",
                                 "--config", str(config)], input="sample-password-3\n")
    assert added.exit_code == 0, added.output
    short = runner.invoke(main, ["users", "add", "li-ops", "--role", "operator", "--password-stdin",
                                 "--config", str(config)], input="short\n")
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    again = runner.invoke(main, ["users", "add", "sun-ops", "--role", "admin", "--password-stdin",
                                 "--config", str(config)], input="sample-password-4\n")
    assert again.exit_code == 1 and "exists already" in again.output
    bad_name = runner.invoke(main, ["users", "add", "Sun Ops", "--role", "admin", "--password-stdin",
                                    "--config", str(config)], input="sample-password-4\n")
    assert bad_name.exit_code == 1 and "user name" in bad_name.output
    assert runner.invoke(main, ["users", "role", "sun-ops", "--role", "auditor", "--config", str(config)]).exit_code == 0
    assert runner.invoke(main, ["users", "disable", "sun-ops", "--config", str(config)]).exit_code == 0
    listed = runner.invoke(main, ["users", "list", "--json", "--config", str(config)])
    assert [json.loads(line) for line in listed.stdout.splitlines()] == [
        {"username": "sun-ops", "role": "auditor", "enabled": False}]
    assert "sample-password-3" not in added.output + listed.output


def test_auditor_exports_and_replays_a_case_with_a_reason(console, tmp_path):
    from replay.bundle_verify import verify_bundle
    hub, app, flaky, ferry = console
    ids = _accept(hub, "CaseAccepted-enterprise.xml") + _accept(hub, "CaseResult-approved.xml")
    wait_for(lambda: len([e for e in _events(hub.engine, "DELIVERED") if e.route == ferry]) == 2, timeout=60)
    case = "320382-SCJG-20261120-0001"
    operator, csrf = _login(app, "op-wang")
    assert "Export evidence" not in operator.get(f"/cases/{case}").get_data(as_text=True)
    assert _post(operator, f"/api/v1/console/cases/{case}/export", csrf, {}).status_code == 403
    auditor, auditor_csrf = _login(app, "au-li")
    assert "Export evidence" in auditor.get(f"/cases/{case}").get_data(as_text=True)

    def exported():  # once the sealer has sealed the case's events
        answer = auditor.post(f"/cases/{case}/export", data={"csrf_token": auditor_csrf})
        return answer if answer.status_code == 200 else None
    bundle = wait_for(exported, timeout=30, interval=0.5)
    assert bundle.headers["Content-Type"] == "application/zip"
    assert bundle.headers["Content-Disposition"] == f'attachment; filename="evidence-{case}.zip"'
    (tmp_path / "case.zip").write_bytes(bundle.data)
    assert verify_bundle(str(tmp_path / "case.zip")).ok
    assert json.loads(_events(hub.engine, "AUDIT_EXPORT")[-1].detail)["criteria"] == {"case_number": case}
    assert _events(hub.engine, "AUDIT_EXPORT")[-1].source == "console:au-li"

    no_reason = _post(auditor, f"/api/v1/console/cases/{case}/replay", auditor_csrf, {"mode": "dry-run"})
    assert no_reason.status_code == 400 and "reason" in no_reason.json["error"]["text"]
    dry = _post(auditor, f"/api/v1/console/cases/{case}/replay", auditor_csrf,
                {"mode": "dry-run", "reason": "the province asks what was sent"})
    assert dry.status_code == 200 and dry.json["messages"] == 2
    assert {(p["message_id"], p["route"]) for p in dry.json["planned"]} >= {(i, ferry) for i in ids}
    looked = json.loads(_events(hub.engine, "AUDIT_READ")[-1].detail)
    assert (looked["by"], looked["replay"], looked["reason"]) == ("au-li", "dry-run", "the province asks what was sent")
    again = _post(auditor, f"/api/v1/console/cases/{case}/replay", auditor_csrf,
                  {"mode": "deliver", "reason": "the province lost them"})
    assert again.status_code == 200 and again.json["counts"].get("delivered", 0) >= 2
    replayed = [json.loads(e.detail) for e in _events(hub.engine, "REPLAYED")]
    assert len(replayed) == 2 and {(r["by"], r["reason"]) for r in replayed} == {("console:au-li",
                                                                                  "the province lost them")}
    page = auditor.post(f"/cases/{case}/replay", data={"csrf_token": auditor_csrf, "mode": "dry-run",
                                                       "reason": "again, as a page"}).get_data(as_text=True)
    assert "Replay of case" in page and "again, as a page" in page


def test_verify_now_checks_the_chain_and_says_so(console):
    hub, app, flaky, ferry = console
    _accept(hub, "CaseResult-approved.xml", 2)
    wait_for(lambda: len([e for e in _events(hub.engine, "DELIVERED") if e.route == ferry]) == 2, timeout=60)
    auditor, csrf = _login(app, "au-li")
    assert "Not verified since this process started" in auditor.get("/audit").get_data(as_text=True)
    with hub.engine.connect() as conn:
        first = conn.scalar(select(Event.seq).where(Event.kind == "DELIVERED").order_by(Event.seq).limit(1))
    wait_for(lambda: auditor.get("/api/v1/console/audit").json["sealed_through_seq"] >= first, timeout=30)
    started = auditor.post("/audit/verify", data={"csrf_token": csrf, "next": "/audit"})
    assert started.status_code == 303 and started.headers["Location"] == "/audit"
    result = wait_for(lambda: (a := auditor.get("/api/v1/console/audit").json)["verification"] and a, timeout=60)
    verification = result["verification"]
    assert verification["ok"] is True and verification["by"] == "au-li" and verification["findings"] == []
    assert verification["events"] > 0 and verification["seals"] >= 1
    assert "The chain verifies" in auditor.get("/audit").get_data(as_text=True)
    assert json.loads(_events(hub.engine, "AUDIT_VERIFY")[-1].detail)["by"] == "au-li"
    # a chain someone edited does not verify, and the page says where
    with hub.engine.begin() as conn:
        conn.execute(update(Event).where(Event.seq == first).values(code="EDITED"))
    _post(auditor, "/api/v1/console/audit/verify", csrf, {})
    broken = wait_for(lambda: (v := auditor.get("/api/v1/console/audit").json["verification"])["at"]
                      and not auditor.get("/api/v1/console/audit").json["verifying"] and v["ok"] is False and v,
                      timeout=60)
    assert any(f"#{first}" in finding for finding in broken["findings"])


@pytest.mark.services
def test_the_pulse_reads_its_new_events_and_their_messages_not_the_whole_log(postgres_url):
    """Every process that serves the console refreshes its pulse once a second. As a join, the
    refresh was planned as a hash join over the whole messages table, so the hub slowed as its
    log grew; each new event's message must be looked up by its key, and the new events read
    by a range of seq."""
    from sqlalchemy import text

    from console.pulse import _between, new_events
    from tests.conftest import AMQP_URL, Backend
    from tests.helpers.messages import case_results
    with Hub(Backend("services", postgres_url, AMQP_URL).settings()) as hub:
        for _ in range(6):
            receipts = hub.acceptance.accept_many([data for _, data in case_results(500)], system=SCJG_SYSTEM)
            assert {r.status for r in receipts} == {"ACCEPTED"}
        with hub.engine.connect() as conn:
            pages = conn.scalar(text("SELECT pg_relation_size('messages') / 8192"))
            top = conn.scalar(text("SELECT max(seq) FROM events WHERE kind = 'RECEIVED'"))
            event_pages = conn.scalar(text("SELECT pg_relation_size('events') / 8192"))

            def pages_read():
                return conn.execute(text("SELECT pg_stat_get_xact_blocks_fetched('messages'::regclass), "
                                         "pg_stat_get_xact_blocks_fetched('events'::regclass)")).one()
            before = pages_read()
            rows = conn.execute(new_events(_between(top - 10, top - 10 + 50_000, []), 50_000)).all()
            read, events_read = (after - first for after, first in zip(pages_read(), before))
    received = [r for r in rows if r.kind == "RECEIVED"]
    assert received and all(r.type == "CaseResult" and r.received_at.tzinfo for r in received)
    assert pages > 100
    # Two lookups an event, each of which may also meet the row's version before its published mark.
    assert read <= 4 * len(rows), f"{read} page reads of the log's {pages} pages for {len(rows)} new events"
    # The events themselves by a range of seq: `seq > last ... LIMIT` was planned as a scan of the
    # whole table, which PostgreSQL, never having analysed it, took to hold many rows past `last`.
    assert event_pages > 100 and events_read < event_pages / 10, f"{events_read} of {event_pages} event pages read"


def test_the_pulse_reads_past_a_hole_longer_than_its_batch(backend):
    """The pulse reads the next `batch` seqs at a time; a hole at least that long (a large
    batch rolled back) must not stop it for good."""
    from sqlalchemy import delete, func

    from console.pulse import Pulse
    from tests.helpers.messages import case_results
    with Hub(backend.settings(audit__seal="false")).start(relay=False) as hub:
        receipts = hub.acceptance.accept_many([data for _, data in case_results(12)], system=SCJG_SYSTEM)
        assert {r.status for r in receipts} == {"ACCEPTED"}
        with hub.engine.begin() as conn:
            seqs = conn.scalars(select(Event.seq).where(Event.kind == "RECEIVED").order_by(Event.seq)).all()
            conn.execute(delete(Event).where(Event.seq.between(seqs[2], seqs[8])))  # as if rolled back
            received = conn.scalar(select(func.count()).where(Event.kind == "RECEIVED"))
            top = conn.scalar(select(func.max(Event.seq)))
        pulse = Pulse(hub.engine, batch=3)
        pulse.ready.set()  # counting from the start, as a refresh-only reader
        for _ in range(10):
            pulse.refresh()
        assert pulse.high == top
        assert sum(n for (_, _, outcome), n in pulse.messages.items() if outcome == "accepted") == received == 5
