"""pytest's side of --ipv6-inflight: which matrix items run next here, and their cells started ahead.

Registered by the plugin when ``--ipv6-inflight`` is more than 1. Before each item runs, the cells of
that item and of the next items this process will run (at most ``inflight`` in all) are started by
the :class:`~pytest_ipv6compat.inflight.Scheduler`; each :class:`~pytest_ipv6compat.items.CellItem`
takes its own in its setup. Started cells that no item takes are cancelled (their containers
removed) when it is known they will not run here, and when the run loop ends however it ends.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Sequence
from typing import Any

import pytest

from .inflight import Scheduler, default_starts, upcoming
from .items import CellItem, Observed
from .keys import SCHEDULER_KEY


def install(config: pytest.Config, inflight: int) -> None:
    """Start cells ahead when ``inflight`` > 1 (a plain run or an xdist worker; the controller runs no cell)."""
    if inflight < 2:
        return
    workerinput = getattr(config, "workerinput", None)
    # xdist registers its controller after this runs (trylast): its --dist, not the plugin, says it will
    if workerinput is None and config.getoption("dist", "no") != "no" and not config.getoption("collectonly"):
        # the xdist controller: its workers run the cells; each needs enough queued to start ahead
        config.pluginmanager.register(Deeper(inflight), "ipv6compat-xdist-queue")
        return
    workers = int(workerinput.get("workercount", 1)) if workerinput is not None else 1
    scheduler: Scheduler[Observed] = Scheduler(inflight, default_starts(workers))
    config.stash[SCHEDULER_KEY] = scheduler
    config.pluginmanager.register(Prefetch(scheduler), "ipv6compat-prefetch")


class Deeper:
    """The xdist controller's side: ``--dist load`` as xdist does it, but keeping at least ``inflight`` + 1
    items queued on each worker while any are left (xdist's own scheduling lets a worker whose tests take
    0.1 s or more run down to 2, its current item and the next, which would leave no cell to start ahead)."""

    def __init__(self, inflight: int) -> None:
        self.inflight = inflight

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "load":
            return None  # another distribution: xdist's own
        from xdist.scheduler import LoadScheduling  # type: ignore[import-untyped]

        depth = self.inflight + 1
        scheduling = LoadScheduling(config, log)
        plain_check, plain_schedule = scheduling.check_schedule, scheduling.schedule

        def top_up(node: Any) -> None:
            try:
                queued = scheduling.node2pending[node]
                if not node.shutting_down and scheduling.pending and len(queued) < depth:
                    scheduling._send_tests(node, depth - len(queued))
            except (AttributeError, KeyError, TypeError):  # an xdist that keeps them otherwise: its own way
                pass

        def check_schedule(node: Any, duration: float = 0) -> None:
            top_up(node)
            plain_check(node, duration)

        def schedule() -> None:
            plain_schedule()  # its first distribution gives each worker a quarter of its share, at least 2
            for node in list(getattr(scheduling, "nodes", ())):
                top_up(node)

        scheduling.check_schedule, scheduling.schedule = check_schedule, schedule  # its own calls find them too
        return scheduling


def _release(observed: Observed) -> None:
    observed.stack.close()


def _worker_queue(config: pytest.Config) -> tuple[list[int], int] | None:
    """An xdist worker's pending indices and the index it runs next; None when this is no worker or its
    queue cannot be read (another xdist): then only pytest's ``nextitem`` is known."""
    if not hasattr(config, "workerinput"):
        return None
    for plugin in config.pluginmanager.get_plugins():
        torun, next_index = getattr(plugin, "torun", None), getattr(plugin, "nextitem_index", None)
        if torun is None or not isinstance(next_index, int):
            continue
        try:
            with torun.lock() as queue:
                return [i for i in queue], next_index
        except (AttributeError, TypeError):
            return None
    return None


class Prefetch:
    def __init__(self, scheduler: Scheduler[Observed]) -> None:
        self.scheduler = scheduler

    def due(self, item: pytest.Item, nextitem: pytest.Item | None) -> tuple[list[CellItem], list[pytest.Item], bool]:
        """The cell items to have started now (this one and the next, ``inflight`` places in all), every item
        known to run here after this one, and whether that list is whole."""
        queue = _worker_queue(item.config)
        items: Sequence[pytest.Item] = item.session.items
        order, whole = upcoming(items, item, nextitem, queue[0] if queue else None, queue[1] if queue else None)
        window = [item, *order][: self.scheduler.inflight]
        return [i for i in window if isinstance(i, CellItem)], order, whole

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
        due, order, whole = self.due(item, nextitem)
        keep: set[Hashable] = {item, *order}
        self.scheduler.plan([(cell, cell.observe, _release) for cell in due],
                            keep=(lambda key: key in keep) if whole else None)
        try:
            return (yield)
        finally:
            self.scheduler.forget(item)  # started, but its setup never took it (skipped before it)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, Any, Any]:
        try:
            return (yield)
        finally:  # -x, --maxfail, Ctrl-C, SIGTERM, the end: started cells no item took are removed
            self.scheduler.cancel_all()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        timing = item.timing if isinstance(item, CellItem) else None
        if call.when == "setup" and timing is not None and timing.stop:
            # The cell's own time, from its start to its verdict, not the wait for it (it overlapped others).
            report.duration, report.start, report.stop = timing.duration, timing.start, timing.stop
        return report
