"""Stack definitions and attestation logic: pure, no Docker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_ipv6compat.stacks import DEFAULT_STACKS, STACKS, attest, get_stack, inet6_probe_fact, pod_facts

GOOD: dict[str, dict[str, Any]] = {
    "dual-stack": {"disable": "0", "lo": "present", "sock": "socket ok, connect refused", "pod": ("inet", "inet6")},
    "ipv6-sysctl-off": {"disable": "1", "lo": "absent", "sock": "socket ok, connect errno 99", "pod": ("inet",)},
    "ipv6-kernel-off": {"disable": "1", "lo": "absent", "sock": "socket() errno 97", "pod": ("inet",)},
    "ipv6-boot-disabled": {"disable": "absent", "lo": "absent", "sock": "socket() errno 97", "cmdline": "1",
                           "proc": "absent", "pod": ("inet",)},
    "ipv6-only": {"disable": "0", "lo": "present", "sock": "socket ok, connect refused", "pod": ("inet6",)},
}

# What the shim reads from /proc in a namespace with pod0 (seen in a Docker container, probe/pod_setup.c, and
# the same in a User-mode Linux guest, probe/uml_setup.c).
RAW_POD = {
    "inet": {"raw inet local": "10.69.0.2", "raw inet routes": "pod0:00000000/00000000 pod0:0000450A/00FFFFFF"},
    "inet6": {"raw inet6 global": "pod0:fd697076366300000000000000000002/64", "raw inet6 default": "pod0"},
}


def facts(disable: str, lo: str, sock: str, cmdline: str = "none", proc: str = "present",
          pod: tuple[str, ...] = ()) -> dict[str, str]:
    out = {f"{i}.disable_ipv6": disable for i in ("all", "default", "lo")}
    out["lo ::1"] = lo
    out["inet6 socket"] = sock
    out["cmdline ipv6.disable"] = cmdline
    out["/proc/net/if_inet6"] = out["/proc/sys/net/ipv6"] = proc
    out |= {"raw inet6 global": "", "raw inet local": "127.0.0.1", "raw inet routes": "", "raw inet6 default": ""}
    for family in pod:
        out |= RAW_POD[family]
    if "inet" in pod:
        out["raw inet local"] = "127.0.0.1 10.69.0.2"  # fib_trie's order
    return out


def test_a_real_kernel_is_attested_by_its_command_line_and_proc() -> None:
    stack = STACKS["ipv6-boot-disabled"]
    emulated = attest(stack, facts(**GOOD["ipv6-kernel-off"]))  # the same pod address: only the kernel differs
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


def test_the_pod_address_of_each_stack() -> None:
    """IPv4 and IPv6 on dual-stack, IPv4 only where IPv6 is off, IPv6 only on ipv6-only; POD_IP is the first."""
    assert STACKS["dual-stack"].pod_env() == {"POD_IP": "10.69.0.2", "POD_IPS": "10.69.0.2,fd69:7076:3663::2"}
    assert STACKS["ipv6-sysctl-off"].pod_networks() == ("10.69.0.2/24",)
    assert STACKS["ipv6-kernel-off"].pod_addresses() == ("10.69.0.2",)
    assert STACKS["ipv6-only"].pod_env() == {"POD_IP": "fd69:7076:3663::2", "POD_IPS": "fd69:7076:3663::2"}
    assert STACKS["ipv6-only"].sysctls()["net.ipv6.conf.all.disable_ipv6"] == "0"
    assert STACKS["ipv6-boot-disabled"].pod_env() == {"POD_IP": "10.69.0.2", "POD_IPS": "10.69.0.2"}
    # Opt-in, like ipv6-boot-disabled: matrices that name no stacks keep their cells.
    assert DEFAULT_STACKS == ("dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off")


def test_pod_facts_are_decoded_from_proc() -> None:
    decoded = pod_facts(facts(**GOOD["dual-stack"]))
    assert decoded["inet6 global addresses"] == "pod0 fd69:7076:3663::2/64"
    assert decoded["inet local addresses"] == "10.69.0.2 127.0.0.1"
    assert decoded["inet routes"] == "pod0 0.0.0.0/0, pod0 10.69.0.0/24"
    assert decoded["inet6 default routes"] == "pod0"
    assert "raw inet routes" not in decoded
    assert pod_facts({"raw inet routes": "pod0:zz/00"})["inet routes"].startswith("unreadable: ")


@pytest.mark.parametrize(
    ("name", "change", "problem"),
    [
        ("ipv6-only", {"raw inet local": "127.0.0.1 10.69.0.2"}, "inet local addresses: 10.69.0.2 127.0.0.1, want "
                                                                 "127.0.0.1"),
        ("ipv6-only", {"raw inet routes": "pod0:00000000/00000000"}, "inet routes: pod0 0.0.0.0/0, want none"),
        ("ipv6-only", {"raw inet6 default": ""}, "inet6 default routes: none, want pod0"),
        ("dual-stack", {"raw inet6 global": ""}, "inet6 global addresses: none, want pod0 fd69:7076:3663::2/64"),
        ("ipv6-sysctl-off", {"raw inet routes": "pod0:0000450A/00FFFFFF"},
         "inet routes: pod0 10.69.0.0/24, want pod0 0.0.0.0/0, pod0 10.69.0.0/24"),
        ("ipv6-boot-disabled", {"raw inet local": "127.0.0.1"}, "inet local addresses: 127.0.0.1, want 10.69.0.2 "
                                                                "127.0.0.1"),
        ("ipv6-boot-disabled", {"raw inet routes": ""}, "inet routes: none, want pod0 0.0.0.0/0, pod0 10.69.0.0/24"),
    ],
)
def test_a_pod_address_not_as_claimed_is_not_attested(name: str, change: dict[str, str], problem: str) -> None:
    result = attest(STACKS[name], facts(**GOOD[name]) | change)
    assert not result.ok
    assert problem in result.problems
    del_facts = {k: v for k, v in facts(**GOOD[name]).items() if not k.startswith("raw ")}
    assert "inet routes: missing, want" in " ".join(attest(STACKS[name], del_facts).problems)
