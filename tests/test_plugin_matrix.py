"""The plugin running matrix files in real containers (pytester + Docker)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import copy_matrix

from pytest_ipv6compat.report import load_json, schema_path

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "matrix" / "cloud-proxy.ipv6.toml"
pytestmark = pytest.mark.docker


SUBSET = ("--ipv6-variants=unpatched,env-toggle", "--ipv6-stacks=ipv6-kernel-off", "--ipv6-settings=unset,=false")


@pytest.mark.usefixtures("proxy_image")
def test_flipped_expectation_fails_and_names_the_cell(pytester: pytest.Pytester) -> None:
    # env-toggle with PL_IPV6_DISABLE=false is really IPv4-only; claim it keeps IPv6.
    table = '[expect.env-toggle.ipv6-kernel-off]\nunset = "no-af-inet6"\nempty = "no-af-inet6"\n'
    rows = '"=1" = "v4"\n"=true" = "v4"\n"=false" = '
    copy_matrix(pytester, (table + rows + '"v4"', table + rows + '"no-af-inet6"'))
    result = pytester.runpytest(*SUBSET, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1)  # incl. env-toggle read-only config cells
    result.stdout.fnmatch_lines(
        [
            "*cloud-proxy[[]env-toggle-ipv6-kernel-off-PL_IPV6_DISABLE=false[]]: verdict does not match*",
            "*- expected exited, but the target is up",
            "*seen listeners:     0.0.0.0:56000",
            "*stack ipv6-kernel-off: attested",
            "FAILED cloud-proxy.ipv6.toml::cloud-proxy[[]env-toggle-ipv6-kernel-off-PL_IPV6_DISABLE=false[]]*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


@pytest.mark.usefixtures("proxy_image")
def test_unpatched_fails_with_errno_97_and_a_hint(pytester: pytest.Pytester) -> None:
    # Claim the unpatched proxy survives an IPv6-less kernel: the evidence must say why not.
    copy_matrix(
        pytester,
        (
            '[expect.unpatched.ipv6-kernel-off]\nunset = "no-af-inet6"',
            '[expect.unpatched.ipv6-kernel-off]\nunset = "both"',
        ),
    )
    result = pytester.runpytest("--ipv6-variants=unpatched", "--ipv6-stacks=ipv6-kernel-off", "--ipv6-settings=unset")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*expected up, but the target exited with code 1*",
            "*error line: *[[]emerg[]]* socket() [[]::[]]:56000 failed (97: Address family not supported by protocol)",
            "*inet6 socket = socket() errno 97",
            "*Hint: *",
        ]
    )


@pytest.mark.usefixtures("proxy_image")
def test_grid_and_reports(pytester: pytest.Pytester) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    copy_matrix(pytester)
    result = pytester.runpytest(
        "--ipv6-variants=adaptive",
        "--ipv6-settings=unset,=0,=maybe",
        "--ipv6-json=r.json",
        "--ipv6-markdown=r.md",
        "--junitxml=j.xml",
    )
    # 4 stacks x 3 settings, plus the read-only config cells on 3 stacks
    result.assert_outcomes(passed=21)
    result.stdout.fnmatch_lines(
        [
            "*IPv6 compatibility grid*",
            "cloud-proxy: knob PL_IPV6_DISABLE, 21 cells*",
            "21 cells: 21 passed, 0 failed, 0 errors, 0 skipped",
        ]
    )
    doc = json.loads((pytester.path / "r.json").read_text())
    jsonschema.Draft202012Validator(json.loads(schema_path().read_text())).validate(doc)
    meta, results = load_json((pytester.path / "r.json").read_text())
    assert meta["version"].startswith("20.")  # the engine's
    by_id = {r.cell.id: r for r in results}
    kernel_off = by_id["adaptive-ipv6-kernel-off-PL_IPV6_DISABLE-unset"]
    assert kernel_off.verdict is not None
    assert [str(x) for x in kernel_off.verdict.listeners] == ["0.0.0.0:56000"]
    assert by_id["adaptive-dual-stack-PL_IPV6_DISABLE=maybe"].verdict.exit_code == 2  # type: ignore[union-attr]
    md = (pytester.path / "r.md").read_text()
    assert "| adaptive |" in md
    suite = ET.parse(pytester.path / "j.xml").getroot()
    case = next(c for c in suite.iter("testcase") if "adaptive-ipv6-kernel-off-PL_IPV6_DISABLE=0" in c.get("name", ""))
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["ipv6.stack"] == "ipv6-kernel-off"
    assert props["ipv6.variant"] == "adaptive"
    assert (props["ipv6.knob"], props["ipv6.setting"]) == ("PL_IPV6_DISABLE", "=0")
    assert props["ipv6.expected"] == "exited 1 'requires IPv6, but socket(AF_INET6) failed'"
    assert props["ipv6.verdict"] == "exited 1"


def _grid(text: str) -> str:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "IPv6 compatibility grid" in line)
    end = next(i for i, line in enumerate(lines) if re.match(r"=+ .*(passed|failed).* in ", line))
    return "\n".join(lines[start:end])


@pytest.mark.usefixtures("proxy_image")
def test_xdist_grid_is_identical_to_serial(pytester: pytest.Pytester) -> None:
    copy_matrix(pytester)
    args = ("--ipv6-stacks=dual-stack,ipv6-kernel-off", "--ipv6-settings=unset,=1,=maybe", "-p", "no:cacheprovider")
    serial = pytester.runpytest_subprocess(*args, "--ipv6-json=serial.json")
    parallel = pytester.runpytest_subprocess(*args, "-n", "2", "--ipv6-json=parallel.json")
    serial.assert_outcomes(passed=30)
    parallel.assert_outcomes(passed=30)
    assert _grid(serial.stdout.str()) == _grid(parallel.stdout.str())

    def cells(name: str) -> list[tuple[str, str, object]]:
        doc = json.loads((pytester.path / name).read_text())
        return [(c["id"], c["status"], c["verdict"]["listeners"]) for c in doc["cells"]]

    assert cells("serial.json") == cells("parallel.json")


def test_malformed_matrix_is_one_clear_collection_error(pytester: pytest.Pytester) -> None:
    copy_matrix(
        pytester,
        (
            'stacks = ["dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off", "ipv6-boot-disabled"]',
            'stacks = ["dual-stack", "no-ipv6"]',
        ),
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*cloud-proxy.ipv6.toml: [[]target.stacks[]]: unknown stack 'no-ipv6' (known: *)"])
    assert "Traceback" not in result.stdout.str()
