"""The real-kernel stack differs from the container stacks only in IPv6.

Each target here runs on all four stacks through ``ipv6_target_factory`` (Docker for three, User-mode
Linux for ``ipv6-boot-disabled``) and must give the verdict the table states; where the stacks differ
it is by IPv6 alone (a ``*`` socket on a kernel with IPv6, ``0.0.0.0`` where it falls back). Before
the fixes, each differed under UML for a reason that had nothing to do with IPv6: UDP sockets were
invisible (udp_diag not loaded), a non-root service could not bind port 80 (no
``ip_unprivileged_port_start=0``), a numeric user was an error (busybox su), and an empty mount
source was filled with the image's files on Docker.

Then the kernel's own failures: a kernel killed mid-cell or halted from outside is an error (a root
target cannot halt it: it holds only the capabilities a container holds), a socket dump that fails is
an error, and a 32-bit program is one line saying this kernel cannot run it. And a recorded error
line that carries a per-run number passes its own next run on every stack.
"""

from __future__ import annotations

import os
import signal
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import mconsole
import pytest
from groundtruth import parse_proc_net
from helpers import launch
from test_zoo import zoo_image  # noqa: F401 - the zoo image fixture, shared
from zoo_compare import parse_expectation as zoo_parse_expectation
from zoo_compare import plugin_text
from zoo_table import POD_TARGETS, ZooTarget
from zoo_table import TARGETS as ZOO_TARGETS

from pytest_ipv6compat import TargetFactory, images
from pytest_ipv6compat.backends import EngineError, Launch, uml_rootfs
from pytest_ipv6compat.backends.docker_api import DockerBackend as Engine
from pytest_ipv6compat.backends.uml import UmlBackend
from pytest_ipv6compat.keys import STATE_KEY
from pytest_ipv6compat.matrix import judge, parse_expectation
from pytest_ipv6compat.model import Outcome, Verdict
from pytest_ipv6compat.options import run_base
from pytest_ipv6compat.spec import parse_run_settings
from pytest_ipv6compat.stacks import STACKS

pytestmark = pytest.mark.docker
FOUR = ("dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off", "ipv6-boot-disabled")
BOOT = STACKS["ipv6-boot-disabled"]
Z = "/usr/local/bin/zoosrv"


@dataclass(frozen=True)
class Parity:
    name: str
    command: tuple[str, ...]
    with_ipv6: str  # dual-stack and ipv6-sysctl-off
    without_ipv6: str  # ipv6-kernel-off and ipv6-boot-disabled
    run: Mapping[str, Any] = field(default_factory=dict)

    def expectation(self, stack: str) -> str:
        return self.with_ipv6 if stack in ("dual-stack", "ipv6-sysctl-off") else self.without_ipv6


EMPTY = "EMPTY"  # replaced by an empty directory of the test's own
TARGETS = (
# UDP-only, TCP and UDP on one port, and a non-root service on port 80 are zoo targets (test_zoo, and below).
    Parity("numeric-user", ("sh", "-c", 'echo "$(id) home=$HOME"; exit 5'),
           "exited 5 'uid=12345 gid=100 groups=100 home=/'", "exited 5 'uid=12345 gid=100 groups=100 home=/'",
           {"user": "12345:100"}),
    Parity("named-user", ("sh", "-c", 'echo "$(id) home=$HOME"; exit 5'),
           "exited 5 'uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup) home=/nonexistent'",
           "exited 5 'uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup) home=/nonexistent'",
           {"user": "nobody"}),
    Parity("empty-directory-mount", ("sh", "-c", "ls -A /www | grep -q . || { echo 'www is empty'; exit 3; }"),
           "exited 3 'www is empty'", "exited 3 'www is empty'", {"mounts": {"/www": EMPTY}}),
)


@pytest.mark.parametrize("stack", FOUR)
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_the_same_verdict_on_every_stack_but_for_ipv6(
    target: Parity, stack: str, zoo_image: str, ipv6_target_factory: TargetFactory,  # noqa: F811
    uml: UmlBackend, tmp_path: Path,
) -> None:
    run = dict(target.run)
    if "mounts" in run:
        (tmp_path / "empty").mkdir()
        run["mounts"] = {k: str(tmp_path / "empty") if v == EMPTY else v for k, v in run["mounts"].items()}
    with ipv6_target_factory.start(zoo_image, stack=stack, command=list(target.command), timeout=20,
                                   **run) as started:
        verdict = started.verdict
    mismatch = judge(parse_expectation(target.expectation(stack)), verdict)
    assert not mismatch, f"{target.name} on {stack}: {'; '.join(mismatch.reasons)}\n{started.describe()}"


def test_a_kernel_killed_mid_cell_is_an_error(uml: UmlBackend, base_image: str) -> None:
    """Not the target's timeout: a ``timeout`` expectation must not pass because the kernel died."""
    with uml.run(launch(base_image, BOOT, command=("sleep", "60"), timeout=20)) as run:
        run.attestation()
        pid = run.pid
        assert pid is not None
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        started = time.monotonic()
        with pytest.raises(EngineError, match="the User-mode Linux kernel died before the target ended"):
            run.verdict()
        assert time.monotonic() - started < 15  # well before the cell's timeout (20 s), which it used to reach


def test_a_kernel_halted_from_outside_is_an_error(uml: UmlBackend, base_image: str) -> None:
    """``halt`` on the kernel's management console: the kernel stops under a running target."""
    with uml.run(launch(base_image, BOOT, command=("sleep", "60"), timeout=20)) as run:
        run.attestation()
        threading.Timer(0.5, mconsole.request, (run.mconsole, "halt")).start()
        with pytest.raises(EngineError, match="the User-mode Linux kernel died before the target ended"):
            run.verdict()


def test_poweroff_from_a_root_target_is_refused_as_in_a_container(
    engine: Engine, uml: UmlBackend, base_image: str,
) -> None:
    """Root in the guest has no CAP_SYS_BOOT, as in a container: ``poweroff -f`` fails and the target goes on."""
    script = "busybox poweroff -f; echo poweroff=$?; exit 4"
    seen = {}
    for stack, backend in (("ipv6-kernel-off", engine), ("ipv6-boot-disabled", uml)):
        with backend.run(launch(base_image, STACKS[stack], command=("sh", "-c", script), timeout=20)) as run:
            verdict = run.verdict()
        # stdout and stderr are separate pipes: which of two lines written at once comes first is not defined
        seen[stack] = (verdict.outcome, verdict.exit_code, sorted(verdict.logs.strip().splitlines()))
    assert seen["ipv6-kernel-off"][:2] == (Outcome.EXITED, 4), seen
    assert seen["ipv6-boot-disabled"] == seen["ipv6-kernel-off"]


# Spins for 2 s of wall time (by /proc/uptime, in hundredths; builtins only: no fork), then prints the CPU
# time the shell used (utime + stime of /proc/self/stat, clock ticks of 1/100 s) and the wall time taken.
# Hundredths as 1HH - 100: "0.08" read as 008 would be a bad octal number (a guest less than a second old).
SPIN = ("now() { read -r up _ </proc/uptime; t=$((${up%.*} * 100 + 1${up#*.} - 100)); }; now; t0=$t; "
        "while [ $((t - t0)) -lt 200 ]; do now; done; "
        "read -r stat </proc/$$/stat; set -- ${stat##*) }; echo \"cpu=$((${12} + ${13})) wall=$((t - t0))\"; exit 4")


@pytest.mark.parametrize("stack", ["dual-stack", "ipv6-boot-disabled"])
def test_a_cell_gets_no_more_cpu_than_its_bound(engine: Engine, uml: UmlBackend, base_image: str, stack: str) -> None:
    """``cpus = 0.1``: a target that spins for 2 s gets a tenth of it, on the engine (a CFS quota) and under UML
    (the cell's cpu.max in the one-CPU kernel, which enforces it at its 100 Hz tick: measured 0.2-0.3 there),
    taken from the kernel's own accounting of the target; 0.4 allowed. Unbounded, it gets close to 1."""
    backend = uml if stack == "ipv6-boot-disabled" else engine
    with backend.run(launch(base_image, STACKS[stack], command=("sh", "-c", SPIN), cpus=0.1, timeout=30)) as run:
        verdict = run.verdict()
    assert (verdict.outcome, verdict.exit_code) == (Outcome.EXITED, 4), verdict
    found = dict(word.split("=") for word in verdict.logs.split() if word.startswith(("cpu=", "wall=")))
    share = int(found["cpu"]) / int(found["wall"])
    assert 0 < share <= 0.4, f"{found}: {share:.2f} of a CPU with cpus = 0.1"


def test_a_root_target_has_the_capabilities_a_container_has(
    engine: Engine, uml: UmlBackend, base_image: str,
) -> None:
    """CapBnd, CapPrm and CapEff of a root target: Docker's defaults, under UML too; none for a non-root one."""
    script = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status; exit 4"
    for user in (None, "nobody"):
        seen = {}
        for stack, backend in (("dual-stack", engine), ("ipv6-boot-disabled", uml)):
            with backend.run(launch(base_image, STACKS[stack], command=("sh", "-c", script), user=user)) as run:
                verdict = run.verdict()
            assert verdict.outcome is Outcome.EXITED, verdict
            seen[stack] = dict(line.split(":\t") for line in verdict.logs.splitlines())
        assert seen["ipv6-boot-disabled"] == seen["dual-stack"], (user, seen)
        assert seen["dual-stack"]["CapEff"] == ("00000000a80425fb" if user is None else "0000000000000000"), seen


# What a root target might try that a container refuses, each on its own (one line each: ok, or why not).
CONFINED = {
    "global sysctl": "echo 1 >/proc/sys/vm/overcommit_memory",
    "network sysctl": "echo 777 >/proc/sys/net/ipv4/ip_unprivileged_port_start",
    "kernel log device": "mknod /tmp/kmsg c 1 11 && echo ipv6compat >/tmp/kmsg",
    "block device": "mknod /tmp/blk b 7 0 && head -c1 /tmp/blk",
    "a null it made": "mknod /tmp/null c 1 3 && echo x >/tmp/null",
    "kernel log": "dmesg >/dev/null",
    "masked file": "test -z \"$(cat /proc/keys /proc/timer_list /proc/sched_debug 2>/dev/null)\"",
    "masked directory": "test -z \"$(ls -A /sys/firmware)\"",
}
CONFINED_SCRIPT = "; ".join(
    f'if ( {command} ) >/dev/null 2>/tmp/why; then echo "{name}: ok"; '
    f'else echo "{name}: refused ($(sed -n \'1s/.*: //p\' /tmp/why))"; fi'
    for name, command in CONFINED.items()) + "; grep -E '^Seccomp:' /proc/self/status"


@pytest.fixture(scope="module")
def syscall_probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/test_seccomp.py's raw-syscall probe (static glibc), built the same way."""
    from test_seccomp import BUILDS, _build

    tmp = tmp_path_factory.mktemp("syscall-probe")
    tmp.chmod(0o755)  # mounted into the cell: nobody enters it too
    _build(tmp, "glibc", BUILDS["glibc"])
    return tmp / "glibc"


@pytest.mark.parametrize("user", [None, "nobody"], ids=["root", "nobody"])
def test_a_target_is_confined_in_the_guest_as_in_a_container(
    engine: Engine, uml: UmlBackend, base_image: str, syscall_probe: Path, user: str | None,
) -> None:
    """Global sysctls, devices it makes, the kernel's log, masked paths and every system call
    of the raw-syscall probe (keyrings, unshare, mount, AF_ALG, io_uring, clone3 ...): what a container on
    ipv6-kernel-off lets a target do, the real kernel lets it do, and no more, and the reasons are the same. On
    both, socket(AF_INET6) is errno 97: the emulation's rule on the container, the kernel's own under UML (whose
    filter has no such rule: tests/test_uml.py boots a kernel without ipv6.disable=1 and sees AF_INET6 work). Before the
    guest had the engine's read-only and masked paths, device cgroup and seccomp profile, a root target wrote
    vm.overcommit_memory, wrote the kernel's log through a /dev/kmsg it made and used keyrings there."""
    from test_seccomp import _results

    seen = {}
    for stack, backend in (("ipv6-kernel-off", engine), ("ipv6-boot-disabled", uml)):
        script = f"{CONFINED_SCRIPT}; /syscall-probe/{syscall_probe.name} checks"
        cell = launch(base_image, STACKS[stack], command=("sh", "-c", script), user=user, probe="none",
                      mounts=(("/syscall-probe", str(syscall_probe.parent)),), timeout=60)
        with backend.run(cell) as run:
            verdict = run.verdict()
        assert verdict.outcome is Outcome.EXITED, verdict.logs
        lines = [line for line in verdict.logs.splitlines() if not line.startswith("@@")]
        seen[stack] = (lines, _results(verdict.logs))
    container, guest = seen["ipv6-kernel-off"], seen["ipv6-boot-disabled"]
    assert guest[0] == container[0]
    assert len(container[1]) >= 20, container
    # AF_INET6 apart: the emulation's own rule answers its odd forms (upper bits set) with 97 where the profile
    # without it refuses them as no family (EPERM); the plain call is 97 on both.
    assert {k: v for k, v in guest[1].items() if "inet6" not in k} == \
        {k: v for k, v in container[1].items() if "inet6" not in k}
    assert container[1]["socket-inet6"] == guest[1]["socket-inet6"] == "errno 97"
    if user is None:  # the control: these are refused, not merely failing for want of root
        assert "Seccomp:\t2" in container[0]
        assert "global sysctl: refused (Read-only file system)" in container[0], container[0]
        assert "kernel log device: refused (Operation not permitted)" in container[0], container[0]
        assert "a null it made: ok" in container[0], container[0]
        assert container[1]["keyctl"] == "errno 1", container[1]


def test_a_failed_socket_dump_is_an_error_not_no_sockets(engine: Engine, uml: UmlBackend, zoo_image: str,  # noqa: F811
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without udp_diag every UDP dump fails (ENOENT): the cell errors, it does not time out or pass."""
    monkeypatch.setattr(uml_rootfs, "MODULES", ("ipv6", "veth"))  # all but udp_diag
    bare = UmlBackend(engine, uml.kernel, tmp_path, engine.probe_dir)  # its own cache: a root without udp_diag
    with bare.run(launch(zoo_image, BOOT, command=(Z, "tcp4=0.0.0.0:8080"), timeout=20)) as run, \
            pytest.raises(EngineError, match="sock_diag: No such file or directory; a socket dump failed"):
        run.verdict()


def _elf32_exit(code: int) -> bytes:
    """A 32-bit x86 ELF program that exits with ``code`` (exit through int 0x80), 96 bytes."""
    base = 0x08048000
    text = bytes([0xB8, 1, 0, 0, 0, 0xBB, code, 0, 0, 0, 0xCD, 0x80])
    size = 52 + 32 + len(text)
    header = b"\x7fELF\x01\x01\x01" + bytes(9) + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, base + 84, 52, 0, 0, 52, 32,
                                                             1, 0, 0, 0)
    program = struct.pack("<IIIIIIII", 1, 0, base, base, size, size, 5, 0x1000)
    return header + program + text


@pytest.fixture(scope="module")
def elf32_image(client: docker.DockerClient, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    context = tmp_path_factory.mktemp("elf32")
    (context / "prog32").write_bytes(_elf32_exit(7))
    (context / "prog32").chmod(0o755)
    (context / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY prog32 /usr/local/bin/prog32\n")
    return str(images.ensure_target_image(client, context, base=base_image, name="elf32", build_args={}))


def test_a_32_bit_program_is_one_line_under_uml(engine: Engine, uml: UmlBackend, elf32_image: str) -> None:
    with engine.run(launch(elf32_image, STACKS["dual-stack"], command=("prog32",))) as run:
        assert run.verdict().exit_code == 7  # it runs in a container: the host kernel has IA32 emulation
    line = "/usr/local/bin/prog32 is a 32-bit x86 program: this User-mode Linux kernel cannot run 32-bit binaries"
    with pytest.raises(EngineError, match=line), uml.run(launch(elf32_image, BOOT, command=("prog32",))):
        pass  # the command itself: refused before the kernel boots
    with uml.run(launch(elf32_image, BOOT, command=("sh", "-c", "prog32; exit $?"))) as run, \
            pytest.raises(EngineError, match=line):  # run by a shell, which reads it as a script
        run.verdict()


PID_MATRIX = """\
[target]
name = "pids"
images = {{ main = "{image}" }}
variants = ["main"]
stacks = ["dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off", "ipv6-boot-disabled"]
command = ["sh", "-c", "echo \\"2026/12/07 04:00:00 svc[$RANDOM] E connect(5, AF=2 127.0.0.1:9): refused\\"; exit 1"]
timeout = 20

[expect.main]
dual-stack = "timeout"
ipv6-sysctl-off = "timeout"
ipv6-kernel-off = "timeout"
ipv6-boot-disabled = "timeout"
"""


def test_a_recorded_error_line_with_a_pid_passes_its_next_run(pytester: pytest.Pytester, zoo_image: str,  # noqa: F811
                                                             uml: UmlBackend) -> None:
    path = pytester.path / "pids.ipv6.toml"
    path.write_text(PID_MATRIX.format(image=zoo_image))
    recorded = pytester.runpytest_subprocess("--ipv6-record", "-p", "no:cacheprovider")
    recorded.assert_outcomes(failed=4)
    text = path.read_text()
    assert text.count("exited 1 'E connect(5, AF=2 127.0.0.1:9): refused'") == 4, text
    checked = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    checked.assert_outcomes(passed=4)


def test_the_guest_has_the_sysctls_docker_sets(engine: Engine, uml: UmlBackend, base_image: str) -> None:
    """Read in /proc/sys on a container stack and under UML: the same values."""
    script = "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/net/ipv4/ping_group_range; exit 4"
    seen = {}
    for stack, backend in (("dual-stack", engine), ("ipv6-boot-disabled", uml)):
        with backend.run(launch(base_image, STACKS[stack], command=("sh", "-c", script))) as run:
            verdict = run.verdict()
        assert verdict.outcome is Outcome.EXITED
        seen[stack] = verdict.logs.split()
    assert seen["dual-stack"] == ["0", "0", "2147483647"]
    assert seen["ipv6-boot-disabled"] == seen["dual-stack"]
    assert dict(uml_rootfs.SYSCTLS) == {"net.ipv4.ip_unprivileged_port_start": "0",
                                        "net.ipv4.ping_group_range": "0 2147483647"}


def _shape(verdict: Verdict) -> tuple[object, ...]:
    """What the fidelity flag compares: outcome, exit code, listeners and which of them answered, on loopback and
    over the pod address."""
    answered = tuple(sorted((str(x), verdict.answered(x), verdict.pod_answered(x)) for x in verdict.listeners))
    return verdict.outcome, verdict.exit_code, answered


def kernel_tables(run_tables: list[tuple[str, dict[str, str | None]]]) -> tuple[dict[str, frozenset[str]], list[str]]:
    """The listeners of each dump of the kernel's tables (``ready``, ``t1`` ...), in ground truth's notation,
    parsed here (``groundtruth.parse_proc_net``), and where a dump contradicts a kernel booted with
    ipv6.disable=1 (an IPv6 table that is there, an IPv4 one that is not)."""
    listeners, problems = {}, []
    for dump, files in run_tables:
        for name in ("tcp6", "udp6"):
            if files.get(name, "") is not None:
                problems.append(f"dump {dump}: /proc/net/{name} is there on a kernel booted with ipv6.disable=1")
        seen: set[str] = set()
        for proto in ("tcp", "udp"):
            text = files.get(proto)
            if text is None:
                problems.append(f"dump {dump}: /proc/net/{proto} is absent")
                continue
            seen.update(s.notation for s in parse_proc_net(text, proto, source=f"dump {dump} /proc/net/{proto}"))
        listeners[dump] = frozenset(seen)
    return listeners, problems


@pytest.mark.parametrize("target", [*ZOO_TARGETS, *POD_TARGETS], ids=lambda t: t.name)
def test_the_zoo_on_the_real_kernel_against_its_own_tables(
    target: ZooTarget, zoo_image: str, engine: Engine, uml_tables: UmlBackend,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    """Every zoo target on ``ipv6-kernel-off`` (Docker) and ``ipv6-boot-disabled`` (User-mode Linux).

    Ground truth on the real kernel: init reads the kernel's /proc/net tables with shell builtins (no
    code shared with the watcher, which reads sock_diag) when the hold is over and every 0.2 s, and
    sends them raw; they are parsed here. The tables must hold the zoo's expectation and the plugin's
    listeners; and no zoo target looks for IPv6 files in /proc, so the two stacks must give the same
    verdict (any difference is the real-kernel stack differing in something other than IPv6: a false
    fidelity flag). Whether each listener answers is not taken here: nothing on the host can reach
    into the kernel, whose interfaces are lo and pod0 (a veth pair inside the guest). For the pod targets the
    watcher's probes over the pod address must say what the table marks /pod (a client in the guest agrees in
    test_uml.py).
    """
    spec = run_base(request.config.stash[STATE_KEY].settings).updated(
        parse_run_settings(target.run_settings(), f"zoo_table {target.name}"))
    seen: dict[str, tuple[Verdict, str]] = {}
    for stack, backend in (("ipv6-kernel-off", engine), ("ipv6-boot-disabled", uml_tables)):
        with backend.run(Launch(zoo_image, STACKS[stack], run=spec)) as run:
            verdict = run.verdict()
            dumps = run.tables() if stack == "ipv6-boot-disabled" else []
        seen[stack] = (verdict, f"{plugin_text(verdict)}\n{verdict.logs[-2000:]}")
    (emulated, emulated_text), (real, real_text) = seen["ipv6-kernel-off"], seen["ipv6-boot-disabled"]
    assert _shape(emulated) == _shape(real), f"{target.name}:\nipv6-kernel-off: {emulated_text}\n" \
                                             f"ipv6-boot-disabled: {real_text}"

    expectation = target.expectation("ipv6-boot-disabled")
    expected = zoo_parse_expectation(expectation, source=f"zoo_table {target.name}")
    tables, problems = kernel_tables(dumps)
    problems += [f"plugin vs table: {reason}" for reason in judge(parse_expectation(expectation), real).reasons]
    periodic = [dump for dump in tables if dump != "ready"]
    if not periodic and expected.outcome != "exited":  # a target that exits at once may beat the first dump
        problems.append("no dump of the kernel's tables came while the target ran")
    plugin = {str(listener) for listener in real.listeners}
    if expected.outcome == "up":
        want = {token.removesuffix("/pod").removesuffix("/silent") for token in expected.listeners}
        final = tables.get("ready")
        if final is None:
            problems.append("no tables at the end of the hold, though the plugin says up")
        else:
            if final != want:
                problems.append(f"table vs kernel: {expectation!r}, /proc/net at the end of the hold {sorted(final)}")
            if final != plugin:
                problems.append(f"plugin vs kernel: plugin says {sorted(plugin)}, /proc/net {sorted(final)}")
        # Over the pod address (the watcher's connect from inside the guest: no client on the host reaches
        # it) exactly the listeners the table marks /pod answered, as on ipv6-kernel-off above.
        pod_want = {str(x) for x in parse_expectation(expectation).pod}
        pod_seen = {str(x): real.pod_answered(x) for x in real.listeners}
        if target in POD_TARGETS and pod_seen != {x: x in pod_want for x in pod_seen}:
            problems.append(f"over the pod address: plugin says {pod_seen}, the table wants {sorted(pod_want)}")
    else:
        if "ready" in tables:
            problems.append(f"tables at the end of a hold, though the expectation is {expectation!r}")
        if expected.outcome == "timeout" and periodic and tables[periodic[-1]]:
            problems.append(f"expected timeout (nothing listens at the end), the last dump of /proc/net "
                            f"({periodic[-1]}) has {sorted(tables[periodic[-1]])}")
    shown = "\n".join(f"  {dump}: {' '.join(sorted(names)) or '(none)'}" for dump, names in tables.items())
    assert not problems, f"{target.name}:\n  " + "\n  ".join(problems) + f"\nkernel's tables:\n{shown}\n" \
                         f"plugin: {real_text}"
