"""Run-level glue behind plugin.py's hooks: selection, header, results, reports."""

from __future__ import annotations

import datetime as dt
import signal
import threading
from importlib.metadata import version
from typing import Any

import pytest

from . import images
from .backends import EngineError
from .items import CellItem
from .keys import RESULT_KEY, STATE_KEY
from .report import Ordering, junit_properties, render_json, render_markdown, render_terminal
from .results import CellResult
from .stacks import STACKS
from .state import Unavailable

_RESULT_ATTR = "ipv6compat"  # a plain-dict attribute on TestReport; xdist carries it to the controller


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
    names = marker.args or tuple(STACKS)
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
        lines.append(f"ipv6compat: {exc}; cells will be {'errors' if s.require_docker else 'skipped'}")
        return lines
    lines.append(
        f"ipv6compat: {info['engine']} {info['version']} (API {info['api']}) at {info['address']}, "
        f"runtime {info['runtime']}, seccomp {info['seccomp']}, {info['files']}; every cell is attested"
    )
    try:
        lines.append(f"ipv6compat: ipv6-boot-disabled boots {state.uml().kernel} (User-mode Linux) with ipv6.disable=1")
    except Unavailable as exc:
        outcome = "errors" if s.require_docker else "skipped"
        lines.append(f"ipv6compat: {exc}; ipv6-boot-disabled cells will be {outcome}")
    if state.swept:
        lines.append(f"ipv6compat: removed {len(state.swept)} container(s) left by dead sessions")
    return lines


def attach_result(item: CellItem, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    result: CellResult | None = None
    if report.when == "setup" and (report.failed or report.skipped):
        message = report.longreprtext
        if call.excinfo is not None:
            message = str(getattr(call.excinfo.value, "msg", None) or call.excinfo.value)
        status = "error" if report.failed else "skipped"
        result = CellResult(item.cell, status, None, item.attestation, (message.strip(),), None)
    elif report.when == "call":
        result = item.stash.get(RESULT_KEY, None)
        if result is None and report.failed:
            message = call.excinfo.exconly() if call.excinfo is not None else "unknown error"
            result = CellResult(item.cell, "error", item.verdict, item.attestation, (message,), None)
    if result is not None:
        target = item.matrix.target
        order = {
            "variants": list(target.variants),
            "stacks": list(target.stacks),
            "settings": [s.label for s in target.settings],
        }
        setattr(report, _RESULT_ATTR, {"result": result.to_dict(), "order": order, "source": str(item.path)})
        # junitxml reads properties from the teardown report, which copies the item's.
        item.user_properties.extend(junit_properties(result))


class Results:
    """Collects every cell's result on this process (the controller, under xdist) and renders them."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: list[CellResult] = []
        self.orders: dict[str, dict[str, list[str]]] = {}
        self.sources: dict[tuple[str, str], str] = {}  # (target, cell id) -> matrix file, for --ipv6-record

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, _RESULT_ATTR, None)
        if data is None:
            return
        result = CellResult.from_dict(data["result"])
        self.orders.setdefault(result.cell.target, data["order"])
        self.sources[(result.cell.target, result.cell.id)] = data.get("source", "")
        self.results.append(result)

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

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if _is_worker(self.config):
            return
        tr = terminalreporter
        state = self.config.stash[STATE_KEY]
        if self.results:
            tr.write_sep("=", "IPv6 compatibility grid")
            width = self.config.get_terminal_writer().fullwidth
            for line in render_terminal(self.results, width=width, order=self.ordering()):
                tr.write_line(line)
        if state.kept:
            tr.write_sep("-", "kept runs of failed cells (--ipv6-keep-failed)")
            for name, commands in state.kept.items():
                tr.write_line(f"{name}: {'; '.join(commands)}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if _is_worker(self.config):
            return
        try:
            self._write_reports()
        except OSError as exc:  # checked at start, but the disk may have changed since: say so, keep the grid
            where = exc.filename or "a report file"
            self.config.get_terminal_writer().line(f"ipv6compat: cannot write {where}: {exc.strerror}", red=True)
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write_reports(self) -> None:
        state = self.config.stash[STATE_KEY]
        s = state.settings
        order = self.ordering()
        for path in (s.markdown, s.json):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        if s.markdown is not None:
            s.markdown.write_text(render_markdown(self.results, order=order), encoding="utf-8")
        if s.json is not None:
            meta: dict[str, Any] = {
                "plugin_version": version("pytest-ipv6compat"),
                "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "base_image": state.base_ref or s.base_image,
                "order": {"variants": list(order.variants), "stacks": list(order.stacks),
                          "settings": list(order.settings)},
                **state.engine_info(),
            }
            s.json.write_text(render_json(self.results, meta=meta, order=order), encoding="utf-8")


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
