"""Sharded CI: each job writes --ipv6-json; `python -m pytest_ipv6compat merge` makes one grid of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_matrix

from pytest_ipv6compat.merge import MergeError, merge_reports

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
    done = _merge(pytester.path / "shard0.json", pytester.path / "shard1.json", "--markdown",
                  pytester.path / "merged.md", "--json", pytester.path / "merged.json")
    assert done.returncode == 0, done.stderr
    assert (pytester.path / "merged.md").read_text() == (pytester.path / "whole.md").read_text()
    merged, single = (json.loads((pytester.path / n).read_text()) for n in ("merged.json", "whole.json"))
    assert [c["id"] for c in merged["cells"]] == [c["id"] for c in single["cells"]]
    assert merged["totals"] == single["totals"]
    assert "adaptive" in done.stdout
    assert "21 cells: 21 passed" in done.stdout


def test_a_cell_in_two_shards_and_a_file_that_is_no_report_are_one_line(tmp_path: Path) -> None:
    doc = {"schema": "pytest-ipv6compat/report", "version": 2, "meta": {}, "totals": {}, "cells": []}
    (tmp_path / "empty.json").write_text(json.dumps(doc))
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(MergeError, match=r"junk.json: not a report of this plugin: not a pytest-ipv6compat/report v2"):
        merge_reports([tmp_path / "empty.json", tmp_path / "junk.json"])
    done = _merge(tmp_path / "absent.json")
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path / 'absent.json'}: cannot read: No such file or directory"
