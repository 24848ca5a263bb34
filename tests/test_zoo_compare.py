"""The comparison of a plugin verdict with ground truth, on constructed values (no Docker)."""

from __future__ import annotations

from groundtruth import FamilyResult, ListenerTruth, Probe, Truth, parse_ss
from zoo_compare import differences, plugin_text

from pytest_ipv6compat.model import Family, Listener, Outcome, Protocol, Reach, Result, Verdict

V4, V6 = Family.INET, Family.INET6
STAR = Listener(V6, "::", 8080, v6only=False)
HTTP = Probe("http", "/healthz")


def _truth(ss_local: str, *results: tuple[int, str, str], proto: str = "tcp") -> Truth:
    (s,) = parse_ss(f"{proto} LISTEN 0 1 {ss_local} *:*")
    return Truth("up", listeners=(ListenerTruth(s, tuple(FamilyResult(*r) for r in results)),))


def test_agreement_on_a_star_listener_without_ipv6_loopback() -> None:
    verdict = Verdict(Outcome.UP, listeners=frozenset({STAR}), reach=(
        Reach(STAR, V4, Result.ACCEPTED, True, "HTTP/1.0 200 OK"),
        Reach(STAR, V6, Result.NO_LOOPBACK, False, "errno 99"),
    ))
    truth = _truth("*:8080", (4, "status", "HTTP/1.0 200 OK"), (6, "no-loopback", "errno 99"))
    assert plugin_text(verdict) == "up *:8080" == truth.render(HTTP)
    assert differences(verdict, truth, HTTP) == []


def test_v6only_taken_for_dual_stack_is_caught() -> None:
    v6only = Listener(V6, "::", 8080, v6only=True)
    verdict = Verdict(Outcome.UP, listeners=frozenset({v6only}),
                      reach=(Reach(v6only, V6, Result.ACCEPTED, True, "HTTP/1.0 200 OK"),))
    truth = _truth("*:8080", (4, "status", "HTTP/1.0 200 OK"), (6, "status", "HTTP/1.0 200 OK"))
    assert differences(verdict, truth, HTTP) == ["listeners: plugin says [::]:8080, ground truth *:8080"]


def test_status_and_success_are_compared_per_family() -> None:
    verdict = Verdict(Outcome.UP, listeners=frozenset({STAR}), reach=(
        Reach(STAR, V4, Result.ACCEPTED, True, "HTTP/1.1 400 Bad Request"),
        Reach(STAR, V6, Result.REFUSED, False, "refused"),
    ))
    truth = _truth("*:8080", (4, "status", "HTTP/1.1 400 Bad Request"), (6, "status", "HTTP/1.1 400 Bad Request"))
    got = differences(verdict, truth, HTTP)
    assert got[0].startswith("*:8080 over IPv4: plugin says success")
    assert got[1].startswith("*:8080 over IPv6: plugin says refused")


def test_udp_not_refused_is_accepted() -> None:
    udp = Listener(V4, "0.0.0.0", 5000, protocol=Protocol.UDP)
    verdict = Verdict(Outcome.UP, listeners=frozenset({udp}),
                      reach=(Reach(udp, V4, Result.ACCEPTED, True, "(not refused)"),))
    truth = _truth("0.0.0.0:5000", (4, "no-reply", "nothing within 2s"), proto="udp")
    assert plugin_text(verdict) == "up udp/0.0.0.0:5000" == truth.render(Probe("tcp"))
    assert differences(verdict, truth, Probe("tcp")) == []


def test_outcome_and_exit_code() -> None:
    exited = Verdict(Outcome.EXITED, exit_code=3)
    assert differences(exited, Truth("exited", exit_code=3), HTTP) == []
    assert differences(exited, Truth("exited", exit_code=0), HTTP) == ["exit code: plugin says 3, ground truth 0"]
    assert differences(Verdict(Outcome.UP), Truth("exited", exit_code=3), HTTP) == [
        "outcome: plugin says up, ground truth exited 3"]
