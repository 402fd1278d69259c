"""Replay for auditors: a window replayed into a sandbox reproduces the canonical messages byte
for byte and what each destination got; a dry run after a transform change names exactly the
fields that would change; a real replay delivers again under a replay id the lineage shows.
Embedded and on RabbitMQ + PostgreSQL, with real route workers for the first deliveries."""
from __future__ import annotations

import datetime as dt
import json
import uuid
import zipfile

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bus.cli import main
from bus.database import make_engine
from bus.hub import Hub
from bus.models import Event
from replay.lineage import LogQueries
from replay.replayer import DELIVER, DRY_RUN, SANDBOX, ReplayInvalid, ReplayRequest, Replayer
from routes.destinations import DestinationContext
from routes.loader import load_routes
from schemas.hardened import HardenedParser
from tests.helpers.messages import sample, with_message_id
from tests.helpers.routing import settings_from, wait_for, write_config
from tests.helpers.soap import delete_route_queues

SCJG = "320382.scjgj.djxt"
STYLESHEET = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:hx="urn:huitong:envelope:1" xmlns:c="urn:huitong:case:1">
  <xsl:output method="xml" encoding="UTF-8"/>
  <xsl:template match="/">
    <PortalNotice>
      <Case><xsl:value-of select="//c:CaseNumber"/></Case>
      <Message><xsl:value-of select="/hx:Envelope/hx:Header/hx:MessageId"/></Message>
      <Channel>{channel}</Channel>
      <Kind><xsl:value-of select="local-name(/hx:Envelope/hx:Body/*)"/></Kind>
    </PortalNotice>
  </xsl:template>
</xsl:stylesheet>
"""


@pytest.fixture
def routed(backend, tmp_path):
    run = uuid.uuid4().hex[:6]
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "notice.xsl").write_text(STYLESHEET.format(channel="window"), encoding="utf-8")
    ids = {"portal": f"results-to-portal-{run}", "archive": f"all-to-archive-{run}"}
    (routes / "portal.yaml").write_text(f"id: {ids['portal']}\nfrom: {{types: [CaseResult, CaseAccepted]}}\n"
                                        "transform: {xslt: notice.xsl}\nto: [portal]\n", encoding="utf-8")
    (routes / "archive.yaml").write_text(f"id: {ids['archive']}\nfrom: {{types: [CaseResult, CaseAccepted, "
                                         "CaseProcess]}\nto: [archive]\n", encoding="utf-8")
    config = write_config(tmp_path, backend, routes_dir=routes, destinations={
        "portal": {"type": "filedrop", "dir": str(tmp_path / "portal")},
        "archive": {"type": "filedrop", "dir": str(tmp_path / "archive")}})
    settings = settings_from(config)
    sent = {}
    started = dt.datetime.now(dt.timezone.utc)
    with Hub(settings) as hub:
        for name in ["CaseAccepted-enterprise.xml", "CaseProcess-review.xml", "CaseResult-approved.xml"] * 2:
            message_id, data = with_message_id(sample(name))
            sent[message_id] = data
            assert hub.accept(data, system=SCJG).status == "ACCEPTED"
        wait_for(lambda: _count(hub.engine, "DELIVERED") == 10, timeout=60)  # 4 to the portal, 6 archived
    delete_route_queues(hub)
    engine = make_engine(settings.effective_database_url)
    yield settings, engine, ids, sent, started, tmp_path
    engine.dispose()


def _count(engine, kind):
    with engine.connect() as conn:
        return len(conn.execute(select(Event.seq).where(Event.kind == kind)).all())


def _replayer(settings, engine):
    parser = HardenedParser()
    routes = load_routes(settings.routes.dir, settings.destinations,
                         DestinationContext(settings, state_dir=settings.state_dir), parser=parser)
    return Replayer(engine, routes, parser)


def test_a_window_replayed_into_a_sandbox_is_byte_identical(routed):
    settings, engine, ids, sent, started, tmp_path = routed
    sandbox = tmp_path / "sandbox"
    report = _replayer(settings, engine).run(ReplayRequest(
        reason="工单 311: 核对门户通知", by="operator:audit-li", mode=SANDBOX, since=started, sandbox=sandbox))
    assert report.messages == 6 and report.counts() == {"written": 10}
    for message_id, data in sent.items():
        assert (sandbox / "messages" / f"{message_id}.xml").read_bytes() == data  # the canonical message
    delivered = sorted((tmp_path / "portal").glob("*.xml"))
    assert len(delivered) == 4
    for file in delivered:  # what the portal got then is what the sandbox gets now
        message_id = file.name.split("-", 1)[1][:-4]
        assert (sandbox / ids["portal"] / "portal" / f"{message_id}.xml").read_bytes() == file.read_bytes()
    for file in (tmp_path / "archive").glob("*.xml"):
        message_id = file.name.split("-", 1)[1][:-4]
        assert (sandbox / ids["archive"] / "archive" / f"{message_id}.xml").read_bytes() == file.read_bytes()
    zipped = tmp_path / "zipped"
    _replayer(settings, engine).run(ReplayRequest(reason="核对", by="operator:audit-li", mode=SANDBOX, since=started,
                                                  sandbox=zipped, sandbox_zip=True))
    with zipfile.ZipFile(zipped / "messages.zip") as archive:  # the same bytes, one zip per folder
        assert {n: archive.read(n) for n in archive.namelist()} == {f"{m}.xml": d for m, d in sent.items()}
    with zipfile.ZipFile(zipped / ids["portal"] / "portal.zip") as archive:
        assert sorted(archive.namelist()) == sorted(p.name for p in (sandbox / ids["portal"] / "portal").iterdir())
        assert all(archive.read(n) == (sandbox / ids["portal"] / "portal" / n).read_bytes() for n in archive.namelist())
    summary = json.loads((sandbox / f"replay-{report.replay_id}.json").read_text(encoding="utf-8"))
    assert summary["reason"] == "工单 311: 核对门户通知" and summary["messages"] == 6
    # Nothing was delivered; each message has its REPLAYED event, visible in its lineage.
    assert len(list((tmp_path / "portal").glob("*.xml"))) == 4 and _count(engine, "DELIVERED") == 10
    assert _count(engine, "REPLAYED") == 12  # both sandbox runs
    lineage = LogQueries(engine).lineage("operator:audit-li", next(iter(sent)))
    replayed = [e for e in lineage["events"] if e["event"] == "REPLAYED"]
    assert len(replayed) == 2 and replayed[0]["detail"]["replay_id"] == report.replay_id
    assert replayed[0]["detail"]["by"] == "operator:audit-li" and replayed[0]["detail"]["mode"] == "sandbox"


def test_a_dry_run_after_a_transform_change_names_exactly_the_changed_fields(routed):
    settings, engine, ids, sent, started, tmp_path = routed
    unchanged = _replayer(settings, engine).run(ReplayRequest(reason="check", by="operator:audit-li",
                                                              since=started))
    assert unchanged.counts() == {"unchanged": 10}
    (tmp_path / "routes" / "notice.xsl").write_text(STYLESHEET.format(channel="online"), encoding="utf-8")
    report = _replayer(settings, engine).run(ReplayRequest(reason="新通知模板上线前核对", by="operator:audit-li",
                                                           mode=DRY_RUN, since=started))
    assert report.counts() == {"changed": 4, "unchanged": 6}
    for plan in report.planned:
        if plan.route == ids["portal"]:
            assert plan.status == "changed" and plan.changes == [
                {"field": "/PortalNotice/Channel", "then": "window", "now": "online"}]
        else:
            assert plan.status == "unchanged" and plan.changes == []
    only_results = _replayer(settings, engine).run(ReplayRequest(
        reason="check", by="operator:audit-li", since=started, type="CaseResult", route=ids["portal"]))
    assert [(p.type, p.status) for p in only_results.planned] == [("CaseResult", "changed")] * 2
    assert _count(engine, "REPLAYED") == 0  # a dry run changes nothing


def test_a_real_replay_delivers_again_under_its_replay_id(routed):
    settings, engine, ids, sent, started, tmp_path = routed
    first = next(m for m, d in sent.items() if b"CaseResult" in d)
    before = (tmp_path / "portal" / f"CaseResult-{first}.xml").stat().st_mtime_ns
    report = _replayer(settings, engine).run(ReplayRequest(
        reason="门户丢失通知, 重发", by="operator:ops-wang", mode=DELIVER, since=started, route=ids["portal"]))
    assert report.counts() == {"delivered": 4}
    assert (tmp_path / "portal" / f"CaseResult-{first}.xml").stat().st_mtime_ns >= before
    lineage = LogQueries(engine).lineage("operator:audit-li", first)
    delivered = [e for e in lineage["events"] if e["event"] == "DELIVERED" and e["route"] == ids["portal"]]
    assert len(delivered) == 2 and "replay_id" not in delivered[0]["detail"]
    assert delivered[1]["detail"]["replay_id"] == report.replay_id
    replayed = [e for e in lineage["events"] if e["event"] == "REPLAYED"]
    assert replayed[0]["detail"]["reason"] == "门户丢失通知, 重发" and replayed[0]["detail"]["mode"] == "deliver"
    # What derives from the message: the portal's notices (first and replayed) and the replay.
    assert [(o["transform"], o["replay_id"]) for o in lineage["outputs"]] == [("xslt:notice.xsl", None),
                                                                              ("xslt:notice.xsl", report.replay_id)]
    assert [(r["replay_id"], r["by"]) for r in lineage["replays"]] == [(report.replay_id, "operator:ops-wang")]


def test_bad_requests_are_refused_with_a_reason(routed):
    settings, engine, ids, sent, started, tmp_path = routed
    replayer = _replayer(settings, engine)
    for request, code in [(ReplayRequest(reason=" ", by="x", since=started), "VALUE_INVALID"),
                          (ReplayRequest(reason="r", by="x"), "VALUE_INVALID"),
                          (ReplayRequest(reason="r", by="x", since=started, route="nope"), "ROUTE_UNKNOWN"),
                          (ReplayRequest(reason="r", by="x", since=started, until=started), "VALUE_INVALID")]:
        with pytest.raises(ReplayInvalid) as refused:
            replayer.run(request)
        assert refused.value.code == code


def test_cli_replay(routed, backend):
    settings, engine, ids, sent, started, tmp_path = routed
    runner = CliRunner()
    config = str(tmp_path / "huitong.yaml")
    since = (started - dt.timedelta(seconds=1)).isoformat()
    dry = runner.invoke(main, ["replay", "--config", config, "--since", since, "--dry-run", "--reason", "核对",
                               "--json"])
    assert dry.exit_code == 0, dry.output
    answer = json.loads(dry.stdout)  # (log lines go to stderr)
    assert answer["mode"] == "dry-run" and answer["counts"] == {"unchanged": 10}
    sandbox = tmp_path / "cli-sandbox"
    made = runner.invoke(main, ["replay", "--config", config, "--case", "320382-SCJG-20261120-0001",
                                "--to-sandbox", str(sandbox), "--reason", "核对"])
    assert made.exit_code == 0 and "6 messages" in made.output, made.output
    assert len(list((sandbox / "messages").glob("*.xml"))) == 6
    refused = runner.invoke(main, ["replay", "--config", config, "--since", since, "--dry-run"])
    assert refused.exit_code == 2 and "--reason" in refused.output
    real = runner.invoke(main, ["replay", "--config", config, "--since", since, "--reason", "重发"], input="n\n")
    assert real.exit_code == 1 and _count(engine, "REPLAYED") == 6  # only the sandbox run's
    zipped = runner.invoke(main, ["replay", "--config", config, "--case", "320382-SCJG-20261120-0001",
                                  "--to-sandbox", str(tmp_path / "z"), "--sandbox-zip", "--reason", "核对"])
    assert zipped.exit_code == 0 and (tmp_path / "z" / "messages.zip").exists()
