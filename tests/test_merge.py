"""Sharded CI: each job writes --ipv6-json; `python -m pytest_ipv6compat merge` makes one grid of them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import copy_matrix

from pytest_ipv6compat.ledger import MatrixRecord, RunRecord
from pytest_ipv6compat.matrix import judge, load_matrix
from pytest_ipv6compat.merge import MergeError, merge_reports
from pytest_ipv6compat.model import Attestation, Family, Listener, ListenerChange, Outcome, Reach, Result, Verdict
from pytest_ipv6compat.report import load_json, render_json
from pytest_ipv6compat.results import CellResult

SUBSET = ("--ipv6-variants=adaptive", "--ipv6-settings=unset,=1,=maybe")


def _merge(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_ipv6compat", "merge", *map(str, args)],
        capture_output=True, text=True, check=False, timeout=60,
    )


@pytest.mark.docker
def test_two_shards_merge_into_the_grid_of_one_run(pytester: pytest.Pytester) -> None:
    copy_matrix(pytester)
    whole = pytester.runpytest(*SUBSET, "--ipv6-json=whole.json", "--ipv6-markdown=whole.md", "-n", "2")
    whole.assert_outcomes(passed=21)  # 12 cells, plus 9 with the config mounted read-only
    shards = (("ipv6-kernel-off,ipv6-boot-disabled", 12), ("dual-stack,ipv6-sysctl-off", 9))  # in any order
    for n, (stacks, cells) in enumerate(shards):
        shard = pytester.runpytest(*SUBSET, f"--ipv6-stacks={stacks}", f"--ipv6-json=shard{n}.json")
        shard.assert_outcomes(passed=cells)
    done = _merge(pytester.path / "shard0.json", pytester.path / "shard1.json", "--partial", "--markdown",
                  pytester.path / "merged.md", "--json", pytester.path / "merged.json")
    assert done.returncode == 0, done.stderr
    assert (pytester.path / "merged.md").read_text() == (pytester.path / "whole.md").read_text()
    merged, single = (json.loads((pytester.path / n).read_text()) for n in ("merged.json", "whole.json"))
    assert [c["id"] for c in merged["cells"]] == [c["id"] for c in single["cells"]]
    assert merged["totals"] == single["totals"]
    assert "adaptive" in done.stdout
    assert "21 cells: 21 passed" in done.stdout
    assert "not checked against the matrix" not in done.stdout  # the file is here: each expectation was its own


def test_a_cell_in_two_shards_and_a_file_that_is_no_report_are_one_line(tmp_path: Path) -> None:
    doc = json.loads(render_json([], meta={}))
    (tmp_path / "empty.json").write_text(json.dumps(doc))
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(MergeError, match=r"junk.json: not a report of this plugin: not a pytest-ipv6compat/report v4"):
        merge_reports([tmp_path / "empty.json", tmp_path / "junk.json"])
    done = _merge(tmp_path / "absent.json")
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path / 'absent.json'}: cannot read: No such file or directory"


# ---------------------------------------------------------------- merge's checks, pure (no engine)

TINY = """[target]
name = "tiny"
images = { adaptive = "ipv6compat/absent:nope" }
variants = ["adaptive"]
knob = "PL_IPV6_DISABLE"
settings = ["unset"]
stacks = ["dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off"]

[expect.adaptive.dual-stack]
unset = "up 0.0.0.0:56000 [::]:56000"

[expect.adaptive.ipv6-sysctl-off]
unset = "up 0.0.0.0:56000 [::]:56000/silent"

[expect.adaptive.ipv6-kernel-off]
unset = "up 0.0.0.0:56000"
"""
V4 = Listener(Family.INET, "0.0.0.0", 56000)
V6 = Listener(Family.INET6, "::", 56000)


# the kernel-off cell's verdict: it opened [::]:56000 at first, closed it, and a second port came and went
CHANGES = (ListenerChange(V6, False, 0.3), ListenerChange(Listener(Family.INET, "0.0.0.0", 8081), True, 0.31),
           ListenerChange(Listener(Family.INET, "0.0.0.0", 8081), False, 0.62))


def _verdict(stack: str) -> Verdict:
    listeners = (V4,) if stack == "ipv6-kernel-off" else (V4, V6)
    reach = tuple(Reach(x, x.family, Result.NO_LOOPBACK, False, "") if stack == "ipv6-sysctl-off" and x == V6
                  else Reach(x, x.family, Result.ACCEPTED, True, "HTTP/1.1 200 OK") for x in listeners)
    changes = CHANGES if stack == "ipv6-kernel-off" else ()
    return Verdict(Outcome.UP, frozenset(listeners), reach, logs="", seconds=0.5, changes=changes)


def _shards(tmp_path: Path, *stacks: tuple[str, ...], matrix_text: str = TINY) -> list[Path]:
    """One v4 report per tuple of stacks, each judged by the plugin's own judge, as the plugin writes them."""
    (tmp_path / "tiny.ipv6.toml").write_text(matrix_text, encoding="utf-8")
    matrix = load_matrix(tmp_path / "tiny.ipv6.toml")
    paths = []
    for n, mine in enumerate(stacks):
        record = MatrixRecord.of("tiny.ipv6.toml", matrix)
        results = []
        for cell in matrix.cells:
            if cell.stack in mine:
                verdict = _verdict(cell.stack)
                reasons = judge(cell.expectation, verdict).reasons
                attested = Attestation(cell.stack, True, (("socket(AF_INET6)", "ok"),))
                results.append(CellResult(cell, "fail" if reasons else "pass", verdict, attested, reasons))
                record.select(cell.id)
        path = tmp_path / f"shard{n}.json"
        path.write_text(render_json(results, meta={}, run=RunRecord(True, None, (record,))), encoding="utf-8")
        paths.append(path)
    return paths


def _edit(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(json.dumps(doc), encoding="utf-8")


ALL3 = (("dual-stack",), ("ipv6-sysctl-off",), ("ipv6-kernel-off",))


def test_shards_that_cover_the_matrix_merge_and_two_of_three_do_not(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    _meta, results, record = merge_reports(paths)
    assert sorted(r.cell.stack for r in results) == sorted(s for (s,) in ALL3)
    assert record.complete
    assert record.matrices[0].selected == list(record.matrices[0].collected)
    with pytest.raises(MergeError) as caught:
        merge_reports(paths[:2])
    assert str(caught.value) == (
        "tiny.ipv6.toml: 1 of its 3 cells are in no shard "
        "(first: tiny[adaptive-ipv6-kernel-off-PL_IPV6_DISABLE-unset]); add the shards that run them, or pass --partial"
    )
    _, partial, _ = merge_reports(paths[:2], partial=True)  # only what the two were asked to run
    assert len(partial) == 2
    done = _merge(*paths[:2])
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.count("\n") == 1
    assert "are in no shard" in done.stderr


def test_a_merged_report_merges_again(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    done = _merge(*paths, "--json", tmp_path / "merged.json")
    assert done.returncode == 0, done.stderr
    assert "3 cells: 3 passed" in done.stdout
    _, results, record = merge_reports([tmp_path / "merged.json"])
    assert len(results) == 3
    assert record.complete


def test_merge_keeps_the_hold_window_changes(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    done = _merge(*paths, "--json", tmp_path / "merged.json")
    assert done.returncode == 0, done.stderr
    want = [{"listener": "[::]:56000", "change": "closed", "at": 0.3},
            {"listener": "0.0.0.0:8081", "change": "opened", "at": 0.31},
            {"listener": "0.0.0.0:8081", "change": "closed", "at": 0.62}]
    merged = json.loads((tmp_path / "merged.json").read_text(encoding="utf-8"))
    assert {c["stack"]: c["verdict"]["changes"] for c in merged["cells"]} == {
        "dual-stack": [], "ipv6-sysctl-off": [], "ipv6-kernel-off": want}
    _, again, _ = merge_reports([tmp_path / "merged.json"])  # and a merged report merges again, changes and all
    assert {r.cell.stack: r.verdict.changes for r in again if r.verdict} == {
        "dual-stack": (), "ipv6-sysctl-off": (), "ipv6-kernel-off": CHANGES}


def test_a_malformed_change_is_refused_in_one_line(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    _edit(paths[2], lambda d: d["cells"][0]["verdict"]["changes"][0].update(change="appeared"))
    _one_line(paths, r"shard2.json: does not match the report schema v4: at cells\[0\].verdict.changes\[0\].change: "
                     r"'appeared' is not one of 'opened', 'closed'$")


def _one_line(paths: list[Path], pattern: str) -> None:
    with pytest.raises(MergeError, match=pattern) as caught:
        merge_reports(paths)
    assert "\n" not in str(caught.value)


def test_a_forged_pass_is_re_judged(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)

    def timeout_but_pass(doc: dict[str, Any]) -> None:
        verdict = doc["cells"][0]["verdict"]
        verdict.update(outcome="timeout", listeners=[], answered=[], reach=[])

    _edit(paths[0], timeout_but_pass)
    _one_line(paths, r"shard0.json: cell tiny\[adaptive-dual-stack-PL_IPV6_DISABLE-unset\] says pass, but its verdict "
                     r"does not meet its expectation: expected up, but the target timed out")


def test_a_forged_fail_and_an_unattested_pass_are_refused(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    _edit(paths[1], lambda d: (d["cells"][0].update(status="fail"), d["totals"].update({"pass": 0, "fail": 1})))
    _one_line(paths, r"shard1.json: cell tiny\[adaptive-ipv6-sysctl-off-PL_IPV6_DISABLE-unset\] says fail, but its "
                     "verdict meets its expectation")
    paths = _shards(tmp_path, *ALL3)
    _edit(paths[2], lambda d: d["cells"][0]["attestation"].update(ok=False))
    _one_line(paths, r"shard2.json: cell .* says pass, but its stack was not attested")


def test_a_cell_in_two_shards_is_refused(tmp_path: Path) -> None:
    paths = _shards(tmp_path, ("dual-stack", "ipv6-sysctl-off"), ("ipv6-sysctl-off", "ipv6-kernel-off"))
    _one_line(paths, r"shard1.json: cell tiny\[adaptive-ipv6-sysctl-off-PL_IPV6_DISABLE-unset\] "
                     r"is also in .*shard0.json")


def test_shards_from_two_versions_of_the_matrix_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _shards(tmp_path / "a", *ALL3[:2])
    edited = _shards(tmp_path / "b", *ALL3, matrix_text=TINY + "# one more line\n")
    _one_line([*first, edited[2]], r"b/shard2.json: ran tiny.ipv6.toml with sha256 [0-9a-f]{12}, but .*a/shard0.json "
                                   r"ran sha256 [0-9a-f]{12}: the shards come from different versions of the matrix")


def test_an_incomplete_shard_is_refused(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    why = "the run was interrupted (Ctrl-C or SIGTERM); 1 of 1 selected cell have no result"
    _edit(paths[2], lambda d: d["run"].update(complete=False, incomplete=why))
    _one_line(paths, rf"shard2.json: incomplete shard \({re.escape(why)}\); re-run it")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["cells"][0].update(status="flaky"), r"at cells\[0\].status: 'flaky' is not one of"),
        (lambda d: d["cells"][0].pop("verdict"), r"at cells\[0\]: 'verdict' is missing"),
        (lambda d: d.pop("run"), r"at the document: 'run' is missing"),
        (lambda d: d["run"]["matrices"][0].update(sha256="abc"), r"at run.matrices\[0\].sha256: 'abc' does not match"),
    ],
)
def test_a_report_that_breaks_the_schema_is_refused(tmp_path: Path, change: Any, problem: str) -> None:
    paths = _shards(tmp_path, *ALL3)
    _edit(paths[0], change)
    _one_line(paths, rf"shard0.json: does not match the report schema v4: {problem}")


def test_a_shard_whose_cells_are_not_what_it_was_asked_for_is_refused(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    _edit(paths[0], lambda d: (d["cells"].clear(), d["totals"].update({"pass": 0})))
    _one_line(paths, r"shard0.json: cell tiny\[adaptive-dual-stack-PL_IPV6_DISABLE-unset\] "
                     r"was asked for but has no result")
    paths = _shards(tmp_path, *ALL3)
    _edit(paths[0], lambda d: d["run"]["matrices"][0]["selected"].clear())
    _one_line(paths, r"shard0.json: cell .* is not among the cells this shard was asked to run")
    paths = _shards(tmp_path, *ALL3)
    _edit(paths[0], lambda d: d["totals"].update({"pass": 5}))
    _one_line(paths, r"shard0.json: its totals .* do not count its cells")


def test_a_v2_report_cannot_be_merged(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    _edit(paths[0], lambda d: (d.pop("run"), d.update(version=2)))
    _one_line(paths, r"shard0.json: report version 2 cannot be merged: only v4 records which cells")
    assert len(load_json(paths[0].read_text())[1]) == 1  # load_json still reads it


def _merge_in(where: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_ipv6compat", "merge", *map(str, args)],
        capture_output=True, text=True, check=False, timeout=60, cwd=where,
    )


def test_where_the_matrix_file_is_the_cells_are_judged_by_what_it_states(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _shards(tmp_path, *ALL3)
    monkeypatch.chdir(tmp_path)  # the recorded path, tiny.ipv6.toml, is here
    meta, results, _ = merge_reports(paths)  # what the plugin wrote: every expectation is the file's
    assert len(results) == 3
    assert "expectations_unchecked" not in meta

    def expect_what_it_did(doc: dict[str, Any]) -> None:  # a failing verdict, and an expectation edited to match
        cell = doc["cells"][0]
        cell["verdict"].update(outcome="timeout", listeners=[], answered=[], reach=[], pod_answered=[], pod_reach=[])
        cell["expected"].update(outcome="timeout", listeners=[], silent=[], pod=[], source="timeout")

    _edit(paths[0], expect_what_it_did)
    _one_line(paths, r"tiny.ipv6.toml: cell tiny\[adaptive-dual-stack-PL_IPV6_DISABLE-unset\] was judged by "
                     r"'timeout', but the file states 'up 0.0.0.0:56000 \[::\]:56000'$")
    monkeypatch.chdir(tmp_path.parent)  # elsewhere it merges as recorded, and says so
    done = _merge(*paths)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("expectations as the shards recorded them, not checked against the matrix: "
                                "tiny.ipv6.toml not in this directory (merge in the checkout the shards ran to "
                                "check them)\n")


def test_a_matrix_file_here_that_is_not_the_version_the_shards_ran_is_refused(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    (tmp_path / "tiny.ipv6.toml").write_text(TINY + "# edited since\n", encoding="utf-8")
    done = _merge_in(tmp_path, *paths)
    assert (done.returncode, done.stdout) == (2, "")
    assert re.fullmatch(r"error: tiny.ipv6.toml: the file here has sha256 [0-9a-f]{12}, but the shards ran "
                        r"[0-9a-f]{12}: merge where the matrix is the version the shards ran\n", done.stderr)


def test_a_skipped_cell_is_not_green(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)

    def skipped(doc: dict[str, Any]) -> None:  # as a shard without User-mode Linux or an engine writes it
        doc["cells"][0].update(status="skipped", verdict=None, attestation=None, reasons=["no engine"])
        doc["totals"].update({"pass": 0, "skipped": 1})

    _edit(paths[0], skipped)
    done = _merge_in(tmp_path, *paths)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "3 cells: 2 passed, 0 failed, 0 errors, 1 skipped" in done.stdout.replace("\xa0", " ")


def test_a_pass_attested_on_another_stack_is_refused(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    _edit(paths[0], lambda d: d["cells"][0]["attestation"].update(stack="ipv6-sysctl-off"))
    _one_line(paths, r"shard0.json: cell tiny\[adaptive-dual-stack-PL_IPV6_DISABLE-unset\] says pass, but its "
                     r"attestation is of stack ipv6-sysctl-off, not dual-stack$")
