"""The security suite: one running hub (SOAP, the registries' and the log's REST, the console, a
canonical-envelope inbox) under attack. The hostile-XML corpus (schemas/samples/invalid/*XML_*)
goes through every inbound path; authentication and authorisation are tried around on SOAP,
REST and the console; file drops try to climb out of their inbox; requests come oversized and
slow. Each attack is refused with its stable code and logged, and the hub serves the next
honest sender."""
from __future__ import annotations

import base64
import json
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from bus.config import load_settings
from bus.models import Event
from console.users import UserStore
from tests.conftest import SAMPLES
from tests.helpers.messages import sample, with_message_id
from tests.helpers.routing import wait_for
from tests.helpers.soap import RunningHub, envelope, fault_of, post, push_message, receipt_of, security_header

SYSTEM, READER, OUTSIDER = "320382.scjgj.djxt", "320382.zwb.portal", "320382.gaj.rkxt"
SECRET = "sample-security-secret-not-real"
HOSTILE = sorted(p for p in (SAMPLES / "invalid").glob("*.xml") if ".XML_" in p.name)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security")
    inbox = tmp / "inbox"
    config = tmp / "huitong.yaml"
    config.write_text(yaml.safe_dump({
        "state_dir": str(tmp / "var"), "database_url": f"sqlite:///{tmp / 'hub.db'}",
        "relay": {"poll_interval": 0.05}, "adapters": {"poll_interval": 0.1},
        "soap": {"rate_limit_per_system": 100_000},
        "inboxes": {"envelopes": {"system": SYSTEM, "dir": str(inbox), "settle_seconds": 0.2}},
        "systems": [{"id": SYSTEM, "name": "登记系统 (sample)", "secret": SECRET, "grants": ["CaseResult"]},
                    {"id": READER, "name": "门户 (sample)", "secret": SECRET, "grants": ["READ_ENTERPRISE", "READ_LOG"]},
                    {"id": OUTSIDER, "name": "人口 (sample)", "secret": SECRET, "grants": ["PersonRecord"]}],
    }, allow_unicode=True), encoding="utf-8")
    running = RunningHub(load_settings(config, environ={}))
    UserStore(running.hub.engine).add("sec-operator", "operator", "sample-operator-pass", by="test")
    running.base = f"http://127.0.0.1:{running.port}"
    running.inbox = inbox
    try:
        yield running
    finally:
        running.close()


def _still_serving(hub) -> None:
    """An honest push is accepted right after every attack."""
    status, doc = post(hub.url, envelope(push_message(with_message_id(sample("CaseResult-approved.xml"))[1]),
                                         security_header(SYSTEM, SECRET)))
    assert status == 200 and receipt_of(doc)["status"] == "ACCEPTED"


def _rejected(hub) -> list[str]:
    with hub.hub.engine.connect() as conn:
        return list(conn.scalars(select(Event.code).where(Event.kind == "REJECTED").order_by(Event.seq)))


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _basic(user: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode(),
            "X-Forwarded-Proto": "https"}


# -- the hostile-XML corpus through every inbound path ----------------------------------------------
@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p.name)
def test_hostile_xml_is_refused_on_every_path(hub, path):
    code = path.name.split(".")[-2]
    data = path.read_bytes()
    before = len(_rejected(hub))
    # 1. inside a SOAP push (text in a SOAP body: bytes wrong for their encoding cannot get in
    # there, the raw request below is their path): a REJECTED receipt naming the code
    if code != "XML_MALFORMED":
        status, doc = post(hub.url, envelope(push_message(data), security_header(SYSTEM, SECRET)))
        answer = receipt_of(doc)
        assert (status, answer["status"], answer["errors"][0]["code"]) == (200, "REJECTED", code)
    # 2. as the SOAP request itself: a Client fault with the code, never a parse
    status, doc = post(hub.url, data)
    fault = fault_of(doc)
    assert status == 500 and fault is not None and fault[0].startswith("soap:Client.")
    if "DOCTYPE" in code or "DEEP" in code:
        assert fault[1] == code
    # 3. dropped into an inbox: the file goes to error/ with a receipt naming the code
    name = f"{path.stem}.xml"
    hub.inbox.mkdir(parents=True, exist_ok=True)
    (hub.inbox / name).write_bytes(data)
    receipt = wait_for(lambda: _receipt(hub.inbox, name), timeout=30)
    assert receipt["outcome"] in ("refused", "rejected records")
    codes = [receipt["refused"]["code"]] if receipt["refused"] else [r["code"] for r in receipt["rejections"]]
    assert code in codes or (code == "XML_MALFORMED" and codes), receipt
    # logged, every time
    assert len(_rejected(hub)) >= before + (2 if code == "XML_MALFORMED" else 3)
    _still_serving(hub)


def _receipt(inbox: Path, name: str):
    for path in inbox.glob(f"error/*/{name}.receipt.json"):
        return json.loads(path.read_text(encoding="utf-8"))
    return None


def test_a_file_drop_cannot_climb_out_of_its_inbox(hub, tmp_path):
    outside = tmp_path / "secret.xml"
    outside.write_bytes(sample("CaseResult-approved.xml"))
    hub.inbox.mkdir(parents=True, exist_ok=True)
    (hub.inbox / "link.xml").symlink_to(outside)
    (hub.inbox / "dir-link").symlink_to(tmp_path, target_is_directory=True)
    receipt = wait_for(lambda: _receipt(hub.inbox, "link.xml"), timeout=30)
    assert receipt["refused"]["code"] == "FILE_REFUSED" and "symbolic link" in receipt["refused"]["text"]
    assert outside.read_bytes() == sample("CaseResult-approved.xml")  # neither read nor moved
    before = sorted(p.name for p in tmp_path.iterdir())
    time.sleep(1)
    moved = list(hub.inbox.glob("error/*/dir-link"))  # refused and moved as itself, or left alone
    assert (hub.inbox / "dir-link").is_symlink() or (moved and moved[0].is_symlink())
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # never walked into
    _still_serving(hub)


# -- authentication and authorisation ------------------------------------------------------------------
def test_soap_refuses_who_is_not_allowed(hub):
    _, data = with_message_id(sample("CaseResult-approved.xml"))
    person = with_message_id(sample("PersonRecord-male.xml"))[1]
    cases = [
        (envelope(push_message(data)), "WSSE_MISSING"),
        (envelope(push_message(data), security_header(SYSTEM, "guessed-secret-000")), "WSSE_BAD_PASSWORD"),
        (envelope(push_message(data), security_header("320382.scjgj.nosuch", SECRET)), "SYSTEM_UNKNOWN"),
        (envelope(push_message(data), security_header(SYSTEM, SECRET, text_password=True)),
         "WSSE_PASSWORD_TEXT_NOT_ALLOWED"),
    ]
    for request, code in cases:
        status, doc = post(hub.url, request)
        assert status == 500 and fault_of(doc)[1] == code
    # a system signing another's message, or a type it was never granted: rejected receipts
    status, doc = post(hub.url, envelope(push_message(data), security_header(OUTSIDER, SECRET)))
    assert receipt_of(doc)["errors"][0]["code"] in ("SOURCE_MISMATCH", "NOT_AUTHORIZED")
    status, doc = post(hub.url, envelope(push_message(person.replace(b"320300.gaj.rkxt", SYSTEM.encode())),
                                         security_header(SYSTEM, SECRET)))
    assert receipt_of(doc)["errors"][0]["code"] == "NOT_AUTHORIZED"
    _still_serving(hub)


def test_rest_refuses_who_is_not_allowed(hub):
    _still_serving(hub)  # a message of SYSTEM in the log
    for api in ("/api/v1/catalog/enterprises/91320382MA1Y2K3P9C", "/api/v1/log/messages?case_number=x"):
        assert _get(hub.base + api)[0] == 401  # no credentials
        wrong = _get(hub.base + api, _basic(READER, "guessed-secret-000"))
        assert wrong[0] == 401, wrong
        assert _get(hub.base + api, {**_basic(READER, SECRET), "X-Forwarded-Proto": "http"})[0] == 403  # plain HTTP
        assert _get(hub.base + api, _basic(READER, SECRET))[0] in (200, 404)  # the reader is let in
    # a system without the registry's read grant is refused; without READ_LOG it sees only its own
    status, body, _ = _get(hub.base + "/api/v1/catalog/enterprises/91320382MA1Y2K3P9C", _basic(OUTSIDER, SECRET))
    assert status == 403 and json.loads(body)["error"]["code"] == "READ_NOT_GRANTED"
    status, body, _ = _get(hub.base + f"/api/v1/log/messages?system={SYSTEM}", _basic(OUTSIDER, SECRET))
    assert status == 200 and json.loads(body)["items"] == []
    status, body, _ = _get(hub.base + f"/api/v1/log/messages?system={SYSTEM}", _basic(READER, SECRET))
    assert status == 200 and json.loads(body)["items"]  # what the outsider was not shown exists
    _still_serving(hub)


def test_the_console_refuses_who_is_not_signed_in_or_not_allowed(hub):
    forged = {"Cookie": "huitong_session=" + base64.urlsafe_b64encode(b"x" * 32).decode().rstrip("=")}
    no_redirects = urllib.request.build_opener(_NoRedirect)
    for path in ("/", "/routes", "/users", "/dead-letters"):  # a made-up session is no session
        with pytest.raises(urllib.error.HTTPError) as answer:
            no_redirects.open(urllib.request.Request(hub.base + path, headers=forged), timeout=10)
        assert answer.value.code == 303 and answer.value.headers["Location"].startswith("/login?next=")
    for path in ("/api/v1/console/routes", "/metrics"):
        status, body, _ = _get(hub.base + path, forged)
        assert status == 401 and json.loads(body)["error"]["code"] == "UNAUTHENTICATED"
    # no path out of the static folder
    for attempt in ("/static/..%2f..%2fbus%2fconfig.py", "/static/%2e%2e/app.py", "/static/.hidden"):
        assert _get(hub.base + attempt)[0] == 404
    # an operator's session cannot add users, and a forged CSRF token changes nothing
    opener, csrf = _console_session(hub, "sec-operator", "sample-operator-pass")
    request = urllib.request.Request(hub.base + "/api/v1/console/users", method="POST",
                                     data=json.dumps({"username": "mallory", "role": "admin",
                                                      "password": "sample-password-9"}).encode(),
                                     headers={"Content-Type": "application/json", "X-CSRF-Token": csrf})
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(request, timeout=10)
    assert refused.value.code == 403
    request.headers["X-csrf-token"] = "forged"
    with pytest.raises(urllib.error.HTTPError) as forged_csrf:
        opener.open(request, timeout=10)
    assert forged_csrf.value.code == 403 and b"CSRF_FAILED" in forged_csrf.value.read()
    assert UserStore(hub.hub.engine).get("mallory") is None
    _still_serving(hub)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _console_session(hub, user: str, password: str):
    import http.cookiejar
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(hub.base + "/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"csrf_token": token, "username": user, "password": password,
                                   "next": "/"}).encode()
    overview = opener.open(urllib.request.Request(hub.base + "/login", data=form), timeout=10).read().decode()
    return opener, re.search(r'data-csrf="([^"]+)"', overview).group(1)


# -- oversized and slow -------------------------------------------------------------------------------
def test_oversized_requests_are_refused_and_slow_ones_hold_nobody_up(hub):
    big = envelope("<ex:PushMessage><ex:envelope>" + "x" * (7 * 1024 * 1024) + "</ex:envelope></ex:PushMessage>")
    status, doc = post(hub.url, big)
    assert status == 500 and fault_of(doc)[1] == "REQUEST_TOO_LARGE"
    # a console form many megabytes long is refused before it is read
    request = urllib.request.Request(hub.base + "/login", data=b"a=" + b"x" * (3 * 1024 * 1024), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as too_big:
        urllib.request.urlopen(request, timeout=10)
    assert too_big.value.code == 413
    # forty clients trickle their request headers a byte at a time; honest pushes still go through
    slow = []
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", hub.port), timeout=5)
        s.sendall(b"POST /ws/exchange HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    try:
        started = time.monotonic()
        for _ in range(5):
            _still_serving(hub)
        assert time.monotonic() - started < 10
    finally:
        for s in slow:
            s.close()
    assert "REQUEST_TOO_LARGE" in _rejected(hub)


def test_hostile_xml_in_a_front_database_column_is_only_text(tmp_path):
    """Front-database values are never parsed as XML: a DOCTYPE with entities in a column comes
    out escaped in the canonical message (or the row is refused by validation), never expanded."""
    from bus.hub import Hub
    from bus.models import Message, MessageBody
    from tests.helpers.frontdb import GAJ_SYSTEM, by_sign, case_row, casebaseinfo, fill, front_engine
    front_url = f"sqlite:///{tmp_path / 'front.db'}"
    front = front_engine(front_url)
    laughs = (SAMPLES / "invalid" / "billion-laughs.XML_DOCTYPE_FORBIDDEN.xml").read_text(encoding="utf-8")[:180]
    fill(front, casebaseinfo, [case_row(1, applyername="<!DOCTYPE a [<!ENTITY b \"bbbbbbbb\">]>&b;&b;"),
                               case_row(2, itemname=laughs), case_row(3)])
    config = tmp_path / "huitong.yaml"
    config.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "var"), "database_url": f"sqlite:///{tmp_path / 'hub.db'}",
        "relay": {"poll_interval": 0.05},
        "systems": [{"id": GAJ_SYSTEM, "name": "户籍 (sample)", "secret": SECRET, "grants": ["CaseAccepted"]}],
        "frontdb": {"gaj": {"system": GAJ_SYSTEM, "url": front_url, "poll_interval": 0.1,
                            "tables": {"t_bm_casebaseinfo": {"mapping": "provincial-casebaseinfo",
                                                             "key": ["rowguid"]}}}}}, allow_unicode=True),
        encoding="utf-8")
    hub = Hub(load_settings(config, environ={})).start()
    try:
        wait_for(lambda: by_sign(front, casebaseinfo).get(0, 0) == 0, 30)
        assert by_sign(front, casebaseinfo).get(1, 0) >= 1  # the honest row went through
        with hub.engine.connect() as conn:
            bodies = conn.scalars(select(MessageBody.content).join(Message, Message.digest == MessageBody.digest)).all()
        for body in bodies:
            assert b"bbbbbbbbbbbbbbbb" not in body  # no entity was ever expanded
            assert b"<!DOCTYPE" not in body and b"<!ENTITY" not in body  # only as escaped text, if at all
        with front.connect() as conn:
            refused = conn.execute(select(casebaseinfo.c.caseno, casebaseinfo.c.syncerrormsg)
                                   .where(casebaseinfo.c.syncsign == 2)).all()
        assert all(r.syncerrormsg for r in refused)  # a refused row says why
    finally:
        hub.stop()
        front.dispose()
