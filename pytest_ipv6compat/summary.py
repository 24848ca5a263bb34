"""Run-level glue behind plugin.py's hooks: selection, header, results, reports."""

from __future__ import annotations

import datetime as dt
import signal
import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from . import images
from .backends import EngineError
from .fidelity import FidelityFlag, fidelity_flags, with_fidelity_hints
from .items import CellItem
from .junit import MissingCase, case_address, complete_junit
from .keys import KEPT_KEY, RESULT_KEY, STATE_KEY
from .ledger import MatrixRecord, RunRecord
from .matrix import Matrix, MatrixError, load_matrix
from .model import Cell
from .provenance import describe, distinct, redact
from .report import Ordering, engines_meta, junit_properties, render_json, render_markdown, render_terminal
from .results import CellResult
from .stacks import STACKS
from .state import Unavailable

_RESULT_ATTR = "ipv6compat"  # a plain-dict attribute on TestReport; xdist carries it to the controller
_KEPT_ATTR = "ipv6compat_kept"  # on a teardown report: [name, commands] of a kept run, for xdist's controller
_FILES_KEY = "ipv6compat_matrix_files"  # in a worker's workeroutput: every matrix file it collected


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


_SIGTERM_KEY = pytest.StashKey[Any]()


def interrupt_on_sigterm(config: pytest.Config) -> None:
    """Treat SIGTERM (a cancelled CI job) like Ctrl-C, so running cells remove their containers.

    Only when SIGTERM has its default action and we are in the main thread; the
    previous handler is restored at unconfigure.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")

    config.stash[_SIGTERM_KEY] = signal.signal(signal.SIGTERM, interrupt)


def restore_sigterm(config: pytest.Config) -> None:
    previous = config.stash.get(_SIGTERM_KEY, None)
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def parametrize_stacks(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("ipv6_stack")
    if marker is None or "ipv6_stack" not in metafunc.fixturenames:
        return
    names = marker.args or tuple(name for name, stack in STACKS.items() if not stack.opt_in)  # ipv6-only: by name
    for name in names:
        if name not in STACKS:
            # A collection error of the test's module: one line, no traceback through pluggy.
            raise pytest.Collector.CollectError(
                f"{metafunc.definition.nodeid}: @pytest.mark.ipv6_stack names unknown stack {name!r} "
                f"(known: {', '.join(STACKS)})"
            )
    metafunc.parametrize("ipv6_stack", names, ids=names)


def _check_filters(config: pytest.Config, cells: list[CellItem]) -> None:
    """A filter value that no collected cell has is a typo, not a wish to run nothing: say which."""
    settings = config.stash[STATE_KEY].settings
    if not cells:
        return
    known = {
        "--ipv6-variants": {c.cell.variant for c in cells},
        "--ipv6-settings": {c.cell.setting.label for c in cells if c.cell.knob},
    }
    for flag, given in (("--ipv6-variants", settings.variants), ("--ipv6-settings", settings.settings)):
        unknown = [v for v in given or () if v not in known[flag]]
        if unknown and known[flag]:
            names = ", ".join(sorted(known[flag]))
            raise pytest.UsageError(
                f"{flag}: {', '.join(map(repr, unknown))} is in no collected matrix (they have: {names})"
            )


def deselect(config: pytest.Config, items: list[pytest.Item]) -> None:
    _check_filters(config, [item for item in items if isinstance(item, CellItem)])
    settings = config.stash[STATE_KEY].settings
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if isinstance(item, CellItem):
            cell = item.cell
            ok = (
                (settings.stacks is None or cell.stack in settings.stacks)
                and (settings.variants is None or cell.variant in settings.variants)
                and (settings.settings is None or cell.setting.label in settings.settings)
            )
        else:
            stack = getattr(getattr(item, "callspec", None), "params", {}).get("ipv6_stack")
            ok = stack is None or settings.stacks is None or stack in settings.stacks
        (keep if ok else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def header(config: pytest.Config) -> list[str]:
    state = config.stash[STATE_KEY]
    s = state.settings
    base = s.base_image or f"{images.base_image_ref()} (assembled from Debian packages when absent)"
    lines = [f"ipv6compat {version('pytest-ipv6compat')}: base image {base}; cell timeout {s.timeout:g}s"]
    if s.record:
        lines.append("ipv6compat: --ipv6-record: observed verdicts are written into the matrix files at the end")
    try:
        info = state.engine().info()
    except (Unavailable, EngineError) as exc:
        errors = s.require_docker or getattr(exc, "error", False)
        lines.append(f"ipv6compat: {exc}; cells will be {'errors' if errors else 'skipped'}")
        return lines
    if state.settings.engines and len(state.settings.engines) > 1:
        lines += _engines_header(config, info)
    else:
        lines.append(f"ipv6compat: {_engine_line(info)}; every cell is attested")
    try:
        uml = state.uml().info()
        lines.append(f"ipv6compat: ipv6-boot-disabled boots {uml['uml']} (User-mode Linux {uml['uml_version']}) "
                     "with ipv6.disable=1")
    except Unavailable as exc:
        outcome = "errors" if s.require_docker else "skipped"
        lines.append(f"ipv6compat: {exc}; ipv6-boot-disabled cells will be {outcome}")
    if state.swept:
        lines.append(f"ipv6compat: removed {len(state.swept)} container(s) left by dead sessions")
    return lines


def _engine_line(info: dict[str, str]) -> str:
    return (f"{info['engine']} {info['version']} (API {info['api']}) at {redact(info['address'])}, "
            f"runtime {info['runtime']}, seccomp {info['seccomp']}, kernel {info['kernel']} ({info['os']}), "
            f"{info['files']}")


def _engines_header(config: pytest.Config, own: dict[str, str]) -> list[str]:
    """One line per engine of --ipv6-engines: what it is and which xdist workers use it (or why it cannot)."""
    state = config.stash[STATE_KEY]
    engines = state.settings.engines
    assert engines
    workers = getattr(config.option, "numprocesses", None)
    workers = workers if isinstance(workers, int) and getattr(config.option, "dist", "no") != "no" else 0
    lines = []
    for n, url in enumerate(engines):
        users = [f"gw{k}" for k in range(workers) if k % len(engines) == n]
        who = f"workers {', '.join(users)}" if users else ("this process" if n == 0 and not workers else "no worker")
        try:
            info = own if url == state.using else state.other_engine(url)
            what = _engine_line(info)
        except EngineError as exc:
            what = f"{exc}; its cells go to the next engine that answers"
        lines.append(f"ipv6compat: engine {n + 1} of {len(engines)} ({who}): {what}")
    if state.failover:
        lines.append(f"ipv6compat: this process's engine: {state.failover}")
    lines.append("ipv6compat: every cell is attested, and records the engine that ran it")
    return lines


def attach_result(item: CellItem, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    result: CellResult | None = None
    if report.when == "setup" and (report.failed or report.skipped):
        message = report.longreprtext
        if call.excinfo is not None:
            message = str(getattr(call.excinfo.value, "msg", None) or call.excinfo.value)
        status = "error" if report.failed else "skipped"
        result = CellResult(item.cell, status, None, item.attestation, (message.strip(),), None, item.ran_on)
    elif report.when == "call":
        result = item.stash.get(RESULT_KEY, None)
        if result is None and report.failed:
            message = call.excinfo.exconly() if call.excinfo is not None else "unknown error"
            result = CellResult(item.cell, "error", item.verdict, item.attestation, (message,), None, item.ran_on)
    elif report.when == "teardown" and report.failed:  # pytest counts an error too: so does the grid
        message = str(call.excinfo.value) if call.excinfo is not None else "unknown error"
        result = CellResult(item.cell, "error", item.verdict, item.attestation, (f"teardown: {message}",), None,
                            item.ran_on)
    kept = item.stash.get(KEPT_KEY, None)
    if report.when == "teardown" and kept is not None:
        setattr(report, _KEPT_ATTR, [kept[0], list(kept[1])])
    if result is not None:
        target = item.matrix.target
        order = {
            "variants": list(target.variants),
            "stacks": list(target.stacks),
            "settings": [s.label for s in target.settings],
        }
        setattr(report, _RESULT_ATTR, {"result": result.to_dict(), "order": order, "source": str(item.path)})
        # junitxml reads properties from the teardown report, which copies the item's (made by then).
        if report.when != "teardown":
            item.user_properties.extend(junit_properties(result))


class Results:
    """Collects every cell's result on this process (the controller, under xdist) and renders them.

    It also keeps the ledger of what the run was asked to run (every selected cell, by node id,
    and each matrix file's record), so that a cell with no result at the end (a crashed
    worker, an interrupted or stopped run) is an error in every report, never silently absent.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.by_node: dict[str, CellResult] = {}
        self.orders: dict[str, dict[str, list[str]]] = {}
        self.sources: dict[tuple[str, str], str] = {}  # (target, cell id) -> matrix file, for --ipv6-record
        self.asked: dict[str, Cell] = {}  # node id -> cell, every selected cell
        self.matrices: dict[str, MatrixRecord] = {}  # node id of the file -> its record
        self._loaded: dict[str, Matrix | None] = {}
        self.incomplete: str | None = None
        self.interrupted: str | None = None  # why, when pytest_keyboard_interrupt was called
        # JUnit: properties of crashed cells (by test case name), and selected cells without a result (node ids)
        self.crashed: dict[str, list[tuple[str, str]]] = {}
        self.unreported: list[str] = []

    @property
    def results(self) -> list[CellResult]:
        return with_fidelity_hints(self.by_node.values())

    # ---- the ledger: which matrix files and cells this run was asked for

    def _matrix(self, file_id: str, matrix: Matrix | None = None) -> MatrixRecord | None:
        if file_id not in self.matrices:
            if matrix is None:  # the controller of an xdist run collects nothing: read the file as workers did
                if file_id not in self._loaded:
                    try:
                        self._loaded[file_id] = load_matrix(self.config.rootpath / file_id)
                    except MatrixError:
                        self._loaded[file_id] = None
                matrix = self._loaded[file_id]
            if matrix is None:
                return None
            self.matrices[file_id] = MatrixRecord.of(file_id, matrix)
            target = matrix.target
            self.orders.setdefault(target.name, {
                "variants": list(target.variants), "stacks": list(target.stacks),
                "settings": [s.label for s in target.settings],
            })
            self._loaded[file_id] = matrix
        return self.matrices[file_id]

    def _ask(self, nodeid: str, matrix: Matrix | None = None) -> None:
        file_id, _, name = nodeid.partition("::")
        if not file_id.endswith(".ipv6.toml") or self._matrix(file_id, matrix) is None:
            return
        loaded = self._loaded[file_id]
        assert loaded is not None
        for cell in loaded.cells:
            if f"{cell.target}[{cell.id}]" == name:
                self.asked[nodeid] = cell
                self.matrices[file_id].select(cell.id)
                return

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.passed and report.nodeid.endswith(".ipv6.toml"):
            cells = [x for x in report.result if isinstance(x, CellItem)]
            if cells:
                self._matrix(report.nodeid, cells[0].matrix)
            if _is_worker(self.config):  # the controller learns of files whose every cell was deselected
                out = self.config.workeroutput  # type: ignore[attr-defined]
                out.setdefault(_FILES_KEY, []).append(report.nodeid)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            if isinstance(item, CellItem):
                self._ask(item.nodeid, item.matrix)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        for nodeid in ids:
            self._ask(nodeid)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        for file_id in getattr(node, "workeroutput", {}).get(_FILES_KEY, ()):
            self._matrix(file_id)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """xdist lost the worker running this cell: the cell is an error in every report."""
        cell = self.asked.get(crashitem)
        if cell is None:
            return
        worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", None)
        who = f"worker {worker}" if worker else "worker"
        why = f"{who} crashed while running this cell (killed, or it died); no verdict was reached"
        result = CellResult(cell, "error", None, None, (why,), None)
        source = str(self.config.rootpath / crashitem.partition("::")[0])  # as a worker names it, for --ipv6-record
        setattr(report, _RESULT_ATTR, {"result": result.to_dict(), "order": None, "source": source})
        props = junit_properties(result, crashed=worker or "unknown")
        report.user_properties = [*report.user_properties, *props]
        # junitxml writes properties only from a teardown report, and a crashed cell has none: see complete_junit
        self.crashed[crashitem.partition("::")[2]] = props

    # ---- results

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        kept = getattr(report, _KEPT_ATTR, None)
        if kept is not None:  # a worker's kept run, listed by the controller at the end
            self.config.stash[STATE_KEY].kept[kept[0]] = list(kept[1])
        data = getattr(report, _RESULT_ATTR, None)
        if data is None:
            return
        result = CellResult.from_dict(data["result"])
        if data.get("order"):
            self.orders.setdefault(result.cell.target, data["order"])
        self.sources[(result.cell.target, result.cell.id)] = data.get("source", "")
        self.by_node[report.nodeid] = result

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        if isinstance(excinfo.value, pytest.Session.Interrupted):  # e.g. "1 error during collection"
            self.interrupted = f"the run was stopped: {excinfo.value}"
        else:
            self.interrupted = "the run was interrupted (Ctrl-C or SIGTERM)"

    def account(self, session: pytest.Session) -> None:
        """Every selected cell without a result becomes an error; an interrupted run is incomplete."""
        if self.config.option.collectonly:
            return
        missing = [nodeid for nodeid in self.asked if nodeid not in self.by_node]
        stopped = session.shouldstop or session.shouldfail
        if session.exitstatus == pytest.ExitCode.INTERRUPTED:
            why = self.interrupted or "the run was interrupted"
        elif stopped:
            why = f"the run stopped early ({stopped})"
        else:
            why = "no result reached this process (a worker may have been lost)"
        for nodeid in missing:
            cell = self.asked[nodeid]
            self.by_node[nodeid] = CellResult(cell, "error", None, None, (f"no result: {why}",), None)
            self.unreported.append(nodeid)
        if session.exitstatus == pytest.ExitCode.INTERRUPTED or missing:
            n = len(self.asked)
            self.incomplete = f"{why}; {len(missing)} of {n} selected cell{'s' * (n != 1)} have no result"
        if missing and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def run_record(self) -> RunRecord:
        return RunRecord(self.incomplete is None, self.incomplete, tuple(self.matrices.values()))

    def ordering(self) -> Ordering:
        variants: list[str] = []
        stacks: list[str] = []
        settings: list[str] = []
        for target in sorted(self.orders):
            order = self.orders[target]
            variants += [v for v in order["variants"] if v not in variants]
            stacks += [v for v in order["stacks"] if v not in stacks]
            settings += [v for v in order["settings"] if v not in settings]
        return Ordering(variants=tuple(variants), stacks=tuple(stacks), settings=tuple(settings))

    @pytest.hookimpl(trylast=True)  # after junitxml has written its file
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if not _is_worker(config) and config.option.xmlpath and self.by_node:
            path = Path(config.option.xmlpath)
            prefix = str(getattr(config.option, "junitprefix", None) or "")
            missing = [
                MissingCase(*case_address(nodeid, prefix), self.by_node[nodeid].reasons[0],
                            junit_properties(self.by_node[nodeid]))
                for nodeid in self.unreported
            ]
            complete_junit(path, self.crashed, missing)
            add_fidelity_properties(path, fidelity_flags(self.results))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if _is_worker(self.config):
            return
        tr = terminalreporter
        state = self.config.stash[STATE_KEY]
        flags = fidelity_flags(self.results)
        if flags and state.settings.fidelity == "fail":
            tr.write_line(f"ipv6compat: --ipv6-fidelity=fail: {len(flags)} emulation difference(s) fail the run",
                          red=True)  # fmt: skip
        if self.by_node:
            tr.write_sep("=", "IPv6 compatibility grid")
            width = self.config.get_terminal_writer().fullwidth
            for line in render_terminal(self.results, width=width, order=self.ordering(), incomplete=self.incomplete):
                tr.write_line(line)
            for ran_on, n in distinct(r.ran_on for r in self.results):
                tr.write_line(f"ipv6compat: {n} cell{'s' * (n != 1)} ran on {describe(ran_on)}")
        if state.kept:
            tr.write_sep("-", "kept runs of failed cells (--ipv6-keep-failed)")
            for name, commands in state.kept.items():
                tr.write_line(f"{name}: {'; '.join(commands)}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if _is_worker(self.config):
            return
        self.account(session)
        flags = fidelity_flags(self.results)
        if flags and self.config.stash[STATE_KEY].settings.fidelity == "fail" and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # --ipv6-fidelity=fail: a disagreement fails the run
        try:
            self._write_reports()
        except ReportWriteError as exc:  # checked at start, but the disk may have changed since: say so
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:  # on a line of its own, not after the progress dots
                reporter.write_line(f"ipv6compat: {exc}", red=True)
            else:
                self.config.get_terminal_writer().line(f"ipv6compat: {exc}", red=True)
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write_reports(self) -> None:
        state = self.config.stash[STATE_KEY]
        s = state.settings
        order = self.ordering()
        if s.markdown is not None:
            _write(s.markdown, render_markdown(self.results, order=order, incomplete=self.incomplete),
                   s.source("markdown"))
        if s.json is not None:
            meta: dict[str, Any] = {
                "plugin_version": version("pytest-ipv6compat"),
                "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "base_image": state.base_ref or s.base_image,
                "order": {"variants": list(order.variants), "stacks": list(order.stacks),
                          "settings": list(order.settings)},
                **state.engine_info(),
                "engines": engines_meta(self.results),
            }
            _write(s.json, render_json(self.results, meta=meta, order=order, run=self.run_record()), s.source("json"))


class ReportWriteError(Exception):
    """A report file could not be written; the message names the option, the file and why."""


def _write(path: Path, text: str, source: str) -> None:
    """Write a report file; a failure (a full disk, /dev/full) names the option that asked for it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportWriteError(f"{source}: cannot write {str(path)!r}: {exc.strerror or exc}") from None


def add_fidelity_properties(path: Path, flags: Sequence[FidelityFlag]) -> None:
    """Give both cells of each flag an ``ipv6.fidelity`` property in the JUnit XML file at ``path``.

    A flag is known only once both cells ran (perhaps on two workers), after junitxml wrote
    their test cases; so the file is edited in place, and left alone if it cannot be read.
    """
    if not flags:
        return
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError):
        return
    lines = {}
    for flag in flags:
        for cell_id in (flag.emulated, flag.real):
            lines[f"{flag.target}[{cell_id}]"] = flag.line()
    for case in tree.getroot().iter("testcase"):
        line = lines.get(case.get("name", ""))
        if line is None:
            continue
        props = case.find("properties")
        if props is None:
            props = ET.Element("properties")
            case.insert(0, props)
        ET.SubElement(props, "property", name="ipv6.fidelity", value=line)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def listener_set_diff(op: str, left: object, right: object) -> list[str] | None:
    """Explain ``set_of_listeners == set_of_listeners`` as missing and extra listeners."""
    from .listeners import diff_listeners, format_listeners
    from .model import Listener

    if op != "==" or not isinstance(left, (set, frozenset)) or not isinstance(right, (set, frozenset)):
        return None
    if not all(isinstance(x, Listener) for x in (*left, *right)):
        return None
    seen, expected = frozenset(left), frozenset(right)
    missing, extra = diff_listeners(expected, seen)
    return [
        "listener sets differ",
        f"seen:     {format_listeners(seen)}",
        f"expected: {format_listeners(expected)}",
        f"missing:  {format_listeners(missing)}",
        f"extra:    {format_listeners(extra)}",
    ]
