"""The judged result of one matrix cell, and its JSON form (one ``cells`` entry of the report).

:class:`CellResult` is what every report renders and what an xdist worker sends to the
controller; :meth:`CellResult.to_dict` and :meth:`CellResult.from_dict` round-trip it exactly.
Pure: no pytest, no Docker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .listeners import parse_listener, sort_key
from .model import (
    Attestation,
    Cell,
    Expectation,
    Family,
    KnobSetting,
    Listener,
    ListenerChange,
    Outcome,
    Protocol,
    Reach,
    Result,
    Verdict,
)
from .provenance import Provenance

__all__ = ["STATUSES", "CellResult", "JSONDict"]

STATUSES = ("pass", "fail", "error", "skipped")

JSONDict = dict[str, Any]

def _listener_dict(listener: Listener) -> JSONDict:
    return {
        "text": str(listener), "protocol": str(listener.protocol), "family": str(listener.family),
        "address": listener.address, "port": listener.port,
        "v6only": listener.v6only if listener.family is Family.INET6 and listener.address == "::" else None,
        "serves": sorted(str(f) for f in listener.serves),
    }


def _listener_list(listeners: Iterable[Listener]) -> list[JSONDict]:
    return [_listener_dict(x) for x in sorted(listeners, key=sort_key)]


def _listener(d: Mapping[str, Any]) -> Listener:
    v6only = d["v6only"]  # null (v3) or true (v2) where it does not apply: the model sets true there
    return Listener(Family(d["family"]), d["address"], d["port"], Protocol(d["protocol"]), v6only is not False)


def _reach_dict(r: Reach) -> JSONDict:
    return {"listener": _listener_dict(r.listener), "via": str(r.via), "result": str(r.result), "ok": r.ok,
            "detail": r.detail}


def _reach(d: Mapping[str, Any]) -> Reach:
    return Reach(_listener(d["listener"]), Family(d["via"]), Result(d["result"]), d["ok"], d["detail"])


_CHANGES = {"opened": True, "closed": False}


def _change_dict(c: ListenerChange) -> JSONDict:
    return {"listener": str(c.listener), "change": "opened" if c.opened else "closed", "at": c.at}


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{what} {value!r} is not a number of seconds")
    return float(value)


def _change(d: Mapping[str, Any]) -> ListenerChange:
    if d["change"] not in _CHANGES:
        raise ValueError(f"listener change {d['change']!r} is not opened or closed")
    return ListenerChange(parse_listener(d["listener"]), _CHANGES[d["change"]], _seconds(d["at"], "change at"))


@dataclass(frozen=True)
class CellResult:
    """The judged result of one cell, as rendered in every report.

    ``status``: ``pass``; ``fail`` (verdict differs from the expectation); ``error``
    (could not judge: attestation failed, image missing, Docker error); ``skipped``.
    """

    cell: Cell
    status: str
    verdict: Verdict | None
    attestation: Attestation | None
    reasons: tuple[str, ...] = ()
    hint: str | None = None
    ran_on: Provenance = ()  # what ran it (provenance.py); empty when nothing did

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")

    def to_dict(self) -> JSONDict:
        """Plain JSON-able data (one ``cells`` entry of the report); see :meth:`from_dict`."""
        c, e, v, a = self.cell, self.cell.expectation, self.verdict, self.attestation
        return {
            "id": c.id, "target": c.target, "variant": c.variant, "stack": c.stack, "knob": c.knob,
            "setting": c.setting.value, "config_mode": c.config_mode, "where": c.where, "status": self.status,
            "expected": {
                "outcome": str(e.outcome), "listeners": _listener_list(e.listeners),
                "silent": _listener_list(e.silent), "pod": _listener_list(e.pod), "exit_code": e.exit_code,
                "error_contains": e.error_contains, "source": e.source,
            },
            "verdict": None if v is None else {
                "outcome": str(v.outcome), "listeners": _listener_list(v.listeners),
                "answered": [
                    {"listener": str(x), "answered": v.answered(x)} for x in sorted(v.listeners, key=sort_key)
                ],
                "reach": [_reach_dict(r) for r in v.reach],
                "pod_answered": [
                    {"listener": str(x), "answered": v.pod_answered(x)} for x in sorted(v.listeners, key=sort_key)
                ],
                "pod_reach": [_reach_dict(r) for r in v.pod_reach],
                "listened": _listener_list(v.listened),
                "exit_code": v.exit_code, "error_line": v.error_line, "seconds": v.seconds, "logs": v.logs,
                "changes": [_change_dict(c) for c in v.changes], "unsteady": v.unsteady,
            },
            "attestation": None if a is None else {
                "stack": a.stack, "ok": a.ok, "facts": dict(a.facts), "problems": list(a.problems),
            },
            "reasons": list(self.reasons), "hint": self.hint,
            "ran_on": dict(self.ran_on) or None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CellResult:
        """Rebuild a result from :meth:`to_dict` output (e.g. sent by an xdist worker)."""
        try:
            e, v, a = d["expected"], d["verdict"], d["attestation"]
            cell = Cell(
                target=d["target"], variant=d["variant"], stack=d["stack"], knob=d["knob"],
                setting=KnobSetting(d["setting"]),
                expectation=Expectation(
                    outcome=Outcome(e["outcome"]),
                    listeners=frozenset(_listener(x) for x in e["listeners"]),
                    silent=frozenset(_listener(x) for x in e["silent"]),
                    pod=frozenset(_listener(x) for x in e.get("pod", ())),  # absent before schema v4
                    exit_code=e["exit_code"], error_contains=e["error_contains"], source=e["source"],
                ),
                config_mode=d["config_mode"], where=d["where"],
            )
            verdict = None if v is None else Verdict(
                outcome=Outcome(v["outcome"]),
                listeners=frozenset(_listener(x) for x in v["listeners"]),
                reach=tuple(_reach(r) for r in v["reach"]),
                pod_reach=tuple(_reach(r) for r in v.get("pod_reach", ())),  # absent before schema v4
                exit_code=v["exit_code"], error_line=v["error_line"], logs=v["logs"], seconds=v["seconds"],
                listened=frozenset(_listener(x) for x in v["listened"]),
                # absent from v2 reports, which had no record of the hold window
                changes=tuple(_change(c) for c in v.get("changes", ())),
                unsteady=None if v.get("unsteady") is None else _seconds(v["unsteady"], "unsteady"),
            )
            attestation = None if a is None else Attestation(
                stack=a["stack"], ok=a["ok"], facts=tuple(a["facts"].items()), problems=tuple(a["problems"]),
            )
            ran_on = d.get("ran_on") or {}  # absent from v2 reports and earlier v3 ones
            if not isinstance(ran_on, dict) or not all(isinstance(v, str) for v in ran_on.values()):
                raise ValueError(f"ran_on {ran_on!r} is not a mapping of strings")
            result = cls(cell, d["status"], verdict, attestation, tuple(d["reasons"]), d["hint"],
                         tuple((str(k), v) for k, v in ran_on.items()))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"not a serialised CellResult: {exc!r}") from exc
        if d.get("id", cell.id) != cell.id:
            raise ValueError(f"cell id {d['id']!r} does not match its fields ({cell.id!r})")
        return result
