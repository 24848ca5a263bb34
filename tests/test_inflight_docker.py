"""Several cells in flight per process (--ipv6-inflight), against the real engine.

The same verdicts as one at a time, with cells really overlapping; and every cell
started ahead is removed however the run ends: -x, Ctrl-C, a killed xdist worker (then
by the next session's sweep, as for any cell). The scheduling itself is tested without
an engine in tests/test_inflight.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import pytest
from helpers import cloud_proxy_matrix
from reliability_helpers import (
    RECORDER,
    children_of,
    containers,
    isolate_host,
    never_listens_image,
    volumes,
    wait_for,
)

pytestmark = pytest.mark.docker

SUBSET = ("--ipv6-variants=adaptive", "--ipv6-stacks=dual-stack,ipv6-kernel-off", "--ipv6-settings=unset,=1,=0,=maybe")
SAME = ("outcome", "listeners", "answered", "reach", "listened", "exit_code", "error_line")


@pytest.fixture(scope="session")
def never_listens(client: docker.DockerClient, base_image: str) -> str:
    return never_listens_image(client, base_image)


def never_listens_matrix(dest: Path, image: str, first: str = "timeout") -> None:
    """Four cells of a target that never listens: the first expected ``first``, the others a timeout."""
    (dest / "svc.ipv6.toml").write_text(
        f'[target]\nname = "svc"\nimages = {{ v = "{image}" }}\nvariants = ["v"]\nknob = "SVC_V6"\n'
        'settings = ["unset", "=1", "=2", "=3"]\nstacks = ["dual-stack"]\n\n[expect.v.dual-stack]\n'
        f'unset = "{first}"\n"=1" = "timeout"\n"=2" = "timeout"\n"=3" = "timeout"\n',
        encoding="utf-8",
    )


def _session(pytester: pytest.Pytester, cache_dir: Path, image: str, first: str = "timeout") -> str:
    """A pytester session on the real cache with :func:`never_listens_matrix`; its isolated host label."""
    pytester.makeini(f"[pytest]\nipv6_cache_dir = {cache_dir}\n")
    host = isolate_host(pytester)
    never_listens_matrix(pytester.path, image, first)
    return host


def _popen(pytester: pytest.Pytester, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    out = pytester.path / "out.txt"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=pytester.path, stdout=sink,
            stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    return proc, out


def _clean(client: docker.DockerClient, host: str) -> tuple[list[str], list[str]]:
    """Remove (and return) what sessions on the isolated ``host`` left: containers, volumes."""
    left = containers(client, host=host)
    for c in left:
        c.remove(force=True)
    left_volumes = volumes(client, host)
    for name in left_volumes:
        client.volumes.get(name).remove(force=True)
    return [c.name for c in left], left_volumes


@pytest.mark.usefixtures("proxy_image")
def test_four_in_flight_give_the_verdicts_of_one_at_a_time(
    pytester: pytest.Pytester, real_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini(f"[pytest]\nipv6_cache_dir = {real_cache_dir}\n")
    pytester.makeconftest(RECORDER)
    cloud_proxy_matrix(pytester.path)
    docs, alive = {}, {}
    for inflight in ("1", "4"):
        record = pytester.path / f"alive-{inflight}.jsonl"
        monkeypatch.setenv("IPV6COMPAT_RECORD", str(record))
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *SUBSET, f"--ipv6-inflight={inflight}",
                                               "--ipv6-json=r.json", "--ipv6-require-docker")
        result.assert_outcomes(passed=16)
        docs[inflight] = {c["id"]: c for c in json.loads((pytester.path / "r.json").read_text())["cells"]}
        seen: dict[str, set[str]] = {}
        for line in record.read_text().splitlines():
            row = json.loads(line)
            seen.setdefault(row["item"], set()).add(row["name"])
        alive[inflight] = max(len(names) for names in seen.values())
    assert alive["1"] == 1
    assert alive["4"] >= 3, "the cells did not overlap: the comparison would prove nothing"
    assert sorted(docs["1"]) == sorted(docs["4"])
    for cell_id, serial in docs["1"].items():
        ahead = docs["4"][cell_id]
        assert ahead["status"] == serial["status"] == "pass"
        assert {k: ahead["verdict"][k] for k in SAME} == {k: serial["verdict"][k] for k in SAME}, cell_id
        assert ahead["attestation"] == serial["attestation"], cell_id
        if serial["verdict"]["outcome"] == "up":  # the hold (1 s) ran from each cell's own start
            assert ahead["verdict"]["seconds"] >= 1.0, cell_id


def test_x_removes_the_cells_started_ahead(
    pytester: pytest.Pytester, real_cache_dir: Path, never_listens: str, client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = _session(pytester, real_cache_dir, never_listens, first="up 0.0.0.0:80")  # fails: a timeout after 5 s
    with (pytester.path / "conftest.py").open("a") as conftest:
        conftest.write("\n" + RECORDER)
    monkeypatch.setenv("IPV6COMPAT_RECORD", str(pytester.path / "alive.jsonl"))
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-x", "--ipv6-inflight=4",
                                               "--ipv6-timeout=5", "--ipv6-json=r.json")
    finally:
        left, left_volumes = _clean(client, host)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)
    rows = [json.loads(line) for line in (pytester.path / "alive.jsonl").read_text().splitlines()]
    assert len({r["name"] for r in rows}) == 4, "all four cells were in flight when the first failed"
    assert left == [], f"left behind: {left}"
    assert left_volumes == []
    doc = json.loads((pytester.path / "r.json").read_text())
    assert [c["status"] for c in doc["cells"]] == ["fail", "error", "error", "error"]
    assert doc["cells"][1]["reasons"] == ["no result: the run stopped early (stopping after 1 failures)"]


def test_ctrl_c_removes_every_cell_in_flight(
    pytester: pytest.Pytester, real_cache_dir: Path, never_listens: str, client: docker.DockerClient
) -> None:
    host = _session(pytester, real_cache_dir, never_listens)
    proc, out = _popen(pytester, "--ipv6-inflight=4", "--ipv6-timeout=120")
    try:
        found = wait_for("four cells in flight", lambda: (lambda f: f if len(f) == 4 else None)(
            containers(client, host=host)), 60, 0.02)
        for container in found:
            wait_for("the target's first line", lambda c=container: b"never-listens: up" in c.logs(), 30)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=90)  # a bound for a loaded engine, not a benchmark
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        left, left_volumes = _clean(client, host)
    assert left == [], f"left behind: {left}\n{out.read_text()}"
    assert left_volumes == [], out.read_text()
    assert code == pytest.ExitCode.INTERRUPTED, out.read_text()
    assert "KeyboardInterrupt" in out.read_text()
    assert {c.labels["ipv6compat.pid"] for c in found} == {str(proc.pid)}


def test_a_killed_worker_leaves_its_cells_in_flight_to_the_next_sweep(
    pytester: pytest.Pytester, real_cache_dir: Path, never_listens: str, client: docker.DockerClient
) -> None:
    host = _session(pytester, real_cache_dir, never_listens)
    proc, out = _popen(pytester, "-n", "1", "--max-worker-restart=0", "--ipv6-inflight=4", "--ipv6-timeout=120")
    try:

        def worker_containers() -> list[Any] | None:
            workers = {str(pid) for pid in children_of(proc.pid)}
            mine = [c for c in containers(client, host=host) if c.labels.get("ipv6compat.pid") in workers]
            # Two at least: items that reach the worker's queue after an item began start at the next item.
            return mine if len(mine) >= 2 else None

        found = wait_for("cells of the xdist worker in flight", worker_containers, 90, 0.05)
        worker = found[0].labels["ipv6compat.pid"]
        os.kill(int(worker), signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        assert "crashed" in out.read_text()
        left_by_worker = containers(client, host=host)
        assert len(left_by_worker) >= 2
        assert {c.labels["ipv6compat.pid"] for c in left_by_worker} == {worker}
        pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
        nxt = pytester.runpytest("-p", "no:cacheprovider", "test_nothing.py")  # in-process: this pid is alive
        nxt.assert_outcomes(passed=1)
        nxt.stdout.fnmatch_lines([f"ipv6compat: removed {len(left_by_worker)} container(s) left by dead sessions"])
    finally:
        left, left_volumes = _clean(client, host)
    assert left == []
    assert left_volumes == [], "the sweep left the dead worker's volumes"
