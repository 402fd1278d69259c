"""The catalog in a running hub over real HTTP: cases pushed by SOAP (zeep), dropped as a GBK
CSV file and written into a front database reach the registries through a `catalog` route;
the enterprise's application history lists all of them, the project its approval cases; the
queries answer to zeep, to suds (a second, independent SOAP client) and over REST, each system
seeing only what it is granted."""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml
from sqlalchemy import func, select

from bus.config import load_settings
from bus.models import Event
from catalog.models import CaseLink
from tests.helpers.catalog import PROJECT, SCJG, USCC, ZJJ
from tests.helpers.filedrop import HEADER, drop, zjj_row
from tests.helpers.messages import sample
from tests.helpers.frontdb import GAJ_SYSTEM, case_row, casebaseinfo, fill, front_engine
from tests.helpers.routing import wait_for
from tests.helpers.soap import RunningHub

SECRET = "sample-secret-not-real"
READER = "320382.zwb.portal"  # the service portal: enterprises and projects, no persons
PERSONS = "320382.gaj.query"  # may read persons, masked
UNMASKED = "320382.jw.jcxt"  # supervision: persons, unmasked
NAME = "邳州市恒润建材有限公司"


@pytest.fixture
def running(tmp_path, backend, front_url):
    route_id = f"to-catalog-{tmp_path.name[-12:]}".lower().replace("_", "-")
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / f"{route_id}.yaml").write_text(yaml.safe_dump({
        "id": route_id, "description": "every case and registry message to the registries",
        "from": {"types": ["CaseAccepted", "CaseProcess", "CaseResult", "EnterpriseRecord", "PersonRecord",
                           "ProjectRecord", "ServiceItem"]},
        "to": ["registries"]}), encoding="utf-8")
    system = lambda id_, grants: {"id": id_, "name": f"{id_} (sample)", "secret": SECRET, "grants": grants}  # noqa: E731
    config = {
        "state_dir": str(tmp_path / "var"), "database_url": backend.database_url, "broker_url": backend.broker_url,
        "relay": {"poll_interval": 0.05}, "routes": {"dir": str(routes), "batch_wait": 0.02},
        "soap": {"rate_limit_per_system": 5000}, "catalog": {"allow_http": True},
        "destinations": {"registries": {"type": "catalog"}},
        "inboxes": {"zjj": {"system": ZJJ, "dir": str(tmp_path / "inbox"), "format": "csv",
                            "mapping": "zjj-sgxk-accepted", "settle_seconds": 0.2}},
        "frontdb": {"gaj": {"system": GAJ_SYSTEM, "url": front_url, "poll_interval": 0.1,
                            "tables": {"t_bm_casebaseinfo": {"mapping": "provincial-casebaseinfo", "key": ["rowguid"]}}}},
        "systems": [system(SCJG, ["CaseAccepted", "EnterpriseRecord", "READ_ENTERPRISE", "READ_PROJECT"]),
                    system(ZJJ, ["CaseAccepted"]), system(GAJ_SYSTEM, ["CaseAccepted"]),
                    system(READER, ["READ_ENTERPRISE", "READ_PROJECT", "READ_SERVICE_ITEM"]),
                    system(PERSONS, ["READ_PERSON"]), system(UNMASKED, ["READ_PERSON", "UNMASK"])]}
    path = tmp_path / "huitong.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    front_engine(front_url).dispose()  # the department's tables exist before the hub polls them
    hub = RunningHub(load_settings(path, environ={}))
    try:
        yield hub
    finally:
        hub.close()


def zeep_client(running, username):
    from zeep import Client
    from zeep.wsse.username import UsernameToken
    return Client(running.url + "?wsdl", wsse=UsernameToken(username, SECRET, use_digest=True))


def suds_client(running, username):
    from tests.test_soap import suds_client as make
    return make(running, username=username, secret=SECRET)


def rest(running, path: str, username: str | None = READER, secret: str = SECRET) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{running.port}/api/v1/catalog{urllib.parse.quote(path, safe='/?=&')}"
    request = urllib.request.Request(url)
    if username:
        token = base64.b64encode(f"{username}:{secret}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def linked_cases(running, record_type: str, key: str) -> set[str]:
    with running.hub.engine.connect() as conn:
        return set(conn.scalars(select(CaseLink.case_number).where(CaseLink.record_type == record_type,
                                                                    CaseLink.key == key)))


def test_application_history_from_soap_file_drop_and_front_database(running, tmp_path, front_url):
    # 1. SOAP: the registration system pushes a case for the enterprise (zeep).
    client = zeep_client(running, SCJG)
    soap_case = "320382-SCJG-20261121-0901"
    receipt = client.service.PushCaseAccepted(messageId="6f1c8a52-0b7e-4f7e-9a51-1f0d2b3c4d01", caseAccepted={
        "CaseNumber": soap_case, "RegistrationNumber": "DJ320382000123", "RegionCode": "320382",
        "Department": {"Code": "scjgj", "Name": "邳州市市场监督管理局"},
        "ServiceItem": {"Code": "320382-SC-XK-0012", "Version": "3", "Name": "食品经营许可"},
        "CaseType": "PROMISED",
        "Applicant": {"kind": "ENTERPRISE", "Name": NAME, "IdType": "USCC", "IdNumber": USCC},
        "LegalRepresentative": {"Name": "王建国", "IdType": "CITIZEN_ID", "IdNumber": "320382198503120031"},
        "ContactPhone": "13852161234", "Channel": "ONLINE", "AppliedAt": "2026-11-20T09:02:11+08:00",
        "AcceptedAt": "2026-11-20T09:30:00+08:00", "PromisedWorkingDays": 5, "PromisedDate": "2026-11-27",
        "ProjectCode": PROJECT})
    assert receipt.status == "ACCEPTED"
    # 2. File drop: the permit system's GBK CSV names the same enterprise as applicant.
    row = zjj_row(1, tag="CATALOG")
    row[7:14] = ["企业", NAME, "统一社会信用代码", USCC, "王建国", "身份证", "320382198503120031"]
    file_case = row[0]
    text = ",".join(HEADER) + "\r\n" + ",".join(row) + "\r\n"
    drop(tmp_path / "inbox", "sgxk-20261121.csv", text.encode("gbk"))
    # 3. Front database: the public-security window system writes a row for it.
    front = front_engine(front_url)
    front_row = case_row(7, applyertype="2", applyername=NAME, applyercardtype="001", applyercardno=USCC,
                         projectcode=PROJECT)
    fill(front, casebaseinfo, [front_row])
    front.dispose()

    expected = {soap_case, file_case, front_row["caseno"]}
    wait_for(lambda: linked_cases(running, "enterprise", USCC) >= expected, 60)

    # The application history, as zeep reads it.
    enterprise = zeep_client(running, READER).service.QueryEnterprise(uscc=USCC)
    assert enterprise.name == NAME and {c.caseNumber for c in enterprise.cases.CaseRef} == expected
    assert enterprise.legalRepresentativeId == "320382********0031"  # person data, masked
    assert {s.field: s.system for s in enterprise.sources.Source}["name"] in (SCJG, ZJJ, GAJ_SYSTEM)
    # The project lists its approval cases (SOAP and file drop carried the code), as suds reads it.
    suds, sign = suds_client(running, READER)
    sign()
    project = suds.service.QueryProject(PROJECT)
    assert {c.caseNumber for c in project.cases.CaseRef} >= {soap_case, front_row["caseno"]}
    assert project.ownerUscc == USCC
    # REST: the same record, the name search, the OpenAPI document.
    status, body = rest(running, f"/enterprises/{USCC}")
    assert status == 200 and {c["case_number"] for c in body["cases"]} == expected
    status, found = rest(running, "/enterprises?prefix=邳州市恒润&region=320382")
    assert status == 200 and [i["uscc"] for i in found["items"]] == [USCC]
    status, document = rest(running, "/openapi.json", username=None)
    assert status == 200 and "/enterprises/{key}" in document["paths"] and document["openapi"].startswith("3.")


def test_grants_and_masking_over_soap_and_rest(running):
    from zeep.exceptions import Fault
    person = "320382199207040242"
    sample_case = sample("CaseAccepted-person-window.xml")
    receipt = running.hub.acceptance.accept(sample_case.replace(b"320382.gaj.rkxt", GAJ_SYSTEM.encode()),
                                            system=GAJ_SYSTEM, grants=frozenset({"CaseAccepted"}))
    assert receipt.status == "ACCEPTED", receipt
    wait_for(lambda: linked_cases(running, "person", person), 30)

    # No READ_PERSON: refused, by SOAP and by REST.
    with pytest.raises(Fault) as refused:
        zeep_client(running, READER).service.QueryPerson(citizenId=person)
    assert refused.value.code.endswith("READ_NOT_GRANTED")
    status, body = rest(running, f"/persons/{person}")
    assert status == 403 and body["error"]["code"] == "READ_NOT_GRANTED"
    # READ_PERSON without UNMASK: masked.
    masked = zeep_client(running, PERSONS).service.QueryPerson(citizenId=person)
    assert masked.citizenId == "320382********0242" and masked.phone == "0516-****1234" and masked.name == "张晓燕"
    status, body = rest(running, f"/persons/{person}", username=PERSONS)
    assert status == 200 and body["citizen_id"] == "320382********0242"
    with running.hub.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Event).where(Event.kind == "DISCLOSED")) == 0
    # UNMASK: whole, and the read is in the exchange log.
    whole = zeep_client(running, UNMASKED).service.QueryPerson(citizenId=person)
    assert whole.citizenId == person and whole.phone == "0516-86221234"
    with running.hub.engine.connect() as conn:
        disclosed = conn.execute(select(Event.source).where(Event.kind == "DISCLOSED")).scalars().all()
    assert disclosed == [UNMASKED]
    # Bad ids, unknown ones, bad credentials.
    with pytest.raises(Fault) as bad:
        zeep_client(running, PERSONS).service.QueryPerson(citizenId=person[:-1] + "9")
    assert bad.value.code.endswith("CITIZEN_ID_CHECK")
    status, body = rest(running, f"/enterprises/{USCC[:-1]}X")
    assert status == 400 and body["error"]["code"] == "USCC_CHECK"
    status, body = rest(running, "/enterprises/91320382MA1Y2K3P9C")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    assert rest(running, f"/persons/{person}", username=PERSONS, secret="wrong-secret-000")[0] == 401
    assert rest(running, f"/persons/{person}", username=None)[0] == 401
