"""Several engines in one session: each cell records the engine that really ran it, and an engine that is
dead from the start, or dies during the run, hands its worker's cells to the next engine that answers.

Ground truth is the engines' own word, asked directly (their version and info, and the container starts
in their event streams), never the plugin's report. The second engine is a dockerd of its own; an engine
that "dies" is reached through a link the test cuts (the engine behind it stays, as a remote engine's
host does when the network to it goes), or is an address whose socket does not exist.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from engines import CONTAINER_START, EXEC_START, engine_link, isolated_dockerd
from helpers import copy_matrix
from test_engines import _cells_started, _leftovers, _prepare

pytestmark = pytest.mark.docker

DEFAULT = "unix:///var/run/docker.sock"
# 10 cells: adaptive on the three container stacks, unset and =1, and the read-only config cells
SUBSET = ("--ipv6-variants=adaptive", "--ipv6-settings=unset,=1", "--ipv6-require-docker")
CONTAINERS = (*SUBSET, "--ipv6-stacks=dual-stack,ipv6-sysctl-off,ipv6-kernel-off")
CONTAINER_CELLS = 10


@pytest.fixture(scope="module")
def second() -> Iterator[str]:
    with isolated_dockerd() as url:
        _prepare(url)
        yield url


def _facts(url: str) -> dict[str, str]:
    """What the engine at ``url`` says of itself, asked directly."""
    client = docker.DockerClient(base_url=url, timeout=30)
    try:
        version, info = client.version(), client.info()
    finally:
        client.close()
    return {"version": version["Version"], "api": version["ApiVersion"], "kernel": info["KernelVersion"],
            "os": info["OperatingSystem"], "runtime": info["DefaultRuntime"]}


def _report(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = json.loads((pytester.path / "r.json").read_text(encoding="utf-8"))["cells"]
    return cells


def test_each_cell_records_the_engine_that_ran_it(second: str, pytester: pytest.Pytester) -> None:
    copy_matrix(pytester)
    started = int(time.time())
    result = pytester.runpytest(
        *SUBSET, "--ipv6-stacks=dual-stack,ipv6-sysctl-off,ipv6-kernel-off,ipv6-boot-disabled",
        "-n", "2", f"--ipv6-engines={DEFAULT},{second}",
        "--ipv6-json=r.json", "--junitxml=j.xml", "--ipv6-markdown=r.md",
    )
    ended = int(time.time()) + 1
    cells = _report(pytester)
    result.assert_outcomes(passed=len(cells))
    facts = {url: _facts(url) for url in (DEFAULT, second)}
    result.stdout.fnmatch_lines([
        f"ipv6compat: engine 1 of 2 (workers gw0): Docker {facts[DEFAULT]['version']} (API *) at {DEFAULT} *",
        f"ipv6compat: engine 2 of 2 (workers gw1): Docker {facts[second]['version']} (API *) at {second} *",
    ])
    linux = shutil.which("linux")
    assert linux is not None
    uml_version = subprocess.run([linux, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    on: Counter[str] = Counter()
    for cell in cells:
        ran_on = cell["ran_on"]
        if cell["stack"] == "ipv6-boot-disabled":
            # the guest's release as its shim read it once booted, and the binary's as `linux --version` says
            assert ran_on == {"backend": "uml", "uml": linux, "uml_version": uml_version, "guest_kernel": uml_version}
            continue
        address = ran_on["address"]
        assert address in facts, ran_on
        assert {k: ran_on[k] for k in facts[address]} == facts[address]
        assert (ran_on["backend"], ran_on["engine"], "failover" in ran_on) == ("docker", "Docker", False)
        on[address] += 1
    # The private engine started exactly the containers of the cells that name it (UML cells start none); the
    # default one is shared with other sessions on this machine, so it started at least as many.
    assert _cells_started(second, started, ended) == on[second]
    assert _cells_started(DEFAULT, started, ended) >= on[DEFAULT]
    assert set(on) == set(facts), f"not every engine ran a cell: {on}"
    junit = {case.get("name", ""): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(pytester.path / "j.xml").getroot().iter("testcase")}
    for cell in cells:
        props = junit[f"{cell['target']}[{cell['id']}]"]
        assert {k: props[f"ipv6.ran_on.{k}"] for k in cell["ran_on"]} == cell["ran_on"]
    markdown = (pytester.path / "r.md").read_text(encoding="utf-8")
    for url in facts:
        escaped = url.replace("_", "\\_")  # Markdown
        assert f"at {escaped}, runtime runc, kernel {facts[url]['kernel']}" in markdown
    assert f"User-mode Linux {uml_version} ({linux})" in markdown
    assert _leftovers(second) == ([], [])


def test_a_dead_engine_from_the_start_gives_its_share_to_the_other(pytester: pytest.Pytester) -> None:
    copy_matrix(pytester)
    dead = f"unix:///var/tmp/ipv6compat-no-engine-{os.getpid()}.sock"  # short: a unix socket path has 108 bytes
    assert not Path(dead.removeprefix("unix://")).exists()
    result = pytester.runpytest(*CONTAINERS, "-n", "2", f"--ipv6-engines={DEFAULT},{dead}", "--ipv6-json=r.json")
    result.assert_outcomes(passed=CONTAINER_CELLS)  # no cell errors because gw1's engine is dead
    result.stdout.fnmatch_lines([
        f"ipv6compat: engine 2 of 2 (workers gw1): Docker engine at {dead} (from --ipv6-engines) is unreachable: "
        "No such file or directory; its cells go to the next engine that answers",
    ])
    cells = _report(pytester)
    assert {c["ran_on"]["address"] for c in cells} == {DEFAULT}
    moved = [c for c in cells if "failover" in c["ran_on"]]
    assert moved, "gw1 ran no cell: the fail-over was not exercised"
    assert {c["ran_on"]["failover"] for c in moved} == {f"{dead} did not answer (No such file or directory)"}


@pytest.mark.parametrize("cut_on", [CONTAINER_START, EXEC_START], ids=["at-container-start", "while-observed"])
def test_an_engine_that_dies_mid_run_hands_its_cells_to_the_other(
    second: str, pytester: pytest.Pytester, cut_on: re.Pattern[bytes]
) -> None:
    copy_matrix(pytester)
    # gw1's second cell finds its engine gone: as the container is started, or once it runs and its
    # watcher (an exec session) is started
    with engine_link(second, cut_after_starts=1, cut_on=cut_on) as link:
        # One cell at a time: the counts below say which cell was on the engine when it died (with several
        # in flight the cells already running there move too, and all pass as well).
        result = pytester.runpytest(*CONTAINERS, "-n", "2", f"--ipv6-engines={DEFAULT},{link.url}",
                                    "--ipv6-json=r.json", "--ipv6-inflight=1")
        assert link.cut_done.is_set(), "gw1 started fewer than two cells: the engine never died"
    result.assert_outcomes(passed=CONTAINER_CELLS)  # the cell it died under ran again on the other engine
    cells = _report(pytester)
    by_address = Counter(c["ran_on"]["address"] for c in cells)
    assert by_address == {link.url: 1, DEFAULT: CONTAINER_CELLS - 1}, by_address
    moved = [c for c in cells if "failover" in c["ran_on"]]
    assert moved, "no cell records the fail-over"
    for cell in moved:
        assert cell["ran_on"]["address"] == DEFAULT
        assert cell["ran_on"]["failover"].startswith(f"{link.url} did not answer (it stopped answering during the run")
    # The container of the cell the engine died under stays on the engine behind the link (nothing can
    # reach it to remove it), and nothing else does.
    containers, _ = _leftovers(second)
    assert len(containers) <= 1, containers
    _remove(second, containers)


def _remove(url: str, names: list[str]) -> None:
    client = docker.DockerClient(base_url=url, timeout=30)
    try:
        for name in names:
            client.api.remove_container(name, force=True, v=True)
        for volume in client.volumes.list(filters={"label": "ipv6compat.session"}):
            volume.remove(force=True)
    finally:
        client.close()

