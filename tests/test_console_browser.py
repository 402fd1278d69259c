"""The console in a real headless Chromium (Debian's chromium, driven by Playwright), against a
real `huitong serve --demo` with its simulated departments and flaky provincial platform: the
operator watches the routes table fill, opens a dead letter, retries it and sees it delivered;
the auditor is offered neither retry nor discard and the API refuses them; a case number
found by search shows its timeline. Screenshots are kept under var/test-artifacts/console
(HUITONG_TEST_ARTIFACTS elsewhere).

Without Chromium the test is skipped, unless HUITONG_TEST_REQUIRE_BROWSER=1 (CI), where that
is a failure."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = os.environ.get("HUITONG_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("HUITONG_TEST_ARTIFACTS") or ROOT / "var" / "test-artifacts") / "console"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def _need_browser():
    if importlib.util.find_spec("playwright") is None:
        missing = "the playwright package"
    else:
        missing = None if CHROMIUM else "Chromium (apt-get install chromium)"
    if missing:
        if os.environ.get("HUITONG_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"HUITONG_TEST_REQUIRE_BROWSER=1 but {missing} is missing")
        pytest.skip(f"{missing} is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def demo(tmp_path):
    """A demo hub in its own directory: (base url, {user: password})."""
    _need_browser()
    port = _free_port()
    err = (tmp_path / "serve.err").open("wb")
    huitong = Path(sys.executable).parent / "huitong"
    proc = subprocess.Popen([str(huitong), "serve", "--demo", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "HUITONG_LOGGING__LEVEL": "WARNING"})
    try:
        deadline = time.monotonic() + 60
        text = ""
        while "Huitong serving on" not in text:
            assert proc.poll() is None and time.monotonic() < deadline, f"the demo did not start:\n{text[-3000:]}"
            time.sleep(0.2)
            text = (tmp_path / "serve.err").read_text(encoding="utf-8", errors="replace")
        passwords = dict(re.findall(r"^\s+(demo-\w+)\s+(\S+)\s+\(", text, re.M))
        assert set(passwords) == {"demo-operator", "demo-auditor", "demo-admin"}
        yield f"http://127.0.0.1:{port}", passwords
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        err.close()


def _sign_in(page, base: str, user: str, password: str, then: str) -> None:
    page.goto(base + then)
    assert "/login" in page.url  # no session: the sign-in page, and back afterwards
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + then)


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _until(check, timeout: float, page=None, reload: bool = False):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "the page did not show it in time"
        time.sleep(0.5)
        if reload and page is not None:
            page.reload()


def test_operator_and_auditor_in_a_real_browser(demo, tmp_path):
    from playwright.sync_api import sync_playwright
    base, passwords = demo
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # -- the operator: live routes, a dead letter retried and delivered ---------------
            operator = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            _sign_in(operator, base, "demo-operator", passwords["demo-operator"], "/routes")
            total = operator.locator('tr[data-route="everything-to-registries"] [data-field="total"]')
            first = int(total.inner_text())
            # the table refreshes itself (no reload) as the simulated departments push
            _until(lambda: int(total.inner_text()) > first, 30)
            assert operator.locator("#routes-table tbody tr").count() == 5
            assert "running" in operator.locator('tr[data-route="cases-to-province"] [data-field="state"]').inner_text()
            _shot(operator, "1-operator-routes")

            operator.goto(base + "/dead-letters?route=cases-to-province")
            _until(lambda: operator.locator("#dead-letters tr[data-letter]").count() > 1, 90, operator, reload=True)
            letter_ids = [int(i) for i in operator.locator("#dead-letters tr[data-letter]").evaluate_all(
                "rows => rows.map(r => r.dataset.letter)")]
            operator.click(f'tr[data-letter="{letter_ids[0]}"] a >> nth=0')
            operator.wait_for_url(f"{base}/dead-letters/{letter_ids[0]}")
            assert "DESTINATION_TIMEOUT" in operator.inner_text("#last-error")
            assert "<hx:Envelope" in operator.inner_text("#body")  # the original message, shown as text
            _shot(operator, "2-operator-dead-letter")
            with operator.expect_navigation():  # the retry's POST lands before any reload below
                operator.click("#retry")
            operator.wait_for_url(f"{base}/dead-letters/{letter_ids[0]}")
            _until(lambda: "now DELIVERED" in operator.inner_text("main"), 30, operator, reload=True)
            _shot(operator, "3-operator-retried-delivered")
            # a forged CSRF token is refused, even from a signed-in browser
            forged = operator.evaluate("""() => fetch('/api/v1/console/routes/cases-to-province/pause', {
                method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': 'forged'},
                body: JSON.stringify({reason: 'x'})}).then(r => r.status)""")
            assert forged == 403

            # -- the auditor: sees, may not act; finds a case and its timeline ----------------
            auditor = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            _sign_in(auditor, base, "demo-auditor", passwords["demo-auditor"], "/dead-letters")
            assert auditor.locator('#dead-letters input[name="ids"]').count() == 0
            assert auditor.locator("text=Retry selected").count() == 0
            auditor.goto(f"{base}/dead-letters/{letter_ids[1]}")
            assert auditor.locator("#retry").count() == 0 and auditor.locator("#discard").count() == 0
            csrf = auditor.locator("body").get_attribute("data-csrf")
            refused = auditor.request.post(base + "/api/v1/console/dead-letters/act", headers={"X-CSRF-Token": csrf},
                                           data={"action": "retry", "ids": [letter_ids[1]]})
            assert refused.status == 403 and refused.json()["error"]["code"] == "FORBIDDEN"
            _shot(auditor, "4-auditor-dead-letter-read-only")

            found = auditor.request.get(base + "/api/v1/console/messages?type=CaseAccepted").json()
            case_number = found["result"]["items"][0]["case_number"]
            auditor.goto(base + "/messages")
            auditor.fill("input[name=case_number]", case_number)
            # the search is a form POST: wait for its result page, not the search page it replaces
            with auditor.expect_navigation():
                auditor.click("form.search button[type=submit]")
            auditor.wait_for_selector("#results tbody tr")
            rows = auditor.locator("#results tbody tr")
            assert rows.count() >= 1 and case_number in auditor.inner_text("#results")
            _shot(auditor, "5-auditor-search")
            auditor.click("#results a[href^='/messages/'] >> nth=0")
            auditor.wait_for_selector("#timeline li")
            events = auditor.locator("#timeline li strong").all_inner_texts()
            assert events[0] == "RECEIVED" and "ROUTED" in events, events
            _shot(auditor, "6-auditor-timeline")
            auditor.goto(f"{base}/cases/{case_number}")
            assert auditor.locator(".case-message").count() >= 1
            _shot(auditor, "7-auditor-case")

            # -- supervision: the departments' open cases by colour, the overdue list --------
            auditor.goto(base + "/supervision")
            _until(lambda: auditor.locator('#overdue-table tr[data-case]').count() >= 1, 90, auditor, reload=True)
            row = auditor.locator('#departments-table tr[data-department="scjgj"]')
            assert int(row.locator("td.bad").inner_text()) >= 1
            overdue_case = auditor.locator('#overdue-table tr[data-case]').first.get_attribute("data-case")
            _shot(auditor, "8-auditor-supervision")
            auditor.click(f'#overdue-table tr[data-case="{overdue_case}"] a')
            auditor.wait_for_url(f"{base}/cases/{overdue_case}")
            # the red cases' alerts went out on the bus to the supervision system's ferry
            _until(lambda: list((tmp_path / "var" / "demo" / "outbox" / "jiancha").glob("SupervisionAlert-*.xml")), 60)
        finally:
            browser.close()
