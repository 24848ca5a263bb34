"""Listener text: parsing the expectation syntax, canonical addresses, ordering, diffs.

Pure: no Docker, no pytest. The syntax is ``[tcp/|udp/]ADDRESS:PORT``:

* ``0.0.0.0:80``, ``127.0.0.1:80``: an IPv4 socket;
* ``[::]:80``: an IPv6 socket on ``::`` with v6only on (IPv6 clients only);
* ``*:80``: one IPv6 socket on ``::`` with v6only off (IPv4 and IPv6 clients), as ``ss`` writes it;
* ``[::1]:80``, ``[::ffff:127.0.0.1]:80``: an IPv6 socket on that address;
* ``udp/0.0.0.0:53``, ``udp/*:53``: the same for UDP (``tcp/`` is the default).

Addresses are rendered by hand, not with ``str(ipaddress...)``, because Python 3.13
changed how v4-mapped IPv6 addresses print and the output must not depend on the
interpreter.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from .model import Family, Listener, Protocol

__all__ = ["canonical_address", "diff_listeners", "format_listeners", "parse_listener", "sort_key"]

_SYNTAX = re.compile(
    r"(?:(?P<proto>tcp|udp)/)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<star>\*)|(?P<v4>[0-9.]+)):(?P<port>\d{1,5})"
)


def canonical_address(family: Family, text: str) -> str:
    """The canonical text of an address: dotted quad, or RFC 5952 with ``::ffff:a.b.c.d`` for v4-mapped."""
    if family is Family.INET:
        return str(ipaddress.IPv4Address(text))
    address = ipaddress.IPv6Address(text)
    mapped = address.ipv4_mapped
    return f"::ffff:{mapped}" if mapped is not None else address.compressed


def parse_listener(text: str) -> Listener:
    """Parse the listener syntax above; a bad one raises :class:`ValueError` naming it."""
    m = _SYNTAX.fullmatch(text)
    if not m:
        raise ValueError(
            f"listener {text!r} is not [tcp/|udp/]ADDRESS:PORT "
            "(0.0.0.0:80, [::]:80, *:80 for one socket serving both families, udp/0.0.0.0:53)"
        )
    protocol = Protocol(m["proto"] or "tcp")
    port = int(m["port"])
    if not 0 < port < 65536:
        raise ValueError(f"listener {text!r}: port out of range")
    if m["star"]:
        return Listener(Family.INET6, "::", port, protocol, v6only=False)
    family = Family.INET6 if m["v6"] is not None else Family.INET
    try:
        address = canonical_address(family, m["v6"] or m["v4"])
    except ValueError as exc:
        raise ValueError(f"listener {text!r}: {exc}") from None
    return Listener(family, address, port, protocol)


def format_listeners(listeners: Iterable[Listener]) -> str:
    """``0.0.0.0:56000, [::]:56000``: TCP first, IPv4 first, then by address and port; ``(none)`` if empty."""
    ordered = sorted(set(listeners), key=sort_key)
    return ", ".join(str(listener) for listener in ordered) if ordered else "(none)"


def diff_listeners(
    expected: Iterable[Listener], seen: Iterable[Listener]
) -> tuple[frozenset[Listener], frozenset[Listener]]:
    """Return ``(missing, extra)``: expected but not seen, and seen but not expected."""
    want, got = frozenset(expected), frozenset(seen)
    return want - got, got - want


def sort_key(listener: Listener) -> tuple[int, int, bytes, str, int, bool]:
    protocol_rank = 0 if listener.protocol is Protocol.TCP else 1
    family_rank = 0 if listener.family is Family.INET else 1
    return (protocol_rank, family_rank, _packed(listener), listener.address, listener.port, listener.v6only)


def _packed(listener: Listener) -> bytes:
    """The address as comparable bytes; unparsable text sorts after real addresses."""
    try:
        return ipaddress.ip_address(listener.address).packed
    except ValueError:
        return b"\xff" * 17
