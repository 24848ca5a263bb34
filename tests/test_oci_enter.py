"""The probe's ``ocienter`` (probe/oci_enter.c) starts a program in a crun cell's container as ``crun exec`` does.

Ground truth is the runtime itself: in the same running cell, one small program (the probe's busybox ``sh``,
printing what the kernel says of it, then tests/test_seccomp.py's raw-syscall probe) is started once by ``crun exec
--user UID:GID --env KEY`` and once by ``ocienter`` with the arguments the backend gives the watcher's launch, and
everything it reports must be the same: uid, gids, every capability set, no_new_privs, seccomp mode and filters,
speculation controls, blocked and ignored signals, umask, its cgroups (and its membership of the container's cgroup
in each hierarchy), every namespace, its rlimits, root and cwd, its whole environment, its std streams' owners, and
each raw syscall's answer under the container's seccomp filter (errno 97 for AF_INET6 on ipv6-kernel-off, EPERM for
keyctl, ...). For a root cell, a ``nobody`` cell, and a ``nobody`` cell with a pod address (the container starts as
root with CAP_NET_ADMIN; the watcher runs as the cell's user). A launch that cannot be made is one line on stderr
and status 125.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import launch
from test_oci_seccomp import crun  # noqa: F401 - the fixture: a crun backend (skips without crun)
from test_seccomp import BUILDS, _build, _results
from test_zoo import zoo_image  # noqa: F401 - the fixture

from pytest_ipv6compat.backends.oci import CGROUP_ROOT, OciBackend
from pytest_ipv6compat.backends.oci_run import OciRun
from pytest_ipv6compat.spec import PROBE_MOUNT
from pytest_ipv6compat.stacks import get_stack

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="the oci backend needs root"),
]
B = f"{PROBE_MOUNT}/busybox"
STATUS = ("Uid", "Gid", "Groups", "Umask", "SigBlk", "SigIgn", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
          "NoNewPrivs", "Seccomp", "Seccomp_filters", "Speculation_Store_Bypass", "SpeculationIndirectBranch",
          "Cpus_allowed_list", "Mems_allowed_list")
# What the started program says of itself ($$: the shell the launcher or crun exec'd, read through the container's
# /proc), one section at a time; then the raw-syscall probe under the filter it inherited.
FACTS = f"""
echo '# status'
while IFS= read -r l; do case "${{l%%:*}}" in {'|'.join(STATUS)}) echo "$l";; esac; done < /proc/$$/status
echo '# parent, group, session (0: outside the namespace)'
read -r l < /proc/$$/stat; set -- ${{l##*)}}; echo "$2 $3 $4"
echo '# cgroup'; while IFS= read -r l; do echo "$l"; done < /proc/$$/cgroup
echo '# member of the container cgroup'
for d in /sys/fs/cgroup/*/; do {B} grep -qx $$ "$d/cgroup.procs" && echo "$d"; done
echo '# namespaces'; for n in /proc/$$/ns/*; do echo "${{n##*/}} $({B} readlink $n)"; done
echo '# limits'; while IFS= read -r l; do echo "$l"; done < /proc/$$/limits
echo '# oom_score_adj'; read -r l < /proc/$$/oom_score_adj; echo "$l"
echo '# root'; {B} readlink /proc/$$/root; {B} ls -a /
echo '# cwd'; {B} readlink /proc/$$/cwd
echo '# environment'; {B} tr '\\0' '\\n' < /proc/$$/environ | {B} sort
echo '# std streams'; for fd in 0 1 2; do {B} stat -L -c "$fd %u %g %F" /proc/$$/fd/$fd; done
echo '# descriptors'; {B} ls /proc/$$/fd
echo '# syscalls'; exec /seccomp-probe checks
"""
KEY = "IPV6COMPAT_KEY=" + "0" * 64


@pytest.fixture(scope="module")
def probe_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/test_seccomp.py's glibc raw-syscall probe (skipped with the reason when it cannot be built)."""
    tmp = tmp_path_factory.mktemp("seccomp-probe")
    _build(tmp, "glibc", BUILDS["glibc"])
    return tmp / "glibc"


def _enter_argv(run: OciRun) -> list[str]:
    """The launcher's arguments as the backend gives them for the watcher (``OciRun._read_watcher``), and the user."""
    assert run._enter is not None, "the crun backend did not choose ocienter"
    return run._enter


def _user(run: OciRun) -> str:
    return f"{run._user[0]}:{run._user[1]}"


def _sections(output: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"?": []}
    current = "?"
    for line in output.splitlines():
        if line.startswith("# "):
            current = line[2:]
            found[current] = []
        else:
            found[current].append(line)
    return found


def _unlike_the_container() -> None:
    """What the plugin's process may hold and the container's process must not: a supplementary group, a blocked
    signal, a umask; an rlimit of its own (which crun exec leaves as it is)."""
    os.setgroups([4242])
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    os.umask(0o077)
    resource.setrlimit(resource.RLIMIT_NOFILE, (4321, 4321))


def _started(argv: list[str], kept: int) -> subprocess.CompletedProcess[str]:
    # stdin a pipe for both (closed at once): crun chowns a std stream that is not a tty to the user, the host's
    # /dev/null too; ocienter leaves a device alone (see test_a_device_on_stdin_is_not_chowned).
    return subprocess.run(argv, input="", capture_output=True, text=True, timeout=60, check=False, cwd="/tmp",
                          env={"PATH": os.environ.get("PATH", ""), "LEAKED": "1"}, pass_fds=(kept,),
                          preexec_fn=_unlike_the_container)


CELLS = {
    "root": ("dual-stack", None, False),
    "nobody": ("ipv6-kernel-off", "nobody", False),
    "pod-nobody": ("ipv6-kernel-off", "nobody", True),
}


@pytest.mark.parametrize("cell", list(CELLS))
def test_ocienter_starts_a_program_as_crun_exec_does(
    cell: str, zoo_image: str, crun: OciBackend, probe_binary: Path,  # noqa: F811
) -> None:
    stack_name, user, pod = CELLS[cell]
    stack = get_stack(stack_name)
    if not pod:
        stack = dataclasses.replace(stack, pod=())
    assert bool(stack.pod) == pod
    target = launch(zoo_image, stack, command=("sleep", "120"), probe="none", user=user,
                    mounts=(("/seccomp-probe", str(probe_binary)),))
    with crun.run(target) as run:
        assert run.attestation().ok, run.attestation().describe()
        program = [B, "sh", "-c", FACTS]
        with open(os.devnull, "rb") as kept:  # a descriptor beyond stderr, passed down: closed by both
            by_crun = _started([crun.runtime.path, "exec", "--user", _user(run), "--env", KEY, run.container_id,
                                *program], kept.fileno())
            by_ocienter = _started([*_enter_argv(run), _user(run), "--env", KEY, "--", *program], kept.fileno())
    assert (by_crun.returncode, by_crun.stderr) == (0, ""), by_crun.stderr
    assert (by_ocienter.returncode, by_ocienter.stderr) == (0, ""), by_ocienter.stderr
    truth, ours = _sections(by_crun.stdout), _sections(by_ocienter.stdout)
    assert truth.keys() == ours.keys()
    for section, lines in truth.items():
        assert ours[section] == lines, f"{section}: crun exec gave {lines}, ocienter {ours[section]}"
    # and what the cell is, so that both cannot be wrong alike
    status = dict(line.split(":\t", 1) for line in truth["status"])
    uid = "0" if user is None else "65534"
    assert status["Uid"].split() == [uid] * 4
    assert (status["Seccomp"], status["Seccomp_filters"]) == ("2", "1")
    assert status["NoNewPrivs"] == "0"
    hierarchies = [line for line in truth["member of the container cgroup"] if line]
    assert len(hierarchies) >= 5, truth["member of the container cgroup"]
    syscalls = _results("\n".join(truth["syscalls"]))
    assert len(syscalls) >= 20, truth["syscalls"]
    assert syscalls["keyctl"] == "errno 1"
    assert syscalls["socket-inet6"] == ("errno 97" if stack_name == "ipv6-kernel-off" else "ok")
    assert truth["environment"] == [f"HOME={'/root' if user is None else '/nonexistent'}", KEY]
    assert truth["descriptors"] == ["0", "1", "2"]
    assert status["Groups"].strip() == ""
    assert (status["Umask"], int(status["SigBlk"], 16)) == ("0022", 0)
    assert "Max open files            4321                 4321" in "\n".join(truth["limits"])


def test_a_device_on_stdin_is_not_chowned(zoo_image: str, crun: OciBackend) -> None:  # noqa: F811
    """crun exec chowns every std stream that is not a tty to the user, a device too: the plugin's /dev/null, the
    host's, became nobody's. ocienter chowns pipes and sockets only (the watcher's stdout and stderr)."""
    target = launch(zoo_image, dataclasses.replace(get_stack("dual-stack"), pod=()), command=("sleep", "60"),
                    probe="none", user="nobody")
    with tempfile.TemporaryDirectory(prefix="ocienter-") as tmp:
        null = Path(tmp) / "null"
        os.mknod(null, 0o20666, os.makedev(1, 3))
        with crun.run(target) as run:
            assert run.attestation().ok, run.attestation().describe()
            with null.open("rb") as stdin:
                done = subprocess.run([*_enter_argv(run), _user(run), "--", B, "stat", "-L", "-c", "%u %F",
                                       "/proc/self/fd/0", "/proc/self/fd/1"], stdin=stdin, capture_output=True,
                                      text=True, timeout=60, check=False)
        assert (done.returncode, done.stderr) == (0, "")
        assert done.stdout.splitlines() == ["0 character special file", "65534 fifo"]
        assert null.stat().st_uid == 0


def _fails(argv: list[str]) -> str:
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (125, ""), (done.returncode, done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("ocienter: "), done.stderr
    return done.stderr.strip()


def test_a_launch_that_cannot_be_made_is_one_line_and_125(zoo_image: str, crun: OciBackend) -> None:  # noqa: F811
    ocienter = str(crun.probe / "ocienter")
    program = ["1:1", "--", B, "true"]
    caps = "CAP_KILL/CAP_KILL/CAP_KILL"
    seccomp = crun.root / "test-ocienter.bpf"
    seccomp.write_bytes(b"\x06\x00\x00\x00\x00\x00\xff\x7f")  # one instruction: allow
    try:
        # no such container
        said = _fails([ocienter, "ipv6compat/no-such-session/1/c", str(seccomp), caps, *program])
        assert said == ("ocienter: the container's init is gone: no live process of cgroup "
                        "ipv6compat/no-such-session/1/c is its pid namespace's PID 1"), said
        # a cgroup whose process is not a pid namespace's init (a process of this host)
        cgroup = f"ipv6compat/test-ocienter-{os.getpid()}"
        sleeper = subprocess.Popen(["sleep", "60"])
        made = CGROUP_ROOT / "pids" / cgroup
        try:
            made.mkdir(parents=True)
            (made / "cgroup.procs").write_text(str(sleeper.pid))
            said = _fails([ocienter, cgroup, str(seccomp), caps, *program])
            assert "the container's init is gone" in said, said
        finally:
            sleeper.kill()
            sleeper.wait()
            if made.is_dir():
                made.rmdir()
        # a cell that has ended: the launch the watcher would have had, made after it
        target = launch(zoo_image, dataclasses.replace(get_stack("dual-stack"), pod=()), command=("sleep", "60"),
                        probe="none")
        with crun.run(target) as run:
            assert run.attestation().ok, run.attestation().describe()
            argv = [*_enter_argv(run), _user(run), "--", B, "true"]
            assert subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60).returncode == 0
        said = _fails(argv)
        assert said == (f"ocienter: the container's init is gone: no live process of cgroup {argv[1]} is its pid "
                        "namespace's PID 1"), said
        # what it is given
        assert "usage" in _fails([ocienter, "x"])
        assert "not UID:GID" in _fails([ocienter, "c", str(seccomp), caps, "nobody", "--", B])
        assert "no such capability" in _fails([ocienter, "c", str(seccomp), "CAP_NOPE//", "1:1", "--", B])
        assert "absolute path" in _fails([ocienter, "c", str(seccomp), caps, "1:1", "--", "busybox"])
        # a container found, its seccomp program not
        with crun.run(target) as run:
            assert run.attestation().ok, run.attestation().describe()
            argv = [*_enter_argv(run), _user(run), "--", B, "true"]
            argv[2] = str(seccomp.with_name("no-such.bpf"))
            said = _fails(argv)
        assert said == f"ocienter: cannot read the seccomp program {argv[2]}: No such file or directory", said
    finally:
        seccomp.unlink()
