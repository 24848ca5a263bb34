"""Reachability over the pod address, the pure parts: the watcher's pod records, the /pod suffix, the judge, the
record, and how the reports tell "answers on loopback only" from "answers over the pod address". No Docker."""

from __future__ import annotations

import pytest

from pytest_ipv6compat.matrix import judge, parse_expectation
from pytest_ipv6compat.model import Family, Outcome, Verdict
from pytest_ipv6compat.probe.report import WatchReport
from pytest_ipv6compat.record import verdict_text
from pytest_ipv6compat.report import describe_reach, junit_properties, short_verdict
from pytest_ipv6compat.results import CellResult

DUAL = (Family.INET, Family.INET6)


def _report(pod: tuple[Family, ...], *records: str) -> WatchReport:
    report = WatchReport(pod=pod)
    for record in records:
        report.feed(record)
    return report


def _up(pod: tuple[Family, ...], *records: str) -> WatchReport:
    return _report(pod, *records, "ready")


LO4 = ("listener tcp inet 127.0.0.1 80 -", "settled 0.1", "reach tcp inet 127.0.0.1 80 inet accepted 1 ok")
ANY4 = ("listener tcp inet 0.0.0.0 80 -", "settled 0.1", "reach tcp inet 0.0.0.0 80 inet accepted 1 ok")


def _verdict(report: WatchReport) -> Verdict:
    return report.verdict(Outcome.UP, exit_code=None, error_line=None, logs="", seconds=1.0)


def test_a_wildcard_answers_over_the_pod_address_a_loopback_listener_does_not() -> None:
    wild = _verdict(_up(DUAL, *ANY4, "pod tcp inet 0.0.0.0 80 inet accepted 1 ok",
                        "pod tcp inet 0.0.0.0 80 inet6 not-probed 0 serves no inet6"))
    (listener,) = wild.listeners
    assert (wild.answered(listener), wild.pod_answered(listener)) == (True, True)
    assert short_verdict(wild) == "v4"
    lo = _verdict(_up(DUAL, *LO4, "pod tcp inet 127.0.0.1 80 inet not-probed 0 not bound to the pod address or a "
                      "wildcard", "pod tcp inet 127.0.0.1 80 inet6 not-probed 0 serves no inet6"))
    (listener,) = lo.listeners
    assert (lo.answered(listener), lo.pod_answered(listener)) == (True, False)
    assert short_verdict(lo) == "v4@127.0.0.1(lo)"
    assert "answers on loopback only" in describe_reach(lo)[0]


def test_an_ipv4_wildcard_on_ipv6_only_is_up_but_no_peer_reaches_it() -> None:
    verdict = _verdict(_up((Family.INET6,), *ANY4, "pod tcp inet 0.0.0.0 80 inet6 not-probed 0 serves no inet6"))
    (listener,) = verdict.listeners
    assert (verdict.answered(listener), verdict.pod_answered(listener)) == (True, False)
    assert short_verdict(verdict) == "v4(lo)"


def test_without_a_pod_address_nothing_changes() -> None:
    verdict = _verdict(_up((), *ANY4))
    (listener,) = verdict.listeners
    assert verdict.pod_answered(listener) is None
    assert short_verdict(verdict) == "v4"
    assert verdict_text(verdict) == "up 0.0.0.0:80"


@pytest.mark.parametrize(
    ("records", "problem"),
    [
        ((*ANY4,), "has no probe result over the pod address of inet"),  # a pod probe left out
        ((*ANY4, "pod tcp inet 0.0.0.0 80 inet accepted 1 ok", "pod tcp inet 0.0.0.0 80 inet accepted 1 ok"),
         "a second probe"),
        ((*ANY4, "pod tcp inet 0.0.0.0 80 inet6 accepted 1 ok"), "the cell has no pod address of family inet6"),
    ],
)
def test_a_missing_or_forged_pod_record_is_malformed(records: tuple[str, ...], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _up((Family.INET,), *records)


def test_a_pod_probe_that_succeeds_for_a_family_not_served_is_malformed() -> None:
    with pytest.raises(ValueError, match="does not serve inet6"):
        _up(DUAL, *ANY4, "pod tcp inet 0.0.0.0 80 inet accepted 1 ok", "pod tcp inet 0.0.0.0 80 inet6 accepted 1 ok")


def test_the_pod_suffix_requires_an_answer_over_the_pod_address() -> None:
    want = parse_expectation("up 127.0.0.1:80/pod")
    assert [str(x) for x in want.pod] == ["127.0.0.1:80"]
    lo = _verdict(_up((Family.INET,), *LO4, "pod tcp inet 127.0.0.1 80 inet not-probed 0 not bound to the pod "
                      "address or a wildcard"))
    (reason,) = judge(want, lo).reasons
    assert reason.startswith("127.0.0.1:80 did not answer over the pod address, expected it to (/pod; inet: ")
    assert not judge(parse_expectation("up 127.0.0.1:80"), lo).reasons  # loopback only is fine without /pod
    wild = _verdict(_up((Family.INET,), *ANY4, "pod tcp inet 0.0.0.0 80 inet accepted 1 ok"))
    assert not judge(parse_expectation("up 0.0.0.0:80/pod"), wild).reasons
    bare = _verdict(_up((), *ANY4))
    (reason,) = judge(parse_expectation("up 0.0.0.0:80/pod"), bare).reasons
    assert "was not probed over a pod address" in reason


@pytest.mark.parametrize("text", ["up 0.0.0.0:80/peer", "up 0.0.0.0:80/pod/silent", "up /pod"])
def test_a_bad_suffix_is_one_line_naming_the_value(text: str) -> None:
    with pytest.raises(ValueError, match="expectation ") as info:
        parse_expectation(text)
    assert repr(text) in str(info.value)
    assert "\n" not in str(info.value)


def test_record_writes_the_pod_suffix_where_a_peer_reaches_the_listener() -> None:
    wild = _verdict(_up(DUAL, *ANY4, "pod tcp inet 0.0.0.0 80 inet accepted 1 ok",
                        "pod tcp inet 0.0.0.0 80 inet6 not-probed 0 serves no inet6"))
    assert verdict_text(wild) == "up 0.0.0.0:80/pod"
    assert judge(parse_expectation(verdict_text(wild)), wild).reasons == ()
    lo = _verdict(_up((Family.INET,), *LO4, "pod tcp inet 127.0.0.1 80 inet not-probed 0 not bound"))
    assert verdict_text(lo) == "up 127.0.0.1:80"


def test_the_json_and_junit_say_it() -> None:
    from pytest_ipv6compat.model import Cell, KnobSetting

    verdict = _verdict(_up((Family.INET,), *LO4, "pod tcp inet 127.0.0.1 80 inet not-probed 0 not bound"))
    cell = Cell("t", "v", "ipv6-sysctl-off", "", KnobSetting(None), parse_expectation("up 127.0.0.1:80/pod"))
    result = CellResult(cell, "fail", verdict, None)
    doc = result.to_dict()
    assert doc["verdict"]["pod_answered"] == [{"listener": "127.0.0.1:80", "answered": False}]
    assert doc["expected"]["pod"][0]["text"] == "127.0.0.1:80"
    assert CellResult.from_dict(doc).verdict == verdict
    assert CellResult.from_dict(doc).cell.expectation.pod == cell.expectation.pod
    assert dict(junit_properties(result))["ipv6.pod"] == "127.0.0.1:80=loopback-only"
