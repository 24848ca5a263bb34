"""Parse ``/proc/net/tcp`` and ``/proc/net/tcp6`` into listeners.

Pure text in, value objects out: no Docker, no pytest. Only rows in state ``0A``
(LISTEN) become :class:`~pytest_ipv6compat.model.Listener` objects; every row is
still checked, so a malformed file fails loudly instead of looking empty.

The kernel prints each address as 32-bit words in the byte order of the machine
that produced the text (little-endian on x86 and arm64): ``0100007F:1F90`` is
127.0.0.1:8080, and an IPv6 address is four such words. Ports are printed
big-endian. Addresses are rendered here by hand, not with ``str(ipaddress...)``,
because Python 3.13 changed how v4-mapped IPv6 addresses print and the output
must not depend on the interpreter.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Literal

from .model import Family, Listener

__all__ = [
    "LISTEN",
    "diff_listeners",
    "format_listeners",
    "parse_listeners",
    "parse_proc_net_tcp",
]

LISTEN = "0A"  # TCP_LISTEN, as the kernel prints the ``st`` column

ByteOrder = Literal["little", "big"]

_HEX_DIGITS = {Family.INET: 8, Family.INET6: 32}
_SLOT = re.compile(r"\d+:")
_STATE = re.compile(r"[0-9A-Fa-f]{2}")


def _endpoint(family: Family) -> re.Pattern[str]:
    return re.compile(rf"([0-9A-Fa-f]{{{_HEX_DIGITS[family]}}}):([0-9A-Fa-f]{{4}})")


_ENDPOINTS = {family: _endpoint(family) for family in Family}
_FILE = {Family.INET: "/proc/net/tcp", Family.INET6: "/proc/net/tcp6"}


def parse_proc_net_tcp(text: str, family: Family, *, byteorder: ByteOrder = "little") -> frozenset[Listener]:
    """Return the LISTEN sockets in the text of ``/proc/net/tcp`` or ``/proc/net/tcp6``.

    ``family`` says which file the text came from (INET: ``tcp``, INET6: ``tcp6``).
    Blank lines are ignored and empty text gives no listeners (a kernel without
    IPv6 has no ``tcp6`` file at all). ``byteorder`` is that of the machine whose
    kernel printed the text. A row that does not parse raises :class:`ValueError`
    naming its 1-based line number and its text.
    """
    found: set[Listener] = set()
    seen_header = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not seen_header:
            if line.split()[0] != "sl":
                raise ValueError(
                    f"{_FILE[family]} line {number}: expected the 'sl local_address ...' header, got {line!r}"
                )
            seen_header = True
            continue
        listener = _parse_row(line, number, family, byteorder)
        if listener is not None:
            found.add(listener)
    return frozenset(found)


def parse_listeners(tcp: str, tcp6: str, *, byteorder: ByteOrder = "little") -> frozenset[Listener]:
    """Union of the listeners in ``/proc/net/tcp`` and ``/proc/net/tcp6`` texts."""
    return parse_proc_net_tcp(tcp, Family.INET, byteorder=byteorder) | parse_proc_net_tcp(
        tcp6, Family.INET6, byteorder=byteorder
    )


def format_listeners(listeners: Iterable[Listener]) -> str:
    """``0.0.0.0:56000, [::]:56000``: IPv4 first, then by address and port; ``(none)`` if empty."""
    ordered = sorted(set(listeners), key=_sort_key)
    return ", ".join(str(listener) for listener in ordered) if ordered else "(none)"


def diff_listeners(
    expected: Iterable[Listener], seen: Iterable[Listener]
) -> tuple[frozenset[Listener], frozenset[Listener]]:
    """Return ``(missing, extra)``: expected but not seen, and seen but not expected."""
    want, got = frozenset(expected), frozenset(seen)
    return want - got, got - want


def _parse_row(line: str, number: int, family: Family, byteorder: ByteOrder) -> Listener | None:
    fields = line.split()
    endpoint = _ENDPOINTS[family]
    problem = None
    if len(fields) < 4:
        problem = "expected at least 4 fields (sl, local, remote, st)"
    elif not _SLOT.fullmatch(fields[0]):
        problem = f"bad slot {fields[0]!r}"
    elif not endpoint.fullmatch(fields[1]):
        problem = f"bad local address {fields[1]!r}"
    elif not endpoint.fullmatch(fields[2]):
        problem = f"bad remote address {fields[2]!r}"
    elif not _STATE.fullmatch(fields[3]):
        problem = f"bad state {fields[3]!r}"
    if problem is not None:
        raise ValueError(f"{_FILE[family]} line {number}: {problem}: {line.strip()!r}")
    if fields[3].upper() != LISTEN:
        return None
    return parse_endpoint(fields[1], family, byteorder=byteorder)


def parse_endpoint(endpoint: str, family: Family, *, byteorder: ByteOrder = "little") -> Listener:
    """The listener named by a ``local_address`` field, e.g. ``0100007F:1F90`` (127.0.0.1:8080)."""
    if not _ENDPOINTS[family].fullmatch(endpoint):
        raise ValueError(f"bad {_FILE[family]} address {endpoint!r}")
    address_hex, port_hex = endpoint.split(":")
    raw = _address_bytes(address_hex, byteorder)
    address = _render_inet(raw) if family is Family.INET else _render_inet6(raw)
    return Listener(family, address, int(port_hex, 16))


def _address_bytes(address_hex: str, byteorder: ByteOrder) -> bytes:
    """Network-order bytes from the kernel's per-32-bit-word host-order hex."""
    words = (bytes.fromhex(address_hex[i : i + 8]) for i in range(0, len(address_hex), 8))
    return b"".join(word[::-1] if byteorder == "little" else word for word in words)


def _render_inet(raw: bytes) -> str:
    return ".".join(str(octet) for octet in raw)


_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def _render_inet6(raw: bytes) -> str:
    """RFC 5952 text: lowercase, longest zero run (>= 2 groups, leftmost) as ``::``.

    ``::ffff:0:0/96`` (v4-mapped) is written ``::ffff:a.b.c.d`` on every Python.
    """
    if raw[:12] == _V4_MAPPED_PREFIX:
        return "::ffff:" + _render_inet(raw[12:])
    groups = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, 16, 2)]
    best_start, best_len = -1, 0
    start = -1
    for i, group in enumerate([*groups, 1]):  # the sentinel closes a trailing run
        if group == 0 and start < 0:
            start = i
        elif group != 0 and start >= 0:
            if i - start > best_len:
                best_start, best_len = start, i - start
            start = -1
    text = [format(group, "x") for group in groups]
    if best_len < 2:
        return ":".join(text)
    head = ":".join(text[:best_start])
    tail = ":".join(text[best_start + best_len :])
    return f"{head}::{tail}"


def _sort_key(listener: Listener) -> tuple[int, bytes, str, int]:
    family_rank = 0 if listener.family is Family.INET else 1
    return (family_rank, _packed(listener), listener.address, listener.port)


def _packed(listener: Listener) -> bytes:
    """The address as comparable bytes; unparsable text sorts after real addresses."""
    try:
        return ipaddress.ip_address(listener.address).packed
    except ValueError:
        return b"\xff" * 17
