"""The huitong command as a user runs it."""
import os
import subprocess
import sys

import pytest

from bus.database import head_revisions

from tests.conftest import ROOT, SAMPLES

HUITONG = [sys.executable, "-m", "bus.cli"]


def run(*args, cwd, env=None):
    return subprocess.run([*HUITONG, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_validate_exits_zero_on_every_valid_sample(tmp_path):
    result = run("validate", *map(str, sorted((SAMPLES / "valid").glob("*.xml"))), cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("OK ") == len(list((SAMPLES / "valid").glob("*.xml")))


@pytest.mark.parametrize("path", sorted((SAMPLES / "invalid").glob("*.xml")), ids=lambda p: p.name)
def test_validate_fails_on_each_invalid_sample_naming_code_and_path(path, tmp_path):
    result = run("validate", str(path), cwd=tmp_path)
    assert result.returncode == 1
    code = path.name.split(".")[-2]
    assert f"  {code} at /" in result.stdout, result.stdout


def test_validate_masks_personal_data_in_reports(tmp_path):
    result = run("validate", str(SAMPLES / "invalid" / "applicant-citizen-id.CITIZEN_ID_CHECK.xml"), cwd=tmp_path)
    assert "CITIZEN_ID_CHECK at /Envelope/Body/CaseAccepted/Applicant/IdNumber" in result.stdout


def test_send_logs_reports_and_fails_on_rejection(tmp_path):
    good = SAMPLES / "valid" / "CaseResult-approved.xml"
    bad = SAMPLES / "invalid" / "finished-before-accepted.TIME_ORDER.xml"
    result = run("send", str(good), str(bad), "--as", "320382.scjgj.djxt", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ACCEPTED") and str(good) in lines[0]
    assert lines[1].startswith("REJECTED") and "TIME_ORDER at /Envelope/Body/CaseResult/FinishedAt" in lines[2]
    assert (tmp_path / "var" / "huitong.db").exists()  # embedded default state under ./var/
    again = run("send", str(good), "--as", "320382.scjgj.djxt", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("DUPLICATE")
    tail = run("log", "tail", cwd=tmp_path)
    kinds = [line.split()[2] for line in tail.stdout.splitlines()]
    assert kinds == ["RECEIVED", "REJECTED", "DUPLICATE"]


def test_send_to_rabbitmq_and_postgres_publishes(postgres_url, tmp_path):
    from tests.conftest import AMQP_URL
    from tests.helpers.capture import Capture
    capture = Capture(AMQP_URL)
    try:
        env = {"HUITONG_DATABASE_URL": postgres_url, "HUITONG_BROKER_URL": AMQP_URL}
        result = run("send", str(SAMPLES / "valid" / "CaseProcess-review.xml"), "--as", "320382.scjgj.djxt",
                     cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        assert "published 1 message(s)" in result.stderr
        message_id = result.stdout.split()[3]
        assert capture.collect({message_id})[message_id] == 1
    finally:
        capture.close()


def test_bad_configuration_is_explained(tmp_path):
    config = tmp_path / "huitong.yaml"
    config.write_text("broker_url: amqq://localhost\nhttp:\n  prot: 8080\n")
    result = run("validate", "--config", str(config), str(SAMPLES / "valid" / "CaseResult-approved.xml"), cwd=tmp_path)
    assert result.returncode != 0
    assert "did you mean amqp://?" in result.stderr and "http.prot: unknown setting; did you mean port?" in result.stderr


def test_old_schema_is_refused_when_auto_upgrade_is_off(tmp_path):
    env = {"HUITONG_AUTO_UPGRADE": "false"}
    result = run("send", str(SAMPLES / "valid" / "CaseResult-approved.xml"), "--as", "320382.scjgj.djxt",
                 cwd=tmp_path, env=env)
    assert result.returncode != 0 and "SCHEMA_OUTDATED" in result.stderr and "huitong db upgrade" in result.stderr
    assert run("db", "upgrade", cwd=tmp_path).returncode == 0
    assert run("send", str(SAMPLES / "valid" / "CaseResult-approved.xml"), "--as", "320382.scjgj.djxt",
               cwd=tmp_path, env=env).returncode == 0


def test_db_upgrade_on_postgres(postgres_url, tmp_path):
    result = run("db", "upgrade", cwd=tmp_path, env={"HUITONG_DATABASE_URL": postgres_url})
    heads = ", ".join(sorted(head_revisions()))
    assert result.returncode == 0 and f"empty -> {heads}" in result.stdout
    assert f"current {heads}" in run("db", "current", cwd=tmp_path, env={"HUITONG_DATABASE_URL": postgres_url}).stdout
