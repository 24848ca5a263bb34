"""The oci backend (--ipv6-backend=oci) against the engine: the same verdicts, nothing left behind.

Parity is the acceptance test (issue 18): the reference matrix's container stacks give the same grid on
``oci`` as on ``engine``, and every zoo target (the pod address's too) on every container stack (ipv6-only
too) gives the same verdict on both, its listeners taken independently on oci (``nsenter -t PID -n ss`` on the
runtime's pid); a cell with a pod address holds the engine's identity and is reached over it (a real client).
The fault tests kill the session's process (SIGTERM, kill -9) while a cell runs, and look for what it left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import groundtruth
import pytest
from helpers import copy_matrix, launch
from test_zoo import zoo_image  # noqa: F401 - the fixture
from zoo_table import POD_STACKS, POD_TARGETS, TARGETS, ZooTarget

from pytest_ipv6compat import images
from pytest_ipv6compat.backends import Launch
from pytest_ipv6compat.backends.docker_api import DockerBackend as Engine
from pytest_ipv6compat.backends.docker_api import process_start
from pytest_ipv6compat.backends.oci import OciBackend, Runtime, find_runtime
from pytest_ipv6compat.model import Outcome, Verdict
from pytest_ipv6compat.options import Settings, run_base
from pytest_ipv6compat.spec import parse_run_settings
from pytest_ipv6compat.stacks import POD_ADDRESSES, get_stack
from pytest_ipv6compat.stacks import STACKS as ALL_STACKS

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="the oci backend needs root"),
]
CONTAINER_STACKS = "--ipv6-stacks=dual-stack,ipv6-sysctl-off,ipv6-kernel-off"
SUBSET = ("--ipv6-settings=unset,=1,=maybe", CONTAINER_STACKS, "--ipv6-require-docker")
CELLS = 39  # 3 variants x 3 stacks x 3 settings, plus 12 with the config mounted read-only
IDENTITY = ('echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; echo "HOME=$HOME"; '
            "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status")
DOCKER_DEFAULT_CAPS = 0xA80425FB  # Docker's 14 default capabilities (oci_bundle.CAPABILITIES), CAP_NET_ADMIN not


@pytest.fixture(scope="module")
def oci(engine: Engine) -> Iterator[OciBackend]:
    runtime = find_runtime()
    if runtime is None:
        pytest.skip("neither crun nor runc is installed")
    backend = OciBackend(engine, images.default_cache_dir(), engine.probe_dir, runtime)
    yield backend
    backend.remove_session()


def _live_sessions() -> set[str]:
    """Sessions whose process is alive (another xdist worker's, this one's): theirs are not leftovers."""
    runs = images.default_cache_dir() / "oci" / "run"
    live = set()
    for path in runs.iterdir() if runs.is_dir() else []:
        pid, start, session = path.name.split("-", 2)
        if pid.isdigit() and process_start(int(pid)) == start:
            live.add(session)
    return live


def leftovers(session: str | None = None) -> list[str]:
    """Containers the runtime still has, session directories and cgroups of the oci backend: of ``session``,
    else of every session whose process has ended."""
    runtime = find_runtime()
    assert runtime is not None
    listed = subprocess.run([runtime.path, "list", "--format", "json"], capture_output=True, text=True, check=True)
    found = [c["id"] for c in json.loads(listed.stdout or "[]") or [] if c["id"].startswith("ipv6compat-")]
    runs = images.default_cache_dir() / "oci" / "run"
    found += [p.name for p in runs.iterdir()] if runs.is_dir() else []
    for cgroups in (Path("/sys/fs/cgroup/memory/ipv6compat"), Path("/sys/fs/cgroup/unified/ipv6compat")):
        found += [p.name for p in cgroups.iterdir() if p.is_dir()] if cgroups.is_dir() else []
    if session is not None:
        return [f for f in found if session in f]
    live = _live_sessions()
    return [f for f in found if not any(s in f for s in live)]


def test_the_reference_matrix_gives_the_engines_grid_on_oci(pytester: pytest.Pytester) -> None:
    copy_matrix(pytester)
    engine = pytester.runpytest(*SUBSET, "-n", "2", "--ipv6-markdown=engine.md")
    engine.assert_outcomes(passed=CELLS)
    oci = pytester.runpytest(*SUBSET, "-n", "2", "--ipv6-markdown=oci.md", "--ipv6-backend=oci")
    oci.assert_outcomes(passed=CELLS)
    grids = [(pytester.path / name).read_text().split("#### Ran on")[0] for name in ("engine.md", "oci.md")]
    assert grids[1] == grids[0]
    assert "OCI runtime" in (pytester.path / "oci.md").read_text()  # the cells really ran on oci
    assert leftovers() == []


def _key(verdict: Verdict) -> dict[str, object]:
    """What must agree between backends: outcome, exit code, listeners (now or before the exit), probes."""
    return {
        "outcome": verdict.outcome.value,
        "exit_code": verdict.exit_code,
        "listeners": sorted(map(str, verdict.listeners)),
        "listened": sorted(map(str, verdict.listened)),
        "reach": sorted((str(r.listener), r.via.value, r.result.value, r.ok) for r in verdict.reach),
        "pod_reach": sorted((str(r.listener), r.via.value, r.result.value, r.ok) for r in verdict.pod_reach),
        "error_line": re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", verdict.error_line or ""),  # nginx's time
    }


def _ss(pid: int) -> list[str]:
    """The listeners of ``pid``'s network namespace as ss shows them (ground truth, not the probe's)."""
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ss", "-Hltnu"], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    return sorted(f"{line.split()[0]} {line.split()[4]}" for line in out.splitlines() if line.strip())


def _runtime_pid(container_id: str) -> int:
    runtime = find_runtime()
    assert runtime is not None
    state = subprocess.run([runtime.path, "state", container_id], capture_output=True, text=True, check=True)
    return int(json.loads(state.stdout)["pid"])


# Every zoo target on every container stack, ipv6-only included (its table has no expectations there: parity
# needs none), and the pod address's own zoo.
ZOO_CELLS = [pytest.param(t, s, id=f"{t.name}-{s}") for t in (*TARGETS, *POD_TARGETS) for s in POD_STACKS]


@pytest.mark.usefixtures("ground_truth_tools")
@pytest.mark.parametrize(("target", "stack"), ZOO_CELLS)
def test_the_zoo_gives_the_engines_verdicts_on_oci(
    target: ZooTarget, stack: str, zoo_image: str, engine: Engine, oci: OciBackend,  # noqa: F811
) -> None:
    spec = run_base(Settings()).updated(parse_run_settings(target.run_settings(), f"zoo_table {target.name}"))
    launch = Launch(image=zoo_image, stack=get_stack(stack), run=spec)
    with engine.run(launch) as run:
        on_engine = run.verdict()
    with oci.run(launch) as run:
        assert run.attestation().ok, run.attestation().problems
        on_oci = run.verdict()
        truth = _ss(_runtime_pid(run.container_id)) if on_oci.outcome is Outcome.UP else None
    if truth is not None:
        assert len(truth) == len(on_oci.listeners), f"ss shows {truth}, the probe {sorted(map(str, on_oci.listeners))}"
    assert _key(on_oci) == _key(on_engine)


@pytest.mark.usefixtures("ground_truth_tools")
@pytest.mark.parametrize("stack", ["dual-stack", "ipv6-only"])
@pytest.mark.parametrize("user", [None, "nobody"], ids=["root", "nobody"])
def test_a_pod_cell_on_oci_holds_the_engines_identity_and_answers_over_its_pod_address(
    user: str | None, stack: str, base_image: str, engine: Engine, oci: OciBackend,
) -> None:
    """Started as root with CAP_NET_ADMIN for the pod set-up (probe/pod_setup.c), the target holds on oci what it
    holds on the engine: uid, gids, HOME, every capability set (Docker's 14 defaults, CAP_NET_ADMIN gone), no_new_privs,
    seccomp; and a real client in its namespace (nsenter) reaches it over the pod address, as the watcher says."""
    cell = launch(base_image, get_stack(stack), command=("sh", "-c", IDENTITY + "; exec httpd -f -p '[::]:8080'"),
                  user=user, hold=0.2)
    with engine.run(cell) as run:
        on_engine = run.verdict()
    with oci.run(cell) as run:
        assert run.attestation().ok, run.attestation().describe()
        on_oci = run.verdict()
        assert on_oci.outcome is Outcome.UP, (on_oci, on_oci.logs)
        pid = _runtime_pid(run.container_id)
        listeners = groundtruth.listeners_of(pid)
        pod = {4 if family == "inet" else 6: POD_ADDRESSES[family][0] for family in ALL_STACKS[stack].pod}
        truth = groundtruth.pod_reach(pid, listeners, pod)
    assert on_engine.outcome is Outcome.UP, (on_engine, on_engine.logs)
    seen = on_oci.logs.strip().splitlines()
    assert seen == on_engine.logs.strip().splitlines()
    status = dict(line.split(":\t", 1) for line in seen if line.startswith("Cap"))
    assert int(status["CapBnd"], 16) == DOCKER_DEFAULT_CAPS, seen
    assert int(status["CapEff"], 16) == (DOCKER_DEFAULT_CAPS if user is None else 0), seen
    assert seen[0].startswith("uid=0 gid=0" if user is None else "uid=65534 "), seen
    assert [s.notation for s in listeners] == ["*:8080"]  # one [::] socket serving both families
    assert truth == {"*:8080": True}, truth
    assert {str(x): on_oci.pod_answered(x) for x in on_oci.listeners} == truth


_HOLDER = """
import sys, time
from pytest_ipv6compat import images
from pytest_ipv6compat.backends import Launch
from pytest_ipv6compat.backends.docker_api import DockerBackend
from pytest_ipv6compat.backends.oci import OciBackend, Runtime, find_runtime
from pytest_ipv6compat.spec import RunSpec
from pytest_ipv6compat.stacks import STACKS
cache = images.default_cache_dir()
engine = DockerBackend.connect(images.ensure_probe(cache))
oci = OciBackend(engine, cache, engine.probe_dir, find_runtime())
launch = Launch(image=sys.argv[1], stack=STACKS["dual-stack"], run=RunSpec(hold=600, timeout=600))
with oci.run(launch) as run:
    run.attestation()
    print("started", oci.session, flush=True)
    run.verdict()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill-9"])
def test_a_killed_session_leaves_nothing(sig: signal.Signals, zoo_image: str) -> None:  # noqa: F811
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, zoo_image], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    line = holder.stdout.readline()
    assert line.startswith("started "), line
    session = line.split()[1]
    assert leftovers(session), "the cell is not running"
    holder.send_signal(sig)
    holder.wait(30)
    until = time.monotonic() + 30  # the guard reaps once the session's process is gone
    while leftovers(session) and time.monotonic() < until:
        time.sleep(0.1)
    assert leftovers(session) == []


def test_the_sweep_removes_a_dead_sessions_cells(oci: OciBackend, zoo_image: str) -> None:  # noqa: F811
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, zoo_image], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    line = holder.stdout.readline()
    session = line.split()[1]
    guard = subprocess.run(["pgrep", "-P", str(holder.pid), "-f", "read -r"], capture_output=True, text=True)
    for pid in guard.stdout.split():  # the guard first, so that only the sweep can clean up
        os.kill(int(pid), signal.SIGKILL)
    holder.kill()
    holder.wait(30)
    assert leftovers(session), "nothing to sweep"
    assert oci.sweep()
    assert leftovers(session) == []
    assert leftovers() == []


_FAKE_RUNTIME = """#!/bin/sh
echo "$@"
ls "$3/rootfs"
grep -c " $3/rootfs " /proc/self/mountinfo
grep -c " /sys/fs/cgroup/unified cgroup2 " /proc/self/mounts || true  # 0 (grep's status 1) when hidden
"""


def test_ocistart_mounts_in_a_namespace_of_its_own_and_names_what_fails(oci: OciBackend) -> None:
    """probe/oci_start.c: the cell's overlay is mounted, and a hybrid layout's cgroup2 mount hidden, in a mount
    namespace that ends with the runtime it execs (the host sees neither); a step that fails is one line naming
    it, with the status an engine gives when it cannot run a container (125). A stand-in runtime reports what
    it sees from inside."""
    oci.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=oci.root, prefix="test-ocistart-") as tmp:
        cell, lower, runtime = Path(tmp) / "cell", Path(tmp) / "lower", Path(tmp) / "runtime"
        for sub in ("upper", "work", "rootfs"):
            (cell / sub).mkdir(parents=True)
        lower.mkdir()
        (lower / "from-the-image").write_text("")
        runtime.write_text(_FAKE_RUNTIME)
        runtime.chmod(0o755)
        argv = [str(oci.probe / "ocistart"), str(cell), str(lower), oci.runtime.hide, str(runtime), "the-id"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert (done.returncode, done.stderr) == (0, "")
        hidden = "0" if oci.runtime.hide else done.stdout.split()[-1]  # not hybrid: nothing to hide
        assert done.stdout == f"run --bundle {cell} the-id\nfrom-the-image\n1\n{hidden}\n"
        assert f" {cell}/rootfs " not in Path("/proc/self/mountinfo").read_text()
        if oci.runtime.hide:
            assert f" {oci.runtime.hide} cgroup2 " in Path("/proc/self/mounts").read_text()
        argv[2] = str(Path(tmp) / "no-such-image")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert (done.returncode, done.stdout) == (125, "")
        assert done.stderr == f"ocistart: cannot mount the overlay at {cell}/rootfs: No such file or directory\n"


@pytest.mark.parametrize(("command", "settings"), [
    (["sh", "-c", 'x=$(head -c 60000000 /dev/zero | tr "\\0" a)'], {"memory": "20m"}),  # OOM at the bound
    (["sh", "-c", "echo out; echo err >&2; exit 3"], {"read_only": True, "user": "nobody"}),
    (["sh", "-c", "touch /x || exit 4"], {"read_only": True}),
    (["sh", "-c", "id -u; id -G; echo $HOME; pwd; cat /etc/hostname | wc -c; exit 5"], {"user": "www-data"}),
], ids=["oom", "streams", "read-only", "user"])
def test_exits_oom_and_run_settings_match_the_engine(
    command: list[str], settings: dict[str, object], zoo_image: str, engine: Engine, oci: OciBackend,  # noqa: F811
) -> None:
    spec = run_base(Settings()).updated(parse_run_settings({"command": command, "hold": 0, **settings}, "test"))
    launch = Launch(image=zoo_image, stack=get_stack("dual-stack"), run=spec)
    with engine.run(launch) as run:
        on_engine = run.verdict()
    with oci.run(launch) as run:
        on_oci = run.verdict()
    assert on_engine.outcome is Outcome.EXITED
    assert on_oci.exit_code == on_engine.exit_code
    # Two streams written one after the other: either engine may read either first (the error line follows).
    assert sorted(on_oci.logs.splitlines()) == sorted(on_engine.logs.splitlines())
    assert on_oci.error_line in (on_engine.error_line, *on_engine.logs.splitlines())


def test_a_kept_cell_leaves_its_output_and_writable_layer(zoo_image: str, oci: OciBackend) -> None:  # noqa: F811
    spec = run_base(Settings()).updated(parse_run_settings(
        {"command": ["sh", "-c", "echo kept-output; touch /made-here; exit 2"], "hold": 0}, "test"))
    with oci.run(Launch(image=zoo_image, stack=get_stack("dual-stack"), run=spec)) as run:
        assert run.verdict().exit_code == 2
        run.keep = True
    kept = run.kept
    assert kept is not None
    try:
        assert "kept-output" in (kept / "output.log").read_text()
        assert (kept / "upper" / "made-here").exists()
        assert any(str(kept) in command for command in run.inspection())
        assert [p for p in leftovers(oci.session) if p.startswith("ipv6compat-")] == []  # no container left
    finally:
        shutil.rmtree(kept, ignore_errors=True)


# A target that exits the moment a second process appears in its pid namespace: the watcher's exec as it enters
# (the shell's loop forks nothing, so its own children cannot count). That exec meets the target as it dies.
EXITS_AT_THE_EXEC = ("sh", "-c", 'while :; do set -- /proc/[0-9]*; [ $# -gt 1 ] && { echo "a second process: '
                     'exiting"; exit 3; }; done')


class ProcSampler:
    """The cell's processes as /proc shows them while it runs: every ~1 ms the descendants of this test's process
    (``/proc/PID/task/TID/children``) whose pid namespace is not this host's give the cell's namespace (the engine's
    containers and the lead's are not descendants); every ~10 ms while one is in it, all of /proc is read for
    processes of that namespace, with their state and parent, since an orphan is no descendant any more."""

    def __init__(self) -> None:
        self.host_ns = os.readlink("/proc/self/ns/pid")
        self.mine: set[str] = set()  # the cell's pid namespace(s)
        self.seen: set[tuple[int, str, int, str]] = set()  # (pid, state, ppid, namespace) of each of its processes
        self.members: set[tuple[int, str]] = set()  # (pid, start time) of each of its processes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @staticmethod
    def read(pid: int) -> tuple[str, int, str, str] | None:
        """(state, ppid, start time, pid namespace), or None once it has been reaped."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return stat[0], int(stat[1]), stat[19], os.readlink(f"/proc/{pid}/ns/pid")
        except (OSError, IndexError, ValueError):
            return None

    def left(self) -> list[tuple[int, str]]:
        """Those of the cell's processes that still exist (the same pid and start time)."""
        return sorted(m for m in self.members if (now := self.read(m[0])) is not None and now[2] == m[1])

    def _descendants(self, pid: int) -> list[int]:
        found = []
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    found += [int(c) for c in Path(task.path, "children").read_text().split()]
        return found + [d for child in found for d in self._descendants(child)]

    def _note(self, pid: int, state: str, ppid: int, start: str, ns: str) -> None:
        self.seen.add((pid, state, ppid, ns))
        self.members.add((pid, start))

    def _run(self) -> None:
        scanned = 0.0
        while not self._stop.is_set():
            # Only while a descendant is in it: a namespace's inode number is reused once it is gone (another
            # worker's next cell), and the cell's init is a descendant until the namespace is empty.
            current = set()
            for pid in self._descendants(os.getpid()):
                now = self.read(pid)
                if now is not None and now[3] != self.host_ns:
                    current.add(now[3])
                    self._note(pid, *now)
            self.mine |= current
            if current and time.monotonic() - scanned > 0.01:
                scanned = time.monotonic()
                for entry in os.scandir("/proc"):
                    if entry.name.isdigit() and (now := self.read(int(entry.name))) is not None and now[3] in current:
                        self._note(int(entry.name), *now)
            time.sleep(0.001)


@pytest.mark.parametrize("runtime", ["crun", "runc"])
@pytest.mark.parametrize(("stack", "target"), [("dual-stack", "exits-at-the-exec"),
                                               ("ipv6-kernel-off", "dualstack-no-fallback")])
def test_an_exited_cell_leaves_no_orphan_to_pid_1_and_keeps_the_engines_verdict(
    stack: str, target: str, runtime: str, zoo_image: str, engine: Engine, oci: OciBackend,  # noqa: F811
) -> None:
    """A target that exits as the watcher's exec enters its pid namespace: the runtime's helper the exec forked
    there is orphaned. Without a subreaper it went to this host's PID 1, stayed a zombie until PID 1 reaped it, and
    the namespace (so `crun run`, the verdict) waited; under probe/reap.c it is reaped by the exec's own wrapper.
    Seen from /proc throughout the cell: no process of its pid namespace ever has PID 1 for parent, and none is left
    after it; verdict, exit code and logs are the engine's. The errno-97 exit (bench/oci.py's exited cell) too."""
    if target == "exits-at-the-exec":
        settings: dict[str, object] = {"command": list(EXITS_AT_THE_EXEC), "hold": 0}
    else:
        settings = next(t for t in TARGETS if t.name == target).run_settings()
    spec = run_base(Settings()).updated(parse_run_settings(settings, f"test {target}"))
    launch = Launch(image=zoo_image, stack=get_stack(stack), run=spec)
    with engine.run(launch) as run:
        on_engine = run.verdict()
    backend = oci
    if runtime == "runc":  # the fallback runtime's exec runs under the same subreaper
        if not Path("/usr/sbin/runc").exists():
            pytest.skip("runc is not at /usr/sbin/runc")
        backend = OciBackend(engine, images.default_cache_dir(), engine.probe_dir,
                             Runtime("runc", "/usr/sbin/runc", "?"))
    try:
        with ProcSampler() as sampler:
            with backend.run(launch) as run:
                on_oci = run.verdict()
            left = sampler.left()
    finally:
        if backend is not oci:
            backend.remove_session()
    assert sampler.mine, "no process of the cell was seen"
    orphans = sorted(p for p in sampler.seen if p[3] in sampler.mine and p[2] == 1)
    assert orphans == [], f"processes of the cell's pid namespace orphaned to PID 1 (pid, state, ppid, ns): {orphans}"
    assert left == [], f"processes of the cell still there after it (pid, start time): {left}"
    assert on_engine.outcome is Outcome.EXITED, (on_engine, on_engine.logs)
    assert _key(on_oci) == _key(on_engine)
    assert sorted(on_oci.logs.splitlines()) == sorted(on_engine.logs.splitlines())
    if target == "exits-at-the-exec":
        assert on_oci.exit_code == 3
        assert "a second process: exiting" in on_oci.logs, on_oci.logs


@pytest.mark.skipif(not Path("/usr/sbin/runc").exists(), reason="runc is not at /usr/sbin/runc")
@pytest.mark.parametrize("stack", ["dual-stack", "ipv6-kernel-off"])
def test_runc_the_fallback_gives_the_same_verdicts(stack: str, zoo_image: str, engine: Engine) -> None:  # noqa: F811
    runc = OciBackend(engine, images.default_cache_dir(), engine.probe_dir, Runtime("runc", "/usr/sbin/runc", "?"))
    target = next(t for t in TARGETS if t.name == "dualstack-no-fallback")
    spec = run_base(Settings()).updated(parse_run_settings(target.run_settings(), f"zoo_table {target.name}"))
    launch = Launch(image=zoo_image, stack=get_stack(stack), run=spec)
    try:
        with engine.run(launch) as run:
            on_engine = run.verdict()
        with runc.run(launch) as run:
            assert run.attestation().ok, run.attestation().problems
            on_runc = run.verdict()
        assert _key(on_runc) == _key(on_engine)
    finally:
        runc.remove_session()
    assert leftovers(runc.session) == []
