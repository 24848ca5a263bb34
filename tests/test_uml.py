"""The ipv6-boot-disabled stack: a real kernel booted with ipv6.disable=1 under User-mode Linux.

These need the Docker engine (images are built and exported through it) and Debian's
``user-mode-linux``; without the latter they are skipped, saying how to install it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import launch

from pytest_ipv6compat.backends import EngineError
from pytest_ipv6compat.backends.uml import FPU_HINT, UmlBackend
from pytest_ipv6compat.backends.uml_rootfs import kernel_version
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.stacks import STACKS

pytestmark = pytest.mark.docker
IF_INET6 = Path(__file__).resolve().parent / "data" / "if-inet6-nginx"
BOOT = STACKS["ipv6-boot-disabled"]


def _live_in_group(pgid: int) -> list[int]:
    """Processes of the process group ``pgid`` that still run (zombies, which only their reaper can
    remove, do not count: here PID 1 may never reap what it inherits)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def _gone(pgid: int, within: float = 10.0) -> bool:
    """No process is left running in the process group ``pgid`` (the kernel and its helpers)."""
    end = time.monotonic() + within
    while _live_in_group(pgid):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def test_a_kernel_without_ipv6_disable_fails_attestation(uml: UmlBackend, base_image: str) -> None:
    """Booted WITHOUT ipv6.disable=1, IPv6 is there: the stack's claim must not be attested."""
    enabled = dataclasses.replace(BOOT, kernel_args=())
    with uml.run(launch(base_image, enabled, command=("sleep", "30"))) as run:
        attestation = run.attestation()
    assert not attestation.ok
    problems = "\n".join(attestation.problems)
    assert "/proc/cmdline has ipv6.disable=none, want ipv6.disable=1" in problems
    assert "/proc/net/if_inet6 is present, want absent" in problems
    assert "/proc/sys/net/ipv6 is present, want absent" in problems
    assert "want socket() errno 97" in problems
    with uml.run(launch(base_image, BOOT, command=("sleep", "30"))) as run:
        attestation = run.attestation()
    assert attestation.ok, attestation.describe()
    assert dict(attestation.facts)["cmdline ipv6.disable"] == "1"


def test_timeout_and_the_kernel_is_gone_afterwards(uml: UmlBackend, base_image: str) -> None:
    with uml.run(launch(base_image, BOOT, command=("sh", "-c", "echo waiting; sleep 60"), timeout=4)) as run:
        verdict = run.verdict()
        pgid = run.pid
    assert pgid is not None
    assert verdict.outcome is Outcome.TIMEOUT
    assert "waiting" in verdict.logs
    assert _gone(pgid, within=1.0)


def test_exit_code_env_workdir_and_hosts_reach_the_host(uml: UmlBackend, base_image: str) -> None:
    script = ('echo "k=$KNOB pwd=$(pwd) term=${TERM-unset} path=$PATH"; grep -q "upstream.test" /etc/hosts && '
              'echo hosts-ok; exit 7')
    spec = launch(base_image, BOOT, env={"KNOB": "a b'c"}, command=("sh", "-c", script),
                  extra_hosts=(("upstream.test", "127.0.0.1"),))
    with uml.run(spec) as run:
        verdict = run.verdict()
    assert verdict.outcome is Outcome.EXITED
    assert verdict.exit_code == 7
    # Exactly the image's and the cell's environment: nothing the kernel gave init (TERM, HOME).
    assert "k=a b'c pwd=/ term=unset path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in verdict.logs
    assert "hosts-ok" in verdict.logs
    assert "@@ipv6compat" not in verdict.logs


def test_a_root_target_cannot_forge_the_private_channel(uml: UmlBackend, base_image: str) -> None:
    """It can make the second console's device but, as in a container, not open it: the cell's cgroup has the
    engine's device filter. (Records written there would not carry init's tag either.)"""
    script = ("busybox mknod /tmp/c c 4 1 && echo made; for r in 'listener tcp inet 0.0.0.0 80 -' 'settled 0.1' "
              "ready 'exit 0'; do echo \"$r\" >/tmp/c; done; exit 5")
    with uml.run(launch(base_image, BOOT, command=("sh", "-c", script))) as run:
        verdict = run.verdict()
    assert "made" in verdict.logs
    assert "can't create /tmp/c: Operation not permitted" in verdict.logs, verdict.logs
    assert verdict.outcome is Outcome.EXITED
    assert verdict.exit_code == 5
    assert not verdict.listened


def test_user_read_only_root_and_tmpfs(uml: UmlBackend, base_image: str) -> None:
    script = "id -un; touch /x 2>&1; touch /run/y && echo wrote-run; exit 3"
    with uml.run(launch(base_image, BOOT, command=("sh", "-c", script), read_only=True,
                        tmpfs=(("/run", "size=1m"),))) as run:
        verdict = run.verdict()
    assert verdict.exit_code == 3
    assert "touch: /x: Read-only file system" in verdict.logs
    assert "wrote-run" in verdict.logs
    with uml.run(launch(base_image, BOOT, command=("sh", "-c", script), user="nobody")) as run:
        verdict = run.verdict()
    assert verdict.logs.splitlines()[0] == "nobody"
    with uml.run(launch(base_image, BOOT, command=("sh", "-c", "id; exit 3"), user="12345:100")) as run:
        verdict = run.verdict()
    assert verdict.logs.splitlines()[0] == "uid=12345 gid=100 groups=100"  # as Docker gives it: see test_uml_parity
    with uml.run(launch(base_image, BOOT, command=("true",), user="bob")) as run, \
            pytest.raises(EngineError, match=r"^user = 'bob': unable to find user bob: no matching entries in passwd"):
        run.attestation()


def test_a_failed_set_up_is_one_line_naming_what_failed(uml: UmlBackend, base_image: str) -> None:
    """umlsetup stops at the first step that fails; the cell errors with its line, not a hang."""
    with uml.run(launch(base_image, BOOT, command=("true",), tmpfs=(("/run", "size=bogus"),))) as run, \
            pytest.raises(EngineError, match=r"error init: cannot mount tmpfs on /\.ipv6compat/root/run: Invalid arg"):
        run.attestation()


def test_a_kernel_that_cannot_run_a_program_on_this_cpu_is_one_line_naming_it(uml: UmlBackend,
                                                                               base_image: str) -> None:
    """Debian 12's kernel (6.1) on a CPU whose FPU state the host will not take from it (AVX-512 with AMX): every
    guest program dies at its start and the kernel panics. The cell is an error naming the kernel, why and what
    to do, not a stack trace. Where that kernel runs programs there is nothing to diagnose (and where it is not
    installed, nothing to boot)."""
    debian = Path("/usr/bin/linux.uml")
    if not debian.is_file():
        pytest.skip("Debian's user-mode-linux is not installed at /usr/bin/linux.uml")
    if uml_runs_here(debian):
        pytest.skip(f"Debian's {kernel_version(debian)} runs programs on this CPU: nothing to diagnose")
    old = dataclasses.replace(uml, kernel=debian)
    with old.run(launch(base_image, BOOT, command=("true",))) as run, pytest.raises(EngineError) as raised:
        run.attestation()
    assert str(raised.value) == (f"User-mode Linux {kernel_version(debian)} ({debian}) cannot run a program on this "
                                 f"CPU (userspace - ptrace set fp regs failed, errno = 14): {FPU_HINT}")


def uml_runs_here(kernel: Path) -> bool:
    """Ground truth apart from the plugin, as .ci/setup takes it: the host's /bin/echo as the kernel's init, on a
    read-only hostfs root, reaches the console."""
    with tempfile.TemporaryDirectory() as rundir:
        done = subprocess.run([str(kernel), "mem=64M", "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro",
                               "init=/bin/echo", f"uml_dir={rundir}", "umid=ipv6compat-check", "con0=null,fd:1",
                               "con=null", "ssl=null", "quiet", "--", "ipv6compat-uml-runs"],
                              capture_output=True, text=True, timeout=120, check=False)
    return "ipv6compat-uml-runs" in done.stdout + done.stderr


def test_a_fork_bomb_and_a_memory_hog_end_at_the_cell_bounds(uml: UmlBackend, base_image: str) -> None:
    """The cell's cgroup inside the kernel bounds processes and memory, as the engine does for a container."""
    # The bomb runs in a subshell, and the wait needs no fork: where sh itself cannot fork (a "sleep",
    # or the bomb's first pipeline) it exits 2, which is the bomb's luck, not the bound's. A read with
    # a timeout on a FIFO nobody writes waits 3 s of wall time however busy the bomb keeps the CPU (a
    # loop of builtins got a 33rd of it and outlasted the cell's timeout on a loaded machine).
    bomb = ("sh", "-c", "mkfifo /tmp/wait; echo forking; (b() { b | b & }; b); read -t 3 _ <>/tmp/wait; exit 9")
    with uml.run(launch(base_image, BOOT, command=bomb, pids=32, timeout=20)) as run:
        verdict = run.verdict()
    assert verdict.exit_code == 9, verdict.logs[-3000:]
    assert "can't fork" in verdict.logs or "Resource temporarily unavailable" in verdict.logs
    hog = ("sh", "-c", "echo eating; exec awk 'BEGIN { s = \"x\"; while (1) s = s s }'")
    with uml.run(launch(base_image, BOOT, command=hog, memory="64m", timeout=30)) as run:
        verdict = run.verdict()
    assert verdict.outcome is Outcome.EXITED
    assert verdict.exit_code == 137
    assert verdict.error_line == "killed by the kernel: out of memory at the cell's memory limit (64m)"


def test_a_service_testing_for_if_inet6_comes_up_ipv4_only(uml: UmlBackend, if_inet6_image: str) -> None:
    with uml.run(launch(if_inet6_image, BOOT, probe="http", hold=0.2)) as run:
        verdict = run.verdict()
    assert verdict.outcome is Outcome.UP, verdict.logs
    assert {str(x) for x in verdict.listeners} == {"0.0.0.0:80"}
    assert "no /proc/net/if_inet6, IPv4 only" in verdict.logs


_SESSION = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # an xdist worker may have it ignored
from pytest_ipv6compat import images
from pytest_ipv6compat.backends import Launch
from pytest_ipv6compat.backends.docker_api import DockerBackend
from pytest_ipv6compat.backends.uml import UmlBackend, find_kernel
from pytest_ipv6compat.spec import RunSpec
from pytest_ipv6compat.stacks import STACKS
cache = images.default_cache_dir()
docker = DockerBackend.connect(images.ensure_probe(cache))
uml = UmlBackend(docker, find_kernel(None), cache, docker.probe_dir)
spec = RunSpec(command=("sleep", "120"), timeout=120)
with uml.run(Launch(sys.argv[1], STACKS["ipv6-boot-disabled"], run=spec)) as run:
    run.attestation()
    print(run.pid, flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_the_kernel_dies_with_the_session(uml: UmlBackend, base_image: str, how: signal.Signals,
                                         tmp_path: Path) -> None:
    """Ctrl-C, SIGTERM or SIGKILL of the session: no kernel of ours is left (by the group we started).

    Ctrl-C ends the run's context (it kills the group); SIGTERM and SIGKILL end this bare script at
    once, and the kernel dies with its parent (PR_SET_PDEATHSIG), its helpers with it.
    """
    script = tmp_path / "session.py"
    script.write_text(_SESSION)
    session = subprocess.Popen([sys.executable, str(script), base_image], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert session.stdout is not None
        pid = int(session.stdout.readline())
        os.kill(pid, 0)  # the kernel runs
        session.send_signal(how)
        session.wait(30)
        assert _gone(pid), f"kernel process group {pid} still alive after {how.name} of the session"
        # Its run directory (the kernel's uml_dir): removed by the run on Ctrl-C, by the next sweep otherwise.
        runs = uml.cache_dir / "uml" / "run"
        left = [p.name for p in runs.glob(f"{session.pid}-*")]
        assert not left or how is not signal.SIGINT
        uml.sweep()
        assert not list(runs.glob(f"{session.pid}-*"))
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()


def _if_inet6_matrix(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".ipv6.toml",
        inet6=f"""
        [target]
        name = "if-inet6"
        build = "{IF_INET6}"
        variants = ["official"]
        stacks = ["ipv6-kernel-off", "ipv6-boot-disabled"]
        probe = "http"
        hold = 0.2

        [expect.official]
        ipv6-kernel-off = "exited 1 'socket() [::]:80 failed (97: Address family not supported by protocol)'"
        ipv6-boot-disabled = "up 0.0.0.0:80"
        """,
    )


def test_the_grid_flags_where_the_emulation_differs(uml: UmlBackend, pytester: pytest.Pytester,
                                                    if_inet6_image: str) -> None:
    _if_inet6_matrix(pytester)
    report = pytester.path / "report.json"
    result = pytester.runpytest("-v", f"--ipv6-json={report}", "--ipv6-markdown=report.md")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*if-inet6[[]official-ipv6-boot-disabled[]] PASSED*",
        "≠ if-inet6 official: emulation differs from a real kernel: outcome: exited 1 on ipv6-kernel-off, "
        "up on ipv6-boot-disabled; listeners: (none) on ipv6-kernel-off, 0.0.0.0:80 on ipv6-boot-disabled "
        "(ipv6-boot-disabled is what a host without IPv6 does; likely cause: the target looks for IPv6 in a file "
        "under /proc*",
        "2 cells: 2 passed, 0 failed, 0 errors, 0 skipped; 1 emulation difference*",
    ])
    doc = json.loads(report.read_text())
    assert [(f["variant"], f["emulated"], f["real"]) for f in doc["fidelity"]] == [
        ("official", "official-ipv6-kernel-off", "official-ipv6-boot-disabled")
    ]
    assert "**emulation differs from a real kernel** (if-inet6 official)" in (pytester.path / "report.md").read_text()
    # Where a release is signed: JUnit carries it on both cells, and --ipv6-fidelity=fail fails the run.
    strict = pytester.runpytest("--ipv6-fidelity=fail", "--junitxml=j.xml")
    strict.assert_outcomes(passed=2)
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*--ipv6-fidelity=fail: 1 emulation difference(s) fail the run*"])
    cases = ET.parse(pytester.path / "j.xml").getroot().iter("testcase")
    props = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")} for c in cases}
    for cell in ("official-ipv6-kernel-off", "official-ipv6-boot-disabled"):
        assert "emulation differs from a real kernel" in props[f"if-inet6[{cell}]"]["ipv6.fidelity"]
        assert props[f"if-inet6[{cell}]"]["ipv6.stack"] == cell.removeprefix("official-")


def test_cells_skip_with_the_install_line_when_uml_is_missing(pytester: pytest.Pytester, base_image: str) -> None:
    _if_inet6_matrix(pytester)
    missing = "--ipv6-uml=/nonexistent/linux"
    result = pytester.runpytest("-rs", missing, "-k", "boot-disabled")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([
        "SKIPPED*User-mode Linux kernel not found (--ipv6-uml=/nonexistent/linux): "
        "apt-get install user-mode-linux (pass --ipv6-require-docker to make this an error)"
    ])
    result = pytester.runpytest(missing, "--ipv6-require-docker", "-k", "boot-disabled")
    result.assert_outcomes(errors=1)  # in setup, like an unreachable engine
    result.stdout.fnmatch_lines(["*apt-get install user-mode-linux (--ipv6-require-docker is set)*"])


# Two servers, then a client in the guest (busybox nc, run by the target itself: its connects go through the guest
# kernel's TCP, not the watcher's code) to each over $POD_IP; then the target holds. The watcher may settle while the
# client runs: the test waits for the script's last line after the verdict.
POD_SCRIPT = ('httpd -p 0.0.0.0:8080 -h /tmp && httpd -p 127.0.0.1:8081 -h /tmp || exit 3; '
              'for port in 8080 8081; do '
              'if printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 5 "$POD_IP" $port >/dev/null 2>&1; '
              'then echo "client $port reached"; else echo "client $port not reached"; fi; done; '
              'echo "env POD_IP=$POD_IP POD_IPS=$POD_IPS"; grep -w ipv6compat /etc/hosts | sed "s/^/hosts /"; '
              'echo checks done; exec sleep 60')


def test_the_pod_address_in_the_guest_as_on_the_container_stacks(uml: UmlBackend, base_image: str) -> None:
    """umlsetup makes pod0 in the guest as podsetup does in a container: 10.69.0.2/24 and the IPv4 default route
    (attested from /proc inside the guest), POD_IP/POD_IPS and the host name in /etc/hosts; a client in the guest
    and the watcher agree: the 0.0.0.0 listener is reached over the pod address, the 127.0.0.1 one is not."""
    with uml.run(launch(base_image, BOOT, command=("sh", "-c", POD_SCRIPT))) as run:
        attestation = run.attestation()
        verdict = run.verdict()
        end = time.monotonic() + 60
        while "checks done" not in run.logs().splitlines() and time.monotonic() < end:
            time.sleep(0.05)
        logs = run.logs()
    assert attestation.ok, attestation.describe()
    facts = dict(attestation.facts)
    assert facts["inet local addresses"] == "10.69.0.2 127.0.0.1"
    assert facts["inet routes"] == "pod0 0.0.0.0/0, pod0 10.69.0.0/24"
    assert facts["inet6 global addresses"] == facts["inet6 default routes"] == "none"
    assert verdict.outcome is Outcome.UP, (verdict, verdict.logs)
    lines = logs.splitlines()
    assert "checks done" in lines, logs
    assert "env POD_IP=10.69.0.2 POD_IPS=10.69.0.2" in lines
    assert [x for x in lines if x.startswith("hosts ")] == ["hosts 10.69.0.2\tipv6compat"]
    assert "client 8080 reached" in lines, logs
    assert "client 8081 not reached" in lines, logs
    assert {str(x): verdict.pod_answered(x) for x in verdict.listeners} == {"0.0.0.0:8080": True,
                                                                           "127.0.0.1:8081": False}
