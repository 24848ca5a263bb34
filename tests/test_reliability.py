"""Reliability and safety, against a real Docker engine: no leaks, bounded waits, locked-down containers.

Faults are real: sessions are interrupted with SIGINT, an xdist worker is SIGKILLed,
the engine is made to stop answering (a loopback front for the Docker socket that
swallows traffic), targets never listen or exit at once. Containers are counted by
the labels of the process or session that made them, so parallel tests never count
each other's. Parts proven elsewhere are referenced, not repeated:
tests/test_seccomp.py (the profile denies mount/unshare/... with unconfined controls),
tests/test_stacks.py (attestation logic), tests/test_report.py (the classifier).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from helpers import CLOUD_PROXY, cloud_proxy_matrix, launch
from reliability_helpers import (
    RECORDER,
    children_of,
    containers,
    exists,
    host_sysctls,
    image_matrix,
    isolate_host,
    never_listens_image,
    silent_server,
    stalling_engine,
    volumes,
    wait_for,
)

from pytest_ipv6compat import diagnose
from pytest_ipv6compat.backends import EngineError
from pytest_ipv6compat.backends.docker_api import DockerBackend as Engine
from pytest_ipv6compat.backends.docker_api import process_start as _process_start
from pytest_ipv6compat.model import Family, Listener, Outcome
from pytest_ipv6compat.stacks import STACKS, Stack

pytestmark = pytest.mark.docker

HOST = socket.gethostname()
ME = str(os.getpid())
SLEEP = ("sh", "-c", "echo 'still starting'; exec sleep 300")
EMERG = "socket() [::]:56000 failed (97: Address family not supported by protocol)"
# Claim the unpatched proxy survives an IPv6-less kernel: that cell fails (errno 97), its dual-stack twin passes.
FLIP_ERRNO_97 = (
    '[expect.unpatched.ipv6-kernel-off]\nunset = "no-af-inet6"',
    '[expect.unpatched.ipv6-kernel-off]\nunset = "both"',
)
UNPATCHED_TWO_CELLS = ("--ipv6-variants=unpatched", "--ipv6-stacks=dual-stack,ipv6-kernel-off", "--ipv6-settings=unset")


@pytest.fixture(scope="session")
def never_listens(client: docker.DockerClient, base_image: str) -> str:
    return never_listens_image(client, base_image)


@pytest.fixture
def run_dir(pytester: pytest.Pytester, real_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester directory using the real cache, recording the containers alive during each cell.

    One cell at a time: the record takes every container alive during a cell for that cell's
    (tests/test_inflight_docker.py checks the cells started ahead with --ipv6-inflight)."""
    pytester.makeini(f"[pytest]\nipv6_cache_dir = {real_cache_dir}\nipv6_inflight = 1\n")
    pytester.makeconftest(RECORDER)
    monkeypatch.setenv("IPV6COMPAT_RECORD", str(pytester.path / "record.jsonl"))
    return pytester


def recorded(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    path = pytester.path / "record.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_all_gone(client: docker.DockerClient, seen: list[dict[str, Any]]) -> None:
    """Each cell's container was removed when the cell ended, and nothing of the run's session remains."""
    assert seen, "the run started no container: the leak check would be vacuous"
    alive: dict[str, list[str]] = {}
    for r in seen:
        alive.setdefault(r["item"], []).append(r["name"])
    assert all(len(names) == 1 for names in alive.values()), f"an earlier cell's container outlived it: {alive}"
    for session in {r["labels"]["ipv6compat.session"] for r in seen}:
        assert containers(client, session=session) == [], f"session {session} leaked containers"
    assert [r["name"] for r in seen if exists(client, r["id"])] == []


# --- 1. no leaks ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("proxy_image")
def test_passing_run_leaves_no_container_and_no_host_change(run_dir: pytest.Pytester, client: Any) -> None:
    """(a) passing cells on both IPv6-off stacks: every container is locked down and removed, host sysctls untouched."""
    cloud_proxy_matrix(run_dir.path)
    before = host_sysctls()
    result = run_dir.runpytest(
        "--ipv6-variants=adaptive", "--ipv6-stacks=ipv6-sysctl-off,ipv6-kernel-off", "--ipv6-settings=unset"
    )
    after = host_sysctls()
    result.assert_outcomes(passed=3)  # sysctl-off, kernel-off, kernel-off with read-only config
    seen = recorded(run_dir)
    assert len({r["id"] for r in seen}) == 3, "one container per cell, alive while the cell ran"
    for r in seen:
        assert r["labels"]["ipv6compat.pid"] == ME
        assert r["labels"]["ipv6compat.host"] == HOST
        assert r["labels"]["ipv6compat.pid-start"] == _process_start(os.getpid())
        # 4. locked down: unprivileged, no network, per-container sysctls, and no added capability but the
        # one the probe's podsetup uses to make the pod address and drops before the target starts (that
        # the target holds exactly the engine's defaults is tests/test_pod.py's, by the kernel's own word)
        assert r["Privileged"] is False
        assert r["CapAdd"] == ["NET_ADMIN"]
        assert r["Entrypoint"][0] == "/.ipv6compat/podsetup"
        assert r["NetworkMode"] == "none"
        assert r["Sysctls"] == {f"net.ipv6.conf.{i}.disable_ipv6": "1" for i in ("all", "default", "lo")}
        kernel_off = "ipv6-kernel-off" in r["item"]
        seccomp = [o for o in r["SecurityOpt"] or [] if o.startswith("seccomp=")]
        assert len(seccomp) == kernel_off, r["SecurityOpt"]
        if kernel_off:
            assert json.loads(seccomp[0].removeprefix("seccomp="))["defaultAction"] == "SCMP_ACT_ERRNO"
    # The containers had disable_ipv6=1; this namespace keeps what it had.
    assert after == before
    assert_all_gone(client, seen)


@pytest.mark.usefixtures("proxy_image")
def test_failing_run_leaves_no_container_and_hints_at_errno_97(run_dir: pytest.Pytester, client: Any) -> None:
    """(b) a failing cell (expectation flipped) and a passing one; 6. the errno-97 hint is in the output."""
    cloud_proxy_matrix(
        run_dir.path,
        FLIP_ERRNO_97,
    )
    result = run_dir.runpytest(*UNPATCHED_TWO_CELLS)
    result.assert_outcomes(passed=1, failed=1)
    hint = diagnose.hint(f"nginx: [emerg] {EMERG}", EMERG, exit_code=1, stack="ipv6-kernel-off")
    assert hint is not None
    assert "errno 97" in hint
    assert "listen" in hint  # phrased for nginx
    result.stdout.fnmatch_lines(
        [
            "*cloud-proxy[[]unpatched-ipv6-kernel-off-PL_IPV6_DISABLE-unset[]]: verdict does not match*",
            f"*error line: *[[]emerg[]] *{EMERG.replace('[', '[[]')}",
            f"  Hint: {hint.replace('[', '[[]')}",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert_all_gone(client, recorded(run_dir))


@pytest.mark.usefixtures("proxy_image")
def test_keep_failed_is_the_only_way_a_container_stays(run_dir: pytest.Pytester, client: Any) -> None:
    """The control for the leak checks: a kept container IS found by the same label query."""
    cloud_proxy_matrix(
        run_dir.path,
        FLIP_ERRNO_97,
    )
    result = run_dir.runpytest(*UNPATCHED_TWO_CELLS, "--ipv6-keep-failed")
    result.assert_outcomes(passed=1, failed=1)
    seen = {r["item"]: r for r in recorded(run_dir)}
    failed = seen["cloud-proxy[unpatched-ipv6-kernel-off-PL_IPV6_DISABLE-unset]"]
    passed = seen["cloud-proxy[unpatched-dual-stack-PL_IPV6_DISABLE-unset]"]
    try:
        left = containers(client, session=failed["labels"]["ipv6compat.session"])
        assert [c.id for c in left] == [failed["id"]]
        kept = left[0].name
        assert kept.startswith("ipv6compat-kept-")  # renamed, so the next session's sweep leaves it for a while
        assert not exists(client, passed["id"])
        result.stdout.fnmatch_lines(
            [f"{kept}: docker logs {kept} 2>&1 | grep -v '^@@ipv6compat '; docker inspect {kept}; "
             f"docker diff {kept}; *"]
        )
    finally:
        session = failed["labels"]["ipv6compat.session"]
        for c in containers(client, session=session):
            c.remove(force=True)
        for volume in client.volumes.list(filters={"label": f"ipv6compat.session={session}"}):
            volume.remove()  # the kept container's probe volume, which its session had to leave


def _pytest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--ipv6-timeout=120", *args]


# pytest's own failure when a traceback entry has no line number (see the SIGINT test).
PYTEST_REPR_CRASH = "return self._rawentry.tb_lineno - 1"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _popen(pytester: pytest.Pytester, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    out = pytester.path / "out.txt"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            _pytest_cmd(*args),
            cwd=pytester.path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            # A shell's background job (and some CI runners) ignore SIGINT, and a child
            # inherits that: Python then never raises KeyboardInterrupt. Give the child
            # the default disposition, as a terminal's foreground job has.
            preexec_fn=_default_sigint,
        )
    return proc, out


@pytest.mark.parametrize("moment", ["as-soon-as-it-exists", "while-the-target-runs"])
def test_sigint_mid_run_leaves_no_container(
    pytester: pytest.Pytester, real_cache_dir: Path, never_listens: str, client: Any, moment: str
) -> None:
    """(c) Ctrl-C while a cell waits on a target that never listens."""
    pytester.makeini(f"[pytest]\nipv6_cache_dir = {real_cache_dir}\n")
    host = isolate_host(pytester)  # no other session's sweep can hide a leak
    image_matrix(pytester.path, never_listens, "timeout")
    proc, out = _popen(pytester)
    try:
        found = wait_for("the cell's container", lambda: containers(client, host=host), 30, 0.01)
        assert found[0].labels["ipv6compat.pid"] == str(proc.pid)
        container = found[0]
        if moment == "while-the-target-runs":
            wait_for("the target's first line", lambda: b"never-listens: up" in container.logs(), 15)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=90)  # a bound, not a benchmark: generous for a loaded engine
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        leaked = containers(client, host=host)
        for c in leaked:  # the isolated host name means no real session would ever sweep these
            c.remove(force=True)
        leaked_volumes = volumes(client, host)
        for name in leaked_volumes:
            client.volumes.get(name).remove(force=True)
    assert not leaked, f"left behind: {[c.name for c in leaked]}\n{out.read_text()}"
    assert not leaked_volumes, f"volumes left behind: {leaked_volumes}\n{out.read_text()}"
    assert not exists(client, container.id)
    text = out.read_text()
    if code == pytest.ExitCode.TESTS_FAILED and PYTEST_REPR_CRASH in text:
        # Seen once in CI (Python 3.11): the interrupt landed on an instruction without a
        # line number and pytest's own KeyboardInterrupt report crashed on tb_lineno None.
        # Cleanup was checked above; the exit code is pytest's, and it is not a pass.
        pytest.xfail("pytest crashed rendering the KeyboardInterrupt traceback (tb_lineno is None)")
    assert code == pytest.ExitCode.INTERRUPTED, text
    assert "KeyboardInterrupt" in text


def test_killed_xdist_worker_leftovers_are_swept_by_the_next_session(
    pytester: pytest.Pytester, real_cache_dir: Path, never_listens: str, client: Any
) -> None:
    """(d) SIGKILL an xdist worker with a live container: nothing of it can clean up, the next session does."""
    pytester.makeini(f"[pytest]\nipv6_cache_dir = {real_cache_dir}\n")
    host = isolate_host(pytester)  # only sessions run here may sweep what the worker leaves
    image_matrix(pytester.path, never_listens, "timeout")
    proc, out = _popen(pytester, "-n", "1", "--max-worker-restart=0")  # no replacement worker to sweep early
    try:

        def worker_container() -> list[Any]:
            workers = {str(pid) for pid in children_of(proc.pid)}
            return [c for c in containers(client, host=host) if c.labels.get("ipv6compat.pid") in workers]

        container = wait_for("a container of the xdist worker", worker_container, 60, 0.05)[0]
        worker = int(container.labels["ipv6compat.pid"])
        wait_for("the target's first line", lambda: b"never-listens: up" in container.logs(), 15)
        os.kill(worker, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "crashed" in out.read_text()  # xdist: worker 'gw0' crashed while running ...
    assert [c.id for c in containers(client, host=host)] == [container.id], "the killed worker's container remains"
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    nxt = pytester.runpytest("-p", "no:cacheprovider", "test_nothing.py")  # in-process: this pid is alive
    nxt.assert_outcomes(passed=1)
    nxt.stdout.fnmatch_lines(["ipv6compat: removed 1 container(s) left by dead sessions"])
    assert containers(client, host=host) == []
    assert volumes(client, host) == [], "the sweep left the dead worker's volumes"


def _owner(alive: bool, zombie: bool = False) -> tuple[str, str, subprocess.Popen[bytes]]:
    """A process to own a container: (pid, pid-start, handle); killed (and maybe reaped) when not alive."""
    proc = subprocess.Popen(["sleep", "60"])
    start = _process_start(proc.pid)
    assert start, "a fresh process has a start time"
    if not alive:
        proc.kill()
        if not zombie:
            proc.wait()
        else:
            wait_for("the zombie", lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] == "Z", 5)
    return str(proc.pid), start, proc


def test_sweep_removes_dead_sessions_only(engine: Engine, base_image: str, client: Any) -> None:
    """The sweep's rule, with real processes: a dead, zombie or reused-pid owner is gone; live ones stay."""
    owners = {
        "live": _owner(alive=True),
        "dead": _owner(alive=False),
        "zombie": _owner(alive=False, zombie=True),
    }
    live_pid, live_start, _ = owners["live"]
    labels = {
        "live": (HOST, live_pid, live_start),
        "dead": (HOST, *owners["dead"][:2]),
        "zombie": (HOST, *owners["zombie"][:2]),
        "pid-reused": (HOST, live_pid, str(int(live_start) + 1)),  # same pid, another process
        "other-host": ("not-" + HOST, *owners["dead"][:2]),  # not ours to judge
    }
    made: dict[str, Any] = {}
    try:
        for what, (host, pid, start) in labels.items():
            made[what] = client.containers.create(
                base_image, ["sleep", "300"], network_mode="none",
                labels={"ipv6compat.session": f"sweep-{what}", "ipv6compat.host": host,
                        "ipv6compat.pid": pid, "ipv6compat.pid-start": start},
            )
        with engine.run(launch(base_image, STACKS["dual-stack"], command=SLEEP, timeout=2)) as mine:
            mine.attestation()
            sweeper = Engine.connect(engine.probe_dir)  # what the next session does first
            sweeper.sweep()
            sweeper.client.close()
            assert exists(client, mine.container_id), "the sweep removed a live session's container"
            assert mine.verdict().outcome is Outcome.TIMEOUT  # still observed: the stream survived the sweep
        left = {what for what, c in made.items() if exists(client, c.id)}
        assert left == {"live", "other-host"}
    finally:
        for c in made.values():
            if exists(client, c.id):
                c.remove(force=True)
        for _, _, proc in owners.values():
            proc.kill()
            proc.wait()


# --- 2. bounded -----------------------------------------------------------------------------------


def test_target_that_never_listens_is_a_timeout_with_its_logs(engine: Engine, base_image: str) -> None:
    started = time.monotonic()
    with engine.run(launch(base_image, STACKS["dual-stack"], command=SLEEP, timeout=2)) as running:
        verdict = running.verdict()
        judged = time.monotonic() - started
    total = time.monotonic() - started
    assert verdict.outcome is Outcome.TIMEOUT
    assert "still starting" in verdict.logs
    # Bounds, not benchmarks: generous margins so a loaded machine cannot fail them,
    # yet far below what an unbounded wait (or the 30 s default) would take.
    assert 2.0 <= verdict.seconds < 12.0
    assert judged < 14.0, f"the verdict took {judged:.1f}s for a 2 s timeout"
    assert total < 20.0, f"start to removal took {total:.1f}s"


def test_target_that_exits_at_once_is_exited_without_waiting(engine: Engine, base_image: str) -> None:
    cmd = ("sh", "-c", "echo 'fatal: no config' >&2; exit 3")
    started = time.monotonic()
    with engine.run(launch(base_image, STACKS["ipv6-kernel-off"], command=cmd, timeout=30)) as running:
        verdict = running.verdict()
    assert verdict.outcome is Outcome.EXITED
    assert verdict.exit_code == 3
    assert verdict.error_line == "fatal: no config"
    assert verdict.seconds < 15, "an exit must not wait for the 30 s timeout"
    assert time.monotonic() - started < 20


def test_every_engine_call_has_a_timeout(engine: Engine, base_image: str) -> None:
    assert engine.client.api.timeout == engine.api_timeout
    assert 0 < engine.api_timeout < 600
    own = Engine.connect(engine.probe_dir, api_timeout=7.5)
    assert own.client.api.timeout == 7.5
    try:
        with own.run(launch(base_image, STACKS["dual-stack"], command=("true",), timeout=5)) as running:
            assert running.verdict().outcome is Outcome.EXITED
    finally:
        own.remove_session()


def test_engine_that_never_answers_fails_fast_at_connect(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with silent_server() as server:
        url = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        monkeypatch.setenv("DOCKER_HOST", url)
        started = time.monotonic()
        with pytest.raises(EngineError) as err:
            Engine.connect(engine.probe_dir, api_timeout=60, connect_timeout=1)
        took = time.monotonic() - started
    assert took < 20, "the first contact is bounded by connect_timeout, not the 60 s API timeout"
    assert str(err.value) == f"Docker engine at {url} (from DOCKER_HOST) is unreachable: Read timed out"


def _log_threads(name: str) -> list[threading.Thread]:
    # The wait thread is left out: it ends when its container is removed (by the sweep, if the engine hung).
    return [
        t for t in threading.enumerate()
        if t.name.startswith("ipv6compat-") and t.name.endswith(f"-{name}") and "-wait-" not in t.name and t.is_alive()
    ]


def test_engine_hanging_mid_observation_cannot_hang_teardown(
    engine: Engine, base_image: str, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine stops answering after attestation: the cell is an engine error (not a verdict), and the
    observation threads and removal are all bounded."""
    with stalling_engine() as front:
        monkeypatch.setenv("DOCKER_HOST", front.url)
        hung = Engine.connect(engine.probe_dir, api_timeout=5)
        with hung.run(launch(base_image, STACKS["dual-stack"], command=SLEEP, timeout=3)) as running:
            assert running.attestation().ok
            front.stall()
            started = time.monotonic()
            with pytest.raises(EngineError, match="the Docker engine stopped responding during the cell"):
                running.verdict()
            assert time.monotonic() - started < hung.api_timeout + 10
            name, cid = running.name, running.container_id
            closing = time.monotonic()
        teardown = time.monotonic() - closing
        assert teardown < hung.api_timeout + 10, f"teardown took {teardown:.1f}s with a hung engine"
        assert _log_threads(name) == [], "an observation thread outlived its container's teardown"
        # The hung engine could not remove it: it is left with its session label for the sweep.
        assert [c.id for c in containers(client, session=hung.session)] == [cid]
        front.resume()
    assert Engine(client, engine.probe_dir, session=hung.session).remove_session() == 1
    assert not exists(client, cid)


def test_engine_hanging_at_start_is_an_engine_error(
    engine: Engine, base_image: str, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stalling_engine() as front:
        monkeypatch.setenv("DOCKER_HOST", front.url)
        hung = Engine.connect(engine.probe_dir, api_timeout=5)
        hung.image_config(base_image)
        front.stall()
        started = time.monotonic()
        hung_start = r"(could not start a container from|cannot ship .* to the engine as volume) .*: Read timed out"
        with pytest.raises(EngineError, match=hung_start), hung.run(
            launch(base_image, STACKS["dual-stack"], command=SLEEP, timeout=3)
        ):
            pytest.fail("a container started through a hung engine")
        assert time.monotonic() - started < hung.api_timeout + 10
        front.resume()
    assert containers(client, session=hung.session) == []
    Engine(client, engine.probe_dir, session=hung.session).remove_session()  # a volume the engine made late


# --- 4. locked down: seccomp inside a kernel-off container -----------------------------------------


class _Unconfined(Stack):
    """ipv6-kernel-off's sysctls with seccomp off: the control showing the profile is what denies."""

    def security_opt(self) -> list[str]:
        return ["seccomp=unconfined"]


SANDBOX_SCRIPT = (
    "busybox unshare -U true; echo unshare=$?; "
    "busybox mount -t tmpfs none /nonexistent 2>&1; echo mount=$?"
)


def test_kernel_off_container_cannot_unshare_or_mount(engine: Engine, base_image: str) -> None:
    """Through Engine.run itself (tests/test_seccomp.py covers the profile syscall by syscall)."""
    cmd = ("sh", "-c", SANDBOX_SCRIPT)
    kernel_off = STACKS["ipv6-kernel-off"]
    control = _Unconfined("kernel-off-unconfined", "control", True, None)
    logs = {}
    for stack in (kernel_off, control):
        with engine.run(launch(base_image, stack, command=cmd, timeout=10)) as running:
            verdict = running.verdict()
            assert verdict.outcome is Outcome.EXITED, verdict
            logs[stack.name] = verdict.logs
    confined, unconfined = logs["ipv6-kernel-off"], logs["kernel-off-unconfined"]
    assert "unshare=1" in confined
    assert "mount=" in confined
    assert "mount=0" not in confined
    assert "permission denied" in confined.lower()  # EPERM from the filter, before the kernel looks at the path
    # Unconfined, the kernel gets to look: it reports the missing path first (no CAP_SYS_ADMIN either way).
    # (Whether unconfined `unshare -U` works depends on the kernel; test_seccomp.py checks that contrast.)
    assert "No such file or directory" in unconfined, unconfined
    assert "permission denied" not in unconfined.lower()


# --- 5. read-only config --------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_read_only_config_mount_is_really_read_only(
    engine: Engine, proxy_image: dict[str, str], tmp_path: Path
) -> None:
    """env-toggle edits its config in place: on a read-only mount that fails and the host copy is untouched.

    A copy of matrix/cloud-proxy/proxy is mounted, so that a broken mount could not damage the repository.
    """
    config = tmp_path / "proxy"
    shutil.copytree(CLOUD_PROXY / "proxy", config)
    before = _snapshot(config)
    env = {"PL_DOMAIN_NAME": "proxy.ipv6compat.test", "PL_IPV6_DISABLE": "1"}
    stack = STACKS["dual-stack"]
    ro = launch(proxy_image["env-toggle"], stack, env=env, probe="https", http_path="/healthz", timeout=20,
                mounts=(("/etc/proxy", str(config)),))
    with engine.run(ro) as running:
        verdict = running.verdict()
    assert verdict.outcome is Outcome.EXITED, verdict.logs
    assert verdict.exit_code == 1
    assert "Read-only file system" in verdict.logs
    assert _snapshot(config) == before
    # The control: the same launch with the image's own (writable) config comes up IPv4-only.
    rw = launch(proxy_image["env-toggle"], stack, env=env, probe="https", http_path="/healthz", timeout=20)
    with engine.run(rw) as running:
        up = running.verdict()
    assert up.outcome is Outcome.UP, up.logs
    assert up.listeners == {Listener(Family.INET, "0.0.0.0", 56000)}


def test_sweep_leaves_kept_containers_for_a_day(engine: Engine, base_image: str, client: Any) -> None:
    dead_pid, dead_start, proc = _owner(alive=False)
    proc.wait()
    labels = {"ipv6compat.session": "sweep-kept", "ipv6compat.host": HOST,
              "ipv6compat.pid": dead_pid, "ipv6compat.pid-start": dead_start}
    kept = client.containers.create(base_image, ["sleep", "300"], network_mode="none", labels=labels,
                                    name=f"ipv6compat-kept-sweeptest-{dead_pid}")
    plain = client.containers.create(base_image, ["sleep", "300"], network_mode="none", labels=labels)
    try:
        Engine.connect(engine.probe_dir).sweep()
        assert exists(client, kept.id), "a kept container was swept on the day it was kept"
        assert not exists(client, plain.id)
    finally:
        for c in (kept, plain):
            if exists(client, c.id):
                c.remove(force=True)
