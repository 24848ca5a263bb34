"""The plugin's verdict, an expectation (the zoo's table, a matrix file) and ground truth, side by side.

:func:`plugin_text` writes a verdict in the expectation syntax (``/silent`` where the plugin says a
listener did not answer); :func:`differences` lists every point where the plugin and ground truth
disagree: outcome, exit code, listeners (with the families each serves), and, per listener and
family, what connecting did and whether the probe succeeded. :func:`parse_expectation` and
:func:`mismatch` read an expectation without the plugin's parser and hold it against ground truth;
:func:`disagreements` makes the three comparisons at once (plugin vs expectation, plugin vs
ground truth, expectation vs ground truth).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from groundtruth import FamilyResult, Probe, Truth

from pytest_ipv6compat import matrix
from pytest_ipv6compat.model import Family, Outcome, Protocol, Reach, Result, Verdict

_FAMILY = {Family.INET: 4, Family.INET6: 6}


def plugin_text(verdict: Verdict) -> str:
    """``up LISTENER...`` (``/silent`` when the plugin says it did not answer), ``exited CODE``, ``timeout``."""
    if verdict.outcome is Outcome.UP:
        tokens = [str(lst) + ("/silent" if verdict.answered(lst) is False else "") for lst in verdict.listeners]
        return " ".join(["up", *sorted(tokens)])
    if verdict.outcome is Outcome.EXITED:
        return f"exited {verdict.exit_code}"
    return "timeout"


def connect_result(truth: FamilyResult, proto: str) -> set[Result]:
    """The plugin's connect results that fit what the ground-truth client saw."""
    if truth.result == "refused":
        return {Result.REFUSED}
    if truth.result == "no-loopback":
        return {Result.NO_LOOPBACK, Result.NOT_PROBED}
    if truth.result == "errno":
        return {Result.ERROR, Result.TIMEOUT}
    if proto == "udp":  # the plugin: "a datagram was not refused"
        return {Result.ACCEPTED}
    return {Result.ACCEPTED}  # accepted, status, no-status, tls-error: the connect itself succeeded


def _status_code(detail: str) -> str | None:
    words = detail.split()
    return words[1] if len(words) > 1 and words[0].startswith("HTTP/") else None


def _reach_difference(reach: Reach, truth: FamilyResult, probe: Probe) -> str | None:
    proto = "udp" if reach.listener.protocol is Protocol.UDP else "tcp"
    where = f"{reach.listener} over IPv{truth.family}"
    if reach.result is Result.NOT_PROBED and probe.kind == "none":
        return None
    if reach.result not in connect_result(truth, proto):
        return f"{where}: plugin says {reach.result} ({reach.detail}), ground truth {truth.result} ({truth.detail})"
    success = truth.success(proto, probe)
    if success is not None and reach.ok is not success:
        return (f"{where}: plugin says {'success' if reach.ok else 'no success'} ({reach.detail}), "
                f"ground truth {'success' if success else 'no success'} ({truth.result}: {truth.detail})")
    if probe.kind in ("http", "https") and truth.result == "status":
        mine, theirs = _status_code(reach.detail), _status_code(truth.detail)
        if mine != theirs:
            return f"{where}: plugin saw status {reach.detail!r}, ground truth {truth.detail!r}"
    return None


def differences(verdict: Verdict, truth: Truth, probe: Probe) -> list[str]:
    """Every disagreement between the plugin's verdict and ground truth; empty when they agree."""
    if verdict.outcome.value != truth.outcome:
        return [f"outcome: plugin says {plugin_text(verdict)}, ground truth {truth.render(probe)}"]
    if verdict.outcome is Outcome.EXITED:
        if verdict.exit_code != truth.exit_code:
            return [f"exit code: plugin says {verdict.exit_code}, ground truth {truth.exit_code}"]
        return []
    if verdict.outcome is not Outcome.UP:
        return []
    out: list[str] = []
    mine = {str(lst): lst for lst in verdict.listeners}
    theirs = {lt.listener.notation: lt for lt in truth.listeners}
    if set(mine) != set(theirs):
        out.append(f"listeners: plugin says {' '.join(sorted(mine))}, ground truth {' '.join(sorted(theirs))}")
    for name in sorted(set(mine) & set(theirs)):
        lst, lt = mine[name], theirs[name]
        served = sorted(_FAMILY[f] for f in lst.serves)
        if tuple(served) != lt.listener.families:
            out.append(f"{name}: plugin says it serves IPv{served}, ground truth IPv{list(lt.listener.families)}")
            continue
        by_family = {_FAMILY[r.via]: r for r in verdict.reach if r.listener == lst}
        for fam_truth in lt.results:
            reach = by_family.get(fam_truth.family)
            if reach is None:
                if probe.kind != "none" and fam_truth.result != "no-loopback":
                    out.append(f"{name} over IPv{fam_truth.family}: the plugin did not probe it, ground truth "
                               f"{fam_truth.result} ({fam_truth.detail})")
                continue
            problem = _reach_difference(reach, fam_truth, probe)
            if problem:
                out.append(problem)
    return out


@dataclass(frozen=True)
class Expectation:
    """An expectation as read here: listener tokens in ground truth's notation (``/silent`` kept)."""

    outcome: str  # up | exited | timeout
    listeners: frozenset[str] = frozenset()
    code: int | None = None
    text: str | None = None


def parse_expectation(text: str, *, source: str) -> Expectation:
    """Parse ``up L...`` / ``exited [CODE] ['text']`` / ``timeout``; a bad one names ``source``."""
    words = shlex.split(text)
    if not words or words[0] not in ("up", "exited", "timeout"):
        raise ValueError(f"{source}: expectation {text!r} must start with up, exited or timeout")
    head, rest = words[0], words[1:]
    if head == "up":
        if not rest:
            raise ValueError(f"{source}: 'up' needs at least one listener in {text!r}")
        tokens = [w if w.startswith(("tcp/", "udp/")) else "tcp/" + w for w in rest]
        return Expectation("up", listeners=frozenset(t.removeprefix("tcp/") for t in tokens))
    if head == "timeout":
        if rest:
            raise ValueError(f"{source}: 'timeout' takes nothing after it, got {text!r}")
        return Expectation("timeout")
    code = int(rest.pop(0)) if rest and rest[0].lstrip("-").isdigit() else None
    if len(rest) > 1:
        raise ValueError(f"{source}: 'exited' takes a code and one quoted text, got {text!r}")
    return Expectation("exited", code=code, text=rest[0] if rest else None)


def mismatch(expected: Expectation, truth: Truth, probe: Probe, logs: str) -> str | None:
    """Why ``truth`` is not ``expected``, or None when it is."""
    got = truth.render(probe)
    if expected.outcome != truth.outcome:
        return f"outcome: expected {expected.outcome}, ground truth says {got}"
    if expected.outcome == "up":
        seen = frozenset(got.split()[1:])
        if seen != expected.listeners:
            return (f"listeners: expected {' '.join(sorted(expected.listeners))}, ground truth says "
                    f"{' '.join(sorted(seen))}")
    if expected.outcome == "exited":
        if expected.code is not None and expected.code != truth.exit_code:
            return f"exit code: expected {expected.code}, ground truth says {truth.exit_code}"
        if expected.text is not None and expected.text not in logs:
            return f"text {expected.text!r} is not in the target's log"
    return None


def disagreements(expectation: str, verdict: Verdict, truth: Truth, probe: Probe, logs: str, *,
                  name: str) -> list[str]:
    """Where the plugin, the expectation (called ``name``: table, matrix) and ground truth disagree.

    The plugin against the expectation is judged by the plugin's own ``matrix.judge``; the other
    two comparisons do not use the plugin's parser or judge. ``logs``: the target's log as the
    engine keeps it, where an ``exited`` expectation's text must appear.
    """
    judged = matrix.judge(matrix.parse_expectation(expectation), verdict)
    problems = [f"plugin vs {name} ({expectation}): {reason}" for reason in judged.reasons]
    problems += [f"plugin vs ground truth: {d}" for d in differences(verdict, truth, probe)]
    against_truth = mismatch(parse_expectation(expectation, source=name), truth, probe, logs)
    if against_truth:
        problems.append(f"{name} vs ground truth: {against_truth}")
    return problems
