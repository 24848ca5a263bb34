"""pytest-ipv6compat's pytest entry point: registers options, markers, hooks and fixtures.

The work is done elsewhere: options.py (settings), items.py (matrix files to
items), fixtures.py (hand-written tests), summary.py (grid and report files).
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from . import htmlgrid, options, prefetch, record, summary
from .fixtures import (  # noqa: F401 - fixtures are registered by being in this module
    ipv6_env,
    ipv6_stack,
    ipv6_target,
    ipv6_target_factory,
    ipv6_target_image,
)
from .items import CellItem, MatrixFile
from .keys import SCHEDULER_KEY, STATE_KEY
from .state import SessionState

MARKERS = (
    "ipv6_stack(*names): run this test once per named stack "
    "(dual-stack, ipv6-sysctl-off, ipv6-kernel-off); the ipv6_target fixture starts on it",
    "ipv6_env(**env): environment variables for the ipv6_target fixture; a value of None leaves the name unset",
    "ipv6_target(image=None, build=None, command=None, probe=None, http_path=None, http_status=None, "
    "settle=None, hold=None, timeout=None, read_only=False, tmpfs=None, extra_hosts=None, mounts=None, user=None): "
    "what the ipv6_target fixture starts and how it is probed, overriding --ipv6-image/--ipv6-build; "
    "an unknown argument is an error",
    "docker: the test needs a reachable Docker engine",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    worker = getattr(config, "workerinput", {}).get("workerid")
    state = config.stash[STATE_KEY] = SessionState(options.load(config), worker=worker)
    results = summary.Results(config)
    config.pluginmanager.register(results, "ipv6compat-results")
    config.pluginmanager.register(htmlgrid.GridPublisher(config, results), "ipv6compat-grid-publisher")
    if state.settings.record:
        config.pluginmanager.register(record.Recorder(config, results), "ipv6compat-record")
    prefetch.install(config, state.settings.inflight)
    summary.interrupt_on_sigterm(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    scheduler = config.stash.get(SCHEDULER_KEY, None)
    if scheduler is not None:
        scheduler.cancel_all()  # before the session's containers are removed: no start may follow
    state = config.stash.get(STATE_KEY, None)
    if state is not None:
        state.close()
    summary.restore_sigterm(config)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> MatrixFile | None:
    if file_path.name.endswith(".ipv6.toml"):
        return MatrixFile.from_parent(parent, path=file_path)
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    summary.parametrize_stacks(metafunc)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    summary.deselect(config, items)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return summary.header(config)


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> str | None:
    cells = sum(isinstance(item, CellItem) for item in items)
    return f"ipv6compat: {cells} matrix cell{'' if cells == 1 else 's'} selected" if cells else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if isinstance(item, CellItem):
        summary.attach_result(item, call, report)
    return report


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    return summary.listener_set_diff(op, left, right)
