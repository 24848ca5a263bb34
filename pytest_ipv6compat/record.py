"""Record mode (``--ipv6-record``): write each observed verdict into its matrix file.

The pure part (:func:`verdict_text`, :func:`choose`, :func:`rewrite`) turns
verdicts into expectation text and edits a matrix file's TOML with tomlkit, so
comments, order, quoting and named outcomes survive. :class:`Recorder` is the
pytest side: at session end (the controller, under xdist) it rewrites each file
from the results :class:`~.summary.Results` collected, and the terminal summary
lists every change as ``cell-id: old -> new``. Without ``--ipv6-record`` it is
never registered, so nothing writes to a matrix file.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import tomlkit
from tomlkit.items import String, Trivia

from .matrix import (
    CONFIG_MODES,
    MatrixError,
    Target,
    fill_placeholders,
    judge,
    load_matrix,
    parse_expectation,
    write_matrix,
)
from .model import Expectation, Outcome, Result, Verdict
from .results import CellResult

if TYPE_CHECKING:
    from .summary import Results

__all__ = [
    "Change",
    "Observation",
    "Recorder",
    "Rewrite",
    "choose",
    "observation",
    "rewrite",
    "silent_warning",
    "stable_message",
    "verdict_text",
    "write_checked",
]

MESSAGE_LIMIT = 120
# Leading parts of a log line that change from run to run: timestamps, pids, levels.
_VOLATILE = (
    r"\d{4}[-/]\d{2}[-/]\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?",  # dates
    r"\d{2}:\d{2}:\d{2}(?:[.,]\d+)?",  # times
    r"\[(?:[A-Za-z]+|\d+)\]:?",  # [emerg] [error] [123]
    r"\d+#\d+:",  # nginx pid#tid:
    r"\*\d+",  # nginx connection number
    r"[\w./-]+\[\d+\]:?",  # prog[pid]: (socat has no colon: "socat[161] E ...")
    r"\d+:[XCSM] \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2}\.\d+ [.*#-]",  # redis
)
_PREFIX = re.compile(r"(?:" + "|".join(_VOLATILE) + r")\s+")
# Per-run numbers inside a message (a pid, a thread, a connection): the message is cut around the first.
_INNER = re.compile(r"[\w./-]*\[\d+\]:?|\(?\bpid[ =:]?\d+\)?|\b\d+#\d+:?|\*\d+", re.IGNORECASE)
_MIN_PART = 12  # the shortest part of a message worth keeping on one side of a per-run number


@dataclass(frozen=True)
class Observation:
    """One judged cell to record: where its expectation sits in the file, and what was seen."""

    cell_id: str
    section: str  # "expect" or "expect_config_ro"
    variant: str
    stack: str
    label: str | None  # knob setting label; unused when the file has no knob
    verdict: Verdict


@dataclass(frozen=True)
class Change:
    cell_id: str
    old: str
    new: str


@dataclass(frozen=True)
class Rewrite:
    text: str
    recorded: int
    changes: tuple[Change, ...]
    not_recorded: tuple[str, ...]  # "cell-id: why"


def stable_message(error_line: str | None, logs: str) -> str | None:
    """The part of ``error_line`` that stays the same from run to run, if it is in ``logs``.

    Drops leading timestamps, pids and log levels (``2026/12/02 05:00:00 [emerg] 1#1: ``,
    ``socat[161] E``), keeps the longer side of a pid (or other per-run number) inside the
    message, and at most :data:`MESSAGE_LIMIT` characters, cut at a space. Pids differ from
    run to run (and from boot to boot under User-mode Linux): a recorded file must pass its
    own next run.
    """
    if not error_line:
        return None
    message = error_line.strip()
    while True:
        m = _PREFIX.match(message)
        if m is None:
            break
        message = message[m.end() :]
    inner = _INNER.search(message)
    while inner is not None:  # keep the longer side of a per-run number, never the number
        before, after = message[: inner.start()].strip(), message[inner.end() :].strip()
        message = before if len(before) >= max(len(after), _MIN_PART) else after
        inner = _INNER.search(message)
    if len(message) > MESSAGE_LIMIT:
        cut = message.rfind(" ", 0, MESSAGE_LIMIT)
        message = message[: cut if cut > MESSAGE_LIMIT // 2 else MESSAGE_LIMIT]
    message = message.strip()
    return message if message and message in logs else None


def _quote(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text and "\\" not in text:
        return f'"{text}"'
    return shlex.quote(text)


def verdict_text(verdict: Verdict) -> str:
    """The expectation that says exactly what ``verdict`` saw."""
    if verdict.outcome is Outcome.UP:
        words = ["up"]
        for listener in sorted(verdict.listeners, key=str):
            if verdict.judged_answer(listener) is False:
                words.append(f"{listener}/silent")
            elif verdict.pod_answered(listener):  # a peer reaches it over the pod address too
                words.append(f"{listener}/pod")
            else:
                words.append(str(listener))
        return " ".join(words)
    if verdict.outcome is Outcome.EXITED:
        text = "exited" if verdict.exit_code is None else f"exited {verdict.exit_code}"
        message = stable_message(verdict.error_line, verdict.logs)
        if message is not None:
            quoted = f"{text} {_quote(message)}"
            try:
                if parse_expectation(quoted).error_contains == message:
                    return quoted
            except ValueError:
                pass
        return text
    return "timeout"


def _parse(text: str) -> Expectation | None:
    try:
        return parse_expectation(text)
    except ValueError:
        return None


def _fits(expected: Expectation | None, verdict: Verdict) -> bool:
    """The expectation passes on this verdict and states its exit code exactly."""
    return expected is not None and not judge(expected, verdict) and expected.exit_code == verdict.exit_code


def choose(current: str, outcomes: Mapping[str, str], verdict: Verdict) -> str | None:
    """What a cell should say after ``verdict``; None when no expectation can state it.

    Keeps ``current`` when it is a name that still states the verdict exactly; else a named
    outcome that does (one with error text first), so names added to ``[outcomes]`` are
    taken up by the next recording; else ``current`` text that still fits; else the
    literal text.
    """
    if current in outcomes and _fits(_parse(outcomes[current]), verdict):
        return current
    fitting = [name for name, text in outcomes.items() if _fits(_parse(text), verdict)]
    fitting.sort(key=lambda name: _parse(outcomes[name]).error_contains is None)  # type: ignore[union-attr]
    if fitting:
        return fitting[0]
    if current not in outcomes and _fits(_parse(current), verdict):
        return current
    literal = verdict_text(verdict)
    return literal if _fits(_parse(literal), verdict) else None


def _replace(holder: Any, key: str, value: str) -> None:
    old = holder[key]
    literal = isinstance(old, String) and old.as_string().startswith("'") and "'" not in value
    new = tomlkit.string(value, literal=literal)
    trivia: Trivia = old.trivia
    new.trivia.comment_ws, new.trivia.comment, new.trivia.trail = trivia.comment_ws, trivia.comment, trivia.trail
    holder[key] = new


def _new_table(only_tables: bool) -> Any:
    return tomlkit.table(is_super_table=only_tables)


def rewrite(text: str, observations: Iterable[Observation], target: Target | None = None) -> Rewrite:
    """Write each observation's verdict into the matrix ``text``; everything else is kept.

    With ``target``, every cell the ``[expect]`` table lacks (or the whole table) is first
    given the placeholder, as ``init`` writes it, so a file with only a ``[target]`` records.
    """
    doc = tomlkit.parse(text)
    if target is not None:
        fill_placeholders(doc.setdefault("expect", _new_table(True)), target, _new_table)
    outcomes = {str(k): str(v) for k, v in doc.get("outcomes", {}).items() if isinstance(v, str)}
    changes: list[Change] = []
    skipped: list[str] = []
    recorded = 0
    for obs in observations:
        try:
            by_stack = doc[obs.section][obs.variant]
            holder, key = (
                (by_stack, obs.stack) if isinstance(by_stack[obs.stack], str) else (by_stack[obs.stack], obs.label)
            )
            if key is None:
                raise KeyError(obs.stack)
            current = holder[key]
        except (KeyError, TypeError):
            skipped.append(f"{obs.cell_id}: not recorded, the file has no [{obs.section}.{obs.variant}] entry for it")
            continue
        if not isinstance(current, str):
            skipped.append(f"{obs.cell_id}: not recorded, its entry is not a string")
            continue
        if obs.verdict.outcome is Outcome.UP and obs.verdict.unsteady is not None:
            skipped.append(f"{obs.cell_id}: not recorded, its listener set never stood unchanged for the hold window")
            continue
        value = choose(str(current), outcomes, obs.verdict)
        if value is None:
            skipped.append(f"{obs.cell_id}: not recorded, no expectation states the verdict ({obs.verdict.outcome})")
            continue
        recorded += 1
        if value != str(current):
            _replace(holder, key, value)
            changes.append(Change(obs.cell_id, str(current), value))
    return Rewrite(tomlkit.dumps(doc), recorded, tuple(changes), tuple(skipped))


# ---------------------------------------------------------------- pytest side

_SECTIONS = {mode: section for section, mode in CONFIG_MODES.items()}


def observation(result: CellResult) -> Observation | None:
    """What to record from a judged cell; None for errors, skips and cells without a verdict."""
    if result.status not in ("pass", "fail") or result.verdict is None:
        return None
    cell = result.cell
    label = cell.setting.label if cell.setting is not None else None
    return Observation(
        cell.id, _SECTIONS.get(cell.config_mode, "expect"), cell.variant, cell.stack, label, result.verdict
    )


def silent_warning(results: Sequence[CellResult]) -> str | None:
    """A warning when a target was up but none of its listeners answered its probe in any cell.

    That is nearly always the probe, not the service: an HTTP probe on a TLS port (accepted,
    no response), or a path that answers 404. The warning quotes what the listeners said
    and names the setting to change. None when anything answered, or nothing was probed.
    """
    verdicts = [r.verdict for r in results if r.verdict is not None and r.verdict.outcome is Outcome.UP]
    if any(v.answered(x) for v in verdicts for x in v.listeners):
        return None
    said = Counter(r.detail for v in verdicts for r in v.reach if r.result is Result.ACCEPTED and not r.ok)
    if not said:
        return None
    detail = said.most_common(1)[0][0]
    status = detail.split(" ", 2)[1] if detail.startswith("HTTP/") and " " in detail else ""
    if status == "400":  # what a TLS port that speaks HTTP errors says to plain HTTP (nginx does)
        cause = 'a TLS port answers plain HTTP so: set probe = "https"; else check http_path and http_status'
    elif status:
        cause = "set http_path to a path that answers, or http_status to accept that status"
    elif "no response" in detail:
        cause = 'for a TLS port set probe = "https"; for a protocol other than HTTP, probe = "tcp"'
    else:
        cause = "check probe, http_path and http_status"
    return (
        f"warning: no listener answered its probe in any cell (they said {detail!r}): "
        f"{cause} in [target], then record again"
    )


def write_checked(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` only if the new text loads as a matrix."""
    write_matrix(path, text, overwrite=True)


class Recorder:
    """Registered only with ``--ipv6-record``: rewrites matrix files from the session's results."""

    def __init__(self, config: pytest.Config, results: Results) -> None:
        self.config = config
        self.results = results
        self.lines: list[str] = []
        self.failed = False

    def _by_file(self) -> dict[Path, list[CellResult]]:
        from .report import sort_results

        groups: dict[Path, list[CellResult]] = {}
        for result in sort_results(self.results.results, self.results.ordering()):
            source = self.results.sources.get((result.cell.target, result.cell.id))
            if not source:
                self.failed = True
                self.lines.append(f"{result.cell.target}[{result.cell.id}]: not recorded, its matrix file is unknown")
                continue
            groups.setdefault(Path(source), []).append(result)
        return groups

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return
        try:
            groups = self._by_file()
        except ValueError as exc:  # the same cell twice: say so rather than guess which verdict to keep
            self.failed = True
            self.lines.append(f"nothing recorded: {exc}")
            groups = {}
        for path, results in groups.items():
            self.lines.extend(self.record(path, results))
        if self.failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def record(self, path: Path, results: Sequence[CellResult]) -> list[str]:
        observations = [obs for obs in map(observation, results) if obs is not None]
        unjudged = len(results) - len(observations)
        shown = _relative(path, self.config.rootpath)
        try:
            before = path.read_text(encoding="utf-8")
            done = rewrite(before, observations, load_matrix(path, placeholders=True).target)
            if done.text != before:
                write_checked(path, done.text)
        except (OSError, MatrixError, ValueError) as exc:
            self.failed = True
            return [f"{shown}: not recorded: {exc}"]
        lines = [f"{c.cell_id}: {c.old} -> {c.new}" for c in done.changes]
        lines += list(done.not_recorded)
        summary = f"{shown}: {done.recorded} cells recorded, {len(done.changes)} changed"
        if unjudged:
            summary += f"; {unjudged} not recorded (error or skipped)"
        warning = silent_warning(results)
        return [*lines, summary, *([f"{shown}: {warning}"] if warning else [])]

    @pytest.hookimpl(trylast=True)  # after the grid
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if hasattr(self.config, "workerinput"):
            return
        terminalreporter.write_sep("-", "ipv6compat: expectations recorded (--ipv6-record)")
        for line in self.lines or ["no matrix cells ran; nothing recorded"]:
            terminalreporter.write_line(line)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
