"""The pure parts of the ground truth: the ``ss`` parser, the judgement, the expectation syntax."""

from __future__ import annotations

import pytest
from groundtruth import (
    FamilyResult,
    GroundTruthError,
    ListenerTruth,
    Probe,
    Truth,
    checks_for,
    combine,
    parse_ss,
)
from zoo_compare import Expectation, mismatch, parse_expectation
from zoo_table import STACKS, TARGETS

from pytest_ipv6compat import matrix

# Captured with `nsenter -t PID -n ss -H -l -n -t -u` (iproute2 6.1) in a dual-stack zoo container
# running: zoosrv tcp4=0.0.0.0:8080 tcp6=:::8080 tcpdual=:::8081 udp4=0.0.0.0:5353 udp6=:::5353
#          udpdual=:::5354 tcp4=127.0.0.1:7000 tcp6=::1:7000 udp4=127.0.0.1:5300 udp6=::1:5301
CAPTURED = """\
udp UNCONN 0      0      127.0.0.1:5300 0.0.0.0:*
udp UNCONN 0      0        0.0.0.0:5353 0.0.0.0:*
udp UNCONN 0      0          [::1]:5301    [::]:*
udp UNCONN 0      0           [::]:5353    [::]:*
udp UNCONN 0      0              *:5354       *:*
tcp LISTEN 0      64     127.0.0.1:7000 0.0.0.0:*
tcp LISTEN 0      64       0.0.0.0:8080 0.0.0.0:*
tcp LISTEN 0      64         [::1]:7000    [::]:*
tcp LISTEN 0      64          [::]:8080    [::]:*
tcp LISTEN 0      64             *:8081       *:*
"""


def test_parse_captured_ss_output() -> None:
    got = parse_ss(CAPTURED)
    assert [s.notation for s in got] == [
        "udp/127.0.0.1:5300", "udp/[::1]:5301", "udp/0.0.0.0:5353", "udp/[::]:5353", "udp/*:5354",
        "127.0.0.1:7000", "[::1]:7000", "0.0.0.0:8080", "[::]:8080", "*:8081",
    ]
    by = {s.notation: s for s in got}
    assert by["*:8081"].families == (4, 6)  # one socket, v6only off: both families
    assert by["[::]:8080"].families == (6,)  # v6only on: IPv6 only, never IPv4
    assert by["0.0.0.0:8080"].families == (4,)
    assert by["udp/*:5354"].families == (4, 6)
    assert by["[::1]:7000"].reaches_loopback(6)
    assert not by["127.0.0.1:7000"].reaches_loopback(6)


def test_parse_interface_suffix_mapped_address_and_duplicates() -> None:
    text = ("udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:*\n"
            "tcp LISTEN 0 4096 [::ffff:127.0.0.1]:9000 [::]:*\n"
            "tcp LISTEN 0 4096 [fe80::1%lo]:9001 [::]:*\n"
            "tcp LISTEN 0 128 0.0.0.0:80 0.0.0.0:*\n"
            "tcp LISTEN 0 128 0.0.0.0:80 0.0.0.0:*\n\n")  # SO_REUSEPORT: two sockets, one listener
    got = parse_ss(text)
    assert [s.notation for s in got] == ["udp/127.0.0.53:53", "0.0.0.0:80", "[::ffff:127.0.0.1]:9000", "[fe80::1]:9001"]
    assert got[2].families == (4,)
    assert parse_ss("") == ()


@pytest.mark.parametrize("line", ["State Recv-Q Send-Q Local Peer", "tcp LISTEN 0 128 0.0.0.0 0.0.0.0:*",
                                  "raw UNCONN 0 0 *:255 *:*", "tcp LISTEN 0 128 0.0.0.0:http 0.0.0.0:*"])
def test_parse_rejects_what_it_does_not_know(line: str) -> None:
    with pytest.raises(GroundTruthError, match=r"ss in ns line 1: "):
        parse_ss(line, source="ss in ns")


def _truth(listener: str, *results: tuple[int, str, str]) -> ListenerTruth:
    (s,) = parse_ss(f"tcp LISTEN 0 1 {listener} *:*")
    return ListenerTruth(s, tuple(FamilyResult(*r) for r in results))


def test_judgement_per_family() -> None:
    http = Probe("http", "/")
    both = _truth("*:80", (4, "status", "HTTP/1.1 200 OK"), (6, "status", "HTTP/1.1 302 Found"))
    assert both.token(http) == "*:80"
    # No ::1 (ipv6-sysctl-off): the listener answers over the family whose loopback exists.
    v4_only = _truth("*:80", (4, "status", "HTTP/1.0 200 OK"), (6, "no-loopback", "errno 99"))
    assert v4_only.token(http) == "*:80"
    assert _truth("[::]:80", (6, "no-loopback", "errno 99")).token(http) == "[::]:80/silent"
    assert _truth("0.0.0.0:80", (4, "status", "HTTP/1.1 404 Not Found")).token(http) == "0.0.0.0:80/silent"
    assert _truth("0.0.0.0:80", (4, "status", "HTTP/1.1 400 Bad Request")).token(http) == "0.0.0.0:80/silent"
    assert _truth("0.0.0.0:80", (4, "no-status", "nothing")).token(http) == "0.0.0.0:80/silent"
    assert _truth("0.0.0.0:80", (4, "no-status", "nothing")).token(Probe("tcp")) == "0.0.0.0:80/silent"
    assert _truth("0.0.0.0:80", (4, "accepted", "")).token(Probe("tcp")) == "0.0.0.0:80"
    assert _truth("0.0.0.0:80", (4, "refused", "")).token(Probe("none")) == "0.0.0.0:80"
    half = _truth("*:80", (4, "status", "HTTP/1.1 200 OK"), (6, "refused", ""))
    assert half.token(http) == "*:80/partial"


def test_udp_success_is_a_datagram_not_refused() -> None:
    (s,) = parse_ss("udp UNCONN 0 0 *:53 *:*")
    lt = ListenerTruth(s, (FamilyResult(4, "reply", "5 bytes"), FamilyResult(6, "refused", "")))
    assert lt.judged(Probe("tcp")) == "partial"
    assert lt.token(Probe("tcp")) == "udp/*:53/partial"
    sink = ListenerTruth(s, (FamilyResult(4, "no-reply", "nothing"), FamilyResult(6, "no-loopback", "")))
    assert sink.token(Probe("tcp")) == "udp/*:53"
    refused = ListenerTruth(s, (FamilyResult(4, "refused", ""), FamilyResult(6, "errno", "errno 101")))
    assert refused.token(Probe("tcp")) == "udp/*:53/silent"


def test_checks_and_combine_keep_the_order() -> None:
    listeners = parse_ss("tcp LISTEN 0 1 127.0.0.1:81 0.0.0.0:*\ntcp LISTEN 0 1 *:80 *:*")
    checks = checks_for(listeners, Probe("http", "/x"))
    assert [(c["port"], c["family"]) for c in checks] == [(80, 4), (80, 6), (81, 4)]
    results = [{"result": "status", "detail": "HTTP/1.0 200 OK"}] * 3
    combined = combine(listeners, results)
    assert [lt.token(Probe("http")) for lt in combined] == ["*:80", "127.0.0.1:81"]


def test_expectation_syntax() -> None:
    assert parse_expectation("up *:80 udp/0.0.0.0:53 tcp/[::]:80/silent", source="t") == Expectation(
        "up", listeners=frozenset({"*:80", "udp/0.0.0.0:53", "[::]:80/silent"}))
    assert parse_expectation("exited 3 'exiting with code 3'", source="t") == Expectation(
        "exited", code=3, text="exiting with code 3")
    assert parse_expectation("exited", source="t") == Expectation("exited")
    assert parse_expectation("timeout", source="t") == Expectation("timeout")
    for bad in ("", "down", "up", "timeout 3", "exited 1 'a' 'b'"):
        with pytest.raises(ValueError, match=r"^zoo_table x: "):
            parse_expectation(bad, source="zoo_table x")


def test_mismatch_names_what_differs() -> None:
    http = Probe("http")
    up = Truth("up", listeners=(_truth("*:80", (4, "status", "HTTP/1.0 200 OK"), (6, "no-loopback", "")),))
    assert mismatch(parse_expectation("up *:80", source="t"), up, http, "") is None
    assert "ground truth says *:80" in str(mismatch(parse_expectation("up [::]:80", source="t"), up, http, ""))
    exited = Truth("exited", exit_code=3)
    assert mismatch(parse_expectation("exited 3 'bye'", source="t"), exited, http, "... bye\n") is None
    assert "exit code: expected 1" in str(mismatch(parse_expectation("exited 1", source="t"), exited, http, ""))
    assert "not in the target's log" in str(mismatch(parse_expectation("exited 'x'", source="t"), exited, http, ""))
    assert "expected up, ground truth says exited 3" in str(
        mismatch(parse_expectation("up *:80", source="t"), exited, http, ""))


def test_every_zoo_expectation_parses_here_and_in_the_core() -> None:
    assert len({t.name for t in TARGETS}) == len(TARGETS) >= 14
    for target in TARGETS:
        assert set(target.expect) == set(STACKS), target.name
        for stack in STACKS:
            text = target.expectation(stack)
            mine = parse_expectation(text, source=f"zoo_table {target.name} on {stack}")
            core = matrix.parse_expectation(text)
            assert mine.outcome == core.outcome.value, text
            assert mine.listeners == {str(lst) + ("/silent" if lst in core.silent else "") for lst in core.listeners}
