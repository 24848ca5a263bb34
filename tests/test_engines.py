"""The same matrix on other engines: rootful Podman through its Docker-compatible API, a dockerd that
cannot see this machine's files (as a remote one cannot), and one session spread over two engines.

Each runs every stack and variant (knob settings unset, =1 and =maybe, and the read-only config
cells) and must give the verdicts the matrix states for the default engine; nothing may be left on
any engine afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import docker
import pytest
from engines import isolated_dockerd, podman_service
from helpers import MATRIX, copy_matrix

from pytest_ipv6compat.report import _md

pytestmark = pytest.mark.docker

SUBSET = ("--ipv6-settings=unset,=1,=maybe", "--ipv6-require-docker")
CELLS = 54  # 3 variants x 4 stacks x 3 settings, plus 18 with the config mounted read-only


@pytest.fixture(scope="module")
def podman() -> Iterator[str]:
    with podman_service() as url:
        yield url


@pytest.fixture(scope="module")
def remote_dockerd() -> Iterator[str]:
    with isolated_dockerd() as url:
        yield url


def _prepare(url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_ipv6compat", "prepare", str(MATRIX)],
        env={**os.environ, "DOCKER_HOST": url}, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _cells_started(url: str, since: int, until: int) -> int:
    client = docker.DockerClient(base_url=url, timeout=30)
    try:
        events = client.events(since=since, until=until, decode=True,
                               filters={"type": "container", "event": "start", "label": "ipv6compat.session"})
        return sum(1 for _ in events)
    finally:
        client.close()


def _leftovers(url: str) -> tuple[list[str], list[str]]:
    client = docker.DockerClient(base_url=url, timeout=30)
    try:
        containers = [c.name for c in client.containers.list(all=True, filters={"label": "ipv6compat.session"},
                                                             ignore_removed=True)]
        volumes = [v.name for v in client.volumes.list(filters={"label": "ipv6compat.session"})]
    finally:
        client.close()
    return containers, volumes


@pytest.mark.parametrize("engine", ["podman", "remote_dockerd"])
def test_the_matrix_gives_the_same_verdicts_on_another_engine(
    engine: str, request: pytest.FixtureRequest, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = request.getfixturevalue(engine)
    _prepare(url)
    monkeypatch.setenv("DOCKER_HOST", url)
    copy_matrix(pytester)
    result = pytester.runpytest(*SUBSET, "-n", "2")
    result.assert_outcomes(passed=CELLS)
    kind = "Podman" if engine == "podman" else "Docker"
    result.stdout.fnmatch_lines([f"ipv6compat: {kind} * at {url} (from DOCKER_HOST), runtime runc, *"])
    assert _leftovers(url) == ([], [])


def test_one_session_over_two_engines_gives_the_one_engine_grid(
    remote_dockerd: str, pytester: pytest.Pytester
) -> None:
    _prepare(remote_dockerd)
    copy_matrix(pytester)
    one = pytester.runpytest(*SUBSET, "-n", "2", "--ipv6-markdown=one.md")
    one.assert_outcomes(passed=CELLS)
    # (xdist's --tx popen//env:DOCKER_HOST=unix:///... cannot carry an address: its spec splits on "//".)
    default = "unix:///var/run/docker.sock"
    started = int(time.time())
    two = pytester.runpytest(*SUBSET, "-n", "2", "--ipv6-markdown=two.md", f"--ipv6-engines={default},{remote_dockerd}")
    two.assert_outcomes(passed=CELLS)
    ended = int(time.time()) + 1
    for url in (default, remote_dockerd):  # each engine really ran cells of this session
        assert _cells_started(url, started, ended) > 0, f"no cell ran on {url}"
    one_md, two_md = ((pytester.path / name).read_text().split("#### Ran on")[0] for name in ("one.md", "two.md"))
    assert two_md == one_md  # the grid; what follows says which engines ran it
    # as Markdown writes it: the temporary directory's name may have a "_"
    assert f"at {_md(remote_dockerd)}, runtime" in (pytester.path / "two.md").read_text()
    assert _leftovers(remote_dockerd) == ([], [])
