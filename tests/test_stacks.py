"""Stack definitions and attestation logic: pure, no Docker."""

from __future__ import annotations

import json

import pytest

from pytest_ipv6compat.stacks import STACKS, attest, get_stack, inet6_probe_fact

GOOD = {
    "dual-stack": {"disable": "0", "lo": "present", "sock": "socket ok, connect refused"},
    "ipv6-sysctl-off": {"disable": "1", "lo": "absent", "sock": "socket ok, connect errno 99"},
    "ipv6-kernel-off": {"disable": "1", "lo": "absent", "sock": "socket() errno 97"},
    "ipv6-boot-disabled": {"disable": "absent", "lo": "absent", "sock": "socket() errno 97", "cmdline": "1",
                           "proc": "absent"},
}


def facts(disable: str, lo: str, sock: str, cmdline: str = "none", proc: str = "present") -> dict[str, str]:
    out = {f"{i}.disable_ipv6": disable for i in ("all", "default", "lo")}
    out["lo ::1"] = lo
    out["inet6 socket"] = sock
    out["cmdline ipv6.disable"] = cmdline
    out["/proc/net/if_inet6"] = out["/proc/sys/net/ipv6"] = proc
    return out


def test_a_real_kernel_is_attested_by_its_command_line_and_proc() -> None:
    stack = STACKS["ipv6-boot-disabled"]
    emulated = attest(stack, facts(**GOOD["ipv6-kernel-off"]))
    assert emulated.problems == (
        "/proc/cmdline has ipv6.disable=none, want ipv6.disable=1",
        "/proc/net/if_inet6 is present, want absent",
        "/proc/sys/net/ipv6 is present, want absent",
    )
    booted_with_ipv6 = attest(stack, facts("0", "present", "socket ok, connect refused", "none", "present"))
    assert "inet6 socket: socket ok, connect refused, want socket() errno 97" in booted_with_ipv6.problems
    assert not attest(stack, {}).ok
    # The container stacks ignore the kernel's facts: the host's command line is not theirs.
    assert attest(STACKS["ipv6-kernel-off"], facts(**GOOD["ipv6-kernel-off"], cmdline="1")).ok


@pytest.mark.parametrize("name", list(STACKS))
def test_each_stack_attests_only_its_own_facts(name: str) -> None:
    stack = STACKS[name]
    assert attest(stack, facts(**GOOD[name])).ok
    for other, good in GOOD.items():
        if other != name:
            result = attest(stack, facts(**good))
            assert not result.ok, (name, other)
            assert result.problems


def test_engine_ignoring_sysctls_is_caught() -> None:
    # sysctls ignored: the container kept IPv6 although the stack said off
    result = attest(STACKS["ipv6-sysctl-off"], facts(**GOOD["dual-stack"]))
    assert "all.disable_ipv6 is 0, want 1" in result.problems
    assert "stack ipv6-sysctl-off: NOT attested" in result.describe()


def test_engine_ignoring_seccomp_is_caught() -> None:
    result = attest(STACKS["ipv6-kernel-off"], facts(**GOOD["ipv6-sysctl-off"]))
    assert result.problems == ("inet6 socket: socket ok, connect errno 99, want socket() errno 97",)


def test_missing_facts_are_problems() -> None:
    result = attest(STACKS["dual-stack"], {})
    assert not result.ok
    assert "all.disable_ipv6 is missing, want 0" in result.problems


@pytest.mark.parametrize(
    ("text", "fact"),
    [
        ("nc: socket: Address family not supported by protocol", "socket() errno 97"),
        ("nc: can't connect to remote host: Cannot assign requested address", "socket ok, connect errno 99"),
        ("nc: can't connect to remote host: Connection refused", "socket ok, connect refused"),
        ("something else", "unrecognised: 'something else'"),
    ],
)
def test_probe_facts(text: str, fact: str) -> None:
    assert inet6_probe_fact(text) == fact


def test_stack_settings() -> None:
    assert STACKS["dual-stack"].sysctls() == {
        "net.ipv6.conf.all.disable_ipv6": "0",
        "net.ipv6.conf.default.disable_ipv6": "0",
        "net.ipv6.conf.lo.disable_ipv6": "0",
    }
    assert STACKS["dual-stack"].security_opt() == []
    assert STACKS["ipv6-sysctl-off"].security_opt() == []
    (opt,) = STACKS["ipv6-kernel-off"].security_opt()
    assert opt.startswith("seccomp=")
    profile = json.loads(opt.removeprefix("seccomp="))
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    with pytest.raises(ValueError, match="unknown stack 'v6'"):
        get_stack("v6")
