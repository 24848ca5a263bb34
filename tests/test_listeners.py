"""The listener model, its text syntax, and the parser of the probe's report. Pure: no Docker."""

from __future__ import annotations

import pytest

from pytest_ipv6compat import listener_set
from pytest_ipv6compat.listeners import canonical_address, diff_listeners, format_listeners, parse_listener
from pytest_ipv6compat.model import Family, Listener, Outcome, Protocol, Reach, Result, Verdict
from pytest_ipv6compat.probe.report import ShimReport, WatchReport, is_shim_line

V4 = Listener(Family.INET, "0.0.0.0", 8080)
V6 = Listener(Family.INET6, "::", 8080)  # v6only (the default)
DUAL = Listener(Family.INET6, "::", 8080, v6only=False)


# ---------------------------------------------------------------- the model


def test_three_wildcards_are_three_listeners_serving_different_families() -> None:
    assert len({V4, V6, DUAL}) == 3
    assert V4.serves == {Family.INET}
    assert V6.serves == {Family.INET6}
    assert DUAL.serves == {Family.INET, Family.INET6}
    assert [str(x) for x in (V4, V6, DUAL)] == ["0.0.0.0:8080", "[::]:8080", "*:8080"]


@pytest.mark.parametrize("address", ["::1", "::ffff:127.0.0.1", "fe80::1"])
def test_v6only_only_matters_on_the_wildcard(address: str) -> None:
    assert Listener(Family.INET6, address, 1, v6only=False) == Listener(Family.INET6, address, 1, v6only=True)


def test_v4_mapped_serves_ipv4_only() -> None:
    assert Listener(Family.INET6, "::ffff:127.0.0.1", 1).serves == {Family.INET}


def test_udp_is_written_with_its_protocol() -> None:
    assert str(Listener(Family.INET, "0.0.0.0", 53, Protocol.UDP)) == "udp/0.0.0.0:53"
    assert str(Listener(Family.INET6, "::", 53, Protocol.UDP, v6only=False)) == "udp/*:53"
    assert Listener(Family.INET, "0.0.0.0", 53, Protocol.UDP) != Listener(Family.INET, "0.0.0.0", 53)


# ---------------------------------------------------------------- the syntax


@pytest.mark.parametrize(
    ("text", "listener"),
    [
        ("0.0.0.0:8080", V4),
        ("[::]:8080", V6),
        ("*:8080", DUAL),
        ("tcp/*:8080", DUAL),
        ("udp/0.0.0.0:5353", Listener(Family.INET, "0.0.0.0", 5353, Protocol.UDP)),
        ("udp/[::]:5353", Listener(Family.INET6, "::", 5353, Protocol.UDP)),
        ("[::1]:80", Listener(Family.INET6, "::1", 80)),
        ("[0:0:0:0:0:0:0:1]:80", Listener(Family.INET6, "::1", 80)),
        ("[::FFFF:127.0.0.1]:80", Listener(Family.INET6, "::ffff:127.0.0.1", 80)),
        ("127.0.0.1:1", Listener(Family.INET, "127.0.0.1", 1)),
    ],
)
def test_parse_listener(text: str, listener: Listener) -> None:
    assert parse_listener(text) == listener


@pytest.mark.parametrize("listener", [V4, V6, DUAL, Listener(Family.INET6, "::ffff:127.0.0.1", 80, Protocol.UDP)])
def test_text_round_trips(listener: Listener) -> None:
    assert parse_listener(str(listener)) == listener


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("8080", "is not [tcp/|udp/]ADDRESS:PORT"),
        ("::: 80", "is not"),
        ("sctp/0.0.0.0:1", "is not"),
        ("*:0", "port out of range"),
        ("0.0.0.0:65536", "port out of range"),
        ("300.0.0.1:1", "listener '300.0.0.1:1'"),
        ("[::g]:1", "is not"),
        ("[1::2::3]:1", "listener '[1::2::3]:1'"),
    ],
)
def test_bad_listener_names_itself(text: str, why: str) -> None:
    with pytest.raises(ValueError, match="listener") as info:
        parse_listener(text)
    assert why in str(info.value)


def test_listener_set_is_the_public_helper() -> None:
    assert listener_set("*:8080", "udp/0.0.0.0:53") == {DUAL, Listener(Family.INET, "0.0.0.0", 53, Protocol.UDP)}


def test_canonical_address_does_not_depend_on_python() -> None:
    assert canonical_address(Family.INET6, "::ffff:7f00:1") == "::ffff:127.0.0.1"
    assert canonical_address(Family.INET6, "2001:DB8:0:0:0:0:0:1") == "2001:db8::1"


def test_format_orders_tcp_then_udp_ipv4_first() -> None:
    udp = Listener(Family.INET, "0.0.0.0", 53, Protocol.UDP)
    text = format_listeners([udp, DUAL, V6, V4, Listener(Family.INET, "127.0.0.1", 9)])
    assert text == "0.0.0.0:8080, 127.0.0.1:9, *:8080, [::]:8080, udp/0.0.0.0:53"
    assert format_listeners([]) == "(none)"


def test_diff_never_treats_a_v6only_wildcard_as_the_dual_one() -> None:
    missing, extra = diff_listeners({DUAL}, {V6})
    assert (missing, extra) == ({DUAL}, {V6})


# ---------------------------------------------------------------- answered


def _reach(listener: Listener, via: Family, result: Result, ok: bool) -> Reach:
    return Reach(listener, via, result, ok, "")


def test_dual_socket_answers_over_ipv4_when_there_is_no_ipv6_loopback() -> None:
    verdict = Verdict(Outcome.UP, frozenset({DUAL}), (
        _reach(DUAL, Family.INET, Result.ACCEPTED, True),
        _reach(DUAL, Family.INET6, Result.NO_LOOPBACK, False),
    ))
    assert verdict.answered(DUAL) is True


def test_answered_needs_every_family_with_a_loopback() -> None:
    verdict = Verdict(Outcome.UP, frozenset({DUAL}), (
        _reach(DUAL, Family.INET, Result.REFUSED, False),
        _reach(DUAL, Family.INET6, Result.ACCEPTED, True),
    ))
    assert verdict.answered(DUAL) is False


def test_unreachable_listener_did_not_answer_and_unprobed_is_unknown() -> None:
    verdict = Verdict(Outcome.UP, frozenset({V6, V4}), (
        _reach(V6, Family.INET6, Result.NO_LOOPBACK, False),
        _reach(V4, Family.INET, Result.NOT_PROBED, False),
    ))
    assert verdict.answered(V6) is False
    assert verdict.answered(V4) is None
    assert verdict.answered(DUAL) is None


# ---------------------------------------------------------------- the probe's report

NONCE = "0123456789abcdef01234567"


def test_shim_lines_count_only_with_the_nonce() -> None:
    shim = ShimReport(NONCE)
    for line in [
        "@@ipv6compat attested",  # an imitation without the nonce
        f"@@ipv6compat {'f' * 24} attested",  # a wrong nonce
        f"@@ipv6compat {NONCE} fact all.disable_ipv6=0",
        f"Starting proxy: @@ipv6compat {NONCE} fact lo ::1=present",  # after a partial line of the target's
        f"@@ipv6compat {NONCE} probe inet6 nc: can't connect to remote host: Connection refused",
    ]:
        shim.feed(line)
    assert not shim.attested
    shim.feed(f"@@ipv6compat {NONCE} attested\r")
    assert shim.attested
    assert shim.facts == {"all.disable_ipv6": "0", "lo ::1": "present"}
    assert shim.inet6_probe == "nc: can't connect to remote host: Connection refused"
    assert is_shim_line(f"x@@ipv6compat {NONCE} attested", NONCE)
    assert not is_shim_line("@@ipv6compat attested", NONCE)


def test_shim_reports_a_missing_target() -> None:
    shim = ShimReport(NONCE)
    shim.feed(f"@@ipv6compat {NONCE} missing /app/server: no such file in the image (PATH=/bin)")
    assert shim.missing == "/app/server: no such file in the image (PATH=/bin)"


WATCH = """\
listener tcp inet 0.0.0.0 56000 -
listener tcp inet6 :: 56000 1
listener tcp inet6 :: 8081 0
listener udp inet6 ::ffff:127.0.0.1 5353 0
settled 0.051
reach tcp inet 0.0.0.0 56000 inet accepted 1 HTTP/1.1 200 OK
reach tcp inet6 :: 56000 inet6 no-loopback 0 Cannot assign requested address
reach tcp inet6 :: 8081 inet refused 0 Connection refused
reach tcp inet6 :: 8081 inet6 accepted 0 (accepted, no response)
reach udp inet6 ::ffff:127.0.0.1 5353 inet errno-101 0 Network is unreachable
ready
"""


def test_watch_report_parses_every_record() -> None:
    report = WatchReport()
    for line in WATCH.splitlines():
        report.feed(line)
    assert report.ready
    assert report.settled == pytest.approx(0.051)
    texts = [str(x) for x in report.listeners]
    assert texts == ["0.0.0.0:56000", "[::]:56000", "*:8081", "udp/[::ffff:127.0.0.1]:5353"]
    results = [(str(r.listener), str(r.via), r.result, r.ok, r.detail) for r in report.reach]
    assert results[0] == ("0.0.0.0:56000", "inet", Result.ACCEPTED, True, "HTTP/1.1 200 OK")
    assert results[2] == ("*:8081", "inet", Result.REFUSED, False, "Connection refused")
    assert results[4][2] is Result.ERROR


@pytest.mark.parametrize(
    "line",
    [
        "listener tcp inet 0.0.0.0 56000 1",  # IPv4 has no v6only flag
        "listener tcp inet6 :: 56000 maybe",
        "listener sctp inet 0.0.0.0 1 -",
        "listener tcp inet 0.0.0.0 0 -",
        "listener tcp inet 999.0.0.1 1 -",
        "reach tcp inet 127.0.0.1 9 inet accepted 1 x",  # a listener that was not reported
        "reach tcp inet 0.0.0.0 56000 inet6 sideways 1 x",
        "settled soon",
        "nonsense",
    ],
)
def test_malformed_watch_record_is_an_error_quoting_it(line: str) -> None:
    report = WatchReport()
    report.feed("listener tcp inet 0.0.0.0 56000 -")
    with pytest.raises(ValueError, match="malformed record") as info:
        report.feed(line)
    assert repr(line) in str(info.value)


@pytest.mark.parametrize("before", [(), ("listener tcp inet 0.0.0.0 56000 -",), ("settled 0.050",)])
def test_ready_without_listeners_and_settled_is_an_error_not_an_empty_up(before: tuple[str, ...]) -> None:
    """The watcher settles only on listeners and reports them first; a bare ready means records were lost."""
    report = WatchReport()
    for line in before:
        report.feed(line)
    with pytest.raises(ValueError, match="ready before any listener and settled record"):
        report.feed("ready")
    assert not report.ready
