"""Turn profiled cells into a per-step breakdown: where a cell's time goes."""

from __future__ import annotations

import math
from collections.abc import Sequence

from common import Summary
from percell import CellRun

START = "API POST /containers/{id}/start"
RUNNING = "py: Running() (logs attach + pump thread)"
LISTEN = "host: target first LISTEN"
READY = "shim: 'ready' line received"
ATTESTED = "shim: 'attested' line received"
FINISHED = "dockerd: State.FinishedAt"
STREAM_END = "log stream ended"
VERDICT = "verdict() returned"
DELETE = "API DELETE /containers/{id}"


def _numbered(events: Sequence[tuple[str, float, float]]) -> dict[str, tuple[float, float]]:
    """Label -> (start, end); a label seen again becomes 'label #2' and so on."""
    out: dict[str, tuple[float, float]] = {}
    for what, start, end in events:
        key, n = what, 1
        while key in out:
            n += 1
            key = f"{what} #{n}"
        out[key] = (start, end)
    return out


def timeline(runs: Sequence[CellRun]) -> list[tuple[str, float, float, int]]:
    """Every step seen: (label, median start offset, median duration, runs it was seen in), by start."""
    per: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        for key, (start, end) in _numbered(run.events).items():
            per.setdefault(key, []).append((start, end - start))
    rows = [(key, Summary.of([s for s, _ in v]).median, Summary.of([d for _, d in v]).median, len(v))
            for key, v in per.items()]
    return sorted(rows, key=lambda r: r[1])


def segments(runs: Sequence[CellRun], kind: str) -> list[tuple[str, Summary]]:
    """Consecutive, non-overlapping segments of a cell from t0 to removal, each as a Summary over the runs."""
    names: list[str] = []
    values: dict[str, list[float]] = {}
    for run in runs:
        ev = _numbered(run.events)

        def at(label: str, end: bool = False, ev: dict[str, tuple[float, float]] = ev) -> float:
            return ev[label][1 if end else 0] if label in ev else math.nan

        cuts: list[tuple[str, float]] = [
            ("client + image check + create (API until /start)", at(START)),
            ("POST /start (engine: runtime, mounts, netns, seccomp)", at(START, end=True)),
            ("attach the log stream (GET /logs + inspect for tty)", at(RUNNING, end=True)),
        ]
        if kind == "up":
            cuts += [
                ("start -> target's first LISTEN (shim attests, entrypoint, nginx)", at(LISTEN)),
                ("first LISTEN -> shim 'ready' (settle + rows + reach checks)", at(READY)),
                ("'ready' -> verdict() returns", at(VERDICT)),
            ]
        else:
            cuts += [
                ("start -> target exits (State.FinishedAt)", at(FINISHED)),
                ("exit -> log stream ends (dockerd closes the follower)", at(STREAM_END)),
                ("stream end -> verdict() (POST /wait for the code)", at(VERDICT)),
            ]
        cuts.append(("removal (DELETE ?force) + close", run.total))
        prev = 0.0
        for name, cut in cuts:
            if name not in values:
                names.append(name)
                values[name] = []
            if not math.isnan(cut):
                values[name].append(cut - prev)
                prev = cut
    return [(name, Summary.of(values[name])) for name in names]


def render(runs: Sequence[CellRun], kind: str) -> str:
    lines = [f"  segments of a profiled {kind} cell (median over {len(runs)} runs; they add up to the total):"]
    total = 0.0
    for name, s in segments(runs, kind):
        total += 0 if math.isnan(s.median) else s.median
        lines.append(f"    {s.median * 1000:7.1f} ms  (p90 {s.p90 * 1000:6.1f})  {name}")
    lines.append(f"    {total * 1000:7.1f} ms  sum of medians; "
                 f"median total {Summary.of([r.total for r in runs]).median * 1000:.1f} ms")
    lines.append("  every step (median start offset from before run(), median duration, runs seen):")
    for label, start, dur, n in timeline(runs):
        lines.append(f"    @{start * 1000:7.1f} ms  {dur * 1000:7.1f} ms  {label}" + (f"  [{n}/{len(runs)}]"
                                                                                     if n != len(runs) else ""))
    return "\n".join(lines)
