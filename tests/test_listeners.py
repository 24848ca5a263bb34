"""Unit tests for the /proc/net/tcp{,6} parser (no Docker)."""

# ruff: noqa: E501 - captured /proc text is fixed-width and kept byte for byte

from __future__ import annotations

import ipaddress

import pytest

from pytest_ipv6compat.listeners import (
    diff_listeners,
    format_listeners,
    parse_listeners,
    parse_proc_net_tcp,
)
from pytest_ipv6compat.model import Family, Listener

INET, INET6 = Family.INET, Family.INET6


def _text(*lines: str) -> str:
    return "".join(f"{line}\n" for line in lines)


def v4(address: str, port: int) -> Listener:
    return Listener(INET, address, port)


def v6(address: str, port: int) -> Listener:
    return Listener(INET6, address, port)


# Real text captured on Linux 6.18 / x86_64 from `proto:base` containers
# (--network none, disable_ipv6=0). The kernel pads tcp rows with trailing
# spaces and tcp6 rows without; both are kept as captured.
#
# DUAL_*: nginx 1.22 with `listen 56000 reuseport; listen [::]:56000 reuseport;`
# (two workers, so each is listed twice), `listen 127.0.0.1:8080;`,
# `listen [::1]:8081;` and `listen [2001:db8:85a3::8a2e:370:7334]:8443;` (the
# address added to lo for the capture), plus busybox wget/nc clients that left
# ESTABLISHED (01) and TIME_WAIT (06) rows.
DUAL_TCP = _text(
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     ",
    "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 29834 1 000000007c4c88b6 100 0 0 10 0                     ",
    "   1: 00000000:DAC0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 29837 1 000000001fe6eace 100 0 0 10 0                     ",
    "   2: 00000000:DAC0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 29832 1 00000000db97b1b6 100 0 0 10 0                     ",
    "   3: 0100007F:E9CC 0100007F:DAC0 01 00000000:00000000 00:00000000 00000000     0        0 29321 2 00000000aaa3e1f4 20 0 0 10 -1                     ",
    "   4: 0100007F:DAC0 0100007F:E9CC 01 00000000:00000000 00:00000000 00000000 65534        0 29327 1 00000000222909f8 20 0 0 10 -1                     ",
    "   5: 0100007F:1F90 0100007F:B1D4 06 00000000:00000000 03:00001751 00000000     0        0 0 3 0000000027d22c79                                      ",
)
DUAL_TCP6 = _text(
    "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
    "   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 29835 1 000000007a4aebee 100 0 0 10 0",
    "   1: B80D01200000A3852E8A000034737003:20FB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 29836 1 000000000c5b1a78 100 0 0 10 0",
    "   2: 00000000000000000000000000000000:DAC0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 29833 1 0000000077a88de6 100 0 0 10 0",
    "   3: 00000000000000000000000000000000:DAC0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 29838 1 00000000f99624f5 100 0 0 10 0",
    "   4: 00000000000000000000000001000000:DAC0 00000000000000000000000001000000:B40A 01 00000000:00000000 00:00000000 00000000 65534        0 29329 1 000000008c0c8686 20 0 0 10 -1",
    "   5: 00000000000000000000000001000000:B40A 00000000000000000000000001000000:DAC0 01 00000000:00000000 00:00000000 00000000     0        0 29328 2 000000006d6fc65a 20 0 0 10 -1",
    "   6: 00000000000000000000000001000000:C7E2 00000000000000000000000001000000:1F91 06 00000000:00000000 03:00001751 00000000     0        0 0 3 00000000dca9b2ba",
)

# MAPPED_*: nginx with `listen [::ffff:127.0.0.1]:8082 ipv6only=off;` and
# `listen [::]:9000 ipv6only=off;`, and IPv4 clients of port 9000, which show up
# in tcp6 as v4-mapped ESTABLISHED and TIME_WAIT rows.
MAPPED_TCP = _text(
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     ",
    "   0: 0100007F:8542 0100007F:2328 01 00000000:00000000 00:00000000 00000000     0        0 30128 2 00000000db97b1b6 20 0 0 10 -1                     ",
)
MAPPED_TCP6 = _text(
    "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
    "   0: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 30095 1 000000007a4aebee 100 0 0 10 0",
    "   1: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 30094 1 0000000077a88de6 100 0 0 10 0",
    "   2: 0000000000000000FFFF00000100007F:2328 0000000000000000FFFF00000100007F:8542 01 00000000:00000000 00:00000000 00000000 65534        0 30131 1 000000000c5b1a78 20 0 0 10 -1",
    "   3: 0000000000000000FFFF00000100007F:2328 0000000000000000FFFF00000100007F:853A 06 00000000:00000000 03:00001750 00000000     0        0 0 3 00000000dca9b2ba",
)

# OFF_*: an idle container under the ipv6-kernel-off profile: headers only.
OFF_TCP = _text(
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     ",
)
OFF_TCP6 = _text(
    "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
)

HEADER = DUAL_TCP.splitlines()[0]
HEADER6 = DUAL_TCP6.splitlines()[0]
ZERO6 = "0" * 32


def row(local: str, state: str = "0A", *, remote: str = "00000000:0000", slot: int = 0) -> str:
    """A data row in the kernel's layout (the columns after ``st`` as in a real row)."""
    return (
        f"{slot:4d}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000"
        "     0        0 12345 1 0000000000000000 100 0 0 10 0"
    )


def hex6(address: str) -> str:
    """Kernel text for an IPv6 address on a little-endian machine."""
    packed = ipaddress.IPv6Address(address).packed
    return "".join(packed[i : i + 4][::-1].hex().upper() for i in range(0, 16, 4))


def tcp6_listen(address: str, port: int) -> str:
    return _text(HEADER6, row(f"{hex6(address)}:{port:04X}", remote=f"{ZERO6}:0000"))


# --- real captures


def test_captured_dual_stack_nginx() -> None:
    assert parse_proc_net_tcp(DUAL_TCP, INET) == {v4("127.0.0.1", 8080), v4("0.0.0.0", 56000)}
    assert parse_proc_net_tcp(DUAL_TCP6, INET6) == {
        v6("::1", 8081),
        v6("2001:db8:85a3::8a2e:370:7334", 8443),
        v6("::", 56000),
    }


def test_captured_v4_mapped_listener() -> None:
    assert parse_proc_net_tcp(MAPPED_TCP, INET) == frozenset()
    assert parse_proc_net_tcp(MAPPED_TCP6, INET6) == {
        v6("::", 9000),
        v6("::ffff:127.0.0.1", 8082),
    }


def test_captured_kernel_off_headers_only() -> None:
    assert parse_listeners(OFF_TCP, OFF_TCP6) == frozenset()


def test_parse_listeners_is_the_union_and_keeps_families_apart() -> None:
    seen = parse_listeners(DUAL_TCP, DUAL_TCP6)
    assert len(seen) == 5
    assert v4("0.0.0.0", 56000) in seen
    assert v6("::", 56000) in seen
    assert format_listeners(seen) == (
        "0.0.0.0:56000, 127.0.0.1:8080, [::]:56000, [::1]:8081, [2001:db8:85a3::8a2e:370:7334]:8443"
    )


# --- rows and rendering


def test_ipv4_loopback_is_host_byte_order() -> None:
    text = _text(HEADER, row("0100007F:1F90"))
    assert parse_proc_net_tcp(text, INET) == {v4("127.0.0.1", 8080)}


def test_ipv4_octets_are_all_reversed() -> None:
    text = _text(HEADER, row("0302A8C0:0050"))
    assert parse_proc_net_tcp(text, INET) == {v4("192.168.2.3", 80)}


def test_big_endian_kernel_text() -> None:
    text = _text(HEADER, row("7F000001:1F90"))
    assert parse_proc_net_tcp(text, INET, byteorder="big") == {v4("127.0.0.1", 8080)}
    text6 = _text(HEADER6, row(f"{'0' * 31}1:1F90", remote=f"{ZERO6}:0000"))
    assert parse_proc_net_tcp(text6, INET6, byteorder="big") == {v6("::1", 8080)}


def test_lowercase_hex_is_accepted() -> None:
    text = _text(HEADER, row("0100007f:1f90", state="0a"))
    assert parse_proc_net_tcp(text, INET) == {v4("127.0.0.1", 8080)}


@pytest.mark.parametrize(
    "address",
    [
        "::",
        "::1",
        "fe80::1",
        "2001:db8:85a3::8a2e:370:7334",
        "2001:db8:1:2:3:4:5:6",  # full: nothing to compress
        "2001:db8:0:1:2:3:4:5",  # a single zero group is not compressed
        "2001:0:0:1:0:0:0:1",  # the longest zero run wins
        "2001:db8:0:0:1:0:0:1",  # a tie goes to the leftmost run
        "1::",
        "abcd:ef01:2345:6789:abcd:ef01:2345:6789",
    ],
)
def test_ipv6_is_rendered_compressed_and_lowercase(address: str) -> None:
    expected = ipaddress.IPv6Address(address).compressed  # stable for non-mapped addresses
    assert parse_proc_net_tcp(tcp6_listen(address, 443), INET6) == {v6(expected, 443)}


@pytest.mark.parametrize(
    ("packed", "text"),
    [
        ("::ffff:7f00:1", "::ffff:127.0.0.1"),
        ("::ffff:0:0", "::ffff:0.0.0.0"),
        ("::ffff:c0a8:203", "::ffff:192.168.2.3"),
        ("::7f00:1", "::7f00:1"),  # deprecated v4-compatible form is not special
        ("::fffe:7f00:1", "::fffe:7f00:1"),
    ],
)
def test_v4_mapped_text_does_not_depend_on_python(packed: str, text: str) -> None:
    assert parse_proc_net_tcp(tcp6_listen(packed, 80), INET6) == {v6(text, 80)}


def test_only_listen_rows_count() -> None:
    text = _text(
        HEADER,
        row("0100007F:1F90", "0A", slot=0),
        row("0100007F:DAC0", "01", remote="0100007F:E9CC", slot=1),  # ESTABLISHED
        row("0100007F:0050", "06", remote="0100007F:B1D4", slot=2),  # TIME_WAIT
        row("0100007F:0051", "08", remote="0100007F:B1D5", slot=3),  # CLOSE_WAIT
    )
    assert parse_proc_net_tcp(text, INET) == {v4("127.0.0.1", 8080)}


def test_reuseport_duplicates_collapse() -> None:
    text = _text(HEADER, *(row("00000000:DAC0", slot=i) for i in range(4)))
    assert parse_proc_net_tcp(text, INET) == {v4("0.0.0.0", 56000)}


@pytest.mark.parametrize("text", ["", "\n\n", HEADER, HEADER + "\n", HEADER + "\n\n  \n"])
def test_empty_and_header_only(text: str) -> None:
    assert parse_proc_net_tcp(text, INET) == frozenset()


def test_trailing_blank_lines_are_tolerated() -> None:
    assert parse_proc_net_tcp(DUAL_TCP + "\n\n", INET) == parse_proc_net_tcp(DUAL_TCP, INET)


# --- malformed input


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("   2: 0100007F:1F90", "at least 4 fields"),
        ("   2 0100007F:1F90 00000000:0000 0A", "bad slot"),
        ("   2: 0100007G:1F90 00000000:0000 0A", "bad local address"),
        ("   2: 0100007F1F90 00000000:0000 0A", "bad local address"),
        ("   2: 0100007F:1F9 00000000:0000 0A", "bad local address"),
        (f"   2: {ZERO6}:1F90 00000000:0000 0A", "bad local address"),  # IPv6 row in tcp
        ("   2: 0100007F:1F90 00000000 0A", "bad remote address"),
        ("   2: 0100007F:1F90 00000000:0000 A", "bad state"),
        ("   2: 0100007F:1F90 00000000:0000 LISTEN", "bad state"),
    ],
)
def test_malformed_row_names_line_and_text(bad: str, why: str) -> None:
    text = _text(HEADER, row("0100007F:1F90", slot=1), bad)
    with pytest.raises(ValueError, match=why) as info:
        parse_proc_net_tcp(text, INET)
    message = str(info.value)
    assert "line 3" in message
    assert bad.strip() in message
    assert "/proc/net/tcp " in message


def test_ipv4_row_in_tcp6_is_malformed() -> None:
    text = _text(HEADER6, row("0100007F:1F90"))
    with pytest.raises(ValueError, match=r"/proc/net/tcp6 line 2: bad local address"):
        parse_proc_net_tcp(text, INET6)


def test_missing_header_is_malformed() -> None:
    with pytest.raises(ValueError, match="line 1: expected the 'sl local_address") as info:
        parse_proc_net_tcp(_text(row("0100007F:1F90")), INET)
    assert "0100007F:1F90" in str(info.value)


def test_line_numbers_count_blank_lines() -> None:
    text = _text(HEADER, "", row("0100007F:1F90"), "", "garbage")
    with pytest.raises(ValueError, match=r"line 5: .*'garbage'"):
        parse_proc_net_tcp(text, INET)


# --- formatting and comparing


def test_format_example_from_the_design() -> None:
    assert format_listeners({v6("::", 56000), v4("0.0.0.0", 56000)}) == "0.0.0.0:56000, [::]:56000"


def test_format_empty() -> None:
    assert format_listeners(frozenset()) == "(none)"
    assert format_listeners([]) == "(none)"


def test_format_orders_ipv4_first_then_numerically() -> None:
    listeners = [
        v6("::ffff:127.0.0.1", 1),
        v6("::1", 2),
        v4("10.0.0.1", 1),
        v4("9.0.0.1", 2),
        v4("9.0.0.1", 1),
        v6("::", 3),
    ]
    assert format_listeners(listeners) == ("9.0.0.1:1, 9.0.0.1:2, 10.0.0.1:1, [::]:3, [::1]:2, [::ffff:127.0.0.1]:1")


def test_format_collapses_duplicates() -> None:
    assert format_listeners([v4("0.0.0.0", 1), v4("0.0.0.0", 1)]) == "0.0.0.0:1"


def test_diff_reports_missing_and_extra() -> None:
    expected = frozenset({v4("0.0.0.0", 56000), v6("::", 56000)})
    seen = frozenset({v4("0.0.0.0", 56000), v4("127.0.0.1", 8080)})
    assert diff_listeners(expected, seen) == (frozenset({v6("::", 56000)}), frozenset({v4("127.0.0.1", 8080)}))
    assert diff_listeners(expected, expected) == (frozenset(), frozenset())


def test_diff_never_treats_ipv6_wildcard_as_covering_ipv4() -> None:
    missing, extra = diff_listeners({v4("0.0.0.0", 56000)}, {v6("::", 56000)})
    assert missing == {v4("0.0.0.0", 56000)}
    assert extra == {v6("::", 56000)}


def test_parse_endpoint_reads_one_local_address() -> None:
    from pytest_ipv6compat.listeners import parse_endpoint

    assert parse_endpoint("0100007F:1F90", Family.INET) == Listener(Family.INET, "127.0.0.1", 8080)
    assert parse_endpoint("00000000000000000000000001000000:DAC0", Family.INET6) == Listener(
        Family.INET6, "::1", 56000
    )
    with pytest.raises(ValueError, match="bad /proc/net/tcp6 address '0100007F:1F90'"):
        parse_endpoint("0100007F:1F90", Family.INET6)
