"""Retention: the oldest part of the log is archived as a verified evidence bundle, then
deleted; the chain stays verifiable across the cut (the anchor carries the last removed seal's
hash), sealing carries on from it, and nothing still needed goes."""
from __future__ import annotations

import datetime as dt
import time

from click.testing import CliRunner
from sqlalchemy import func, insert, select, update

from bus.cli import main
from bus.database import make_engine
from bus.hub import Hub
from bus.models import Event, Message, MessageBody, RouteDelivery
from bus.secret_box import SecretBox
from replay.bundle_verify import verify_bundle
from replay.keys import SealKeys
from replay.models import ChainAnchor
from replay.retention import plan_cut, retain
from replay.sealer import ChainSealer
from replay.verify import verify_log
from tests.helpers.messages import case_results

SYSTEM = "320382.scjgj.djxt"


def _accept(settings, count):
    with Hub(settings) as hub:
        ids = []
        for message_id, data in case_results(count):
            assert hub.accept(data, system=SYSTEM).status == "ACCEPTED"
            ids.append(message_id)
        while hub.log.unpublished_count():
            time.sleep(0.02)
    return ids


def _count(engine, model):
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model))


def test_archive_then_delete_keeps_the_chain_verifiable_across_the_cut(backend, tmp_path):
    settings = backend.settings(audit__seal="false")
    old = _accept(settings, 8)
    engine = make_engine(settings.effective_database_url)
    keys = SealKeys(engine, SecretBox.from_settings(settings))
    sealer = ChainSealer(engine, keys, max_events=5)
    sealer.seal_all()
    with engine.begin() as conn:  # one old message is dead-lettered: the operator still needs it
        waiting = conn.scalar(select(Message.seq).where(Message.message_id == old[0]))
        conn.execute(insert(RouteDelivery).values(message_seq=waiting, message_id=old[0], route="r", destination="d",
                                                  status="DEAD", attempts=3, updated_at=dt.datetime.now(dt.timezone.utc)))
    time.sleep(0.01)
    cutoff = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.01)
    new = _accept(settings, 3)
    sealer.seal_all()
    events_before = _count(engine, Event)

    cut = plan_cut(engine, cutoff)
    assert cut is not None and cut.events == 16 and cut.first_seq == 1
    outcome = retain(engine, keys, cut, tmp_path / "archive", by="operator:ops-wang")
    archive = tmp_path / "archive" / f"huitong-log-{1:012d}-{cut.last_seq:012d}.zip"
    assert outcome["archive"] == str(archive) and outcome["events"] == 16
    assert outcome["messages"] == 7 and outcome["kept_messages"] == 1  # the dead letter's stays
    assert verify_bundle(str(archive), keys.public_keys()).ok  # the archive stands on its own
    with engine.connect() as conn:
        assert conn.scalar(select(func.min(Event.seq))) == cut.last_seq + 1
        assert set(conn.scalars(select(Message.message_id))) == {old[0], *new}
        kept_digest = conn.scalar(select(Message.digest).where(Message.message_id == old[0]))
        assert conn.scalar(select(func.count()).select_from(MessageBody).where(MessageBody.digest == kept_digest)) == 1
        anchor = conn.execute(select(ChainAnchor)).one()
        assert (anchor.seal_id, anchor.seal_hash, anchor.last_seq) == (cut.seal_id, cut.seal_hash, cut.last_seq)
        retained = conn.execute(select(Event.source, Event.detail).where(Event.kind == "RETAINED")).one()
    assert retained.source == "operator:ops-wang"
    assert _count(engine, Event) == events_before - 16 + 2  # + AUDIT_EXPORT and RETAINED

    report = verify_log(engine, keys.public_keys())
    assert report.ok and report.first_seq == cut.last_seq + 1 and report.anchor["seal_id"] == cut.seal_id
    assert report.unsealed == 2  # the export and retention events themselves, not sealed yet
    sealer.seal_all()  # sealing carries on from what is left
    _accept(settings, 2)
    sealer.seal_all()
    assert verify_log(engine, keys.public_keys()).ok

    with engine.begin() as conn:  # an edited anchor no longer joins the chain
        conn.execute(update(ChainAnchor).values(seal_hash="0" * 64))
    report = verify_log(engine, keys.public_keys())
    assert report.first.code == "CHAIN_BROKEN" and report.first.seal == cut.seal_id + 1
    engine.dispose()


def test_cli_retain(backend, tmp_path):
    settings = backend.settings(audit__seal="false")
    _accept(settings, 3)
    env = {**backend.env(), "HUITONG_STATE_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    assert runner.invoke(main, ["audit", "seal"], env=env).exit_code == 0
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)).isoformat()
    nothing = runner.invoke(main, ["audit", "retain", "--before", "2000-01-01", "--yes"], env=env)
    assert nothing.exit_code == 0 and "nothing to retain" in nothing.output
    done = runner.invoke(main, ["audit", "retain", "--before", later, "--archive-dir", str(tmp_path / "a"), "--yes"],
                         env=env)
    assert done.exit_code == 0 and "archived 6 events" in done.output, done.output
    assert len(list((tmp_path / "a").glob("huitong-log-*.zip"))) == 1
    checked = runner.invoke(main, ["audit", "verify"], env=env)
    assert checked.exit_code == 0 and "continues from seal 1" in checked.output, checked.output
    no_window = runner.invoke(main, ["audit", "retain", "--yes"], env=env)
    assert no_window.exit_code == 2 and "retention_days" in no_window.output
