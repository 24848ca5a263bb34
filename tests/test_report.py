"""Unit tests for report.py (grid, Markdown, JSON + schema, JUnit properties) and results.py (round trip)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from pytest_ipv6compat import diagnose
from pytest_ipv6compat.model import (
    Attestation,
    Cell,
    Expectation,
    Family,
    KnobSetting,
    Listener,
    ListenerChange,
    Outcome,
    Protocol,
    Reach,
    Result,
    Verdict,
)
from pytest_ipv6compat.report import (
    Ordering,
    junit_properties,
    load_json,
    render_json,
    render_markdown,
    render_terminal,
    schema_path,
    short_expectation,
    short_verdict,
    sort_results,
)
from pytest_ipv6compat.results import CellResult
from pytest_ipv6compat.schema_check import first_error

KNOB = "PL_IPV6_DISABLE"
STACKS = ("dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off")  # the container stacks: the 63-cell set
V4 = Listener(Family.INET, "0.0.0.0", 56000)
V6 = Listener(Family.INET6, "::", 56000)
LO4 = Listener(Family.INET, "127.0.0.1", 56000)
VARIANTS = ("unpatched", "env-toggle", "adaptive")
SETTINGS = ("unset", "empty", "=1", "=true", "=false", "=0", "=maybe")
EMERG_97 = "nginx: [emerg] socket() [::]:56000 failed (97: Address family not supported by protocol)"
INVALID = "entrypoint: invalid value for PL_IPV6_DISABLE: 'maybe' (use 1/true/yes/on, 0/false/no/off or leave unset)"
NO_V6 = "entrypoint: PL_IPV6_DISABLE=0 requires IPv6, but socket(AF_INET6) failed: Address family not supported"


def up(*listeners: Listener, silent: tuple[Listener, ...] = ()) -> Verdict:
    reach = tuple(
        Reach(x, x.family, Result.NO_LOOPBACK, False, "Cannot assign requested address")
        if x in silent
        else Reach(x, x.family, Result.ACCEPTED, True, "HTTP/1.1 200 OK")
        for x in sorted(listeners)
    )
    return Verdict(Outcome.UP, frozenset(listeners), reach, logs="nginx: started\n", seconds=1.25)


def exited(code: int, line: str) -> Verdict:
    return Verdict(Outcome.EXITED, exit_code=code, error_line=line, logs=f"starting\n{line}\n", seconds=0.5)


def attest(stack: str, ok: bool = True) -> Attestation:
    off = stack != "dual-stack"
    facts = (
        ("disable_ipv6", "1" if off else "0"),
        ("lo has ::1", "no" if off else "yes"),
        ("socket(AF_INET6)", "errno 97" if stack == "ipv6-kernel-off" else "ok"),
    )
    return Attestation(stack, ok, facts, () if ok else ("::1 present on lo although disable_ipv6=1",))


def dual(stack: str) -> Verdict:
    """What a dual-stack nginx does on each stack: on sysctl-off [::] binds but ::1 is gone."""
    if stack == "ipv6-kernel-off":
        return exited(1, EMERG_97)
    return up(V4, V6, silent=(V6,) if stack == "ipv6-sysctl-off" else ())


def actual(variant: str, stack: str, label: str) -> Verdict:
    """The realistic cloud-proxy behaviour."""
    if variant == "unpatched" or (variant == "env-toggle" and label in ("unset", "empty")):
        return dual(stack)
    if variant == "env-toggle" or label in ("=1", "=true"):
        return up(V4)
    if label == "=maybe":
        return exited(2, INVALID)
    if label in ("=0", "=false"):
        return exited(1, NO_V6) if stack == "ipv6-kernel-off" else dual(stack)
    return up(V4) if stack == "ipv6-kernel-off" else dual(stack)  # auto-detect


def expect(variant: str, stack: str, label: str) -> Expectation:
    """The matrix: what each variant is documented to do; env-toggle should honour falsy values."""
    falsy = variant == "env-toggle" and label in ("=0", "=false")
    v = dual(stack) if falsy else actual(variant, stack, label)  # falsy: what a reader of PR 2014 expects
    if v.outcome is Outcome.EXITED:
        contains = "Address family not supported" if v.exit_code == 1 else "invalid value"
        return Expectation(Outcome.EXITED, exit_code=v.exit_code, error_contains=contains, source=f"exit {v.exit_code}")
    silent = frozenset(r.listener for r in v.reach if not r.ok)
    return Expectation(Outcome.UP, v.listeners, silent, source=short_verdict(v))


def cell(variant: str, stack: str, label: str, *, target: str = "cloud-proxy", mode: str = "rw") -> Cell:
    return Cell(target, variant, stack, KNOB, KnobSetting.from_label(label), expect(variant, stack, label),
                config_mode=mode, where=f"matrix/cloud-proxy.toml:{VARIANTS.index(variant) + 1}")


def judge(c: Cell, v: Verdict) -> CellResult:
    e = c.expectation
    reasons: list[str] = []
    if v.outcome is not e.outcome:
        reasons.append(f"expected {e.outcome}, got {v.outcome}")
    elif v.outcome is Outcome.UP:
        if v.listeners != e.listeners:
            want = " ".join(map(str, sorted(e.listeners)))
            reasons.append(f"expected listeners {want}, got {' '.join(map(str, sorted(v.listeners)))}")
    elif e.exit_code is not None and v.exit_code != e.exit_code:
        reasons.append(f"expected exit code {e.exit_code}, got {v.exit_code}")
    hint = diagnose.hint(v.logs, v.error_line) if reasons else None
    return CellResult(c, "fail" if reasons else "pass", v, attest(c.stack), tuple(reasons), hint)


def matrix() -> list[CellResult]:
    """The realistic 63-cell cloud-proxy result set, in collection order."""
    return [judge(cell(v, s, k), actual(v, s, k)) for v in VARIANTS for s in STACKS for k in SETTINGS]


def collection_order() -> Ordering:
    return Ordering.from_cells(r.cell for r in matrix())


def odd_results() -> list[CellResult]:
    """One of each unusual status/outcome: error (attestation), error (no image), skipped, timeout."""
    c = cell("adaptive", "ipv6-sysctl-off", "=true", target="other")
    timeout = Verdict(Outcome.TIMEOUT, logs="waiting for upstream\n", seconds=30.0)
    return [
        CellResult(c, "error", up(V4), attest(c.stack, ok=False), ("stack not attested",), None),
        CellResult(cell("adaptive", "dual-stack", "=1", target="other"), "error", None, None,
                   ("image ipv6compat/other:adaptive is missing",), None),
        CellResult(cell("adaptive", "dual-stack", "=0", target="other"), "skipped", None, None, ("deselected",), None),
        CellResult(cell("adaptive", "dual-stack", "unset", target="other"), "fail", timeout, attest("dual-stack"),
                   ("expected up, got timeout",), None),
    ]


def small() -> list[CellResult]:
    """2 variants x 2 stacks x 3 settings, with two failures and one error."""
    results = [
        judge(cell(v, s, k), actual(v, s, k))
        for v in ("env-toggle", "adaptive")
        for s in ("dual-stack", "ipv6-kernel-off")
        for k in ("unset", "=1", "=false")
    ]
    last = results[-1]
    results[-1] = CellResult(last.cell, "error", None, attest(last.cell.stack, ok=False), ("stack not attested",))
    return results


def order_of(results: list[CellResult]) -> Ordering:
    return Ordering.from_cells(r.cell for r in results)


# ---------------------------------------------------------------- terminal grid


def test_small_grid_exact_lines() -> None:
    results = small()
    assert render_terminal(results, order=order_of(results)) == [
        "cloud-proxy: knob PL_IPV6_DISABLE, 12 cells",
        "variant    │ dual-stack                │ ipv6-kernel-off",
        "───────────┼───────────────────────────┼───────────────────────────",
        "env-toggle │ v4+v6: unset              │ exit 1: unset",
        "           │ v4: =1                    │ v4: =1",
        "           │ ✗ v4 (want v4+v6): =false │ ✗ v4 (want exit 1): =false",
        "───────────┼───────────────────────────┼───────────────────────────",
        "adaptive   │ v4+v6: unset =false       │ v4: unset =1",
        "           │ v4: =1                    │ E: =false",
        "legend: v4 = 0.0.0.0; v6 = [::] (IPv6 only); exit N = exited with code N; ✗ = verdict differs from "
        "expectation; E = error, could not judge",
        "12 cells: 9 passed, 2 failed, 1 error, 0 skipped",
    ]


def test_narrow_width_stacks_the_grid_in_ascii() -> None:
    results = small()
    lines = render_terminal(results, order=order_of(results), width=44, ascii_only=True)
    assert lines == [
        "cloud-proxy: knob PL_IPV6_DISABLE, 12 cells",
        "env-toggle",
        "  dual-stack       v4+v6: unset",
        "                   v4: =1",
        "                   FAIL v4 (want v4+v6): =false",
        "  ipv6-kernel-off  exit 1: unset",
        "                   v4: =1",
        "                   FAIL v4 (want exit 1): =false",
        "adaptive",
        "  dual-stack       v4+v6: unset =false",
        "                   v4: =1",
        "  ipv6-kernel-off  v4: unset =1",
        "                   E: =false",
        "legend: v4 = 0.0.0.0; v6 = [::] (IPv6 only);",
        "  exit N = exited with code N;",
        "  FAIL = verdict differs from expectation;",
        "  E = error, could not judge",
        "12 cells: 9 passed, 2 failed, 1 error,",
        "  0 skipped",  # "N word" pairs are never split
    ]
    assert all(line.isascii() for line in lines)


def test_full_grid_rows_and_totals() -> None:
    lines = render_terminal(matrix(), order=collection_order())
    assert lines[0] == "cloud-proxy: knob PL_IPV6_DISABLE, 63 cells"
    cells = [[c.strip() for c in line.split(" │ ")] for line in lines[1:-2] if "┼" not in line]
    assert cells == [
        ["variant", "dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off"],
        ["unpatched", "v4+v6: all", "v4+v6~: all", "exit 1: all"],
        ["env-toggle", "v4+v6: unset empty", "v4+v6~: unset empty", "exit 1: unset empty"],
        ["", "v4: =1 =true =maybe", "v4: =1 =true =maybe", "v4: =1 =true =maybe"],
        ["", "✗ v4 (want v4+v6): =false =0", "✗ v4 (want v4+v6?): =false =0", "✗ v4 (want exit 1): =false =0"],
        ["adaptive", "v4+v6: unset empty =false =0", "v4+v6~: unset empty =false =0", "v4: unset empty =1 =true"],
        ["", "v4: =1 =true", "v4: =1 =true", "exit 1: =false =0"],
        ["", "exit 2: =maybe", "exit 2: =maybe", "exit 2: =maybe"],
    ]
    assert lines[-2] == (
        "legend: v4 = 0.0.0.0; v6 = [::] (IPv6 only); ? = accepted, no good answer (in a want: silent); ~ = no "
        "loopback of its families exists here; exit N = exited with code N; all = every knob setting; ✗ = verdict "
        "differs from expectation"
    )
    assert lines[-1] == "63 cells: 57 passed, 6 failed, 0 errors, 0 skipped"


def test_full_grid_fits_a_wide_terminal_and_stacks_in_a_narrow_one() -> None:
    wide = render_terminal(matrix(), order=collection_order(), width=120)
    assert any("│" in line for line in wide)
    assert max(map(len, wide)) <= 120
    narrow = render_terminal(matrix(), order=collection_order(), width=60)
    assert not any("│" in line for line in narrow)
    assert max(map(len, narrow)) <= 60
    assert "  ipv6-kernel-off  v4: unset empty =1 =true" in narrow


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_input_renders_identically(seed: int) -> None:
    results, order = matrix() + odd_results(), collection_order()
    shuffled = results[:]
    random.Random(seed).shuffle(shuffled)
    meta = {"plugin_version": "0.1.0"}
    assert render_terminal(shuffled, order=order) == render_terminal(results, order=order)
    assert render_markdown(shuffled, order=order) == render_markdown(results, order=order)
    assert render_json(shuffled, meta=meta, order=order) == render_json(results, meta=meta, order=order)
    # without an explicit order the result is still independent of arrival order
    assert render_terminal(shuffled) == render_terminal(results)


def test_default_order_puts_canonical_stacks_and_unset_empty_first() -> None:
    ordered = sort_results(matrix())
    first = ordered[:7]
    assert [r.cell.variant for r in ordered[::21]] == ["adaptive", "env-toggle", "unpatched"]  # by name
    assert [r.cell.stack for r in ordered[:21:7]] == list(STACKS)
    assert [r.cell.setting.label for r in first] == ["unset", "empty", "=0", "=1", "=false", "=maybe", "=true"]


def test_config_mode_rows_targets_and_empty_cells() -> None:
    ro = judge(cell("env-toggle", "dual-stack", "=1", mode="ro"), actual("env-toggle", "dual-stack", "=1"))
    rw = judge(cell("env-toggle", "ipv6-kernel-off", "=1"), actual("env-toggle", "ipv6-kernel-off", "=1"))
    lines = render_terminal([ro, rw, *odd_results()], ascii_only=True)
    assert lines[:5] == [
        "cloud-proxy: knob PL_IPV6_DISABLE, 2 cells",
        "variant                | dual-stack | ipv6-kernel-off",
        "-----------------------+------------+----------------",
        "env-toggle             | -          | v4: =1",
        "-----------------------+------------+----------------",
    ]
    assert lines[5] == "env-toggle (config ro) | v4: =1     | -"
    assert lines[6:9] == [
        "", "other: knob PL_IPV6_DISABLE, 4 cells", "variant  | dual-stack                       | ipv6-sysctl-off",
    ]
    assert "adaptive | FAIL timeout (want v4+v6): unset | E: =true" in lines
    assert lines[-1] == "6 cells: 2 passed, 1 failed, 2 errors, 1 skipped"
    assert render_terminal([]) == ["no matrix cells ran"]


def test_duplicate_cell_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"two results for cell cloud-proxy\[adaptive-dual-stack-PL_IPV6_DISABLE"):
        render_terminal(matrix() + matrix()[-21:-20])


# ---------------------------------------------------------------- short tokens


@pytest.mark.parametrize(
    ("verdict", "token"),
    [
        (up(V4, V6), "v4+v6"),
        (up(V4), "v4"),
        (up(V6), "v6"),
        (up(V4, V6, silent=(V6,)), "v4+v6~"),
        (up(LO4, Listener(Family.INET6, "::1", 56000)), "v4@127.0.0.1+v6@::1"),
        (up(), "up:none"),
        (exited(97, EMERG_97), "exit 97"),
        (Verdict(Outcome.EXITED), "exit ?"),
        (Verdict(Outcome.TIMEOUT, frozenset({V4})), "timeout"),
        (None, "no verdict"),
    ],
)
def test_short_verdict(verdict: Verdict | None, token: str) -> None:
    assert short_verdict(verdict) == token


def test_short_expectation() -> None:
    assert short_expectation(Expectation(Outcome.UP, frozenset({V4, V6}), frozenset({V6}))) == "v4+v6?"
    assert short_expectation(Expectation(Outcome.EXITED, exit_code=2)) == "exit 2"
    assert short_expectation(Expectation(Outcome.EXITED)) == "exit"
    assert short_expectation(Expectation(Outcome.TIMEOUT)) == "timeout"


def test_failure_with_equal_tokens_shows_ports_or_error_text() -> None:
    wrong_port = Verdict(Outcome.UP, frozenset({Listener(Family.INET, "0.0.0.0", 8080)}))
    r = CellResult(cell("adaptive", "dual-stack", "=1"), "fail", wrong_port, None, ("port",))
    assert "✗ 0.0.0.0:8080 (want 0.0.0.0:56000): =1" in "\n".join(render_terminal([r]))
    c = cell("adaptive", "dual-stack", "=maybe")
    r = CellResult(c, "fail", exited(2, "usage: proxy [-h]"), None, ("error line",))
    assert '✗ exit 2 (want exit 2 "invalid value"): =maybe' in "\n".join(render_terminal([r]))


# ---------------------------------------------------------------- Markdown


def test_markdown_table_and_failures() -> None:
    results = small()
    md = render_markdown(results, order=order_of(results))
    lines = md.splitlines()
    assert lines[:6] == [
        "### cloud-proxy (knob `PL_IPV6_DISABLE`)",
        "",
        "| variant | dual-stack | ipv6-kernel-off |",
        "|---|---|---|",
        "| env-toggle | v4+v6: unset<br>v4: =1<br>**✗ v4 (want v4+v6)**: =false "
        "| exit 1: unset<br>v4: =1<br>**✗ v4 (want exit 1)**: =false |",
        "| adaptive | v4+v6: unset =false<br>v4: =1 | v4: unset =1<br>**E**: =false |",
    ]
    assert "**12 cells: 9 passed, 2 failed, 1 error, 0 skipped**" in lines
    failures = lines[lines.index("#### Failures") + 2:]
    assert failures == [
        "- `cloud-proxy[env-toggle-dual-stack-PL_IPV6_DISABLE=false]` **fail**: got v4, want v4+v6",
        "  - expected listeners 0.0.0.0:56000 \\[::\\]:56000, got 0.0.0.0:56000",
        "  - 0.0.0.0:56000: answered (inet: accepted, HTTP/1.1 200 OK)",
        "- `cloud-proxy[env-toggle-ipv6-kernel-off-PL_IPV6_DISABLE=false]` **fail**: got v4, want exit 1",
        "  - expected exited, got up",
        "  - 0.0.0.0:56000: answered (inet: accepted, HTTP/1.1 200 OK)",
        "- `cloud-proxy[adaptive-ipv6-kernel-off-PL_IPV6_DISABLE=false]` **error**: got no verdict, want exit 1",
        "  - stack not attested",
    ]
    assert md.endswith("\n")
    assert not md.endswith("\n\n")


def test_markdown_failure_carries_error_line_and_hint_and_escapes_pipes() -> None:
    c = cell("unpatched", "ipv6-kernel-off", "=a|b")
    c = Cell(c.target, c.variant, c.stack, c.knob, c.setting,
             Expectation(Outcome.EXITED, exit_code=1, error_contains="Cannot assign requested address (99)"))
    r = CellResult(c, "fail", exited(1, EMERG_97), attest(c.stack), ("error line lacks 'Cannot assign'",),
                   diagnose.hint("", EMERG_97))
    md = render_markdown([r])
    assert '| unpatched | **✗ exit 1 (want exit 1 "Cannot assign requested addre...")**: =a\\|b |' in md
    assert '**fail**: got exit 1, want exit 1 "Cannot assign requested addre..."' in md
    assert "**1 cell: 0 passed, 1 failed, 0 errors, 0 skipped**" in md
    assert f"  - error line: `{EMERG_97}`" in md
    assert "  - **Hint:** the kernel has no IPv6 (errno 97): drop the \\[::\\] listen lines" in md
    assert render_markdown(matrix()).count("#### Failures") == 1
    assert "#### Failures" not in render_markdown(matrix()[:21])


# ---------------------------------------------------------------- JSON, schema, round trip


@pytest.fixture(scope="module")
def validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")  # the "test" extra
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


META = {"plugin_version": "0.1.0", "engine_version": "26.1.5", "base_image": "sha256:4f2c",
        "started": "2025-01-01T10:00:00+00:00", "finished": "2025-01-01T10:04:12+00:00"}


def test_json_validates_for_every_status_and_outcome(validator: Any) -> None:
    results = matrix() + odd_results()
    doc = json.loads(render_json(results, meta=META, order=collection_order()))
    validator.validate(doc)
    assert (doc["schema"], doc["version"], doc["meta"]) == ("pytest-ipv6compat/report", 4, META)
    assert doc["run"] == {"complete": True, "incomplete": None, "matrices": []}  # rendered without a run: claims none
    assert first_error(doc, json.loads(schema_path().read_text(encoding="utf-8"))) is None
    assert doc["totals"] == {"pass": 57, "fail": 7, "error": 2, "skipped": 1}
    cells = {f"{c['target']}[{c['id']}]": c for c in doc["cells"]}
    assert {c["status"] for c in cells.values()} == {"pass", "fail", "error", "skipped"}
    assert {c["verdict"]["outcome"] for c in cells.values() if c["verdict"]} == {"up", "exited", "timeout"}
    off = cells["cloud-proxy[unpatched-ipv6-kernel-off-PL_IPV6_DISABLE-empty]"]
    assert off["setting"] == ""
    assert off["verdict"]["exit_code"] == 1
    assert off["verdict"]["error_line"] == EMERG_97
    assert off["expected"] == {"outcome": "exited", "listeners": [], "silent": [], "pod": [], "exit_code": 1,
                               "error_contains": "Address family not supported", "source": "exit 1"}
    assert off["attestation"]["facts"] == {"disable_ipv6": "1", "lo has ::1": "no", "socket(AF_INET6)": "errno 97"}
    sysctl = cells["cloud-proxy[adaptive-ipv6-sysctl-off-PL_IPV6_DISABLE-unset]"]
    assert sysctl["setting"] is None
    assert [x["text"] for x in sysctl["verdict"]["listeners"]] == ["0.0.0.0:56000", "[::]:56000"]
    assert sysctl["verdict"]["listeners"][1] == {
        "text": "[::]:56000", "protocol": "tcp", "family": "inet6", "address": "::", "port": 56000,
        "v6only": True, "serves": ["inet6"],
    }
    assert sysctl["verdict"]["listeners"][0]["v6only"] is None  # IPV6_V6ONLY does not apply to an IPv4 socket
    assert [r["answered"] for r in sysctl["verdict"]["answered"]] == [True, False]
    assert [r["result"] for r in sysctl["verdict"]["reach"]] == ["accepted", "no-loopback"]
    assert cells["cloud-proxy[adaptive-dual-stack-PL_IPV6_DISABLE=maybe]"]["setting"] == "maybe"
    missing = cells["other[adaptive-dual-stack-PL_IPV6_DISABLE=1]"]
    assert (missing["verdict"], missing["attestation"], missing["hint"]) == (None, None, None)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda c: c.pop("hint"),
        lambda c: c.update(status="flaky"),
        lambda c: c.update(setting=0),
        lambda c: c["verdict"]["listeners"].append({"family": "inet6", "address": "::", "port": 70000}),
        lambda c: c["expected"].update(outcome="crashed"),
        lambda c: c.update(status="pass", verdict=None),
    ],
)
def test_schema_rejects_corrupt_cells(validator: Any, corrupt: Any) -> None:
    doc = json.loads(render_json(matrix()[:1], meta={}))
    corrupt(doc["cells"][0])
    assert not validator.is_valid(doc)
    # merge validates without the jsonschema package: the in-package check must agree
    assert first_error(doc, json.loads(schema_path().read_text(encoding="utf-8"))) is not None


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: d.pop("run"),
        lambda d: d["run"].update(complete="yes"),
        lambda d: d["run"]["matrices"].append({"path": "m.ipv6.toml", "sha256": "abc", "target": "t",
                                               "collected": [], "selected": []}),
        lambda d: d["totals"].update(pass_=1),
        lambda d: d.update(version=2),
    ],
)
def test_in_package_schema_check_agrees_with_jsonschema(validator: Any, corrupt: Any) -> None:
    doc = json.loads(render_json(matrix()[:1], meta={}))
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    assert validator.is_valid(doc)
    assert first_error(doc, schema) is None
    corrupt(doc)
    assert not validator.is_valid(doc)
    assert first_error(doc, schema) is not None


def test_every_schema_property_is_described() -> None:
    undocumented: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if isinstance(sub, dict) and "description" not in sub and "$ref" not in sub:
                    undocumented.append(f"{path}/{name}")
            for key, sub in node.items():
                if key not in ("if", "then"):  # conditions restate described properties
                    walk(sub, f"{path}/{key}")

    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    walk(schema, "")
    assert undocumented == []
    assert all("description" in d for d in schema["$defs"].values())


def test_round_trip_through_json_is_exact() -> None:
    for r in matrix() + odd_results():
        wire = json.loads(json.dumps(r.to_dict()))  # what xdist / a report file carries
        assert CellResult.from_dict(wire) == r
    meta, loaded = load_json(render_json(matrix() + odd_results(), meta=META, order=collection_order()))
    assert meta == META
    assert loaded == sort_results(matrix() + odd_results(), collection_order())


P8081 = Listener(Family.INET, "0.0.0.0", 8081)
P8080 = Listener(Family.INET, "0.0.0.0", 8080)
DUAL_UDP = Listener(Family.INET6, "::", 53, Protocol.UDP, v6only=False)


def changing(status: str = "pass", reasons: tuple[str, ...] = ()) -> CellResult:
    """A cell whose listener set changed during the hold: a port opened, another closed, a UDP socket opened."""
    c = cell("adaptive", "dual-stack", "unset")
    changes = (ListenerChange(P8080, False, 0.3), ListenerChange(P8081, True, 0.31),
               ListenerChange(DUAL_UDP, True, 0.7))
    verdict = Verdict(Outcome.UP, frozenset({P8081, DUAL_UDP}), logs="", seconds=1.5, changes=changes, unsteady=0.25)
    return CellResult(c, status, verdict, attest(c.stack), reasons)


def test_hold_window_changes_are_in_the_json_and_round_trip(validator: Any) -> None:
    doc = json.loads(render_json([changing()], meta={}))
    verdict = doc["cells"][0]["verdict"]
    assert verdict["changes"] == [
        {"listener": "0.0.0.0:8080", "change": "closed", "at": 0.3},
        {"listener": "0.0.0.0:8081", "change": "opened", "at": 0.31},
        {"listener": "udp/*:53", "change": "opened", "at": 0.7},
    ]
    assert verdict["unsteady"] == 0.25
    validator.validate(doc)
    assert first_error(doc, json.loads(schema_path().read_text(encoding="utf-8"))) is None
    _, [loaded] = load_json(json.dumps(doc))
    assert loaded == changing()  # listener notation, change and seconds all come back as they were
    quiet = json.loads(render_json(matrix()[:1], meta={}))["cells"][0]["verdict"]
    assert (quiet["changes"], quiet["unsteady"]) == ([], None)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda v: v["changes"][0].update(change="appeared"),
        lambda v: v["changes"][0].update(at="0.3"),
        lambda v: v["changes"][0].update(at=-1),
        lambda v: v["changes"][0].update(listener="0.0.0.0"),
        lambda v: v["changes"][0].update(listener={"text": "0.0.0.0:8080"}),
        lambda v: v["changes"][0].pop("at"),
        lambda v: v["changes"][0].update(seconds=0.3),
        lambda v: v.pop("changes"),
        lambda v: v.update(unsteady="0.25"),
    ],
)
def test_schema_rejects_a_malformed_change(validator: Any, corrupt: Any) -> None:
    doc = json.loads(render_json([changing()], meta={}))
    corrupt(doc["cells"][0]["verdict"])
    assert not validator.is_valid(doc)
    assert first_error(doc, json.loads(schema_path().read_text(encoding="utf-8"))) is not None


def test_a_v2_cell_without_changes_still_loads_and_a_bad_change_is_refused() -> None:
    d = changing().to_dict()
    v2 = {**d, "verdict": {k: v for k, v in d["verdict"].items() if k not in ("changes", "unsteady")}}
    assert CellResult.from_dict(v2).verdict == Verdict(Outcome.UP, frozenset({P8081, DUAL_UDP}), seconds=1.5)
    for bad in ({"listener": "0.0.0.0:8081", "change": "appeared", "at": 0.3},
                {"listener": "0.0.0.0:8081", "change": "opened", "at": "soon"},
                {"listener": "port 8081", "change": "opened", "at": 0.3}):
        with pytest.raises(ValueError, match="not a serialised CellResult"):
            CellResult.from_dict({**d, "verdict": {**d["verdict"], "changes": [bad]}})


def test_markdown_details_list_the_changes_once() -> None:
    text = "listener set changed during the hold: -0.0.0.0:8080 at 0.30 s, +0.0.0.0:8081 at 0.31 s, +udp/*:53 at 0.70 s"
    failures = render_markdown([changing("fail", ("missing listeners: 0.0.0.0:8080",))]).split("#### Failures")[1]
    assert f"  - {text.replace('*', chr(92) + '*')}" in failures.splitlines()
    assert "  - the listener set was still changing when the hold window reached its bound" in failures
    judged = render_markdown([changing("fail", ("missing listeners: 0.0.0.0:8080", text))])
    assert judged.count("listener set changed during the hold") == 1  # the judge's reason already says it
    assert "listener set changed" not in render_markdown([changing()])  # a pass lists no details


def test_from_dict_rejects_garbage_with_a_readable_error() -> None:
    d = matrix()[0].to_dict()
    with pytest.raises(ValueError, match="not a serialised CellResult"):
        CellResult.from_dict({k: v for k, v in d.items() if k != "verdict"})
    with pytest.raises(ValueError, match="does not match its fields"):
        CellResult.from_dict({**d, "id": "something-else"})
    with pytest.raises(ValueError, match="status 'flaky' is not one of pass, fail, error, skipped"):
        CellResult(matrix()[0].cell, "flaky", None, None)
    with pytest.raises(ValueError, match="not a pytest-ipv6compat/report v4 document"):
        load_json('{"schema": "something"}')


# ---------------------------------------------------------------- JUnit properties


def test_junit_properties() -> None:
    results = {r.cell.id: r for r in matrix()}
    assert junit_properties(results["adaptive-ipv6-sysctl-off-PL_IPV6_DISABLE-unset"]) == [
        ("ipv6.target", "cloud-proxy"), ("ipv6.cell", "adaptive-ipv6-sysctl-off-PL_IPV6_DISABLE-unset"),
        ("ipv6.variant", "adaptive"), ("ipv6.stack", "ipv6-sysctl-off"),
        ("ipv6.knob", "PL_IPV6_DISABLE"), ("ipv6.setting", "unset"), ("ipv6.config", "rw"), ("ipv6.status", "pass"),
        ("ipv6.expected", results["adaptive-ipv6-sysctl-off-PL_IPV6_DISABLE-unset"].cell.expectation.source),
        ("ipv6.verdict", "up"), ("ipv6.listeners", "0.0.0.0:56000 [::]:56000"), ("ipv6.pod", ""),
    ]
    props = dict(junit_properties(results["unpatched-ipv6-kernel-off-PL_IPV6_DISABLE=1"]))
    assert (props["ipv6.knob"], props["ipv6.setting"]) == ("PL_IPV6_DISABLE", "=1")  # the name, then the setting
    assert (props["ipv6.verdict"], props["ipv6.listeners"]) == ("exited 1", "")
    off = results["unpatched-ipv6-kernel-off-PL_IPV6_DISABLE=1"].cell.expectation
    assert props["ipv6.expected"] == off.source  # the expectation as written, not a grid label
    timeout, missing = odd_results()[3], odd_results()[1]
    assert dict(junit_properties(timeout))["ipv6.verdict"] == "timeout"
    assert dict(junit_properties(missing))["ipv6.verdict"] == "none"
    hinted = CellResult(timeout.cell, "fail", exited(1, EMERG_97), None, ("x",), "the kernel has no IPv6")
    assert junit_properties(hinted)[-1] == ("ipv6.hint", "the kernel has no IPv6")
    assert all(isinstance(v, str) for r in matrix() for _, v in junit_properties(r))
    crashed = CellResult(missing.cell, "error", None, None, ("worker gw1 crashed while running this cell\nmore",))
    assert junit_properties(crashed, crashed="gw1")[-2:] == [
        ("ipv6.crashed", "gw1"), ("ipv6.error", "worker gw1 crashed while running this cell")]  # its first line
    assert "ipv6.error" not in dict(junit_properties(hinted))  # a fail has reasons, not an error


# ---------------------------------------------------------------- tokens a reader can decode from the legend


def _reached(*listeners: Listener, unreached: tuple[Family, ...] = ()) -> Verdict:
    reach = tuple(
        Reach(x, via, Result.NO_LOOPBACK, False, "") if via in unreached else Reach(x, via, Result.ACCEPTED, True, "ok")
        for x in listeners
        for via in sorted(x.serves)
    )
    return Verdict(Outcome.UP, frozenset(listeners), reach)


def _one_cell_grid(verdict: Verdict) -> tuple[str, str]:
    c = cell("adaptive", "ipv6-sysctl-off", "unset")
    result = CellResult(c, "pass", verdict, attest(c.stack))
    lines = render_terminal([result], width=400)
    return short_verdict(verdict), next(line for line in lines if line.startswith("legend:"))


def test_listeners_on_several_ports_keep_their_ports_and_every_symbol_is_in_the_legend() -> None:
    """chronyd: NTP on *:123, its command socket on 127.0.0.1:323 and [::1]:323 (UDP)."""
    udp = Protocol.UDP
    token, legend = _one_cell_grid(_reached(
        Listener(Family.INET, "0.0.0.0", 123, udp), Listener(Family.INET, "127.0.0.1", 323, udp),
        Listener(Family.INET6, "::1", 323, udp),
    ))  # fmt: skip
    assert token == "udp:v4:123+udp:v4@127.0.0.1:323+udp:v6@::1:323"
    for entry in ("udp: = UDP socket", "v4@ADDR = only ADDR", ":PORT = on that port", "v6 = [::]"):
        assert entry in legend.replace("\xa0", " "), legend


def test_a_dual_socket_that_answers_on_one_family_is_marked() -> None:
    """haproxy's ':::80 v4v6' on ipv6-sysctl-off: one socket for both, but no ::1 to reach its IPv6 side."""
    dual = Listener(Family.INET6, "::", 80, Protocol.TCP, v6only=False)
    token, legend = _one_cell_grid(_reached(dual, unreached=(Family.INET6,)))
    assert token == "dual~6"
    assert "~6 = its IPv6 side has no loopback here, only IPv4 answered" in legend.replace("\xa0", " ")
    assert "~ = no loopback" not in legend.replace("\xa0", " ")
    assert _one_cell_grid(_reached(dual))[0] == "dual"  # both families answered


def test_the_wildcard_beside_a_specific_address_is_in_the_legend() -> None:
    both = (Listener(Family.INET, "0.0.0.0", 80), Listener(Family.INET, "127.0.0.1", 80))
    token, legend = _one_cell_grid(_reached(*both))
    assert token == "v4+@127.0.0.1"
    assert "v4+@ADDR = the wildcard and ADDR too" in legend.replace("\xa0", " ")
