"""The seccomp profile: unit tests on its data, and Docker-backed tests of its effect.

The Docker tests compare the profile with ``seccomp=unconfined`` wherever a
denial could also come from missing capabilities, so that each one shows the
profile, not the capability set, is what blocks the call.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
import struct
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_ipv6compat.listeners import canonical_address
from pytest_ipv6compat.model import Family, Listener
from pytest_ipv6compat.seccomp import (
    ALLOWED_SYSCALLS,
    DENIED_SYSCALLS,
    build_profile,
    profile_json,
)

# Image the Docker tests run in: needs nginx and a static busybox at /bin/busybox.
# The lead will switch this to the real base-image fixture.

# What Docker's default profile keeps from unprivileged containers; written out
# here rather than imported so the test does not just compare the module to itself.
MUST_DENY = (
    "mount", "umount", "umount2", "pivot_root", "unshare", "setns",
    "keyctl", "add_key", "request_key", "ptrace", "process_vm_readv", "process_vm_writev",
    "bpf", "perf_event_open", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "userfaultfd",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "quotactl",
    "sethostname", "setdomainname", "iopl", "ioperm", "create_module", "vm86",
    "nfsservctl", "syslog", "fanotify_init", "move_pages", "mbind", "set_mempolicy",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
CLONE_NEWTIME, SIGCHLD, CLONE_VM, CLONE_THREAD = 0x80, 17, 0x100, 0x10000
NAMESPACE_FLAGS = (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET)

Rule = Mapping[str, Any]
VARIANTS = pytest.mark.parametrize("inet6_errno", [None, 97], ids=["socket-open", "inet6-97"])


def rules(profile: Mapping[str, Any]) -> list[Rule]:
    result: list[Rule] = profile["syscalls"]
    return result


def rules_for(profile: Mapping[str, Any], name: str) -> list[Rule]:
    return [rule for rule in rules(profile) if name in rule["names"]]


def allows(rule: Rule) -> bool:
    return bool(rule["action"] == "SCMP_ACT_ALLOW")


def _matches(rule: Rule, args: tuple[int, ...]) -> bool:
    for cmp in rule.get("args", []):
        value = args[cmp["index"]] if cmp["index"] < len(args) else 0
        op = cmp["op"]
        if op == "SCMP_CMP_EQ":
            ok = value == cmp["value"]
        elif op == "SCMP_CMP_NE":
            ok = value != cmp["value"]
        elif op == "SCMP_CMP_MASKED_EQ":
            ok = value & cmp["value"] == cmp["valueTwo"]
        else:
            raise AssertionError(f"the evaluator does not know {op}")
        if not ok:
            return False
    return True


def outcome(profile: Mapping[str, Any], name: str, *args: int) -> str:
    """``allow`` or ``errno N``: what the profile does with one call, as a filter would."""
    hits = {
        "allow" if allows(rule) else f"errno {rule.get('errnoRet', 1)}"
        for rule in rules_for(profile, name)
        if _matches(rule, args)
    }
    assert len(hits) <= 1, f"{name}{args} matches rules with different actions: {hits}"
    return hits.pop() if hits else "errno 1"


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
    for conditional in ("socket", "socketcall", "clone", "clone3", "personality"):
        assert conditional not in ALLOWED_SYSCALLS


NEEDED_BY_A_SERVICE = (
    "read", "write", "openat", "close", "epoll_wait", "epoll_ctl", "accept4", "sendfile", "futex", "eventfd2",
    "timerfd_create", "prlimit64", "getrandom", "rseq", "statx", "execve", "wait4", "exit_group", "fork", "vfork",
    "rt_sigaction", "mmap",
)  # fmt: skip


@pytest.mark.parametrize("name", NEEDED_BY_A_SERVICE)
def test_a_normal_service_can_run(name: str) -> None:
    assert outcome(build_profile(inet6_errno=97), name) == "allow"


def test_inet6_socket_rule() -> None:
    profile = build_profile(inet6_errno=97)
    errno_rules = [rule for rule in rules_for(profile, "socket") if not allows(rule)]
    assert errno_rules == [
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 97,
            "args": [{"index": 0, "value": 10, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
            "comment": "AF_INET6 fails as on a kernel without IPv6",
        }
    ]


def test_socket_allow_rule_excludes_inet6() -> None:
    profile = build_profile(inet6_errno=97)
    allow_rules = [rule for rule in rules_for(profile, "socket") if allows(rule)]
    assert allow_rules
    for rule in allow_rules:
        assert {"index": 0, "value": 10, "valueTwo": 0, "op": "SCMP_CMP_NE"} in rule["args"]
    assert outcome(profile, "socket", 10, 1, 0) == "errno 97"
    for family in (1, 2, 16, 17):  # AF_UNIX, AF_INET, AF_NETLINK, AF_PACKET
        assert outcome(profile, "socket", family, 1, 0) == "allow"


def test_inet6_profile_leaves_no_socketcall_bypass() -> None:
    profile = build_profile(inet6_errno=97)
    assert outcome(profile, "socketcall", 1) == "errno 1"
    subarchs = [sub for entry in profile["archMap"] for sub in entry["subArchitectures"]]  # type: ignore[attr-defined]
    assert "SCMP_ARCH_X86" not in subarchs


def test_other_inet6_errno() -> None:
    assert outcome(build_profile(inet6_errno=13), "socket", 10) == "errno 13"


def test_without_inet6_errno_socket_is_unconditional() -> None:
    profile = build_profile()
    assert [rule.get("args") for rule in rules_for(profile, "socket")] == [None]
    assert outcome(profile, "socket", 10) == "allow"
    assert "97" not in profile_json()


@pytest.mark.parametrize("bad", [0, -1, 4096, True, "97", 97.0])
def test_inet6_errno_is_validated(bad: Any) -> None:
    with pytest.raises(ValueError, match="inet6_errno must be"):
        build_profile(inet6_errno=bad)


@VARIANTS
def test_architectures(inet6_errno: int | None) -> None:
    arch_map = build_profile(inet6_errno=inet6_errno)["archMap"]
    assert isinstance(arch_map, list)
    by_arch = {entry["architecture"]: set(entry["subArchitectures"]) for entry in arch_map}
    assert set(by_arch) == {"SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"}
    assert "SCMP_ARCH_X32" in by_arch["SCMP_ARCH_X86_64"]
    assert by_arch["SCMP_ARCH_AARCH64"] == {"SCMP_ARCH_ARM"}
    assert ("SCMP_ARCH_X86" in by_arch["SCMP_ARCH_X86_64"]) is (inet6_errno is None)


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
    assert "mount" not in profile_json(inet6_errno=97)


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


# Each probe: a shell command, its exit code under the profile, and unconfined.
# None: the unconfined result is not asserted. Raw syscalls use a tiny static
# x86_64 program (see _syscall_program) that exits with the errno, or 0.


@dataclass(frozen=True)
class Probe:
    name: str
    confined: int
    unconfined: int | None
    command: str = ""
    syscall: tuple[int, ...] = ()  # (number, arg0, arg1, arg2) for a raw probe


PROBES = (
    Probe("unshare-applet", 1, 0, command="busybox unshare -U true"),
    Probe("adjtimex-applet", 1, 0, command="busybox adjtimex >/dev/null"),  # glibc calls clock_adjtime
    Probe("linux32-applet", 0, 0, command="busybox linux32 true"),  # personality(PER_LINUX32)
    Probe("keyctl", 1, 0, syscall=(250, 0, -3, 0)),  # KEYCTL_GET_KEYRING_ID, session keyring
    Probe("unshare-newuser", 1, 0, syscall=(272, CLONE_NEWUSER)),
    Probe("clone-newuser", 1, 0, syscall=(56, CLONE_NEWUSER | SIGCHLD)),
    Probe("clone-fork", 0, 0, syscall=(56, SIGCHLD)),
    Probe("clone3", 38, None, syscall=(435, 0, 0)),  # unconfined: EINVAL for a NULL struct
    Probe("ptrace-traceme", 1, 0, syscall=(101, 0)),
    Probe("personality-addr-no-randomize", 1, 0, syscall=(135, 0x0040000)),
    Probe("personality-linux32", 0, 0, syscall=(135, 0x8)),
    Probe("socket-inet6", 97, 0, syscall=(41, 10, 1, 0)),
    Probe("socket-inet", 0, 0, syscall=(41, 2, 1, 0)),
)


def _syscall_program(number: int, a0: int = 0, a1: int = 0, a2: int = 0) -> bytes:
    """A static x86_64 ELF that makes one system call and exits with its errno (0 on success)."""

    def imm32(value: int) -> bytes:
        return struct.pack("<i", value if value < 2**31 else value - 2**32)

    code = b"".join(
        (
            b"\x48\xc7\xc0" + imm32(number),  # mov rax, number
            b"\x48\xc7\xc7" + imm32(a0),  # mov rdi, a0
            b"\x48\xc7\xc6" + imm32(a1),  # mov rsi, a1
            b"\x48\xc7\xc2" + imm32(a2),  # mov rdx, a2
            b"\x0f\x05",  # syscall
            b"\x48\x85\xc0",  # test rax, rax
            b"\x78\x04",  # js failed
            b"\x31\xff",  # xor edi, edi
            b"\xeb\x05",  # jmp leave
            b"\x48\xf7\xd8",  # failed: neg rax
            b"\x89\xc7",  # mov edi, eax
            b"\xb8\x3c\x00\x00\x00",  # leave: mov eax, 60 (exit)
            b"\x0f\x05",  # syscall
        )
    )
    base, offset = 0x400000, 64 + 56
    elf_header = struct.pack(
        "<4s5B7xHHIQQQIHHHHHH",
        *(b"\x7fELF", 2, 1, 1, 0, 0),  # 64-bit, little-endian, ELF v1, System V ABI
        *(2, 0x3E, 1),  # ET_EXEC, EM_X86_64, version
        *(base + offset, 64, 0),  # entry, program headers at 64, no section headers
        *(0, 64, 56, 1, 0, 0, 0),
    )
    size = offset + len(code)
    program_header = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)  # PT_LOAD, R+X
    return elf_header + program_header + code


@pytest.fixture(scope="module")
def probe_results(box: Any) -> dict[str, dict[str, int]]:
    """Run every probe once under the profile and once unconfined: two containers."""
    raw = box.client.info().get("Architecture") == "x86_64"
    files = {f"/probe/{p.name}": _syscall_program(*p.syscall) for p in PROBES if p.syscall and raw}
    lines = [f"{p.command or '/probe/' + p.name}; echo @@{p.name}=$?" for p in PROBES if p.command or raw]
    results: dict[str, dict[str, int]] = {}
    for mode, seccomp in (("confined", PROFILE), ("unconfined", UNCONFINED)):
        ran = run(box, "\n".join(lines), seccomp=seccomp, files=files)
        results[mode] = {name: int(code) for name, code in re.findall(r"^@@([\w-]+)=(\d+)$", ran.output, re.M)}
    return results


@pytest.mark.docker
@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_profile_decides_the_syscall(probe_results: dict[str, dict[str, int]], probe: Probe) -> None:
    if probe.name not in probe_results["confined"]:
        pytest.skip("raw syscall probes are x86_64 programs; the box is another architecture")
    unconfined = probe_results["unconfined"][probe.name]
    if probe.unconfined is not None and unconfined != probe.unconfined:
        pytest.skip(
            f"control failed: unconfined {probe.name} gave {unconfined}, not {probe.unconfined},"
            " so this kernel cannot show the profile is the cause"
        )
    assert probe_results["confined"][probe.name] == probe.confined
