"""junit.py: completing pytest's JUnit XML for crashed and unrun cells (pure: a file, no pytest run)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from pytest_ipv6compat.junit import MissingCase, case_address, complete_junit

XML = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" \
failures="0" skipped="0" tests="2"><testcase classname="m.ipv6.toml" name="t[a-dual-stack]"><properties>\
<property name="ipv6.status" value="pass"/></properties></testcase><testcase classname="m.ipv6.toml" \
name="t[a-ipv6-sysctl-off]"><error message="worker 'gw1' crashed">worker 'gw1' crashed</error></testcase>\
</testsuite></testsuites>"""


def _props(case: ET.Element) -> list[tuple[str | None, str | None]]:
    return [(p.get("name"), p.get("value")) for p in case.iter("property")]


def test_a_crashed_case_gets_its_properties_once_and_a_missing_cell_becomes_an_error(tmp_path: Path) -> None:
    path = tmp_path / "j.xml"
    path.write_text(XML, encoding="utf-8")
    crashed = [("ipv6.cell", "a-ipv6-sysctl-off"), ("ipv6.crashed", "gw1")]
    missing = MissingCase("ci.m.ipv6.toml", "t[a-ipv6-kernel-off]", "no result: <lost> & \"gone\"",
                          [("ipv6.cell", "a-ipv6-kernel-off"), ("ipv6.status", "error")])
    complete_junit(path, {"t[a-ipv6-sysctl-off]": crashed, "t[a-dual-stack]": [("ipv6.status", "twice")]}, [missing])
    suite = next(ET.parse(path).getroot().iter("testsuite"))
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("3", "2", "0")
    ran, lost, unrun = suite.iter("testcase")
    assert _props(ran) == [("ipv6.status", "pass")]  # it had its properties: none added
    assert _props(lost) == crashed
    assert [child.tag for child in lost] == ["properties", "error"]  # properties first, as junitxml writes them
    assert (unrun.get("classname"), unrun.get("name")) == ("ci.m.ipv6.toml", "t[a-ipv6-kernel-off]")
    assert _props(unrun) == [("ipv6.cell", "a-ipv6-kernel-off"), ("ipv6.status", "error")]
    error = unrun.find("error")
    assert error is not None
    assert error.get("message") == error.text == 'no result: <lost> & "gone"'
    assert "<lost>" not in path.read_text(encoding="utf-8")  # escaped


def test_an_unreadable_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "j.xml"
    path.write_text("<testsuites><testsuite", encoding="utf-8")
    complete_junit(path, {"t[x]": [("ipv6.cell", "x")]}, [MissingCase("m", "t[y]", "no result", [])])
    assert path.read_text(encoding="utf-8") == "<testsuites><testsuite"
    complete_junit(tmp_path / "absent.xml", {}, [MissingCase("m", "t[y]", "no result", [])])
    assert not (tmp_path / "absent.xml").exists()


def test_the_case_address_is_what_junitxml_writes() -> None:
    assert case_address("matrix/cloud-proxy.ipv6.toml::cloud-proxy[a-b=1]") == (
        "matrix.cloud-proxy.ipv6.toml", "cloud-proxy[a-b=1]")
    assert case_address("m.ipv6.toml::t[x]", "ci") == ("ci.m.ipv6.toml", "t[x]")
