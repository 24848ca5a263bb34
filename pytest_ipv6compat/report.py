"""Render matrix results: terminal grid, Markdown, JSON (schema v4), JUnit properties.

Pure functions over :class:`~.results.CellResult`; no pytest, no Docker. Every renderer sorts
its input by an :class:`Ordering`, so a serial run and an xdist run (which finish
cells in different orders) render byte-identical output.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .fidelity import MESSAGE, fidelity_flags
from .ledger import RunRecord
from .listeners import sort_key
from .model import Cell, Expectation, Family, Listener, Outcome, Protocol, Result, Verdict
from .provenance import describe, distinct
from .results import STATUSES, CellResult

STACKS = ("dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off", "ipv6-boot-disabled", "ipv6-only")
SCHEMA_ID = "pytest-ipv6compat/report"
SCHEMA_VERSION = 4
READABLE_VERSIONS = (2, 3, 4)  # load_json reads each; v3 and later record what a run was asked to run


def schema_path() -> Path:
    """The JSON Schema (draft 2020-12) that :func:`render_json` output satisfies."""
    return Path(__file__).parent / "schema" / f"report-v{SCHEMA_VERSION}.json"


# ---------------------------------------------------------------- ordering


@dataclass(frozen=True)
class Ordering:
    """Explicit row/column orders. Names not listed come after, sorted by name.

    Build it from the collected cells (same order on every xdist worker and on the
    controller) with :meth:`from_cells`; the default puts ``unset``/``empty`` first.
    """

    variants: tuple[str, ...] = ()
    stacks: tuple[str, ...] = STACKS
    settings: tuple[str, ...] = ()  # KnobSetting labels: "unset", "empty", "=1"
    config_modes: tuple[str, ...] = ("rw", "ro")

    @classmethod
    def from_cells(cls, cells: Iterable[Cell]) -> Ordering:
        """Order of first appearance, e.g. collection order of the matrix."""
        cells = list(cells)

        def firsts(values: Iterable[str]) -> tuple[str, ...]:
            return tuple(dict.fromkeys(values))

        return cls(
            variants=firsts(c.variant for c in cells),
            stacks=firsts(c.stack for c in cells),
            settings=firsts(c.setting.label for c in cells),
            config_modes=firsts(["rw", *(c.config_mode for c in cells)]),
        )

    def key(self, cell: Cell) -> tuple[object, ...]:
        label = cell.setting.label
        return (
            cell.target, _rank(cell.variant, self.variants), _rank(cell.config_mode, self.config_modes),
            _rank(cell.stack, self.stacks), _rank(label, self.settings, {"unset": 0, "empty": 1}.get(label, 2)),
            cell.knob,
        )


def _rank(value: str, given: tuple[str, ...], pre: int = 0) -> tuple[int, int, str]:
    return (0, given.index(value), "") if value in given else (1, pre, value)


def sort_results(results: Iterable[CellResult], order: Ordering | None = None) -> list[CellResult]:
    """Results in report order; a cell that appears twice is an error."""
    order = order or Ordering()
    ordered = sorted(results, key=lambda r: order.key(r.cell))
    seen: set[tuple[str, str, str]] = set()
    for r in ordered:
        ident = (r.cell.target, r.cell.knob, r.cell.id)
        if ident in seen:
            raise ValueError(f"two results for cell {r.cell.target}[{r.cell.id}]")
        seen.add(ident)
    return ordered


def totals(results: Iterable[CellResult]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for r in results:
        counts[r.status] += 1
    return counts


def _totals_line(results: Sequence[CellResult]) -> str:
    t, n = totals(results), len(results)  # no-break spaces keep "N word" together when wrapped
    flags = len(fidelity_flags(results))  # where a release is signed, the fidelity flag is not a footnote
    return (f"{n}\xa0cell{'s' * (n != 1)}: {t['pass']}\xa0passed, {t['fail']}\xa0failed, "
            f"{t['error']}\xa0error{'s' * (t['error'] != 1)}, {t['skipped']}\xa0skipped"
            + (f"; {flags}\xa0emulation\xa0difference{'s' * (flags != 1)} (flagged above)" if flags else ""))


# ---------------------------------------------------------------- short tokens


def _kind(listener: Listener) -> tuple[str, str]:
    """(token, wildcard address) of a listener's class: v4 (IPv4), v6 ([::] v6only) or dual (``*``)."""
    if listener.family is Family.INET:
        return "v4", "0.0.0.0"
    if listener.address == "::" and not listener.v6only:
        return "dual", "::"
    return "v6", "::"


def _listen_token(listeners: Iterable[Listener], marks: Mapping[Listener, str]) -> str:
    """``v4+v6``; ``udp:`` before UDP ones; ``@ADDR`` for a specific address, ``+@ADDR`` beside the
    wildcard; ``:PORT`` after each when the listeners do not all share one port; then the marks."""
    listeners = list(listeners)
    ports = sorted({x.port for x in listeners})
    parts = []
    for protocol in Protocol:
        prefix = "udp:" if protocol is Protocol.UDP else ""
        for port in ports if len(ports) > 1 else [None]:
            suffix = "" if port is None else f":{port}"
            for name in ("v4", "v6", "dual"):
                mine = [x for x in listeners if x.protocol is protocol and _kind(x)[0] == name
                        and (port is None or x.port == port)]  # fmt: skip
                if not mine:
                    continue
                wildcard = _kind(mine[0])[1]
                addresses = sorted({x.address for x in mine if x.address != wildcard})
                token = prefix + name + ("" if len(addresses) == 0 else f"@{','.join(addresses)}")
                if any(x.address == wildcard for x in mine) and addresses:
                    token = prefix + name + f"+@{','.join(addresses)}"
                parts.append(token + suffix + "".join(sorted({marks[x] for x in mine if x in marks})))
    return "+".join(parts) or "up:none"


def reach_mark(verdict: Verdict, listener: Listener) -> str:
    """'' answered; '?' accepted but no good answer; '!' refused or failed; '~' no loopback reaches it;
    '~6' (or '~4') a socket serving both families that answered on one, the other having no loopback."""
    answered = verdict.answered(listener)
    if answered is None:
        return ""
    if answered:
        unreached = [r.via for r in verdict.reach if r.listener == listener and r.result is Result.NO_LOOPBACK]
        return "" if not unreached else "~6" if Family.INET6 in unreached else "~4"
    mine = [r for r in verdict.reach if r.listener == listener]
    if all(r.result is Result.NO_LOOPBACK for r in mine):
        return "~"
    if any(r.result in (Result.REFUSED, Result.TIMEOUT, Result.ERROR) for r in mine):
        return "!"
    return "?"


def describe_reach(verdict: Verdict) -> list[str]:
    """One line per listener: whether it answered, then what each family's probe saw; then, where the cell has
    a pod address, whether it answered over it too or on loopback only."""
    lines = []
    for listener in sorted(verdict.listeners, key=sort_key):
        answered = verdict.answered(listener)
        word = {None: "not probed", True: "answered", False: "did not answer"}[answered]
        seen = "; ".join(
            f"{r.via}: {r.result}" + (f", {r.detail}" if r.detail else "")
            for r in verdict.reach if r.listener == listener
        )
        line = f"{listener}: {word}" + (f" ({seen})" if seen else "")
        over_pod = [r for r in verdict.pod_reach if r.listener == listener]
        if over_pod:
            pod_word = {None: "not probed", True: "answers over the pod address",
                        False: "answers on loopback only" if answered else "not over the pod address"}
            pod_seen = "; ".join(f"pod {r.via}: {r.result}" + (f", {r.detail}" if r.detail else "") for r in over_pod)
            line += f"; {pod_word[verdict.pod_answered(listener)]} ({pod_seen})"
        lines.append(line)
    return lines


def _hold_lines(verdict: Verdict) -> list[str]:
    """What the listener set did during the hold window (``listener set changed during the hold: ...``)."""
    return [text for text in (verdict.change_text(), verdict.unsteady_text()) if text]


def short_verdict(verdict: Verdict | None) -> str:
    """``v4+v6``, ``v4``, ``dual`` (one ``*`` socket), ``v6~`` (not answering), ``exit N``, ``timeout``."""
    if verdict is None:
        return "no verdict"
    if verdict.outcome is Outcome.EXITED:
        return f"exit {'?' if verdict.exit_code is None else verdict.exit_code}"
    if verdict.outcome is Outcome.TIMEOUT:
        return "timeout"
    marks = {x: m for x in verdict.listeners if (m := reach_mark(verdict, x) + pod_mark(verdict, x))}
    return _listen_token(verdict.listeners, marks)


def pod_mark(verdict: Verdict, listener: Listener) -> str:
    """'(lo)' where a listener that answered on loopback did not answer over the cell's pod address."""
    return "(lo)" if verdict.answered(listener) and verdict.pod_answered(listener) is False else ""


def short_expectation(expectation: Expectation) -> str:
    """Same tokens as :func:`short_verdict`; ``?`` marks listeners expected silent."""
    if expectation.outcome is Outcome.EXITED:
        return "exit" if expectation.exit_code is None else f"exit {expectation.exit_code}"
    if expectation.outcome is Outcome.TIMEOUT:
        return "timeout"
    return _listen_token(expectation.listeners, dict.fromkeys(expectation.silent, "?"))


def _clip(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _got_want(r: CellResult) -> tuple[str, str]:
    """Short verdict and expectation, made more precise when the short forms coincide."""
    e, v = r.cell.expectation, r.verdict
    got, want = short_verdict(v), short_expectation(e)
    if want == got and e.error_contains:
        want += f' "{_clip(e.error_contains)}"'
    elif want == got and v is not None and v.listeners != e.listeners:
        got, want = (" ".join(map(str, sorted(x, key=sort_key))) for x in (v.listeners, e.listeners))
    return got, want


def _group_label(r: CellResult, fail_mark: str) -> str:
    if r.status in ("error", "skipped"):
        return "E" if r.status == "error" else "skip"
    if r.status == "pass":
        return short_verdict(r.verdict)
    return "{} {} (want {})".format(fail_mark, *_got_want(r))


# ---------------------------------------------------------------- grid

_Group = tuple[str, str, str]  # (status, verdict label, settings text)
_Row = tuple[str, list[list[_Group]]]  # (row label, one group list per stack column)
_Block = tuple[str, str, list[str], list[_Row]]  # (target, knobs, stack columns, rows)


def _grid(ordered: Sequence[CellResult], order: Ordering, fail_mark: str) -> list[_Block]:
    """Per target: (target, knobs, stack columns, rows), from already sorted results."""
    blocks = []
    for target in dict.fromkeys(r.cell.target for r in ordered):
        mine = [r for r in ordered if r.cell.target == target]
        every = {r.cell.setting.label for r in mine}
        stacks = sorted({r.cell.stack for r in mine}, key=lambda s: _rank(s, order.stacks))
        rows: list[_Row] = []
        for variant, mode in dict.fromkeys((r.cell.variant, r.cell.config_mode) for r in mine):
            columns = []
            for stack in stacks:
                groups: dict[tuple[str, str], list[str]] = {}
                for r in mine:
                    if (r.cell.variant, r.cell.config_mode, r.cell.stack) == (variant, mode, stack):
                        key = (r.status, _group_label(r, fail_mark))
                        groups.setdefault(key, []).append(r.cell.setting.label if r.cell.knob else "")
                columns.append([
                    (status, label, "all" if set(s) == every and len(s) > 1 else " ".join(s).strip())
                    for (status, label), s in groups.items()
                ])
            rows.append((variant if mode == "rw" else f"{variant} (config {mode})", columns))
        knobs = " ".join(dict.fromkeys(r.cell.knob for r in mine))
        blocks.append((target, knobs, stacks, rows))
    return blocks


def _legend(blocks: list[_Block], fail_mark: str) -> str:
    """Explains only the tokens the grid uses; entries hold no-break spaces so wrapping keeps them whole."""
    groups = [group for *_, rows in blocks for _, cols in rows for col in cols for group in col]
    labels, statuses = " ".join(g for _, g, _ in groups), {status for status, _, _ in groups}
    parts = [
        ("v4" in labels, "v4 = 0.0.0.0"),
        ("v6" in labels, "v6 = [::] (IPv6 only)"),
        ("dual" in labels, "dual = * (one [::] socket serving IPv4 and IPv6)"),
        ("udp:" in labels, "udp: = UDP socket"),
        ("@" in labels.replace("+@", ""), "v4@ADDR = only ADDR"),
        ("+@" in labels, "v4+@ADDR = the wildcard and ADDR too"),
        (bool(re.search(r":\d", labels)), ":PORT = on that port (listeners on several ports)"),
        ("~6" in labels or "~4" in labels, "~6 = its IPv6 side has no loopback here, only IPv4 answered"),
        ("?" in labels, "? = accepted, no good answer (in a want: silent)"),
        ("!" in labels, "! = refused"),
        ("(lo)" in labels, "(lo) = answers on loopback only, not over the pod address"),
        (bool(re.search(r"~(?![46])", labels)), "~ = no loopback of its families exists here"),
        ("exit" in labels, "exit N = exited with code N"),
        (any(s == "all" for _, _, s in groups), "all = every knob setting"),
        ("fail" in statuses, f"{fail_mark} = verdict differs from expectation"),
        ("error" in statuses, "E = error, could not judge"),
    ]
    return "legend: " + "; ".join(text.replace(" ", "\xa0") for shown, text in parts if shown)


def _table(header: list[str], rows: list[_Row], ascii_only: bool) -> list[str]:
    bar, rule, cross = (" | ", "-", "-+-") if ascii_only else (" │ ", "─", "─┼─")
    table = [[[h] for h in header]] + [[[label], *([f"{g}: {s}" if s else g for _, g, s in c] or ["-"] for c in cols)]
                                       for label, cols in rows]
    widths = [max(len(line) for row in table for line in row[i]) for i in range(len(header))]
    lines = []
    for i, row in enumerate(table):
        if i:
            lines.append(cross.join(rule * w for w in widths))
        for k in range(max(map(len, row))):
            texts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(row, widths, strict=True)]
            lines.append(bar.join(texts).rstrip())
    return lines


def _stacked(stacks: list[str], rows: list[_Row], width: int) -> list[str]:
    lines, pad = [], max(map(len, stacks)) + 2
    for label, cols in rows:
        lines.append(label)
        for stack, col in zip(stacks, cols, strict=True):
            for k, (_, g, s) in enumerate(col or [("", "-", "")]):
                head = f"  {stack if k == 0 else '':<{pad}}{g}" + (": " if s else "")
                lines += textwrap.wrap(s, max(width, len(head) + 8), initial_indent=head, break_long_words=False,
                                       subsequent_indent=" " * len(head), break_on_hyphens=False) or [head]
    return lines


def incomplete_line(reason: str) -> str:
    return f"INCOMPLETE: {reason}"


def render_terminal(
    results: Iterable[CellResult], *, width: int | None = None, order: Ordering | None = None,
    ascii_only: bool = False, incomplete: str | None = None,
) -> list[str]:
    """The compatibility grid: rows = variants, columns = stacks, cells = settings grouped by verdict.

    A table when it fits in ``width`` (always when None), else one line per (variant, stack).
    ``ascii_only`` draws with ``| - +`` and marks failures ``FAIL`` instead of ``✗``.
    ``incomplete`` (why the run does not account for every cell) adds one last line.
    """
    order = order or Ordering()
    ordered = sort_results(results, order)
    if not ordered:
        return ["no matrix cells ran", *([incomplete_line(incomplete)] if incomplete else [])]
    fail_mark = "FAIL" if ascii_only else "✗"
    lines: list[str] = []
    blocks = _grid(ordered, order, fail_mark)
    for target, knobs, stacks, rows in blocks:
        n = sum(r.cell.target == target for r in ordered)
        knob_text = f"knob {knobs}" if knobs.strip() else "no knob"
        lines += [""] * bool(lines) + [f"{target}: {knob_text}, {n} cell{'s' * (n != 1)}"]
        table = _table(["variant", *stacks], rows, ascii_only)
        fits = width is None or max(map(len, table)) <= width
        lines += table if fits else _stacked(stacks, rows, width or 0)
        lines += [f"≠ {f.line()}" if not ascii_only else f"!= {f.line()}"
                  for f in fidelity_flags(ordered) if f.target == target]
    last = [incomplete_line(incomplete)] if incomplete else []
    for text in (_legend(blocks, fail_mark), _totals_line(ordered), *last):
        wrapped = textwrap.wrap(text, width or len(text), subsequent_indent="  ", break_long_words=False)
        lines += [line.replace("\xa0", " ") for line in wrapped]
    return lines


# ---------------------------------------------------------------- Markdown


def _md(text: str) -> str:
    return re.sub(r"([\\|*_`<>\[\]])", r"\\\1", text)


def render_markdown(
    results: Iterable[CellResult], *, order: Ordering | None = None, incomplete: str | None = None,
) -> str:
    """The grid as GitHub-flavoured Markdown, with a Failures section for fail/error cells."""
    order = order or Ordering()
    ordered = sort_results(results, order)
    note = [f"**{_md(incomplete_line(incomplete))}**"] if incomplete else []
    if not ordered:
        return "\n\n".join(["No matrix cells ran.", *note]) + "\n"
    out: list[str] = []
    blocks = _grid(ordered, order, "✗")
    for target, knobs, stacks, rows in blocks:
        knob_text = f"knob `{knobs}`" if knobs.strip() else "no knob"
        out += [f"### {_md(target)} ({knob_text})", "", f"| variant | {' | '.join(stacks)} |",
                "|---" * (len(stacks) + 1) + "|"]
        for label, cols in rows:
            cells = [
                "<br>".join(
                    (f"**{_md(g)}**" if status in ("fail", "error") else _md(g)) + (f": {_md(s)}" if s else "")
                    for status, g, s in col
                ) or "-"
                for col in cols
            ]
            out.append(f"| {_md(label)} | {' | '.join(cells)} |")
        out.append("")
        flags = [f for f in fidelity_flags(ordered) if f.target == target]
        out += [f"**{MESSAGE}** ({_md(f.where)}): " + "; ".join(map(_md, f.differences)) for f in flags]
        out += [""] * bool(flags)
    out += [_md(_legend(blocks, "✗")).replace("\xa0", " "), "", f"**{_totals_line(ordered)}**".replace("\xa0", " ")]
    out += [""] * bool(note) + note
    engines = distinct(r.ran_on for r in ordered)
    if engines:
        out += ["", "#### Ran on", ""]
        out += [f"- {_md(describe(p))}: {n}\xa0cell{'s' * (n != 1)}".replace("\xa0", " ") for p, n in engines]
    bad = [r for r in ordered if r.status in ("fail", "error")]
    if bad:
        out += ["", "#### Failures", ""]
    for r in bad:
        got, want = _got_want(r)
        out.append(f"- `{r.cell.target}[{r.cell.id}]` **{r.status}**: got {_md(got)}, want {_md(want)}")
        if r.verdict is not None and r.verdict.error_line:
            out.append("  - error line: `" + r.verdict.error_line.replace("`", "'") + "`")
        out += [f"  - {_md(reason)}" for reason in r.reasons]
        if r.verdict is not None:
            out += [f"  - {_md(line)}" for line in describe_reach(r.verdict)]
            out += [f"  - {_md(line)}" for line in _hold_lines(r.verdict) if line not in r.reasons]
        if r.hint:
            out.append(f"  - **Hint:** {_md(r.hint)}")
        if r.ran_on:
            out.append(f"  - ran on: {_md(describe(r.ran_on))}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- JSON and JUnit


def render_json(
    results: Iterable[CellResult], *, meta: Mapping[str, object], order: Ordering | None = None,
    run: RunRecord | None = None,
) -> str:
    """The report document (see :func:`schema_path`); ``meta`` is copied as given.

    ``run`` says what the run was asked to run and whether it is complete; without it the
    document claims no cell (``merge`` then refuses its cells as asked for by no one).
    """
    ordered = sort_results(results, order)
    doc = {
        "schema": SCHEMA_ID, "version": SCHEMA_VERSION, "meta": dict(meta),
        "run": (run or RunRecord.unrecorded()).to_dict(),
        "totals": totals(ordered), "cells": [r.to_dict() for r in ordered],
    }
    flags = fidelity_flags(ordered)
    if flags:  # only where a run had both ipv6-kernel-off and ipv6-boot-disabled cells that disagree
        doc["fidelity"] = [f.to_dict() for f in flags]
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def load_json(text: str) -> tuple[dict[str, object], list[CellResult]]:
    """Read a report document (v2, v3 or v4) back: (meta, results)."""
    meta, results, _ = load_report(text)
    return meta, results


def load_report(text: str) -> tuple[dict[str, object], list[CellResult], RunRecord | None]:
    """(meta, results, run record) of a report document; the run record is None for v2, which has none."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_ID or doc.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"not a {SCHEMA_ID} v{SCHEMA_VERSION} document")
    run = RunRecord.from_dict(doc["run"]) if doc["version"] >= 3 else None
    return dict(doc["meta"]), [CellResult.from_dict(c) for c in doc["cells"]], run


def _verdict_word(verdict: Verdict | None) -> str:
    if verdict is None:
        return "none"
    if verdict.outcome is Outcome.EXITED:
        return "exited" if verdict.exit_code is None else f"exited {verdict.exit_code}"
    return str(verdict.outcome)


def junit_properties(result: CellResult, *, crashed: str | None = None) -> list[tuple[str, str]]:
    """``(name, value)`` pairs for ``record_property`` / ``item.user_properties``.

    ``crashed`` names the xdist worker that died while running the cell (``gw1``): it
    becomes ``ipv6.crashed``. An error cell carries its first reason as ``ipv6.error``.
    """
    c, v = result.cell, result.verdict
    props = [
        ("ipv6.target", c.target), ("ipv6.cell", c.id), ("ipv6.variant", c.variant), ("ipv6.stack", c.stack),
        ("ipv6.knob", c.knob), ("ipv6.setting", c.setting.label if c.knob else ""), ("ipv6.config", c.config_mode),
        ("ipv6.status", result.status), ("ipv6.expected", c.expectation.source),
        ("ipv6.verdict", _verdict_word(v)),
        ("ipv6.listeners", "" if v is None else " ".join(map(str, sorted(v.listeners, key=sort_key)))),
        # Per listener over the pod address: "pod" answers as a peer reaches it, "loopback-only" does not
        # (empty where the stack has no pod address of its families, or nothing was probed).
        ("ipv6.pod", "" if v is None else " ".join(
            f"{x}={'pod' if v.pod_answered(x) else 'loopback-only'}"
            for x in sorted(v.listeners, key=sort_key) if v.pod_answered(x) is not None
        )),
    ]
    if crashed is not None:
        props.append(("ipv6.crashed", crashed))
    if result.status == "error" and result.reasons:  # its first line: a property is one value
        props.append(("ipv6.error", (result.reasons[0].strip().splitlines() or [""])[0]))
    if result.hint:
        props.append(("ipv6.hint", result.hint))
    props += [(f"ipv6.ran_on.{key}", value) for key, value in result.ran_on]
    return props


def engines_meta(results: Iterable[CellResult]) -> list[dict[str, object]]:
    """The report meta's ``engines``: each engine or kernel that ran cells, once, with its count."""
    return [{"ran_on": dict(p), "cells": n} for p, n in distinct(r.ran_on for r in results)]
