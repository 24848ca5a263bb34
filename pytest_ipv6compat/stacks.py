"""The IPv6 conditions a target can be put in, and how to attest them.

The container stacks are realised with per-container settings only (namespaced
sysctls and a seccomp profile): the host's own network settings are never touched
and no container is privileged. ``ipv6-boot-disabled`` is a real kernel booted with
``ipv6.disable=1`` under User-mode Linux (its ``backend`` says so).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from .model import Attestation

_IFACES = ("all", "default", "lo")

# The pod address: the interface a cell gets in its own namespace (probe/pod_net.c: podsetup in a container,
# umlsetup in a User-mode Linux guest), and its
# addresses per family. The IPv6 one is unique-local (RFC 4193), in fd69:7076:3663::/48: "ipv6c" in ASCII after
# the fd, stable so that expectations and logs can name it; the IPv4 one is private (RFC 1918).
POD_INTERFACE = "pod0"
POD_ADDRESSES = {"inet": ("10.69.0.2", 24), "inet6": ("fd69:7076:3663::2", 64)}


@dataclass(frozen=True)
class Stack:
    name: str
    summary: str
    disable_ipv6: bool
    inet6_errno: int | None  # errno that socket(AF_INET6) is forced to return
    backend: str = "docker"  # where its cells run: "docker" (the engine's API) or "uml" (User-mode Linux)
    kernel_args: tuple[str, ...] = ()  # the command line of a booted kernel (backend "uml")
    pod: tuple[str, ...] = ()  # the families of its pod address, in POD_IP order ("inet", "inet6")
    opt_in: bool = False  # run only where named: not in DEFAULT_STACKS, nor in a bare @pytest.mark.ipv6_stack

    def pod_addresses(self) -> tuple[str, ...]:
        """The pod address of each family the stack has, without prefix, the first being ``POD_IP``."""
        return tuple(POD_ADDRESSES[family][0] for family in self.pod)

    def pod_networks(self) -> tuple[str, ...]:
        """``ADDRESS/PREFIX`` of each pod address, as the pod set-up (probe/pod_setup.c) takes them."""
        return tuple(f"{POD_ADDRESSES[family][0]}/{POD_ADDRESSES[family][1]}" for family in self.pod)

    def pod_env(self) -> dict[str, str]:
        """``POD_IP`` and ``POD_IPS`` as Kubernetes' downward API gives them (nothing without a pod address)."""
        addresses = self.pod_addresses()
        return {"POD_IP": addresses[0], "POD_IPS": ",".join(addresses)} if addresses else {}

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
        Stack("dual-stack", "IPv6 enabled: ::1 on lo, AF_INET6 works; pod address IPv4 and IPv6", False, None,
              pod=("inet", "inet6")),
        Stack(
            "ipv6-sysctl-off",
            "disable_ipv6=1: AF_INET6 sockets and bind [::] work, no ::1; pod address IPv4 only",
            True,
            None,
            pod=("inet",),
        ),
        Stack(
            "ipv6-kernel-off",
            "no IPv6 in the kernel: socket(AF_INET6) fails with errno 97; pod address IPv4 only",
            True,
            97,
            pod=("inet",),
        ),
        Stack(
            "ipv6-only",
            "an IPv6-only pod: IPv6 address and default route, no IPv4 but 127.0.0.1 on lo",
            False,
            None,
            pod=("inet6",),
            opt_in=True,
        ),
        Stack(
            "ipv6-boot-disabled",
            "a real kernel booted with ipv6.disable=1 (User-mode Linux): errno 97, no IPv6 in /proc; pod address "
            "IPv4 only",
            True,
            97,
            backend="uml",
            kernel_args=("ipv6.disable=1",),
            pod=("inet",),
        ),
    )
}

# What a matrix runs when it names no stacks: the container stacks (ipv6-boot-disabled and ipv6-only are opt-in,
# so that matrices written before them need no expectations for them).
DEFAULT_STACKS = tuple(name for name, stack in STACKS.items() if stack.backend == "docker" and not stack.opt_in)


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


def _ipv6(hex32: str) -> str:
    return str(ipaddress.IPv6Address(int(hex32, 16)))


def _ipv4_le(hex8: str) -> str:
    """An IPv4 address as /proc/net/route writes it (hex, in the host's byte order: little-endian here)."""
    return socket.inet_ntoa(bytes.fromhex(hex8)[::-1])


def _decode(key: str, raw: str) -> str:
    words = raw.split()
    if not words:
        return "none"
    if key == "raw inet6 global":  # IFACE:HEX/PREFIX
        out = []
        for word in words:
            name, _, rest = word.partition(":")
            hex32, _, plen = rest.partition("/")
            out.append(f"{name} {_ipv6(hex32)}/{int(plen)}")
        return ", ".join(sorted(out))
    if key == "raw inet local":
        return " ".join(sorted(str(ipaddress.IPv4Address(w)) for w in words))
    if key == "raw inet routes":  # IFACE:DEST/MASK
        out = []
        for word in words:
            name, _, rest = word.partition(":")
            dest, _, mask = rest.partition("/")
            prefix = bin(int.from_bytes(bytes.fromhex(mask)[::-1], "big")).count("1")
            out.append(f"{name} {_ipv4_le(dest)}/{prefix}")
        return ", ".join(sorted(out))
    return " ".join(sorted(words))  # raw inet6 default: interface names


# The shim's raw pod facts and the names they are attested under.
_POD_FACTS = {
    "raw inet6 global": "inet6 global addresses",
    "raw inet local": "inet local addresses",
    "raw inet routes": "inet routes",
    "raw inet6 default": "inet6 default routes",
}


def pod_facts(facts: Mapping[str, str]) -> dict[str, str]:
    """``facts`` with the shim's raw pod facts (hex, as /proc writes them) decoded under readable names."""
    out = {k: v for k, v in facts.items() if k not in _POD_FACTS}
    for raw, name in _POD_FACTS.items():
        if raw not in facts:
            continue
        try:
            out[name] = _decode(raw, facts[raw])
        except ValueError:
            out[name] = f"unreadable: {facts[raw][:80]!r}"
    return out


def pod_claim(stack: Stack) -> dict[str, str]:
    """What the namespace of a cell of ``stack`` (a container's, or a booted kernel's) shows of its pod address
    (see :func:`pod_facts`)."""
    v4 = POD_ADDRESSES["inet"]
    v6 = POD_ADDRESSES["inet6"]
    net4 = ipaddress.IPv4Network(f"{v4[0]}/{v4[1]}", strict=False)
    has4, has6 = "inet" in stack.pod, "inet6" in stack.pod
    return {
        "inet6 global addresses": f"{POD_INTERFACE} {v6[0]}/{v6[1]}" if has6 else "none",
        "inet local addresses": " ".join(sorted(["127.0.0.1", *([v4[0]] if has4 else [])])),
        "inet routes": f"{POD_INTERFACE} 0.0.0.0/0, {POD_INTERFACE} {net4}" if has4 else "none",
        "inet6 default routes": POD_INTERFACE if has6 else "none",
    }


def attest(stack: Stack, facts: Mapping[str, str]) -> Attestation:
    """Check the facts the shim saw inside the container against the stack's claim.

    Facts: ``<iface>.disable_ipv6`` (0/1/absent), ``lo ::1`` (present/absent),
    ``inet6 socket`` (from :func:`inet6_probe_fact`), the pod address (:func:`pod_facts`,
    checked against :func:`pod_claim`) and, checked for a booted kernel
    only, ``cmdline ipv6.disable``, ``/proc/net/if_inet6`` and ``/proc/sys/net/ipv6``
    (present/absent).
    """
    facts = pod_facts(facts)
    if stack.backend == "uml":
        return _attest_kernel(stack, facts)
    problems: list[str] = []
    for name, want in pod_claim(stack).items():
        got = facts.get(name, "missing")
        if got != want:
            problems.append(f"{name}: {got}, want {want}")
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
    """A kernel booted with ``ipv6.disable=1``: the command line says so, IPv6 is gone from /proc, and the pod
    address is there as on a container stack (:func:`pod_claim`)."""
    problems: list[str] = []
    for name, want in pod_claim(stack).items():
        got = facts.get(name, "missing")
        if got != want:
            problems.append(f"{name}: {got}, want {want}")
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
