"""The shared registries on SQLite and PostgreSQL: golden records with provenance merged by
authority then recency, conflicts kept, full history, idempotent application; bulk import
and export through `huitong catalog`; invalid identifiers refused with the foundation's codes."""
from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from bus.cli import main
from bus.config import Settings
from bus.database import make_engine, upgrade
from bus.models import Event
from catalog.authority import Authority
from catalog.feed import read_message
from catalog.merge import Origin
from catalog.models import Conflict, Enterprise, Person
from catalog.queries import CatalogQueries, ReadNotGranted, Reader
from catalog.registries import ENTERPRISE, PERSON, PROJECT
from catalog.store import CatalogStore
from schemas.hardened import HardenedParser
from schemas.identifiers import citizen_check_char, org_code_check_char, uscc_check_char
from tests.helpers.catalog import GAJ, PROJECT as PROJECT_CODE, SCJG, USCC, ZJJ, case_accepted, enterprise_record
from tests.helpers.messages import sample


@pytest.fixture
def store(backend):
    engine = make_engine(backend.database_url)
    upgrade(engine)
    yield CatalogStore(engine, Authority.from_settings(Settings()))
    engine.dispose()


def apply(store: CatalogStore, data: bytes) -> dict:
    return store.apply(read_message(HardenedParser().parse(data)))


def make_uscc(serial: int, region: str = "320382") -> str:
    org8 = f"{serial:08d}"
    first17 = f"91{region}{org8}{org_code_check_char(org8)}"
    return first17 + uscc_check_char(first17)


def make_citizen_id(serial: int, born: str = "19850312") -> str:
    first17 = f"320382{born}{serial:03d}"
    return first17 + citizen_check_char(first17)


def test_authority_then_recency_with_history_and_conflicts(store):
    operator = Reader.operator("tester")
    queries = CatalogQueries(store.engine)
    # 1. A construction-permit case names an enterprise the registry does not know: it is
    #    created from the case, each value remembering the permit system and the message.
    first_id, case_number, data = case_accepted(source=ZJJ, name="邳州恒润建材", sent_at="2026-11-20T09:00:00+08:00")
    assert apply(store, data)["created"] >= 1
    record = queries.get(operator, ENTERPRISE, (USCC,))
    assert record["name"] == "邳州恒润建材"
    assert record["sources"]["name"]["system"] == ZJJ and record["sources"]["name"]["message_id"] == first_id
    assert [c["case_number"] for c in record["cases"]] == [case_number]

    # 2. The market-regulation registration system (authoritative for names) sends the record:
    #    its name replaces the case's, although the case message is not older.
    registry_id, data = enterprise_record(source=SCJG, name="邳州市恒润建材有限公司", sent_at="2026-11-20T08:00:00+08:00")
    apply(store, data)
    record = queries.get(operator, ENTERPRISE, (USCC,))
    assert record["name"] == "邳州市恒润建材有限公司" and record["sources"]["name"]["system"] == SCJG

    # 3. A later case from the permit system spells the name its own way: the authoritative name
    #    stays, the offered one is recorded as a conflict, not dropped.
    conflict_id, _, data = case_accepted(source=ZJJ, name="恒润建材（邳州）", sent_at="2026-11-22T09:00:00+08:00")
    assert apply(store, data)["conflicts"] == 1
    record = queries.get(operator, ENTERPRISE, (USCC,))
    assert record["name"] == "邳州市恒润建材有限公司" and len(record["cases"]) == 2
    conflicts = queries.conflicts(operator, ENTERPRISE, (USCC,))
    assert [(c["field"], c["kept"], c["kept_system"], c["offered"], c["offered_system"], c["offered_message_id"])
            for c in conflicts] == [("name", "邳州市恒润建材有限公司", SCJG, "恒润建材（邳州）", ZJJ, conflict_id)]

    # The history shows both names, which message set each, from what.
    history = queries.history(operator, ENTERPRISE, (USCC,))
    names = [(h["action"], h["system"], h["message_id"], h["changes"].get("name")) for h in history]
    assert names[0] == ("CREATED", ZJJ, first_id, [None, "邳州恒润建材"])
    assert ("UPDATED", SCJG, registry_id, ["邳州恒润建材", "邳州市恒润建材有限公司"]) in names

    # 4. Equal authority: the more recent message wins, an older one changes nothing.
    apply(store, enterprise_record(source="320382.scjgj.qyxt", name="邳州市恒润新材料有限公司",
                                   sent_at="2026-11-23T08:00:00+08:00")[1])
    apply(store, enterprise_record(source=SCJG, name="邳州市恒润旧名有限公司", sent_at="2026-11-19T08:00:00+08:00")[1])
    assert queries.get(operator, ENTERPRISE, (USCC,))["name"] == "邳州市恒润新材料有限公司"

    # 5. Replayed: the same message again changes nothing and records nothing twice.
    with store.engine.connect() as conn:
        before = (conn.scalar(select(func.count()).select_from(Conflict)),
                  len(queries.history(operator, ENTERPRISE, (USCC,))))
    assert apply(store, data)["applied"] is False
    with store.engine.connect() as conn:
        after = (conn.scalar(select(func.count()).select_from(Conflict)),
                 len(queries.history(operator, ENTERPRISE, (USCC,))))
    assert after == before


def test_case_messages_feed_persons_projects_items_and_the_case_index(store):
    operator = Reader.operator("tester")
    queries = CatalogQueries(store.engine)
    apply(store, sample("CaseAccepted-person-window.xml"))
    applicant = "320382199207040242"
    person = queries.get(operator, PERSON, (applicant,))
    # Birth date and gender come from the number; the id and the phone are masked for an operator.
    assert person["birth_date"] == "1992-07-04" and person["gender"] == "FEMALE"
    assert person["citizen_id"] == "320382********0242" and person["phone"] == "0516-****1234"
    assert [(c["case_number"], c["role"]) for c in person["cases"]] == [("320382-GA-20261120-0417", "APPLICANT")]
    agent = queries.get(operator, PERSON, ("320311197801301359",))
    assert [c["role"] for c in agent["cases"]] == ["AGENT"]
    # The population register (公安) is authoritative for persons: its record overrides the name.
    apply(store, sample("PersonRecord-male.xml").replace(b"320300.gaj.rkxt", GAJ.encode()).replace(
        "李明".encode(), "李 明".encode()))
    assert queries.get(operator, PERSON, ("320311197801301359",))["name"] == "李 明"

    # A project's approval cases; results and steps move the case index on, in any order.
    _, case_number, data = case_accepted(source=ZJJ, project_code=PROJECT_CODE)
    apply(store, data)
    result = sample("CaseResult-approved.xml").replace(b"320382-SCJG-20261120-0001", case_number.encode())
    apply(store, result)
    apply(store, sample("CaseProcess-review.xml").replace(b"320382-SCJG-20261120-0001", case_number.encode()))
    project = queries.get(operator, PROJECT, (PROJECT_CODE,))
    assert project["owner_uscc"] == USCC and project["region_code"] == "320382"
    [case] = [c for c in project["cases"] if c["case_number"] == case_number]
    assert case["status"] == "FINISHED" and case["result"] == "APPROVED" and case["role"] == "PROJECT"
    assert case["last_step"] is not None

    # Deny by default: a reader without READ_PERSON gets nothing of persons.
    with pytest.raises(ReadNotGranted):
        queries.get(Reader("320382.scjgj.djxt", frozenset({"READ_ENTERPRISE"})), PERSON, (applicant,))


def test_unmasked_reads_are_recorded(store):
    queries = CatalogQueries(store.engine)
    apply(store, sample("CaseAccepted-person-window.xml"))
    reader = Reader.operator("auditor-li", unmask_reason="工单 2026-118: 核对户籍")
    assert queries.get(reader, PERSON, ("320382199207040242",))["citizen_id"] == "320382199207040242"
    with store.engine.connect() as conn:
        [event] = conn.execute(select(Event).where(Event.kind == "DISCLOSED")).all()
    detail = json.loads(event.detail)
    assert event.source == "operator:auditor-li" and detail["reason"] == "工单 2026-118: 核对户籍"
    assert detail["key"] == "320382********0242"  # the audit record itself holds no whole id


def test_name_search_pages_in_order_and_keeps_to_the_region(store):
    regions = {"320382": 5, "320381": 3, "321002": 4, "321102": 2, "110105": 2}  # 3210 is Yangzhou, 3211 Zhenjiang
    offers, serial = [], 0
    for region, count in regions.items():
        for i in range(count):
            serial += 1
            offers.append(((make_uscc(serial, region),), {"name": f"恒润建材{region}第{i}号", "region_code": region},
                           Origin("320382.scjgj.djxt", f"seed-{serial}", "2026-11-20T00:00:00Z")))
    store.transaction(lambda conn: store.write_offers(conn, ENTERPRISE, offers))
    queries = CatalogQueries(store.engine)
    reader = Reader.operator("ops-wang")

    def found(region=None, limit=20):
        names, after = [], None
        while True:
            page = queries.search_enterprises(reader, "恒润建材", region=region, limit=limit, after=after)
            names += [i["name"] for i in page["items"]]
            if not page["next"]:
                return names
            after = page["next"]

    everything = found()
    assert len(everything) == 16 and everything == sorted(everything)
    assert found(limit=3) == everything  # the cursor pages through without gaps or repeats
    assert {n[4:10] for n in found("320382")} == {"320382"} and len(found("320382")) == 5
    assert {n[4:10] for n in found("320300", limit=2)} == {"320382", "320381"}
    assert {n[4:10] for n in found("3210")} == {"321002"} == {n[4:10] for n in found("321000")}
    assert len(found("32")) == 14 == len(found("320000", limit=4))
    assert found("110000") == [n for n in everything if "110105" in n]
    assert found("4401") == []


def _cli(backend, *args, input=None):
    env = {"HUITONG_DATABASE_URL": backend.database_url, "HUITONG_BROKER_URL": backend.broker_url}
    return CliRunner(env=env).invoke(main, list(args), input=input, catch_exceptions=False)


def test_import_checks_every_identifier_reruns_idempotently_and_exports(tmp_path, backend):
    rows = [["统一社会信用代码", "企业名称", "法定代表人", "成立日期", "行政区划", "登记状态"]]
    rows += [[make_uscc(i), f"邳州市测试{i:04d}有限公司", "王建国", "2020-01-02", "320382", "ACTIVE"] for i in range(1, 201)]
    good = rows[1][0]
    rows += [[good[:-1] + ("0" if good[-1] != "0" else "1"), "校验位错", "", "", "320382", "ACTIVE"],  # line 202
             ["91320382MA1Y2K3P9O", "含字母O", "", "", "320382", "ACTIVE"],  # 203: O is not in the alphabet
             [make_uscc(999), "区划错", "", "", "999999", "ACTIVE"],  # 204
             [make_uscc(998), "日期错", "", "2020-02-30", "320382", "ACTIVE"]]  # 205
    path = tmp_path / "enterprises.csv"
    with open(path, "w", encoding="gbk", newline="") as handle:
        csv.writer(handle).writerows(rows)
    result = _cli(backend, "catalog", "import", "enterprises", str(path), "--encoding", "gbk", "--as", SCJG)
    assert result.exit_code == 1
    assert "200 created" in result.output and "4 refused" in result.output
    with open(tmp_path / "enterprises.csv.errors.csv", encoding="utf-8") as handle:
        report = [(int(r["line"]), r["column"], r["code"]) for r in csv.DictReader(handle)]
    assert report == [(202, "uscc", "USCC_CHECK"), (203, "uscc", "USCC_FORMAT"), (204, "region_code", "REGION_CODE"),
                      (205, "registered_at", "DATE_FORMAT")]
    # Run again: nothing changes.
    again = _cli(backend, "catalog", "import", "enterprises", str(path), "--encoding", "gbk", "--as", SCJG)
    assert "0 created, 0 updated, 200 unchanged" in again.output

    persons = tmp_path / "persons.csv"
    cid = make_citizen_id(11)
    persons.write_text("citizen_id,name,gender,birth_date,phone\n"
                       f"{cid},张三,MALE,1985-03-12,13852161234\n"
                       f"{cid[:-1]}{'0' if cid[-1] != '0' else '1'},校验错,,,\n"
                       f"{make_citizen_id(12)},性别错,MALE,,\n"
                       f"{make_citizen_id(13)},生日错,,1985-03-13,\n", encoding="utf-8")
    result = _cli(backend, "catalog", "import", "persons", str(persons), "--as", GAJ)
    assert "1 created" in result.output
    with open(tmp_path / "persons.csv.errors.csv", encoding="utf-8") as handle:
        codes = [r["code"] for r in csv.DictReader(handle)]
    assert codes == ["CITIZEN_ID_CHECK", "GENDER_MISMATCH", "CITIZEN_ID_BIRTHDATE"]

    projects = tmp_path / "projects.csv"
    projects.write_text("project_code,name,owner_uscc,region_code,total_investment,status\n"
                        f"2025-320382-47-03-000001,运河大桥,{good},320382,12000.5,APPROVED\n"
                        f"1999-320382-47-03-000002,太早,{good},320382,1,APPROVED\n", encoding="utf-8")
    result = _cli(backend, "catalog", "import", "projects", str(projects))
    assert "1 created" in result.output and "PROJECT_CODE" in result.output

    # Export: the import's columns; ids and phones masked unless --unmask with a reason.
    out = tmp_path / "export.csv"
    assert _cli(backend, "catalog", "export", "enterprises", "--out", str(out), "--encoding", "gbk").exit_code == 0
    with open(out, encoding="gbk") as handle:
        exported = list(csv.DictReader(handle))
    assert len(exported) == 200 and {r["uscc"] for r in exported} == {r[0] for r in rows[1:201]}
    masked = _cli(backend, "catalog", "export", "persons").output
    assert cid not in masked and f"{cid[:6]}********{cid[-4:]}" in masked and "138****1234" in masked
    whole = _cli(backend, "catalog", "export", "persons", "--unmask", "比对公安库", "--operator", "ops-wang").output
    assert cid in whole and "13852161234" in whole
    engine = make_engine(backend.database_url)
    with engine.connect() as conn:
        [event] = conn.execute(select(Event).where(Event.kind == "DISCLOSED")).all()
        assert event.source == "operator:ops-wang" and json.loads(event.detail)["export"] == 1
        assert conn.scalar(select(func.count()).select_from(Enterprise)) == 200
        assert conn.scalar(select(func.count()).select_from(Person)) == 1
    engine.dispose()


def test_cli_get_search_history_conflicts(tmp_path, backend):
    engine = make_engine(backend.database_url)
    upgrade(engine)
    store = CatalogStore(engine, Authority.from_settings(Settings()))
    _, case_number, data = case_accepted(source=ZJJ, name="恒润建材")
    apply(store, data)
    apply(store, enterprise_record(source=SCJG)[1])
    apply(store, case_accepted(source=ZJJ, name="恒润建材二", sent_at="2026-11-25T09:00:00+08:00")[2])
    engine.dispose()

    shown = _cli(backend, "catalog", "get", "enterprise", USCC)
    assert shown.exit_code == 0 and "邳州市恒润建材有限公司" in shown.output and case_number in shown.output
    # The legal representative's citizen id: masked for the operator.
    assert "320382198503120031" not in shown.output and "320382********0031" in shown.output
    found = json.loads(_cli(backend, "catalog", "search", "邳州市恒润", "--json", "--region", "3203").output)
    assert [i["uscc"] for i in found["items"]] == [USCC]
    assert json.loads(_cli(backend, "catalog", "search", "邳州市恒润", "--json", "--region", "3201").output)["items"] == []
    history = _cli(backend, "catalog", "history", "enterprise", USCC).output
    assert "CREATED by 320382.zjj.sgxk" in history and "UPDATED by 320382.scjgj.djxt" in history
    conflicts = _cli(backend, "catalog", "conflicts", "enterprise", USCC).output
    assert "恒润建材二" in conflicts and "kept \"邳州市恒润建材有限公司\"" in conflicts
    bad = _cli(backend, "catalog", "get", "enterprise", USCC[:-1] + "X")
    assert bad.exit_code != 0 and "USCC_CHECK" in bad.output
    missing = _cli(backend, "catalog", "get", "enterprise", make_uscc(5))
    assert missing.exit_code != 0 and "NOT_FOUND" in missing.output
