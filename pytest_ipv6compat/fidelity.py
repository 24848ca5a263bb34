"""Where the emulation of a kernel without IPv6 and a real one disagree: the fidelity check.

``ipv6-kernel-off`` emulates a kernel booted with ``ipv6.disable=1`` (sysctls and a
seccomp rule); ``ipv6-boot-disabled`` is such a kernel. When a run has both for the
same target, variant, knob setting and config mode and their verdicts differ, the
emulation is wrong for that target, typically because the target tests for
``/proc/net/if_inet6`` or ``/proc/sys/net/ipv6``, which the emulation cannot hide.
Pure: results in, flags out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from .listeners import sort_key
from .model import Listener, Outcome, Verdict
from .results import CellResult

__all__ = [
    "CAUSE", "EMULATED", "EMULATED_HINT", "MESSAGE", "REAL", "FidelityFlag", "fidelity_flags", "verdict_differences",
    "with_fidelity_hints",
]

EMULATED = "ipv6-kernel-off"
REAL = "ipv6-boot-disabled"
MESSAGE = "emulation differs from a real kernel"
# Which side to believe, and why they differ: said wherever a flag is shown.
CAUSE = (
    f"{REAL} is what a host without IPv6 does; likely cause: the target looks for IPv6 in a file under /proc"
    " (/proc/net/if_inet6, /proc/sys/net/ipv6), which the emulation still shows"
)
EMULATED_HINT = (
    "the emulation differs from a real kernel here ({real} gives {verdict}): the target likely decides from a file"
    " under /proc (/proc/net/if_inet6, /proc/sys/net/ipv6), which ipv6-kernel-off still shows; trust {real},"
    " and to pass here too, decide by trying socket(AF_INET6) instead of reading /proc"
)


@dataclass(frozen=True)
class FidelityFlag:
    """One (target, variant, setting, config mode) whose two verdicts differ, and how."""

    target: str
    variant: str
    setting: str  # the knob setting's label ("unset", "empty", "=1"), "" without a knob
    config_mode: str
    emulated: str  # the cell ids
    real: str
    differences: tuple[str, ...]

    @property
    def where(self) -> str:
        parts = [self.variant, *([self.setting] if self.setting else [])]
        if self.config_mode != "rw":
            parts.append(f"config {self.config_mode}")
        return f"{self.target} " + " ".join(parts)

    def line(self) -> str:
        return f"{self.where}: {MESSAGE}: " + "; ".join(self.differences) + f" ({CAUSE})"

    def to_dict(self) -> dict[str, object]:
        return {
            "target": self.target, "variant": self.variant, "setting": self.setting,
            "config_mode": self.config_mode, "emulated": self.emulated, "real": self.real,
            "message": MESSAGE, "differences": list(self.differences), "cause": CAUSE,
        }


def _outcome(verdict: Verdict) -> str:
    if verdict.outcome is Outcome.EXITED:
        return "exited" if verdict.exit_code is None else f"exited {verdict.exit_code}"
    return str(verdict.outcome)


def _listeners(listeners: frozenset[Listener]) -> str:
    return " ".join(str(x) for x in sorted(listeners, key=sort_key)) or "(none)"


def verdict_differences(emulated: Verdict, real: Verdict) -> tuple[str, ...]:
    """What differs, each as ``what: X on ipv6-kernel-off, Y on ipv6-boot-disabled``; empty if nothing.

    Compared: outcome (with the exit code), listeners and which of them answered. Error
    lines are not: they carry times and process ids.
    """
    found: list[str] = []

    def differ(what: str, a: str, b: str) -> None:
        if a != b:
            found.append(f"{what}: {a} on {EMULATED}, {b} on {REAL}")

    differ("outcome", _outcome(emulated), _outcome(real))
    differ("listeners", _listeners(emulated.listeners), _listeners(real.listeners))
    if emulated.listeners == real.listeners:
        for listener in sorted(emulated.listeners, key=str):
            a, b = emulated.answered(listener), real.answered(listener)
            if a != b:
                differ(f"{listener} answered", str(a).lower(), str(b).lower())
    return tuple(found)


def fidelity_flags(results: Iterable[CellResult]) -> list[FidelityFlag]:
    """Every pair of ``ipv6-kernel-off`` and ``ipv6-boot-disabled`` cells whose verdicts differ, sorted."""
    pairs: dict[tuple[str, str, str, str, str], dict[str, CellResult]] = {}
    for r in results:
        if r.cell.stack in (EMULATED, REAL) and r.verdict is not None:
            c = r.cell
            pairs.setdefault((c.target, c.variant, c.knob, c.setting.label, c.config_mode), {})[c.stack] = r
    flags = []
    for (target, variant, knob, setting, mode), both in sorted(pairs.items()):
        if len(both) != 2:
            continue
        emulated, real = both[EMULATED], both[REAL]
        assert emulated.verdict is not None
        assert real.verdict is not None
        differences = verdict_differences(emulated.verdict, real.verdict)
        if differences:
            flags.append(FidelityFlag(target, variant, setting if knob else "", mode, emulated.cell.id,
                                      real.cell.id, differences))
    return flags


def with_fidelity_hints(results: Iterable[CellResult]) -> list[CellResult]:
    """``results``, where a flagged pair's emulated cell failed, with a hint pointing at the /proc probe.

    Its own hint (e.g. "drop the [::] listen lines") would be wrong: such an image adds them
    only because it saw /proc/net/if_inet6, and a real kernel shows it the truth.
    """
    results = list(results)
    flagged = {(f.target, f.emulated): f for f in fidelity_flags(results)}
    real = {(r.cell.target, r.cell.id): r for r in results if r.cell.stack == REAL}
    out = []
    for r in results:
        flag = flagged.get((r.cell.target, r.cell.id))
        if flag is not None and r.status == "fail":
            other = real[(flag.target, flag.real)].verdict
            seen = "no verdict" if other is None else _outcome(other)
            r = replace(r, hint=EMULATED_HINT.format(real=REAL, verdict=seen))
        out.append(r)
    return out
