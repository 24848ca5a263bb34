"""The fidelity check: where the emulation (ipv6-kernel-off) and a real kernel (ipv6-boot-disabled) disagree.

Pure: results in, flags and rendered text out.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from pytest_ipv6compat.fidelity import CAUSE, MESSAGE, fidelity_flags, verdict_differences, with_fidelity_hints
from pytest_ipv6compat.model import (
    Cell,
    Expectation,
    Family,
    KnobSetting,
    Listener,
    Outcome,
    Reach,
    Result,
    Verdict,
)
from pytest_ipv6compat.report import render_json, render_markdown, render_terminal
from pytest_ipv6compat.results import CellResult
from pytest_ipv6compat.summary import add_fidelity_properties

V4 = Listener(Family.INET, "0.0.0.0", 80)
V6 = Listener(Family.INET6, "::", 80)
EMERG = "nginx: [emerg] socket() [::]:80 failed (97: Address family not supported by protocol)"


def up(*listeners: Listener, answered: bool = True) -> Verdict:
    reach = tuple(Reach(x, x.family, Result.ACCEPTED if answered else Result.TIMEOUT, answered, "")
                  for x in listeners)
    return Verdict(Outcome.UP, frozenset(listeners), reach, seconds=1.0)


def exited(code: int) -> Verdict:
    return Verdict(Outcome.EXITED, exit_code=code, error_line=EMERG, seconds=0.5)


def result(stack: str, verdict: Verdict | None, *, label: str = "unset", variant: str = "official",
           mode: str = "rw", status: str = "pass") -> CellResult:
    expectation = Expectation(Outcome.UP, frozenset({V4}), source="up 0.0.0.0:80")
    cell = Cell("nginx", variant, stack, "KNOB", KnobSetting.from_label(label), expectation, config_mode=mode)
    return CellResult(cell, status, verdict, None)


def test_same_verdicts_are_not_flagged_and_error_lines_do_not_count() -> None:
    a = Verdict(Outcome.EXITED, exit_code=1, error_line="2026/12/02 06:19:29 [emerg] 190#190: x", seconds=1)
    b = Verdict(Outcome.EXITED, exit_code=1, error_line="2026/12/02 06:19:31 [emerg] 7#7: x", seconds=2)
    assert verdict_differences(a, b) == ()
    assert fidelity_flags([result("ipv6-kernel-off", a), result("ipv6-boot-disabled", b)]) == []


def test_each_kind_of_difference_is_said() -> None:
    assert verdict_differences(exited(1), up(V4)) == (
        "outcome: exited 1 on ipv6-kernel-off, up on ipv6-boot-disabled",
        "listeners: (none) on ipv6-kernel-off, 0.0.0.0:80 on ipv6-boot-disabled",
    )
    assert verdict_differences(exited(1), exited(2)) == (
        "outcome: exited 1 on ipv6-kernel-off, exited 2 on ipv6-boot-disabled",
    )
    assert verdict_differences(up(V4, V6), up(V4)) == (
        "listeners: 0.0.0.0:80 [::]:80 on ipv6-kernel-off, 0.0.0.0:80 on ipv6-boot-disabled",
    )
    assert verdict_differences(up(V4), up(V4, answered=False)) == (
        "0.0.0.0:80 answered: true on ipv6-kernel-off, false on ipv6-boot-disabled",
    )
    timeout = Verdict(Outcome.TIMEOUT, seconds=30)
    assert verdict_differences(timeout, up(V4))[0] == "outcome: timeout on ipv6-kernel-off, up on ipv6-boot-disabled"


def test_pairs_are_matched_by_variant_setting_and_config_mode_only() -> None:
    results = [
        result("ipv6-kernel-off", exited(1)),
        result("ipv6-boot-disabled", up(V4)),
        result("ipv6-kernel-off", exited(1), label="=1"),  # no partner: never flagged
        result("ipv6-boot-disabled", up(V4), label="=0"),
        result("ipv6-kernel-off", exited(1), mode="ro"),
        result("ipv6-boot-disabled", exited(1), mode="ro"),  # agrees
        result("dual-stack", up(V4, V6)),  # other stacks are not compared
        result("ipv6-boot-disabled", None, variant="other", status="error"),  # no verdict: nothing to compare
        result("ipv6-kernel-off", exited(1), variant="other"),
    ]
    flags = fidelity_flags(results)
    assert [(f.variant, f.setting, f.config_mode, f.emulated, f.real) for f in flags] == [
        ("official", "unset", "rw", "official-ipv6-kernel-off-KNOB-unset", "official-ipv6-boot-disabled-KNOB-unset"),
    ]
    assert flags[0].line() == (
        f"nginx official unset: {MESSAGE}: outcome: exited 1 on ipv6-kernel-off, up on ipv6-boot-disabled; "
        f"listeners: (none) on ipv6-kernel-off, 0.0.0.0:80 on ipv6-boot-disabled ({CAUSE})"
    )


def test_grid_markdown_and_json_mark_the_pair() -> None:
    results = [result("ipv6-kernel-off", exited(1)), result("ipv6-boot-disabled", up(V4))]
    lines = render_terminal(results)
    assert lines[1].split(" │ ")[1:] == ["ipv6-kernel-off", "ipv6-boot-disabled"]
    assert lines[4].startswith(f"≠ nginx official unset: {MESSAGE}: outcome: exited 1 on ipv6-kernel-off")
    assert any(line.startswith("!= nginx official unset") for line in render_terminal(results, ascii_only=True))
    markdown = render_markdown(results)
    assert f"**{MESSAGE}** (nginx official unset): outcome: exited 1 on ipv6-kernel-off" in markdown
    doc = json.loads(render_json(results, meta={}))
    assert doc["fidelity"] == [{
        "target": "nginx", "variant": "official", "setting": "unset", "config_mode": "rw",
        "emulated": "official-ipv6-kernel-off-KNOB-unset", "real": "official-ipv6-boot-disabled-KNOB-unset",
        "message": MESSAGE, "differences": [
            "outcome: exited 1 on ipv6-kernel-off, up on ipv6-boot-disabled",
            "listeners: (none) on ipv6-kernel-off, 0.0.0.0:80 on ipv6-boot-disabled",
        ], "cause": CAUSE,
    }]
    assert lines[-1].endswith("; 1 emulation difference (flagged above)")  # in the totals line
    assert "ipv6-boot-disabled is what a host without IPv6 does" in lines[4]
    agreeing = [result("ipv6-kernel-off", exited(1)), result("ipv6-boot-disabled", exited(1))]
    assert "fidelity" not in json.loads(render_json(agreeing, meta={}))
    assert not any(MESSAGE in line for line in render_terminal(agreeing))


def test_the_emulated_cell_that_fails_is_pointed_at_the_proc_probe() -> None:
    failed = result("ipv6-kernel-off", exited(1))
    failed = CellResult(failed.cell, "fail", failed.verdict, failed.attestation, ("expected up",),
                        "the kernel has no IPv6 (errno 97): drop the [::] listen lines")  # fmt: skip
    real = result("ipv6-boot-disabled", up(V4))
    hinted = {r.cell.stack: r.hint for r in with_fidelity_hints([failed, real])}
    assert hinted["ipv6-boot-disabled"] is None
    hint = hinted["ipv6-kernel-off"]
    assert hint is not None
    assert "/proc/net/if_inet6" in hint
    assert "ipv6-boot-disabled gives up" in hint
    assert "drop the [::] listen lines" not in hint
    agreeing = [failed, result("ipv6-boot-disabled", exited(1))]
    assert with_fidelity_hints(agreeing)[0].hint == failed.hint  # no flag: the cell's own hint stands


def test_junit_gets_the_flag_on_both_cells(tmp_path: Path) -> None:
    flags = fidelity_flags([result("ipv6-kernel-off", exited(1)), result("ipv6-boot-disabled", up(V4))])
    xml = tmp_path / "j.xml"
    names = ["nginx[official-ipv6-kernel-off-KNOB-unset]", "nginx[official-ipv6-boot-disabled-KNOB-unset]", "x[y]"]
    cases = "".join(f'<testcase name="{n}"/>' for n in names)
    xml.write_text(f"<testsuites><testsuite>{cases}</testsuite></testsuites>")
    add_fidelity_properties(xml, flags)
    root = ET.parse(xml).getroot()
    got = {c.get("name"): [p.get("value") for p in c.iter("property")] for c in root.iter("testcase")}
    assert got["x[y]"] == []
    for name in names[:2]:
        assert got[name] == [flags[0].line()]
