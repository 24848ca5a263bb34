"""The seccomp profile: unit tests on its data, and Docker-backed tests of its effect.

The Docker tests compare the profile with ``seccomp=unconfined`` wherever a
denial could also come from missing capabilities, so that each one shows the
profile, not the capability set, is what blocks the call. Raw system calls come
from small static programs the tests build from ``tests/data/seccomp/``.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_ipv6compat.listeners import canonical_address
from pytest_ipv6compat.model import Family, Listener
from pytest_ipv6compat.seccomp import (
    ALLOWED_SYSCALLS,
    DENIED_SYSCALLS,
    DIFFERENCES,
    FAMILY_LIMIT,
    build_profile,
    family_blocks,
    profile_json,
)

DATA = Path(__file__).resolve().parent / "data" / "seccomp"

# What Docker's default profile keeps from unprivileged containers; written out
# here rather than imported so the test does not just compare the module to itself.
MUST_DENY = (
    "mount", "umount", "umount2", "pivot_root", "unshare", "setns",
    "keyctl", "add_key", "request_key", "ptrace", "process_vm_readv", "process_vm_writev",
    "bpf", "perf_event_open", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct",
    "settimeofday", "clock_settime", "userfaultfd",
    "open_by_handle_at", "lookup_dcookie", "quotactl",
    "sethostname", "setdomainname", "iopl", "ioperm", "create_module", "vm86",
    "nfsservctl", "syslog", "fanotify_init", "move_pages", "mbind", "set_mempolicy",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
CLONE_NEWTIME, SIGCHLD, CLONE_VM, CLONE_THREAD = 0x80, 17, 0x100, 0x10000
NAMESPACE_FLAGS = (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET)
UPPER_BITS = (1 << 32, 0xFFFFFFFF << 32, 1 << 63)

Rule = Mapping[str, Any]
VARIANTS = pytest.mark.parametrize("inet6_errno", [None, 97], ids=["socket-open", "inet6-97"])


def rules(profile: Mapping[str, Any]) -> list[Rule]:
    result: list[Rule] = profile["syscalls"]
    return result


def rules_for(profile: Mapping[str, Any], name: str) -> list[Rule]:
    return [rule for rule in rules(profile) if name in rule["names"]]


def allows(rule: Rule) -> bool:
    return bool(rule["action"] == "SCMP_ACT_ALLOW")


_OPS = {
    "SCMP_CMP_EQ": lambda v, a, b: v == a,
    "SCMP_CMP_NE": lambda v, a, b: v != a,
    "SCMP_CMP_LT": lambda v, a, b: v < a,
    "SCMP_CMP_GT": lambda v, a, b: v > a,
    "SCMP_CMP_MASKED_EQ": lambda v, a, b: v & a == b,
}


def _matches(rule: Rule, args: tuple[int, ...]) -> bool:
    for cmp in rule.get("args", []):
        value = args[cmp["index"]] if cmp["index"] < len(args) else 0
        if cmp["op"] not in _OPS:
            raise AssertionError(f"the evaluator does not know {cmp['op']}")
        if not _OPS[cmp["op"]](value, cmp["value"], cmp.get("valueTwo", 0)):
            return False
    return True


def outcome(profile: Mapping[str, Any], name: str, *args: int) -> str:
    """``allow`` or ``errno N``: what the profile does with one call, as a filter would.

    At most one rule may match: then no runtime's rule ordering can change the result.
    """
    hits = [rule for rule in rules_for(profile, name) if _matches(rule, args)]
    assert len(hits) <= 1, f"{name}{args} matches {len(hits)} rules: {hits}"
    if not hits:
        return "errno 1"
    return "allow" if allows(hits[0]) else f"errno {hits[0].get('errnoRet', 1)}"


# --- unit tests: the profile as data


@VARIANTS
def test_default_action_denies_with_eperm(inet6_errno: int | None) -> None:
    profile = build_profile(inet6_errno=inet6_errno)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == 1


@VARIANTS
def test_only_allow_and_errno_actions(inet6_errno: int | None) -> None:
    actions = {rule["action"] for rule in rules(build_profile(inet6_errno=inet6_errno))}
    assert actions == {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"}


@VARIANTS
@pytest.mark.parametrize("name", MUST_DENY)
def test_no_rule_allows_a_denied_syscall(inet6_errno: int | None, name: str) -> None:
    profile = build_profile(inet6_errno=inet6_errno)
    assert not [rule for rule in rules_for(profile, name) if allows(rule)]
    assert outcome(profile, name) == "errno 1"


def test_module_lists_agree_with_the_test() -> None:
    assert set(MUST_DENY) <= set(DENIED_SYSCALLS)
    assert not set(ALLOWED_SYSCALLS) & set(DENIED_SYSCALLS)


def test_allowlist_is_clean_data() -> None:
    assert len(ALLOWED_SYSCALLS) == len(set(ALLOWED_SYSCALLS)), "duplicate names"
    assert all(re.fullmatch(r"_?[a-z][a-z0-9_]*", name) for name in ALLOWED_SYSCALLS)
    for conditional in ("socket", "socketpair", "socketcall", "clone", "clone3", "personality"):
        assert conditional not in ALLOWED_SYSCALLS


NEEDED_BY_A_SERVICE = (
    "read", "write", "openat", "close", "epoll_wait", "epoll_ctl", "accept4", "sendfile", "futex", "eventfd2",
    "timerfd_create", "prlimit64", "getrandom", "rseq", "statx", "execve", "wait4", "exit_group", "fork", "vfork",
    "rt_sigaction", "mmap", "futex_wait", "futex_wake", "map_shadow_stack", "adjtimex",
)  # fmt: skip


@pytest.mark.parametrize("name", NEEDED_BY_A_SERVICE)
def test_a_normal_service_can_run(name: str) -> None:
    assert outcome(build_profile(inet6_errno=97), name) == "allow"


# --- the address-family rules


def _expected_family(family: int, inet6_errno: int | None) -> str:
    low = family & 0xFFFFFFFF
    if low == 10 and inet6_errno is not None:
        return f"errno {inet6_errno}"
    if family != low or low >= FAMILY_LIMIT or low in (38, 40):
        return "errno 1"
    return "allow"


FAMILY_SAMPLES = (
    *range(FAMILY_LIMIT + 8),
    0xFFFF,
    0xFFFFFFFF,
    *(f | hi for f in (1, 2, 10, 38, 40) for hi in UPPER_BITS),
)


@VARIANTS
@pytest.mark.parametrize("name", ["socket", "socketpair"])
def test_family_rules(inet6_errno: int | None, name: str) -> None:
    profile = build_profile(inet6_errno=inet6_errno)
    for family in FAMILY_SAMPLES:
        assert outcome(profile, name, family, 1, 0) == _expected_family(family, inet6_errno), hex(family)


def test_inet6_with_any_upper_bits_gets_errno_97() -> None:
    profile = build_profile(inet6_errno=97)
    for hi in UPPER_BITS:
        assert outcome(profile, "socket", 10 | hi, 1, 0) == "errno 97"
        assert outcome(profile, "socketpair", 10 | hi, 1, 0) == "errno 97"
    [rule] = [rule for rule in rules_for(profile, "socket") if not allows(rule)]
    assert rule["args"] == [{"index": 0, "value": 0xFFFFFFFF, "valueTwo": 10, "op": "SCMP_CMP_MASKED_EQ"}]
    assert rule["errnoRet"] == 97


def test_other_inet6_errno() -> None:
    assert outcome(build_profile(inet6_errno=13), "socket", 10) == "errno 13"


@pytest.mark.parametrize("excluded", [(), (10,), (38, 40), (10, 38, 40), (0, 63)])
def test_family_blocks_cover_exactly_the_rest(excluded: tuple[int, ...]) -> None:
    blocks = family_blocks(excluded)
    covered = [f for start, size in blocks for f in range(start, start + size)]
    assert sorted(covered) == [f for f in range(FAMILY_LIMIT) if f not in excluded]
    for start, size in blocks:
        assert size & (size - 1) == 0, (start, size)
        assert start % size == 0, (start, size)


@VARIANTS
def test_socketcall_is_enosys_and_comes_before_the_socket_rules(inet6_errno: int | None) -> None:
    """libseccomp derives socketcall rules from socket rules; measured with runc 1.1.5:
    with the socketcall rule after them the engine refuses the profile ("file exists")."""
    profile = build_profile(inet6_errno=inet6_errno)
    assert outcome(profile, "socketcall", 1) == "errno 38"
    names = [rule["names"] for rule in rules(profile)]
    assert names.index(["socketcall"]) < min(i for i, n in enumerate(names) if "socket" in n)


@VARIANTS
def test_architectures(inet6_errno: int | None) -> None:
    arch_map = build_profile(inet6_errno=inet6_errno)["archMap"]
    assert isinstance(arch_map, list)
    by_arch = {entry["architecture"]: set(entry["subArchitectures"]) for entry in arch_map}
    assert by_arch == {
        "SCMP_ARCH_X86_64": {"SCMP_ARCH_X86", "SCMP_ARCH_X32"},
        "SCMP_ARCH_AARCH64": {"SCMP_ARCH_ARM"},
    }


@VARIANTS
def test_clone_without_namespace_flags_only(inet6_errno: int | None) -> None:
    profile = build_profile(inet6_errno=inet6_errno)
    clone_rules = rules_for(profile, "clone")
    assert clone_rules == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            "comment": "clone only without namespace flags",
        }
    ]
    assert outcome(profile, "clone", SIGCHLD) == "allow"  # fork()
    assert outcome(profile, "clone", 0x3D0F00) == "allow"  # pthread_create()
    assert outcome(profile, "clone", CLONE_VM | CLONE_THREAD | CLONE_NEWTIME) == "allow"
    for flag in NAMESPACE_FLAGS:
        assert outcome(profile, "clone", SIGCHLD | flag) == "errno 1", hex(flag)


@VARIANTS
def test_clone3_returns_enosys(inet6_errno: int | None) -> None:
    profile = build_profile(inet6_errno=inet6_errno)
    [rule] = rules_for(profile, "clone3")
    assert rule["action"] == "SCMP_ACT_ERRNO"
    assert rule["errnoRet"] == 38
    assert "args" not in rule


@VARIANTS
def test_personality_only_with_default_values(inet6_errno: int | None) -> None:
    profile = build_profile(inet6_errno=inet6_errno)
    personality = rules_for(profile, "personality")
    assert all(allows(rule) and [arg["op"] for arg in rule["args"]] == ["SCMP_CMP_EQ"] for rule in personality)
    assert sorted(rule["args"][0]["value"] for rule in personality) == [0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert outcome(profile, "personality", 0x0040000) == "errno 1"  # ADDR_NO_RANDOMIZE
    assert outcome(profile, "personality", 0x0400000) == "errno 1"  # READ_IMPLIES_EXEC


@pytest.mark.parametrize("bad", [0, -1, 4096, True, "97", 97.0])
def test_inet6_errno_is_validated(bad: Any) -> None:
    with pytest.raises(ValueError, match="inet6_errno must be"):
        build_profile(inet6_errno=bad)


@VARIANTS
def test_json_is_compact_sorted_and_deterministic(inet6_errno: int | None) -> None:
    text = profile_json(inet6_errno=inet6_errno)
    assert text == profile_json(inet6_errno=inet6_errno)
    assert json.loads(text) == build_profile(inet6_errno=inet6_errno)
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert "\n" not in text
    assert text.startswith('{"archMap":')


def test_build_profile_returns_fresh_data() -> None:
    first = build_profile(inet6_errno=97)
    rules(first)[0]["names"].append("mount")
    assert "mount" not in rules(json.loads(profile_json(inet6_errno=97)))[0]["names"]


# --- the table of differences from Docker's current default profile


def _docker_reference() -> dict[str, object]:
    """tests/data/seccomp/docker-default.txt as a profile the evaluator above can read."""
    allowed: list[str] = []
    conditional: list[dict[str, object]] = []
    for number, line in enumerate((DATA / "docker-default.txt").read_text(encoding="utf-8").splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "allow":
            allowed += words[1:]
        elif words[0] == "rule" and len(words) in (3, 6, 7):
            action = "SCMP_ACT_ALLOW" if words[2] == "allow" else "SCMP_ACT_ERRNO"
            rule: dict[str, object] = {"names": [words[1]], "action": action}
            if words[2].startswith("errno"):
                rule["errnoRet"] = int(words[2].removeprefix("errno"))
            if len(words) > 3:
                index, op, *values = words[3:]
                value_two = int(values[1]) if len(values) > 1 else 0
                rule["args"] = [{"index": int(index.removeprefix("arg")), "op": f"SCMP_CMP_{op}",
                                 "value": int(values[0]), "valueTwo": value_two}]  # fmt: skip
            conditional.append(rule)
        else:
            raise AssertionError(f"docker-default.txt line {number}: cannot read {line!r}")
    assert len(allowed) == len(set(allowed)), "a name is allowed twice in docker-default.txt"
    return {"syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}, *conditional]}


DOCKER_DEFAULT = _docker_reference()
OURS = build_profile(inet6_errno=97)
# Every argument rule in either profile looks at argument 0 only, so these values
# show every rule's effect: families, personalities and clone flags.
ARG0_SAMPLES = (
    *FAMILY_SAMPLES, 0x8, 0x20000, 0x20008, 0x40000, 0x400000, SIGCHLD, 0x3D0F00,
    *(SIGCHLD | flag for flag in NAMESPACE_FLAGS),
)  # fmt: skip


def _behaviour(profile: Mapping[str, Any], name: str) -> tuple[str, ...]:
    return tuple(outcome(profile, name, value) for value in ARG0_SAMPLES)


def _every_name() -> set[str]:
    names = {n for profile in (OURS, DOCKER_DEFAULT) for rule in rules(profile) for n in rule["names"]}
    return names | set(DENIED_SYSCALLS)


def test_rules_look_at_argument_0_only() -> None:
    for profile in (OURS, DOCKER_DEFAULT):
        assert {arg["index"] for rule in rules(profile) for arg in rule.get("args", [])} == {0}


def test_the_differences_from_dockers_default_are_exactly_the_table() -> None:
    differ = {name for name in _every_name() if _behaviour(OURS, name) != _behaviour(DOCKER_DEFAULT, name)}
    listed = [name for difference in DIFFERENCES for name in difference.names]
    assert len(listed) == len(set(listed)), "a syscall is listed twice in DIFFERENCES"
    assert sorted(differ - set(listed)) == [], "differences from Docker's default that DIFFERENCES does not explain"
    assert sorted(set(listed) - differ) == [], "DIFFERENCES lists syscalls that no longer differ"


def test_each_difference_says_what_and_why() -> None:
    for difference in DIFFERENCES:
        assert difference.names == tuple(sorted(difference.names))
        assert difference.ours, difference
        assert difference.docker, difference
        assert len(difference.reason) > 40, difference


@pytest.mark.parametrize(
    ("name", "arg0", "ours", "docker"),
    [
        ("socket", 10, "errno 97", "allow"),
        ("socket", 10 | 1 << 32, "errno 97", "allow"),
        ("socket", 38 | 1 << 32, "errno 1", "allow"),  # upper bits slip past Docker's AF_ALG rule
        ("socket", 2 | 1 << 32, "errno 1", "allow"),
        ("socket", 64, "errno 1", "allow"),
        ("socket", 38, "errno 1", "errno 1"),
        ("socket", 40, "errno 1", "errno 1"),
        ("socket", 2, "allow", "allow"),
        ("socketpair", 10, "errno 97", "allow"),
        ("socketpair", 38, "errno 1", "allow"),
        ("socketpair", 1, "allow", "allow"),
        ("keyctl", 0, "errno 1", "allow"),
        ("ptrace", 0, "errno 1", "allow"),
        ("socketcall", 1, "errno 38", "errno 38"),
        ("io_uring_setup", 1, "errno 1", "errno 1"),
        ("clone3", 0, "errno 38", "errno 38"),
    ],
)
def test_what_the_table_says(name: str, arg0: int, ours: str, docker: str) -> None:
    assert (outcome(OURS, name, arg0), outcome(DOCKER_DEFAULT, name, arg0)) == (ours, docker)


# --- Docker-backed tests: the profile in a real box

PROFILE = profile_json(inet6_errno=97)
SYSCTLS_OFF = {f"net.ipv6.conf.{iface}.disable_ipv6": "1" for iface in ("all", "default", "lo")}
UNCONFINED = "unconfined"
WAIT_S = 20


@dataclass(frozen=True)
class Ran:
    code: int
    output: str  # stdout and stderr interleaved
    host_config: Mapping[str, Any]
    stdout: str = ""  # stdout alone: what the script printed, without nginx's log lines


@dataclass(frozen=True)
class Box:
    """The box's client and the image the containers run (the project's base image)."""

    client: Any
    image: str


@pytest.fixture(scope="module")
def box(client: Any, base_image: str) -> Box:
    return Box(client, base_image)


def run(
    client: Any,
    script: str,
    *,
    seccomp: str | None = PROFILE,
    files: Mapping[str, bytes] = {},
    sysctls: Mapping[str, str] = SYSCTLS_OFF,
) -> Ran:
    """Run ``sh -c script`` to completion in a fresh container, then remove it.

    ``seccomp=None`` leaves Docker's default profile in place.
    """
    container = client.client.containers.create(
        client.image,
        ["sh", "-c", script],
        network_mode="none",
        sysctls=dict(sysctls),
        security_opt=[] if seccomp is None else [f"seccomp={seccomp}"],
        labels={"ipv6compat.test": "test_seccomp"},
    )
    try:
        if files:
            container.put_archive("/", _tar(files))
        container.start()
        code = container.wait(timeout=WAIT_S)["StatusCode"]
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
        container.reload()
        stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
        return Ran(int(code), output, container.attrs["HostConfig"], stdout)
    finally:
        container.remove(force=True)


def _tar(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = 0o755 if path.startswith("/probe/") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.docker
def test_inet6_socket_fails_but_ipv4_sockets_work(box: Any) -> None:
    ran = run(box, "busybox nc ::1 1; busybox nc 127.0.0.1 1")
    assert "socket: Address family not supported by protocol" in ran.output
    assert "Connection refused" in ran.output


@pytest.mark.docker
def test_profile_without_inet6_errno_keeps_inet6(box: Any) -> None:
    """The control: same sysctls, the profile built without the AF_INET6 rule."""
    ran = run(box, "busybox nc ::1 1", seccomp=profile_json())
    assert "Address family not supported" not in ran.output
    assert "Cannot assign requested address" in ran.output  # socket() worked; no ::1 to reach


@pytest.mark.docker
def test_container_is_unprivileged_and_filtered(box: Any) -> None:
    ran = run(box, "busybox grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status")
    host = ran.host_config
    assert host["Privileged"] is False
    assert not host.get("CapAdd")
    assert host["NetworkMode"] == "none"
    assert host["SecurityOpt"] == [f"seccomp={PROFILE}"]
    assert re.search(r"^Seccomp:\s+2$", ran.output, re.M), ran.output  # 2 = filter mode
    cap_eff = int(re.search(r"^CapEff:\s+([0-9a-f]+)$", ran.output, re.M).group(1), 16)  # type: ignore[union-attr]
    assert not cap_eff & (1 << 21), "CAP_SYS_ADMIN must not be held"


NGINX_CONF = b"""\
worker_processes 2;
error_log stderr notice;
pid /tmp/nginx.pid;
thread_pool default threads=2;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    aio threads;
    server {
        %s
        root /www;
        location = /health { return 200 "ok\\n"; }
    }
}
"""
START_NGINX = """\
mkdir -p /var/lib/nginx/body && echo hello > /www/index.html || exit 90
nginx -c /etc/nginx/test.conf || exit 91
i=0
until busybox wget -qO- http://127.0.0.1:8080/ 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && exit 92; busybox usleep 10000
done
busybox wget -qO- http://127.0.0.1:8080/health
echo @@tcp; cat /proc/net/tcp; echo @@tcp6; cat /proc/net/tcp6; echo @@end
"""


def _nginx_files(listen: str) -> dict[str, bytes]:
    return {"/etc/nginx/test.conf": NGINX_CONF % listen.encode(), "/www/.keep": b""}


@pytest.mark.docker
def test_nginx_serves_ipv4_under_profile(box: Any) -> None:
    ran = run(box, START_NGINX, files=_nginx_files("listen 127.0.0.1:8080;"))
    assert ran.code == 0, ran.output
    assert "hello\n" in ran.output
    assert "ok\n" in ran.output
    assert "start worker process" in ran.output  # workers forked, then dropped privileges
    assert _listeners(ran.stdout) == {Listener(Family.INET, "127.0.0.1", 8080)}


def _listeners(output: str) -> frozenset[Listener]:
    """Parse the /proc/net/tcp{,6} texts that START_NGINX prints between markers."""
    texts = {
        Family.INET: output.split("@@tcp\n")[1].split("@@tcp6\n")[0],
        Family.INET6: output.split("@@tcp6\n")[1].split("@@end")[0],
    }
    found = set()
    for family, text in texts.items():
        for row in text.splitlines()[1:]:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A":  # LISTEN
                address, port = fields[1].split(":")
                words = [bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8)]
                raw = b"".join(words)  # the kernel prints each 32-bit word in host (little-endian) order
                text_address = str(ipaddress.ip_address(raw))
                found.add(Listener(family, canonical_address(family, text_address), int(port, 16)))
    return frozenset(found)


@pytest.mark.docker
@pytest.mark.parametrize(
    ("seccomp", "starts"),
    [(PROFILE, False), (None, True)],
    ids=["kernel-off-profile", "docker-default-profile"],
)
def test_nginx_ipv6_listen_fails_like_a_kernel_without_ipv6(box: Any, seccomp: str | None, starts: bool) -> None:
    listen = "listen 127.0.0.1:8080; listen [::]:56000;"
    ran = run(box, START_NGINX, seccomp=seccomp, files=_nginx_files(listen))
    emerg = "socket() [::]:56000 failed (97: Address family not supported by protocol)"
    if starts:  # disable_ipv6=1 alone still lets nginx bind [::]
        assert ran.code == 0, ran.output
        assert _listeners(ran.stdout) == {
            Listener(Family.INET, "127.0.0.1", 8080),
            Listener(Family.INET6, "::", 56000),
        }
    else:
        assert ran.code == 91, ran.output
        assert "[emerg]" in ran.output
        assert emerg in ran.output


@pytest.mark.docker
def test_mount_is_denied_before_the_kernel_looks_at_it(box: Any) -> None:
    """``mount`` also needs CAP_SYS_ADMIN, so a plain failure proves little.

    The kernel checks the target path before the capability: unconfined, a missing
    target gives ENOENT; under the profile the call never reaches the kernel: EPERM.
    """
    script = "busybox mount -t tmpfs none /tmp; echo rc=$?; busybox mount -t tmpfs none /nonexistent"
    confined = run(box, script)
    assert "rc=0" not in confined.output
    assert "mounting none on /nonexistent failed: No such file" not in confined.output
    assert confined.output.count("permission denied") == 2, confined.output
    unconfined = run(box, script, seccomp=UNCONFINED)
    assert "mounting none on /nonexistent failed: No such file or directory" in unconfined.output


# --- busybox applets: what the profile decides, with an unconfined control


@dataclass(frozen=True)
class Applet:
    name: str
    command: str
    confined: int
    unconfined: int


APPLETS = (
    Applet("unshare", "busybox unshare -U true", 1, 0),
    Applet("adjtimex-read", "busybox adjtimex >/dev/null", 0, 0),  # glibc calls clock_adjtime, modes 0
    Applet("linux32", "busybox linux32 true", 0, 0),  # personality(PER_LINUX32)
)


@pytest.fixture(scope="module")
def applet_results(box: Box) -> dict[str, dict[str, int]]:
    """Run every applet once under the profile and once unconfined: two containers."""
    script = "\n".join(f"{a.command}; echo @@{a.name}=$?" for a in APPLETS)
    results: dict[str, dict[str, int]] = {}
    for mode, seccomp in (("confined", PROFILE), ("unconfined", UNCONFINED)):
        ran = run(box, script, seccomp=seccomp)
        results[mode] = {name: int(code) for name, code in re.findall(r"^@@([\w-]+)=(\d+)$", ran.output, re.M)}
    return results


@pytest.mark.docker
@pytest.mark.parametrize("applet", APPLETS, ids=[a.name for a in APPLETS])
def test_profile_decides_the_applet(applet_results: dict[str, dict[str, int]], applet: Applet) -> None:
    unconfined = applet_results["unconfined"][applet.name]
    if unconfined != applet.unconfined:
        pytest.skip(f"control failed: unconfined {applet.name} gave {unconfined}, not {applet.unconfined}")
    assert applet_results["confined"][applet.name] == applet.confined


# --- raw system calls from static programs the tests build


def _build(tmp: Path, name: str, command: list[str]) -> bytes:
    tool = next(word for word in command if "=" not in word)
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed: cannot build the {name} probe")
    out = tmp / name
    settings = dict(word.split("=", 1) for word in command if "=" in word)
    command = [str(out) if word == "OUT" else word for word in command if "=" not in word]
    env = {**os.environ, "CGO_ENABLED": "0", **settings}  # Go: a static binary, like the C ones
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, env=env)
    if done.returncode != 0:
        pytest.skip(f"{' '.join(command)} failed, so no {name} probe: {done.stderr.strip()[-300:]}")
    return out.read_bytes()


PROBE_C = str(DATA / "probe.c")
BUILDS: dict[str, list[str]] = {
    "glibc": ["gcc", "-o", "OUT", "-static", "-O1", PROBE_C, "-lpthread"],
    "musl": ["musl-gcc", "-o", "OUT", "-static", "-O1", PROBE_C],
    "i386": ["gcc", "-o", "OUT", "-m32", "-static", "-nostdlib", "-ffreestanding", "-fno-pic", "-no-pie",
             "-fno-stack-protector", "-O1", str(DATA / "probe32.c")],
    "i386-glibc": ["gcc", "-o", "OUT", "-m32", "-static", "-O1", str(DATA / "libc_socket.c")],
    "go": ["go", "build", "-o", "OUT", str(DATA / "server.go")],
    "go-386": ["GOARCH=386", "go", "build", "-o", "OUT", str(DATA / "server.go")],
}  # fmt: skip


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``build(name)``: the static program ``name`` of BUILDS, built once; skips if it cannot be."""
    tmp = tmp_path_factory.mktemp("seccomp-probes")
    built: dict[str, bytes] = {}

    def get(name: str) -> bytes:
        if name not in built:
            built[name] = _build(tmp, name, BUILDS[name])
        return built[name]

    return get


def _results(output: str) -> dict[str, str]:
    return dict(re.findall(r"^@@([\w-]+)=(ok|errno \d+)$", output, re.M))


# name: (under the profile, unconfined control or None). The controls show the
# kernel would have honoured the call, so the profile is what refuses it.
RAW_CHECKS: dict[str, tuple[str, str | None]] = {
    "socket-inet": ("ok", "ok"),
    "socket-unix": ("ok", "ok"),
    "socket-inet6": ("errno 97", "ok"),
    "socket-inet6-dgram": ("errno 97", "ok"),
    "socket-inet6-bit32": ("errno 97", "ok"),  # the kernel ignores the upper bits: AF_INET6
    "socket-inet6-high": ("errno 97", "ok"),
    "socket-inet6-bit63": ("errno 97", "ok"),
    "socket-inet-bit32": ("errno 1", "ok"),
    "socket-alg": ("errno 1", None),  # unconfined: ok, or 97 where the module is absent
    "socket-alg-bit32": ("errno 1", None),
    "socket-vsock": ("errno 1", None),
    "socket-vsock-bit32": ("errno 1", None),
    "socket-family-64": ("errno 1", "errno 97"),
    "socketpair-unix": ("ok", "ok"),
    "socketpair-inet6": ("errno 97", "errno 95"),
    "socketpair-inet6-bit32": ("errno 97", "errno 95"),
    "socketpair-inet": ("errno 95", "errno 95"),
    "io_uring_setup": ("errno 1", "ok"),  # IORING_OP_SOCKET would be a route around the socket rule
    "unshare-newuser": ("errno 1", "ok"),
    "mount-tmpfs": ("errno 1", "errno 2"),  # unconfined, the kernel looks up the target first
    "keyctl": ("errno 1", "ok"),
    "ptrace-traceme": ("errno 1", "ok"),
    "adjtimex-read": ("ok", "ok"),
    "clone3": ("errno 38", "errno 22"),
}


@pytest.fixture(scope="module")
def raw_results(box: Box, build: Any) -> Any:
    """``raw_results(libc)``: {mode: {check: result}} for the probe built against ``libc``."""
    cache: dict[str, dict[str, dict[str, str]]] = {}

    def get(libc: str) -> dict[str, dict[str, str]]:
        if libc not in cache:
            files = {"/probe/probe": build(libc)}
            cache[libc] = {
                mode: _results(run(box, "/probe/probe checks", seccomp=seccomp, files=files).output)
                for mode, seccomp in (("confined", PROFILE), ("unconfined", UNCONFINED))
            }
        return cache[libc]

    return get


@pytest.mark.docker
@pytest.mark.parametrize("libc", ["glibc", "musl"])
@pytest.mark.parametrize("check", list(RAW_CHECKS))
def test_raw_syscall_under_the_profile(raw_results: Any, libc: str, check: str) -> None:
    results = raw_results(libc)
    confined, control = RAW_CHECKS[check]
    unconfined = results["unconfined"].get(check)
    if control is not None and unconfined != control:
        pytest.skip(f"control failed: unconfined {check} gave {unconfined}, not {control}")
    assert results["confined"].get(check) == confined, results["confined"]


@pytest.mark.docker
def test_i386_programs_run_and_reach_sockets_only_directly(box: Box, build: Any) -> None:
    """32-bit x86 is in the profile: no SIGSYS; socket is filtered, socketcall is ENOSYS."""
    ran = run(box, "/probe/probe32", files={"/probe/probe32": build("i386")})
    assert ran.code == 0, f"exit {ran.code} (159 = SIGSYS: i386 left out of the profile)\n{ran.output}"
    assert _results(ran.output) == {
        "getpid": "ok",
        "socket-inet": "ok",
        "socket-inet6": "errno 97",
        "socketpair-unix": "ok",
        "socketpair-inet6": "errno 97",
        "socketcall-inet": "errno 38",
        "socketcall-inet6": "errno 38",
    }


@pytest.mark.docker
def test_i386_glibc_socket_gets_enosys(box: Box, build: Any) -> None:
    """The documented limit: Debian 12's i386 glibc creates sockets through socketcall."""
    files = {"/probe/socket": build("i386-glibc")}
    unconfined = _results(run(box, "/probe/socket", seccomp=UNCONFINED, files=files).output)
    if unconfined != {"socket-inet": "ok", "socket-inet6": "ok"}:
        pytest.skip(f"control failed: unconfined, the i386 program gave {unconfined}")
    confined = _results(run(box, "/probe/socket", files=files).output)
    if confined == {"socket-inet": "ok", "socket-inet6": "errno 97"}:
        pytest.skip("this i386 libc calls socket directly, so it is not limited")
    assert confined == {"socket-inet": "errno 38", "socket-inet6": "errno 38"}


@pytest.mark.docker
def test_i386_go_server_fails_with_enosys(box: Box, build: Any) -> None:
    """The same limit for Go: its 386 port creates sockets through socketcall."""
    ran = run(box, "/probe/server serve 8080", files={"/probe/server": build("go-386")})
    assert ran.code == 1, ran.output
    assert "@@listen: listen tcp :8080: socket: function not implemented" in ran.output


SERVE = """\
/probe/server serve 8080 >/tmp/server.out 2>&1 &
i=0
until busybox grep -q '^@@ready' /tmp/server.out 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 1000 ] && break; busybox usleep 10000
done
busybox cat /tmp/server.out
echo "@@v4 $(busybox nc 127.0.0.1 8080 </dev/null 2>&1)"
echo "@@v6 $(busybox nc ::1 {v6_port} </dev/null 2>&1)"
echo @@tcp; busybox cat /proc/net/tcp; echo @@tcp6; busybox cat /proc/net/tcp6; echo @@end
kill %1
"""
SYSCTLS_ON = {name: "0" for name in SYSCTLS_OFF}


@pytest.mark.docker
@pytest.mark.parametrize("server", ["glibc", "musl", "go"])
def test_a_static_server_starts_the_same_but_for_ipv6(box: Box, build: Any, server: str) -> None:
    """dual-stack (the engine's default profile) against ipv6-kernel-off (this profile)."""
    v6_port = 8080 if server == "go" else 8081  # Go: one dual-stack socket; C: a v6only one
    files = {"/probe/server": build(server)}
    script = SERVE.replace("{v6_port}", str(v6_port))
    dual = run(box, script, seccomp=None, sysctls=SYSCTLS_ON, files=files)
    off = run(box, script, files=files)
    for ran in (dual, off):
        assert "@@ready" in ran.stdout, ran.output
        assert "@@v4 hello" in ran.stdout, ran.output
    assert "@@v6 hello" in dual.stdout, dual.output
    assert "@@v6 hello" not in off.stdout, off.output
    dual_listeners, off_listeners = _listeners(dual.stdout), _listeners(off.stdout)
    assert {li for li in dual_listeners if li.family is Family.INET6} == {Listener(Family.INET6, "::", v6_port)}
    assert off_listeners == {Listener(Family.INET, "0.0.0.0", 8080)}
    if server == "go":  # one [::] socket serves both families; without IPv6 Go listens on 0.0.0.0
        assert "@@listen: ok [::]:8080" in dual.stdout
        assert "@@listen: ok 0.0.0.0:8080" in off.stdout
    else:
        assert dual_listeners == off_listeners | {Listener(Family.INET6, "::", v6_port)}
        assert "@@listen inet6: ok" in dual.stdout
        assert "@@listen inet6: unavailable, errno 97" in off.stdout
