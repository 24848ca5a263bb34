"""The plugin's verdict next to ground truth taken from the same container.

:func:`plugin_text` writes a verdict in the expectation syntax (``/silent`` where the plugin says a
listener did not answer); :func:`differences` lists every point where the plugin and ground truth
disagree: outcome, exit code, listeners (with the families each serves), and, per listener and
family, what connecting did and whether the probe succeeded.
"""

from __future__ import annotations

from groundtruth import FamilyResult, Probe, Truth

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
