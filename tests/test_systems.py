"""`huitong systems` as an operator runs it, the config seed, and what a running hub makes of
a registry change (disable, rotate, grant)."""
from __future__ import annotations

import json

from sqlalchemy import create_engine, text

from bus.hub import Hub
from tests.helpers.messages import sample, with_message_id
from tests.helpers.soap import RunningHub, envelope, fault_of, post, push_message, receipt_of, security_header
from tests.test_cli import run

SYSTEM = "320382.scjgj.djxt"
SECRET = "sample-secret-not-real"


def test_an_operator_registers_lists_shows_grants_disables_and_rotates(tmp_path):
    added = run("systems", "add", SYSTEM, "--name", "登记系统 (sample)", "--secret", SECRET,
                "--grant", "CaseResult", "--grant", "CaseAccepted", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "grants: CaseAccepted, CaseResult" in added.stdout

    listed = run("systems", "list", "--json", cwd=tmp_path)
    assert json.loads(listed.stdout)["grants"] == ["CaseAccepted", "CaseResult"]
    shown = run("systems", "show", SYSTEM, cwd=tmp_path).stdout
    assert "enabled     True" in shown
    assert "CaseProcess" in run("systems", "grant", SYSTEM, "--grant", "CaseProcess", cwd=tmp_path).stdout
    assert run("systems", "disable", SYSTEM, cwd=tmp_path).returncode == 0
    assert "DISABLED" in run("systems", "list", cwd=tmp_path).stdout
    rotated = run("systems", "rotate-secret", SYSTEM, cwd=tmp_path)
    new_secret = rotated.stdout.split("(shown once): ")[1].strip()
    assert len(new_secret) >= 24

    # Neither secret is stored or printed in the clear.
    everything = added.stdout + added.stderr + listed.stdout + shown
    assert SECRET not in everything
    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'huitong.db'}")
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT secret_encrypted FROM systems")).scalar_one()
    assert SECRET not in stored and new_secret not in stored
    assert (tmp_path / "var" / "secret.key").stat().st_mode & 0o077 == 0  # owner-only key file


def test_bad_registrations_are_refused_with_the_reason(tmp_path):
    cases = [
        (["32.bad", "--secret", SECRET], "must be <region>.<department>.<system>"),
        (["990000.x.y", "--secret", SECRET], "province 99"),
        (["320382.ScJ.y", "--secret", SECRET], "department part 'ScJ'"),
        ([SYSTEM, "--secret", "short"], "at least 12 characters"),
    ]
    for args, reason in cases:
        result = run("systems", "add", args[0], "--name", "x", *args[1:], cwd=tmp_path)
        assert result.returncode != 0 and reason in result.stderr, (args, result.stderr)
    result = run("systems", "add", SYSTEM, "--name", "x", "--secret", SECRET, "--grant", "Nonsense", cwd=tmp_path)
    assert result.returncode != 0 and "Nonsense" in result.stderr
    assert run("systems", "add", SYSTEM, "--name", "x", "--secret", SECRET, cwd=tmp_path).returncode == 0
    again = run("systems", "add", SYSTEM, "--name", "x", "--secret", SECRET, cwd=tmp_path)
    assert again.returncode != 0 and "already registered" in again.stderr
    missing = run("systems", "disable", "320382.scjgj.nosuch", cwd=tmp_path)
    assert missing.returncode != 0 and "no system" in missing.stderr


def test_the_config_file_seeds_systems_the_database_does_not_know(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("DJXT_SECRET", SECRET)
    config = tmp_path / "huitong.yaml"
    config.write_text(f"""
systems:
  - id: {SYSTEM}
    name: 登记系统 (sample)
    secret_env: DJXT_SECRET
    grants: [CaseResult]
""", encoding="utf-8")
    from bus.config import load_settings
    env = {**backend.env(), "HUITONG_STATE_DIR": str(tmp_path / "state")}
    with Hub(load_settings(config, environ=env)) as hub:
        system = hub.systems.get(SYSTEM)
        assert system.grants == {"CaseResult"} and system.enabled
        hub.systems.grant(SYSTEM, ["CaseResult", "CaseProcess"])
    with Hub(load_settings(config, environ=env)) as hub:  # a restart does not undo the change
        assert hub.systems.get(SYSTEM).grants == {"CaseResult", "CaseProcess"}


def test_a_running_hub_follows_disable_and_rotate(backend, tmp_path):
    hub = RunningHub(backend.settings(state_dir=tmp_path / "state", soap__registry_cache_seconds=0))
    try:
        hub.hub.systems.add(SYSTEM, name="sample", secret=SECRET, grants=["CaseResult"])

        def push(secret):
            data = with_message_id(sample("CaseResult-approved.xml"))[1]
            status, doc = post(hub.url, envelope(push_message(data), security_header(SYSTEM, secret)))
            return fault_of(doc)[1] if fault_of(doc) else receipt_of(doc)["status"]

        assert push(SECRET) == "ACCEPTED"
        hub.hub.systems.set_enabled(SYSTEM, False)
        assert push(SECRET) == "SYSTEM_DISABLED"
        hub.hub.systems.set_enabled(SYSTEM, True)
        new = hub.hub.systems.rotate_secret(SYSTEM)
        assert push(SECRET) == "WSSE_BAD_PASSWORD"
        assert push(new) == "ACCEPTED"
    finally:
        hub.close()


def test_a_worker_that_loses_the_race_to_seed_a_system_knows_it_at_once(backend, monkeypatch):
    """Two workers start together; both look the system up, one registers it, the other's
    insert collides. The loser must not keep its cached "unknown" (it refused a department's
    files for the cache's lifetime)."""
    from bus.config import SystemSeed
    from bus.database import make_engine, upgrade
    from bus.secret_box import SecretBox, new_key
    from bus.systems import SystemRegistry

    engine = make_engine(backend.database_url)
    upgrade(engine)
    box = SecretBox(new_key())
    winner, loser = SystemRegistry(engine, box, cache_seconds=60), SystemRegistry(engine, box, cache_seconds=60)
    seed = SystemSeed(id="320382.zjj.sgxk", name="施工许可 (sample)", secret="sample-secret-not-real",
                      grants=["CaseAccepted"])
    assert loser.get(seed.id, fresh=True) is None  # the loser looks first: "unknown" is cached
    assert winner.seed([seed], {}) == [seed.id]  # the winner registers it meanwhile
    monkeypatch.setattr(loser, "get", lambda *a, **k: None)  # (what the loser saw a moment ago)
    loser.seed([seed], {})  # its insert collides: "already registered"
    monkeypatch.undo()
    identity, secret = loser.credentials(seed.id)
    assert identity is not None and secret == "sample-secret-not-real"
    engine.dispose()
