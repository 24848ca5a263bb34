"""Shared fixtures for the plugin's own tests.

Tests marked ``docker`` need a real engine. Outside CI they are skipped with a
reason when none answers; under CI (``CI`` set) an unreachable engine fails
them, so a missing engine can never look like a green run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from pytest_ipv6compat import images
from pytest_ipv6compat.backends import EngineError
from pytest_ipv6compat.backends.docker_api import DockerBackend as Engine
from pytest_ipv6compat.backends.uml import UmlBackend, find_kernel
from pytest_ipv6compat.keys import STATE_KEY
from pytest_ipv6compat.matrix import load_matrix

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "matrix" / "cloud-proxy.ipv6.toml"
IF_INET6 = ROOT / "tests" / "data" / "if-inet6-nginx"


def _engine_or_skip() -> Engine:
    try:
        return Engine.connect(images.ensure_probe(images.default_cache_dir()))
    except (EngineError, images.ImageError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a Docker engine: {exc}", pytrace=False)
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture(scope="session")
def real_cache_dir() -> Path:
    """The user's cache, resolved before pytester moves HOME."""
    return images.default_cache_dir()


@pytest.fixture(autouse=True)
def _share_the_cache(real_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Inner pytester runs get a fresh HOME; point them at the real cache so they
    # reuse the probe instead of downloading busybox-static again.
    if real_cache_dir.name == "pytest-ipv6compat":
        monkeypatch.setenv("XDG_CACHE_HOME", str(real_cache_dir.parent))
    # Inner runs would append their grids to this job's own GitHub summary.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    eng = _engine_or_skip()
    yield eng
    eng.remove_session()


@pytest.fixture(scope="session")
def client(engine: Engine) -> docker.DockerClient:
    return engine.client


@pytest.fixture(scope="session")
def base_image(client: docker.DockerClient) -> str:
    return images.ensure_base_image(client, images.default_cache_dir())


@pytest.fixture(scope="session")
def proxy_image(client: docker.DockerClient, base_image: str) -> dict[str, str]:
    """The cloud-proxy variants, built (or found) by content, named as the plugin names a matrix's builds."""
    target = load_matrix(MATRIX).target
    assert target.build is not None
    return {
        v: images.ensure_target_image(
            client,
            target.build,
            base=base_image,
            name=f"{target.name}-{v}",
            build_args={target.variant_arg: v},
        )
        for v in target.variants
    }


@pytest.fixture(scope="session")
def if_inet6_image(client: docker.DockerClient, base_image: str) -> str:
    """tests/data/if-inet6-nginx: listens on [::]:80 too only where /proc/net/if_inet6 exists."""
    return images.ensure_target_image(client, IF_INET6, base=base_image, name="if-inet6-nginx", build_args={},
                                      cache_dir=images.default_cache_dir())


@pytest.fixture(scope="session")
def uml(engine: Engine) -> UmlBackend:
    """The User-mode Linux backend; skipped with the install line when the kernel is missing."""
    try:
        kernel = find_kernel(None)
    except EngineError as exc:
        pytest.skip(str(exc))
    return UmlBackend(engine, kernel, images.default_cache_dir(), engine.probe_dir)


@pytest.fixture(scope="session")
def uml_tables(uml: UmlBackend) -> UmlBackend:
    """The same backend, whose init also sends the kernel's /proc/net tables (``UmlRun.tables``): ground truth."""
    return UmlBackend(uml.docker, uml.kernel, uml.cache_dir, uml.probe_dir, tables=True)


@pytest.fixture(scope="session")
def ground_truth_tools() -> None:
    """Ground truth enters the container's namespace: root, nsenter and ss (iproute2) on the host."""
    missing = [tool for tool in ("nsenter", "ss") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"ground truth needs {' and '.join(missing)} on the host (util-linux, iproute2)")
    if os.geteuid() != 0:
        pytest.skip("ground truth needs root: nsenter -t PID -n enters another process's network namespace")


def ipv6compat_containers(client: docker.DockerClient) -> list[str]:
    return [c.name for c in client.containers.list(all=True, filters={"label": "ipv6compat.session"},
                                                        ignore_removed=True)]


def _left_by(pid: int, config: pytest.Config) -> list[str]:
    """Containers and volumes still on the engine that a session of process ``pid`` made.

    The plugin's own session in this process (the fixtures' and markers' cells) is left out: it ends at
    ``pytest_unconfigure``, after this check; tests that run pytest in a process of its own check that.
    """
    state = config.stash.get(STATE_KEY, None)
    engine = getattr(state, "_engine", None)
    live = getattr(engine, "session", None)
    try:
        client = docker.from_env(timeout=30)
        label = {"label": f"ipv6compat.pid={pid}"}
        found = [(f"container {c.name}", c.labels) for c in client.containers.list(all=True, filters=label,
                                                                                   ignore_removed=True)]
        found += [(f"volume {v['Name']}", v.get("Labels") or {}) for v in client.api.volumes(filters=label)
                  .get("Volumes") or []]
        client.close()
    except docker.errors.DockerException:
        return []  # no engine: no docker test ran here
    return [what for what, labels in found if labels.get("ipv6compat.session") != live]



_LEAKS: list[str] = []  # what each process (the controller, or an xdist worker) left on the engine
_FIRST_SEEN: dict[str, str] = {}  # a container or volume of this process -> the test after which it was first seen


@pytest.hookimpl(trylast=True)
def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    """After each test, note what of this process's is on the engine, to name the test that left a leak."""
    if _DOCKER_TESTS.get(nodeid):
        for what in _left_by(os.getpid(), _CONFIG[0]):
            _FIRST_SEEN.setdefault(what, nodeid)


_DOCKER_TESTS: dict[str, bool] = {}


_CONFIG: list[pytest.Config] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    _CONFIG[:] = [session.config]
    _DOCKER_TESTS.update({item.nodeid: item.get_closest_marker("docker") is not None for item in session.items})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Nothing a test of this process started is left on the engine: every test cleans up after itself,
    so that a leak in the plugin's clean-up cannot hide behind the next session's sweep. An xdist worker
    hands what it found to the controller (``pytest_testnodedown``), which fails the run."""
    ran = any(item.get_closest_marker("docker") for item in session.items)
    if ran and not session.shouldstop and not session.shouldfail:
        _LEAKS.extend(f"{what} (first seen after {_FIRST_SEEN.get(what, 'the last test')})"
                      for what in _left_by(os.getpid(), session.config))
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["ipv6compat_leaks"] = list(_LEAKS)
        return
    if _LEAKS:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("!", "tests left these on the engine (a leak)", red=True)
            for what in _LEAKS:
                reporter.write_line(f"LEAK: {what}", red=True)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    _LEAKS.extend(getattr(node, "workeroutput", {}).get("ipv6compat_leaks", []))
