"""The IPv6 conditions a target can be put in, and how to attest them.

The container stacks are realised with per-container settings only (namespaced
sysctls and a seccomp profile): the host's own network settings are never touched
and no container is privileged. ``ipv6-boot-disabled`` is a real kernel booted with
``ipv6.disable=1`` under User-mode Linux (its ``backend`` says so).
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
    backend: str = "docker"  # where its cells run: "docker" (the engine's API) or "uml" (User-mode Linux)
    kernel_args: tuple[str, ...] = ()  # the command line of a booted kernel (backend "uml")

    def sysctls(self) -> dict[str, str]:
        if self.backend != "docker":
            return {}
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
        Stack(
            "ipv6-boot-disabled",
            "a real kernel booted with ipv6.disable=1 (User-mode Linux): errno 97, no IPv6 in /proc",
            True,
            97,
            backend="uml",
            kernel_args=("ipv6.disable=1",),
        ),
    )
}

# What a matrix runs when it names no stacks: the container stacks (ipv6-boot-disabled is opt-in,
# so that matrices written before it existed need no expectations for it).
DEFAULT_STACKS = tuple(name for name, stack in STACKS.items() if stack.backend == "docker")


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

    Facts: ``<iface>.disable_ipv6`` (0/1/absent), ``lo ::1`` (present/absent),
    ``inet6 socket`` (from :func:`inet6_probe_fact`) and, checked for a booted kernel
    only, ``cmdline ipv6.disable``, ``/proc/net/if_inet6`` and ``/proc/sys/net/ipv6``
    (present/absent).
    """
    if stack.backend == "uml":
        return _attest_kernel(stack, facts)
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


def _attest_kernel(stack: Stack, facts: Mapping[str, str]) -> Attestation:
    """A kernel booted with ``ipv6.disable=1``: the command line says so and IPv6 is gone from /proc."""
    problems: list[str] = []
    want_cmdline = "1" if stack.disable_ipv6 else "none"
    got = facts.get("cmdline ipv6.disable", "missing")
    if got != want_cmdline:
        problems.append(f"/proc/cmdline has ipv6.disable={got}, want ipv6.disable={want_cmdline}")
    for path in ("/proc/net/if_inet6", "/proc/sys/net/ipv6"):
        if facts.get(path, "missing") != "absent":
            problems.append(f"{path} is {facts.get(path, 'missing')}, want absent")
    sock = facts.get("inet6 socket", "missing")
    if stack.inet6_errno is not None and sock != f"socket() errno {stack.inet6_errno}":
        problems.append(f"inet6 socket: {sock}, want socket() errno {stack.inet6_errno}")
    ordered = tuple((k, facts[k]) for k in sorted(facts))
    return Attestation(stack=stack.name, ok=not problems, facts=ordered, problems=tuple(problems))
