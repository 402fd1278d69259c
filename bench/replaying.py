"""Replay into a sandbox: N logged messages (a case mix) replayed through two routes, one with
an XSLT transform, one plain, writing the canonical messages and each destination's output
under a directory (`huitong replay --to-sandbox`). Same run, for the ratio: only reading the
same messages and bodies from the log."""
from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

from bench.audit import _fill
from bench.publish import _dropped_after, _env, _fresh_pg

ROOT = Path(__file__).resolve().parents[1]
STYLESHEET = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:hx="urn:huitong:envelope:1" xmlns:c="urn:huitong:case:1">
  <xsl:output method="xml" encoding="UTF-8"/>
  <xsl:template match="/">
    <PortalNotice>
      <Case><xsl:value-of select="//c:CaseNumber"/></Case>
      <Message><xsl:value-of select="/hx:Envelope/hx:Header/hx:MessageId"/></Message>
      <Result><xsl:value-of select="//c:Result"/></Result>
      <Finished><xsl:value-of select="//c:FinishedAt"/></Finished>
    </PortalNotice>
  </xsl:template>
</xsl:stylesheet>
"""


def bench_replay(messages: int = 20_000) -> dict:
    from sqlalchemy import select

    from bus.config import load_settings
    from bus.database import make_engine, upgrade
    from bus.models import Message, MessageBody
    from replay.replayer import SANDBOX, ReplayRequest, Replayer
    from routes.destinations import DestinationContext
    from routes.loader import load_routes
    from schemas.hardened import HardenedParser

    database = _env("DATABASE_URL")
    tmp = Path(tempfile.mkdtemp(prefix="huitong-replay-bench-"))
    url = _fresh_pg(database) if database else f"sqlite:///{tmp}/log.db"
    out: dict = {"backend": "PostgreSQL" if database else "SQLite", "messages": messages}
    routes = tmp / "routes"
    routes.mkdir()
    (routes / "portal.xsl").write_text(STYLESHEET, encoding="utf-8")
    (routes / "portal.yaml").write_text("id: results-to-portal\nfrom: {types: [CaseResult]}\n"
                                        "transform: {xslt: portal.xsl}\nto: [portal]\n", encoding="utf-8")
    (routes / "archive.yaml").write_text("id: all-to-archive\nfrom: {types: [CaseResult]}\nto: [archive]\n",
                                         encoding="utf-8")
    with _dropped_after(database, url):
        engine = make_engine(url)
        upgrade(engine)
        _fill(engine, messages)
        settings = load_settings(environ={"HUITONG_DATABASE_URL": url, "HUITONG_STATE_DIR": str(tmp / "var")})
        parser = HardenedParser()
        route_set = load_routes(routes, {"portal": {"type": "filedrop", "dir": str(tmp / "portal")},
                                         "archive": {"type": "filedrop", "dir": str(tmp / "archive")}},
                                DestinationContext(settings, state_dir=str(tmp / "var")), parser=parser)
        start = time.perf_counter()
        with engine.connect() as conn:
            for _ in conn.execution_options(stream_results=True, yield_per=500).execute(
                    select(Message.seq, MessageBody.content).join(MessageBody, MessageBody.digest == Message.digest)):
                pass
        out["read_only_msg_s"] = round(messages / (time.perf_counter() - start))
        for label, zipped in (("zip", True), ("files", False)):
            start = time.perf_counter()
            report = Replayer(engine, route_set, parser).run(ReplayRequest(
                reason="bench", by="operator:bench", mode=SANDBOX,
                since=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc), sandbox=tmp / label, sandbox_zip=zipped),
                keep_plan=False)
            seconds = time.perf_counter() - start
            assert report.messages == messages
            out[f"sandbox_{label}_replay_msg_s"] = round(messages / seconds)
        out["files_written"] = sum(1 for _ in (tmp / "files").rglob("*.xml"))
        start = time.perf_counter()
        for i in range(5000):
            with open(tmp / f"probe-{i}.xml", "wb") as probe:
                probe.write(b"x" * 1500)
        out["disk_creates_files_per_s"] = round(5000 / (time.perf_counter() - start))
        out["zip_replay_over_read_ratio"] = round(out["sandbox_zip_replay_msg_s"] / out["read_only_msg_s"], 2)
        engine.dispose()
    shutil.rmtree(tmp, ignore_errors=True)
    return out
