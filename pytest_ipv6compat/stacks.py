"""The IPv6 conditions a container can be put in, and how to attest them.

Every stack is realised with per-container settings only (namespaced sysctls and a
seccomp profile): the host's own network settings are never touched and no
container is privileged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .model import Attestation

_IFACES = ("all", "default", "lo")


@dataclass(frozen=True)
class Stack:
    name: str
    summary: str
    disable_ipv6: bool
    inet6_errno: int | None  # errno that socket(AF_INET6) is forced to return

    def sysctls(self) -> dict[str, str]:
        value = "1" if self.disable_ipv6 else "0"
        return {f"net.ipv6.conf.{iface}.disable_ipv6": value for iface in _IFACES}

    def security_opt(self) -> list[str]:
        if self.inet6_errno is None:
            return []
        from .seccomp import profile_json

        return [f"seccomp={profile_json(inet6_errno=self.inet6_errno)}"]


STACKS: dict[str, Stack] = {
    s.name: s
    for s in (
        Stack("dual-stack", "IPv6 enabled: ::1 on lo, AF_INET6 works", False, None),
        Stack(
            "ipv6-sysctl-off",
            "disable_ipv6=1: AF_INET6 sockets and bind [::] work, no ::1",
            True,
            None,
        ),
        Stack(
            "ipv6-kernel-off",
            "no IPv6 in the kernel: socket(AF_INET6) fails with errno 97",
            True,
            97,
        ),
    )
}


def get_stack(name: str) -> Stack:
    try:
        return STACKS[name]
    except KeyError:
        known = ", ".join(STACKS)
        raise ValueError(f"unknown stack {name!r} (known: {known})") from None


# What the shim's probe of `connect([::1]:1)` prints, reduced to a fact.
def inet6_probe_fact(text: str) -> str:
    """Reduce the busybox ``nc ::1 1`` message to a stable fact string."""
    if "Address family not supported" in text:
        return "socket() errno 97"
    if "Cannot assign requested address" in text:
        return "socket ok, connect errno 99"
    if "Connection refused" in text:
        return "socket ok, connect refused"
    if "Network is unreachable" in text:
        return "socket ok, connect errno 101"
    return f"unrecognised: {text.strip()[:80]!r}"


def attest(stack: Stack, facts: Mapping[str, str]) -> Attestation:
    """Check the facts the shim saw inside the container against the stack's claim.

    Facts: ``<iface>.disable_ipv6`` (0/1/absent), ``lo ::1`` (present/absent) and
    ``inet6 socket`` (from :func:`inet6_probe_fact`).
    """
    problems: list[str] = []
    want = "1" if stack.disable_ipv6 else "0"
    for iface in _IFACES:
        key = f"{iface}.disable_ipv6"
        got = facts.get(key, "missing")
        if got != want:
            problems.append(f"{key} is {got}, want {want}")
    want_lo = "absent" if stack.disable_ipv6 else "present"
    if facts.get("lo ::1", "missing") != want_lo:
        problems.append(f"::1 on lo is {facts.get('lo ::1', 'missing')}, want {want_lo}")
    sock = facts.get("inet6 socket", "missing")
    if stack.inet6_errno is not None:
        want_sock = f"socket() errno {stack.inet6_errno}"
    elif stack.disable_ipv6:
        want_sock = "socket ok, connect errno 99"
    else:
        want_sock = "socket ok, connect refused"
    if sock != want_sock:
        problems.append(f"inet6 socket: {sock}, want {want_sock}")
    ordered = tuple((k, facts[k]) for k in sorted(facts))
    return Attestation(stack=stack.name, ok=not problems, facts=ordered, problems=tuple(problems))
