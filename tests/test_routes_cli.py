"""`huitong routes check|list|show|test` and a hub that refuses to start on bad routes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import yaml

from tests.conftest import ROOT
from tests.helpers.routing import construction_case

DEMO_CONFIG = ROOT / "demo" / "huitong.yaml"


def run(*args, cwd=ROOT, timeout=60):
    return subprocess.run([sys.executable, "-m", "bus.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def broken_setup(tmp_path):
    routes = tmp_path / "routes"
    shutil.copytree(ROOT / "routes" / "demo", routes)
    (routes / "xslt" / "broken.xsl").write_text(
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        '<xsl:template match="/"><xsl:value-of select="(("/></xsl:template></xsl:stylesheet>', encoding="utf-8")
    (routes / "broken.yaml").write_text(
        "id: broken\n"
        "from:\n"
        "  typs: [CaseResult]\n"
        "namespaces: {c: 'urn:huitong:case:1'}\n"
        "when:\n"
        "  any:\n"
        "    - c:CaseResult/c:Result =\n"
        "    - q:Undeclared\n"
        "transform: {xslt: xslt/broken.xsl}\n"
        "to:\n"
        "  - archive-feryr\n"
        "  - route: nowhere\n", encoding="utf-8")
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    config["routes"]["dir"] = str(routes)
    config["state_dir"] = str(tmp_path / "var")
    path = tmp_path / "huitong.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, routes / "broken.yaml"


def test_routes_check_names_every_problem_with_file_and_line(tmp_path):
    config, broken = broken_setup(tmp_path)
    result = run("routes", "check", "--config", str(config))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    expected = {
        3: "unknown key 'typs' in from; did you mean types?",
        7: "XPath 'c:CaseResult/c:Result =' does not compile",
        8: "XPath 'q:Undeclared' does not compile: Undefined namespace prefix",
        9: "broken.xsl does not compile",
        11: "destination 'archive-feryr' is not declared under destinations: in the configuration; "
            "did you mean archive-ferry?",
        12: "forward to route 'nowhere', which no route file defines",
    }
    for line, text in expected.items():
        assert any(f"{broken}:{line}: " in l and text in l for l in lines), (line, text, lines)
    assert "6 problem(s)" in result.stderr


def test_serve_refuses_to_start_on_bad_routes(tmp_path):
    config, broken = broken_setup(tmp_path)
    result = run("serve", "--config", str(config), "--port", "0")
    assert result.returncode != 0
    assert "ROUTES_INVALID" in result.stderr and f"{broken}:3: unknown key 'typs'" in result.stderr


def test_an_unknown_destination_type_and_bad_options_are_named(tmp_path):
    config = {"state_dir": str(tmp_path / "var"), "routes": {"dir": str(ROOT / "routes" / "demo")},
              "destinations": {"fgw-tzxm": {"type": "sop", "wsdl": "x", "operation": "y"},
                               "city-hub": {"type": "hub", "url": "http://x/ws/exchange", "username": "a", "tls": 1},
                               "archive-ferry": {"type": "filedrop"}}}
    path = tmp_path / "huitong.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = run("routes", "check", "--config", str(path))
    assert result.returncode == 1
    assert "destinations.fgw-tzxm: unknown destination type 'sop'; did you mean soap?" in result.stderr
    assert "destinations.city-hub: (top): unknown key(s) 'tls'" in result.stderr
    assert "destinations.archive-ferry: (top): 'dir' is a required property" in result.stderr


def test_the_demo_routes_check_list_and_show():
    checked = run("routes", "check", "--config", str(DEMO_CONFIG))
    assert checked.returncode == 0, checked.stderr
    assert "3 route(s) and 4 destination(s) are fine" in checked.stdout
    listed = run("routes", "list", "--json", "--config", str(DEMO_CONFIG))
    routes = {r["id"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert routes["county-results-to-city"]["to"] == ["city-hub", "archive-ferry", "registries"]
    assert routes["construction-permits-to-fgw"]["to"] == ["fgw-tzxm"]
    shown = run("routes", "show", "construction-permits-to-fgw", "--config", str(DEMO_CONFIG))
    assert "queue       huitong.route.construction-permits-to-fgw bound with CaseAccepted.*.zjj.*" in shown.stdout
    assert "xslt:fgw-project-case.xsl" in shown.stdout and "6 attempts" in shown.stdout
    assert "secret" not in shown.stdout.replace("secret_env", "")


def test_routes_test_is_a_dry_run_showing_each_destinations_output(tmp_path):
    message_id, data = construction_case()
    path = tmp_path / "case.xml"
    path.write_bytes(data)
    result = run("routes", "test", str(path), "--config", str(DEMO_CONFIG))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "+ construction-permits-to-fgw: matches" in out
    assert "- county-results-to-city: no match (type CaseAccepted is not one of CaseResult)" in out
    assert "-> fgw-tzxm via xslt:fgw-project-case.xsl:" in out
    assert "<t:projectCode>2026-320382-47-03-004512</t:projectCode>" in out
    assert f"<t:messageId>{message_id}</t:messageId>" in out
    assert "+ cases-to-registries: matches" in out and "2 of 3 route(s) match" in out

    no_project = tmp_path / "no-project.xml"
    no_project.write_bytes(construction_case(project_code=False)[1])
    result = run("routes", "test", str(no_project), "--config", str(DEMO_CONFIG))
    assert "- construction-permits-to-fgw: no match (the when-condition is false)" in result.stdout
    assert "1 of 3 route(s) match" in result.stdout


def test_routes_test_masks_personal_data_unless_asked(tmp_path):
    from tests.helpers.messages import sample
    path = tmp_path / "accepted.xml"
    path.write_bytes(sample("CaseAccepted-enterprise.xml"))
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "all.yaml").write_text("id: all\nfrom: {types: [CaseAccepted]}\nto: [ferry]\n", encoding="utf-8")
    config = tmp_path / "huitong.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "var"), "routes": {"dir": str(routes)},
                                      "destinations": {"ferry": {"type": "filedrop", "dir": str(tmp_path / "o")}}}))
    masked = run("routes", "test", str(path), "--config", str(config))
    assert "320382198503120031" not in masked.stdout and "13852161234" not in masked.stdout
    plain = run("routes", "test", str(path), "--config", str(config), "--show-personal-data")
    assert "320382198503120031" in plain.stdout
