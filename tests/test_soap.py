"""/ws/exchange over real HTTP, against a running hub, with two independent SOAP clients
(zeep and suds-community) that know nothing but the WSDL, and with raw requests."""
from __future__ import annotations

import base64
import re
import time
import datetime as dt
import os
import uuid

import pytest
from sqlalchemy import select

from bus.models import Event, Message
from tests.helpers.capture import Capture
from tests.helpers.messages import sample, with_message_id
from tests.helpers.soap import (SECRET, RunningHub, envelope, fault_of, now_created, parse_xml, password_digest,
                                post, push_message, receipt_of, security_header)

SYSTEM = "320382.scjgj.djxt"
CASE_TYPES = ["CaseAccepted", "CaseProcess", "CaseResult"]
TZ = dt.timezone(dt.timedelta(hours=8))


def at(day, hour, minute=0):
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=TZ)


CASE_ACCEPTED = {
    "CaseNumber": "320382-SCJG-20261120-0007", "RegionCode": "320382",
    "Department": {"Code": "scjgj", "Name": "邳州市市场监督管理局"},
    "ServiceItem": {"Code": "320382-SC-XK-0012", "Version": "3", "Name": "食品经营许可"},
    "CaseType": "PROMISED",
    "Applicant": {"kind": "ENTERPRISE", "Name": "邳州市恒润建材有限公司", "IdType": "USCC",
                  "IdNumber": "91320382MA1Y2K3P9C"},
    "ContactPhone": "13852161234", "Channel": "ONLINE",
    "AppliedAt": at(20, 9, 2), "AcceptedAt": at(20, 9, 30),
    "PromisedWorkingDays": 5, "PromisedDate": dt.date(2026, 11, 27),
}
CASE_PROCESS = {
    "CaseNumber": "320382-SCJG-20261120-0007", "StepNumber": 2, "StepName": "审查", "Action": "REVIEW",
    "Handler": "张三", "StartedAt": at(20, 10), "EndedAt": at(20, 15),
}
CASE_RESULT = {
    "CaseNumber": "320382-SCJG-20261120-0007", "Result": "APPROVED", "AcceptedAt": at(20, 9, 30),
    "FinishedAt": at(21, 9, 30), "Handler": "李四",
    "Certificate": {"Name": "食品经营许可证", "Number": "JY13203820012345"}, "Fee": "0.00",
}
TYPED = {"CaseAccepted": ("PushCaseAccepted", "caseAccepted", CASE_ACCEPTED),
         "CaseProcess": ("PushCaseProcess", "caseProcess", CASE_PROCESS),
         "CaseResult": ("PushCaseResult", "caseResult", CASE_RESULT)}


@pytest.fixture(params=["fast_push", "spyne_push", "asgi"])
def running(request, backend, tmp_path):
    """A hub on a real port; pushes through the fast path, again through spyne, and again
    under uvicorn (bus.asgi: the fast path's checks, answered in the event loop)."""
    settings = backend.settings(state_dir=tmp_path / "state", soap__rate_limit_per_system=1000,
                                soap__fast_push=request.param != "spyne_push")
    hub = RunningHub(settings, asgi=request.param == "asgi")
    hub.hub.systems.add(SYSTEM, name="登记系统 (sample)", secret=SECRET, grants=CASE_TYPES)
    try:
        yield hub
    finally:
        hub.close()


def zeep_client(running, username=SYSTEM, secret=SECRET):
    from zeep import Client
    from zeep.wsse.username import UsernameToken
    return Client(running.url + "?wsdl", wsse=UsernameToken(username, secret, use_digest=True))


def suds_client(running, username=SYSTEM, secret=SECRET):
    """suds-community builds the UsernameToken; the digest is computed here by the formula."""
    from suds.client import Client
    from suds.sax.date import DateTime
    from suds.wsse import Security, UsernameToken

    client = Client(running.url + "?wsdl", cache=None)

    def sign():
        token = UsernameToken(username, secret)
        nonce = os.urandom(16)
        token.setnonce(base64.b64encode(nonce).decode())
        token.setnonceencoding(True)
        token.setcreated(dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
        token.setpassworddigest(password_digest(nonce, str(DateTime(token.created)), secret))
        security = Security()
        security.tokens.append(token)
        client.set_options(wsse=security)
    return client, sign


def _logged(running, message_id):
    with running.hub.engine.connect() as conn:
        return conn.execute(select(Message).where(Message.message_id == message_id)).one_or_none()


def test_zeep_pushes_every_case_message_and_a_whole_envelope(running):
    client = zeep_client(running)
    capture = Capture(running.hub.settings.broker_url, f"*.{SYSTEM}")
    try:
        ids = set()
        for message_type, (operation, argument, payload) in TYPED.items():
            message_id = str(uuid.uuid4())
            receipt = getattr(client.service, operation)(messageId=message_id, **{argument: payload})
            assert receipt.status == "ACCEPTED", receipt
            assert receipt.messageId == message_id and receipt.receiptId and receipt.acceptedAt
            row = _logged(running, message_id)  # ACCEPTED means committed: it is in the log
            assert row.type == message_type and row.receipt_id == receipt.receiptId
            ids.add(message_id)
        message_id, data = with_message_id(sample("CaseResult-approved.xml"))
        receipt = client.service.PushMessage(envelope=data.decode())
        assert receipt.status == "ACCEPTED" and receipt.messageId == message_id
        ids.add(message_id)
        seen = capture.collect(ids)
        assert {mid: seen[mid] for mid in ids} == {mid: 1 for mid in ids}
        # What was pushed typed is the canonical message, with the case fields as sent.
        body = capture.bodies[next(iter(ids - {message_id}))]
        assert b"urn:huitong:case:1" in body and b"320382-SCJG-20261120-0007" in body
    finally:
        capture.close()


def _suds_payload(payload: dict) -> dict:
    """suds writes XML attributes from keys that start with '_'."""
    if "Applicant" in payload:
        applicant = dict(payload["Applicant"])
        applicant["_kind"] = applicant.pop("kind")
        payload = dict(payload, Applicant=applicant)
    return payload


def test_suds_pushes_every_case_message_and_a_whole_envelope(running):
    client, sign = suds_client(running)
    for message_type, (operation, argument, payload) in TYPED.items():
        payload = _suds_payload(payload)
        message_id = str(uuid.uuid4())
        sign()
        receipt = getattr(client.service, operation)(messageId=message_id, **{argument: payload})
        assert receipt.status == "ACCEPTED", receipt
        assert receipt.messageId == message_id
        assert _logged(running, message_id).type == message_type
    message_id, data = with_message_id(sample("CaseProcess-review.xml"))
    sign()
    receipt = client.service.PushMessage(envelope=data.decode())
    assert receipt.status == "ACCEPTED" and receipt.messageId == message_id
    sign()
    assert client.service.QueryReceipt(messageId=message_id).receiptId == receipt.receiptId


def test_the_same_message_id_twice_is_a_duplicate_routed_once(running):
    client = zeep_client(running)
    capture = Capture(running.hub.settings.broker_url, f"CaseResult.{SYSTEM}")
    try:
        message_id = str(uuid.uuid4())
        first = client.service.PushCaseResult(messageId=message_id, caseResult=CASE_RESULT)
        time.sleep(1.1)  # the hub stamps SentAt on a typed push; a retry a second later is the same message
        again = client.service.PushCaseResult(messageId=message_id, caseResult=CASE_RESULT)
        assert (first.status, again.status) == ("ACCEPTED", "DUPLICATE")
        assert again.receiptId == first.receiptId
        assert client.service.QueryReceipt(messageId=message_id).receiptId == first.receiptId
        seen = capture.collect({message_id}, timeout=5)
        assert seen[message_id] == 1
        case = client.service.QueryCase(caseNumber=CASE_RESULT["CaseNumber"])
        assert [m.messageId for m in case.messages.CaseMessage] == [message_id]
    finally:
        capture.close()


def test_a_rejected_push_answers_every_problem_with_its_path(running):
    client = zeep_client(running)
    bad = dict(CASE_RESULT, FinishedAt=at(19, 9), Handler="李四")  # finished before accepted
    message_id = str(uuid.uuid4())
    receipt = client.service.PushCaseResult(messageId=message_id, caseResult=bad)
    assert receipt.status == "REJECTED" and receipt.acceptedAt is None
    errors = [(e.code, e.path) for e in receipt.errors.Error]
    assert ("TIME_ORDER", "/Envelope/Body/CaseResult/FinishedAt") in errors
    assert _logged(running, message_id) is None
    again = client.service.QueryReceipt(messageId=message_id)
    assert again.status == "REJECTED" and again.errors.Error[0].code == "TIME_ORDER"


def test_an_ungranted_type_is_refused_and_logged(running):
    client = zeep_client(running)
    message_id, data = with_message_id(sample("EnterpriseRecord-active.xml"))  # from SYSTEM, not granted
    receipt = client.service.PushMessage(envelope=data.decode())
    assert receipt.status == "REJECTED", receipt
    assert [(e.code, e.path) for e in receipt.errors.Error] == [("NOT_AUTHORIZED", "/Envelope/Header/Type")]
    with running.hub.engine.connect() as conn:
        codes = conn.scalars(select(Event.code).where(Event.kind == "REJECTED", Event.message_id == message_id)).all()
    assert codes == ["NOT_AUTHORIZED"]


def _rejected_codes(running):
    running.hub.log.stop()
    running.hub.log.start()  # the committer has flushed every refusal queued so far
    with running.hub.engine.connect() as conn:
        return conn.scalars(select(Event.code).where(Event.kind == "REJECTED").order_by(Event.seq)).all()


def _valid_push(running):
    message_id, data = with_message_id(sample("CaseResult-approved.xml"))
    status, doc = post(running.url, envelope(push_message(data), security_header(SYSTEM, SECRET)))
    return status, receipt_of(doc)


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                  '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                  '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&lol3;'
                  '</soap:Body></soap:Envelope>').encode()
EXTERNAL_ENTITY = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                   '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&xxe;'
                   '</soap:Body></soap:Envelope>').encode()


def _deep(levels: int) -> bytes:
    return (b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            + b"<a>" * levels + b"</a>" * levels + b"</soap:Body></soap:Envelope>")


def test_every_refusal_has_its_own_code_is_logged_and_the_endpoint_keeps_serving(running):
    running.hub.systems.add("320382.scjgj.oldxt", name="retired (sample)", secret=SECRET, grants=CASE_TYPES)
    running.hub.systems.set_enabled("320382.scjgj.oldxt", False)
    _, data = with_message_id(sample("CaseResult-approved.xml"))
    body = push_message(data)
    replayed = envelope(body, security_header(SYSTEM, SECRET, nonce=b"fixed-nonce-0001"))
    stale = now_created(-600)
    cases = [
        ("wrong password", envelope(body, security_header(SYSTEM, "not-the-secret-at-all")), "WSSE_BAD_PASSWORD"),
        ("replayed nonce (first use)", replayed, None),
        ("replayed nonce", replayed, "WSSE_NONCE_REPLAYED"),
        ("stale Created", envelope(body, security_header(SYSTEM, SECRET, created=stale)), "WSSE_STALE"),
        ("future Created", envelope(body, security_header(SYSTEM, SECRET, created=now_created(900))), "WSSE_STALE"),
        ("unknown system", envelope(body, security_header("320382.scjgj.nosuch", SECRET)), "SYSTEM_UNKNOWN"),
        ("disabled system", envelope(body, security_header("320382.scjgj.oldxt", SECRET)), "SYSTEM_DISABLED"),
        ("no security header", envelope(body), "WSSE_MISSING"),
        ("PasswordText over plain HTTP", envelope(body, security_header(SYSTEM, SECRET, text_password=True)),
         "WSSE_PASSWORD_TEXT_NOT_ALLOWED"),
        ("unknown operation", envelope("<ex:DeleteEverything/>", security_header(SYSTEM, SECRET)), "SOAP_MALFORMED"),
        ("not SOAP", b"<hello/>", "SOAP_MALFORMED"),
        ("not XML", b"this is not xml", "XML_MALFORMED"),
        ("billion laughs", BILLION_LAUGHS, "XML_DOCTYPE_FORBIDDEN"),
        ("external entity", EXTERNAL_ENTITY, "XML_DOCTYPE_FORBIDDEN"),
        ("100k-deep nesting", _deep(100_000), "XML_TOO_DEEP"),
        ("deeper than the cap", _deep(200), "XML_TOO_DEEP"),
        ("oversized body", envelope("<ex:PushMessage><ex:envelope>" + "x" * (7 * 1024 * 1024)
                                    + "</ex:envelope></ex:PushMessage>"), "REQUEST_TOO_LARGE"),
    ]
    expected_logged = []
    for what, request, code in cases:
        status, doc = post(running.url, request)
        fault = fault_of(doc)
        if code is None:
            assert status == 200 and fault is None, what
        else:
            assert status == 500 and fault is not None, what
            assert fault[0] == f"soap:Client.{code}" and fault[1] == code, (what, fault)
            assert "Traceback" not in fault[2]
            expected_logged.append(code)
        status, receipt = _valid_push(running)  # and the endpoint serves the next sender
        assert status == 200 and receipt["status"] == "ACCEPTED", what
    assert _rejected_codes(running) == expected_logged


def test_hostile_xml_inside_a_pushed_envelope_is_a_rejected_receipt(running):
    xinclude = (b'<hx:Envelope xmlns:hx="urn:huitong:envelope:1" xmlns:xi="http://www.w3.org/2001/XInclude">'
                b'<xi:include href="file:///etc/passwd" parse="text"/></hx:Envelope>')
    for canonical, code in ((xinclude, "XML_XINCLUDE_FORBIDDEN"),
                            (b'<!DOCTYPE x [<!ENTITY a "b">]><hx:Envelope xmlns:hx="urn:huitong:envelope:1"/>',
                             "XML_DOCTYPE_FORBIDDEN")):
        status, doc = post(running.url, envelope(push_message(canonical), security_header(SYSTEM, SECRET)))
        receipt = receipt_of(doc)
        assert status == 200 and receipt["status"] == "REJECTED"
        assert receipt["errors"][0]["code"] == code


def test_a_system_over_its_rate_limit_is_told_to_slow_down(backend, tmp_path):
    hub = RunningHub(backend.settings(state_dir=tmp_path / "state", soap__rate_limit_per_system=2))
    try:
        hub.hub.systems.add(SYSTEM, name="sample", secret=SECRET, grants=CASE_TYPES)
        statuses = []
        for _ in range(8):  # burst = 2 s worth = 4 requests
            status, doc = post(hub.url, envelope(push_message(with_message_id(sample("CaseResult-approved.xml"))[1]),
                                                 security_header(SYSTEM, SECRET)))
            statuses.append(fault_of(doc)[1] if fault_of(doc) else "OK")
        assert statuses[:4] == ["OK"] * 4 and "RATE_LIMITED" in statuses[4:]
    finally:
        hub.close()


def test_an_internal_failure_is_a_server_fault_with_a_reference_not_a_stack_trace(running, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("connection string postgresql://admin:hunter2@db/secret")
    monkeypatch.setattr(running.hub.acceptance, "submit", broken)
    status, doc = post(running.url, envelope(push_message(sample("CaseResult-approved.xml")),
                                             security_header(SYSTEM, SECRET)))
    faultcode, _, text = fault_of(doc)
    assert status == 500 and faultcode.endswith("Server.INTERNAL")
    assert "reference" in text and "hunter2" not in text and "Traceback" not in text


def test_the_log_being_down_is_a_retryable_server_fault(running):
    running.hub.log.stop()
    status, doc = post(running.url, envelope(push_message(sample("CaseResult-approved.xml")),
                                             security_header(SYSTEM, SECRET)))
    assert status == 500 and fault_of(doc)[0].endswith("Server.STORE_UNAVAILABLE")
    running.hub.log.start()


def test_an_envelope_declared_gb18030_is_taken_as_the_text_it_is(running):
    client = zeep_client(running)
    message_id, data = with_message_id(sample("CaseAccepted-gb18030.xml"))
    assert data.lstrip().startswith(b"<?xml") and b"GB18030" in data[:80]
    receipt = client.service.PushMessage(envelope=data.decode("gb18030"))
    assert receipt.status == "ACCEPTED", receipt
    assert _logged(running, message_id).type == "CaseAccepted"


def test_the_readme_curl_example_pushes_a_saved_envelope(running, tmp_path):
    """The README's commands, run as written (only the port differs)."""
    import re
    import subprocess


    from tests.conftest import ROOT
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    script = re.search(r"<!-- curl-example -->\n```bash\n(.*?)```", readme, re.S).group(1)
    script = script.replace("http://127.0.0.1:8080/", f"http://127.0.0.1:{running.port}/")
    answers = []
    for _ in range(2):
        out = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        answers.append(receipt_of(parse_xml(out.stdout.encode())))
    assert [a["status"] for a in answers] == ["ACCEPTED", "DUPLICATE"]
    assert answers[0]["receiptId"] == answers[1]["receiptId"]
    assert answers[0]["messageId"] == "5f0c8a8e-3c1e-4d7a-9a51-6f2f7c0d9b21"


def test_both_push_paths_answer_and_log_the_same(backend, tmp_path):
    """The fast path must be indistinguishable from spyne's: same receipt document, same
    canonical message in the log."""
    from lxml import etree

    from bus.models import MessageBody

    def normalise(doc):
        for el in doc.iter():
            if etree.QName(el).localname in ("receiptId", "acceptedAt", "messageId"):
                el.text = "-"
        return etree.tostring(doc, method="c14n")

    outcomes = []
    for fast in (True, False):
        accepted_id, rejected_id = str(uuid.uuid4()), str(uuid.uuid4())
        hub = RunningHub(backend.settings(state_dir=tmp_path / "state", soap__fast_push=fast))
        try:
            if hub.hub.systems.get(SYSTEM) is None:
                hub.hub.systems.add(SYSTEM, name="sample", secret=SECRET, grants=CASE_TYPES)
            client = zeep_client(hub)
            client.service.PushCaseAccepted(messageId=accepted_id, caseAccepted=CASE_ACCEPTED)
            from zeep import Client  # the raw answers: zeep's history plugin keeps them
            from zeep.plugins import HistoryPlugin
            from zeep.wsse.username import UsernameToken
            history = HistoryPlugin()
            raw = Client(hub.url + "?wsdl", wsse=UsernameToken(SYSTEM, SECRET, use_digest=True), plugins=[history])
            raw.service.PushCaseResult(messageId=rejected_id,
                                       caseResult=dict(CASE_RESULT, FinishedAt=at(19, 9)))
            rejected = normalise(history.last_received["envelope"])
            with hub.hub.engine.connect() as conn:
                stored = conn.execute(select(MessageBody.content).join(Message, Message.digest == MessageBody.digest)
                                      .where(Message.message_id == accepted_id)).scalar_one()
            stored = etree.tostring(parse_xml(stored), method="c14n")
            stored = re.sub(rb"<hx:SentAt>[^<]+</hx:SentAt>", b"", stored).replace(accepted_id.encode(), b"-")
            outcomes.append((rejected, stored))
        finally:
            hub.close()
    assert outcomes[0] == outcomes[1]


def test_a_resent_envelope_with_a_new_sent_at_is_a_duplicate_other_content_is_not(running):
    client = zeep_client(running)
    message_id, data = with_message_id(sample("CaseResult-approved.xml"))
    first = client.service.PushMessage(envelope=data.decode())
    restamped = re.sub(rb"<hx:SentAt>[^<]+</hx:SentAt>", b"<hx:SentAt>2026-11-21T18:00:00+08:00</hx:SentAt>", data)
    assert restamped != data
    again = client.service.PushMessage(envelope=restamped.decode())
    assert (again.status, again.receiptId) == ("DUPLICATE", first.receiptId)
    changed = client.service.PushMessage(envelope=data.replace(b"APPROVED", b"REJECTED").decode())
    assert changed.status == "REJECTED" and changed.errors.Error[0].code == "MESSAGE_ID_REUSED"
