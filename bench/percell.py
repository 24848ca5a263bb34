"""The plugin's cost per cell, measured the way ``items.py`` drives it, plus an optional profile.

A cell is ``Engine.run(...)`` entered, ``attestation()``, ``verdict()``, then the context
exited (the container removed). The clock runs from before ``run`` to after the exit.

:class:`Profiler` is a monkeypatch of this process only: it times every Docker API
request, the per-container client the testcontainers wrapper builds, the shim's
markers as they arrive, and (from the host) when the target first listens. It adds
a little work of its own, so profiled runs are reported apart from the timed ones.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.api.client
import requests
import testcontainers.core.container as tc_container
from common import BENCH_LABEL, DOMAIN, BenchError, container_cpu, parse_docker_time
from floor import listening
from pytest_ipv6compat.runtime import Engine, Launch

from pytest_ipv6compat import runtime
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.stacks import get_stack

UP_STACK = "dual-stack"
EXIT_STACK = "ipv6-kernel-off"


@dataclass
class BenchEngine(Engine):
    """The plugin's Engine, its containers also labelled ``ipv6compat.bench=<run>`` for cleanup."""

    bench_run: str = ""

    @property
    def labels(self) -> dict[str, str]:
        return {**super().labels, BENCH_LABEL: self.bench_run}


def launch_for(image: str, stack: str) -> Launch:
    """The reference cell: the target's env, ``PL_IPV6_DISABLE`` unset, ``/healthz`` probed."""
    return Launch(image, get_stack(stack), env={"PL_DOMAIN_NAME": DOMAIN}, http_path="/healthz")


@dataclass
class CellRun:
    total: float  # from before run() to after the context exited, minus the bench's own calls
    outcome: str
    latency: float | None = None  # wall clock at verdict() return - State.FinishedAt
    latency_log: float | None = None  # wall clock at verdict() return - timestamp of the last log line
    events: list[tuple[str, float, float]] = field(default_factory=list)  # (what, start, end), s from t0
    evidence: str = ""  # listeners and which answered: variants of the plugin must agree on it
    container_cpu: float | None = None  # CPU seconds of the container's own processes (up cells: shim + target)


def plugin_cell(engine: Engine, launch: Launch, *, settle: float, timeout: float, expect: Outcome,
                latency: bool = False, profiler: Profiler | None = None) -> CellRun:
    """One cell, as items.py runs it. With ``latency``, also how long after the exit the verdict was known."""
    extra = 0.0
    found: dict[str, float] = {}
    if profiler is not None:
        profiler.begin()
    t0 = time.monotonic()
    with engine.run(launch, timeout=timeout, settle=settle) as running:
        attestation = running.attestation()
        verdict = running.verdict()
        wall_verdict, t_verdict = time.time(), time.monotonic()
        if latency and verdict.outcome is Outcome.EXITED:
            found = _exit_times(engine.client, running.observation.container_id)
        cpu = container_cpu(running.observation.container_id) if verdict.outcome is Outcome.UP else None
        extra = time.monotonic() - t_verdict
    t1 = time.monotonic()
    if not attestation.ok:
        raise BenchError(f"stack {launch.stack.name} was not attested:\n{attestation.describe()}")
    if verdict.outcome is not expect:
        raise BenchError(f"{launch.image} on {launch.stack.name}: verdict {verdict.outcome}, expected {expect}"
                         f"\n{verdict.logs[-800:]}")
    run = CellRun(t1 - t0 - extra, str(verdict.outcome), container_cpu=cpu)
    error = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", verdict.error_line or "")  # nginx's timestamp
    run.evidence = " ".join(sorted(f"{r.listener}={'answered' if r.answered else 'silent'}" for r in verdict.reach)
                            ) or f"{verdict.outcome} {verdict.exit_code} {error}"
    if "finished" in found:
        run.latency = wall_verdict - found["finished"]
    if "last_line" in found:
        run.latency_log = wall_verdict - found["last_line"]
    if profiler is not None:
        run.events = profiler.end(t0, t_verdict, extra, found)
    return run


def _exit_times(client: docker.DockerClient, cid: str) -> dict[str, float]:
    """After the fact: dockerd's State.FinishedAt, and the timestamp of the last line the target wrote."""
    out: dict[str, float] = {}
    state = client.api.inspect_container(cid)["State"]
    out["finished"] = parse_docker_time(state["FinishedAt"])
    raw = client.api.logs(cid, stdout=True, stderr=True, timestamps=True)
    lines = [ln for ln in raw.decode("utf-8", "replace").splitlines() if ln.strip()]
    if lines:
        out["last_line"] = parse_docker_time(lines[-1].split(" ", 1)[0])
    return out


# --- the profiler -------------------------------------------------------------------------------

_ID = re.compile(r"/containers/[^/?]+")
_IMAGE = re.compile(r"/images/.+/json")


def _api_label(method: str, url: str) -> str:
    path = re.sub(r"^/v\d+\.\d+", "", urlsplit(url).path)
    if not path.startswith("/containers/create"):
        path = _ID.sub("/containers/{id}", path)
    return f"API {method} {_IMAGE.sub('/images/{ref}/json', path)}"


class Profiler:
    """Times one cell's steps by patching docker-py, testcontainers and ``runtime.Running`` in this process."""

    def __init__(self, host_client: docker.DockerClient) -> None:
        self._host = host_client  # the bench's own client, for the host-side LISTEN poller
        self._lock = threading.Lock()
        self._events: list[tuple[str, float, float]] = []
        self._seen: set[str] = set()
        self._main = threading.get_ident()
        self._poller: threading.Thread | None = None
        self._current: Any = None  # the Running of the cell being profiled
        self._undo: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._t0_wall = 0.0
        self._t0 = 0.0

    def _add(self, what: str, start: float, end: float) -> None:
        with self._lock:
            self._events.append((what, start, end))

    def _once(self, what: str) -> None:
        now = time.monotonic()
        with self._lock:
            if what in self._seen:
                return
            self._seen.add(what)
            self._events.append((what, now, now))

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = owner.__dict__[name]
        setattr(owner, name, make(original))
        self._undo.append(lambda: setattr(owner, name, original))

    @contextlib.contextmanager
    def installed(self) -> Iterator[Profiler]:
        prof = self

        def send(original: Any) -> Any:
            def wrapper(self: Any, request: Any, **kw: Any) -> Any:
                start = time.monotonic()
                try:
                    return original(self, request, **kw)
                finally:
                    if threading.get_ident() == prof._main:
                        prof._add(_api_label(request.method, request.url), start, time.monotonic())
            return wrapper

        def tc_client_init(original: Any) -> Any:
            def wrapper(self: Any, *a: Any, **kw: Any) -> None:
                start = time.monotonic()
                original(self, *a, **kw)
                prof._add("py: testcontainers DockerClient() (docker.from_env)", start, time.monotonic())
            return wrapper

        def running_init(original: Any) -> Any:
            def wrapper(self: Any, *a: Any, **kw: Any) -> None:
                start = time.monotonic()
                original(self, *a, **kw)
                prof._add("py: Running() (logs attach + pump thread)", start, time.monotonic())
                prof._current = self
                prof._watch(self.observation.container_id)
            return wrapper

        def take(original: Any) -> Any:
            def wrapper(self: Any, line: str) -> None:
                if line.startswith(runtime.MARK):
                    prof._once("shim: '" + line[len(runtime.MARK):].split(" ", 1)[0] + "' line received")
                else:
                    prof._once("target: first log line received")
                original(self, line)
            return wrapper

        def pump(original: Any) -> Any:
            def wrapper(self: Any) -> None:
                original(self)
                if self is prof._current:  # not a previous cell's stream, closed late
                    prof._once("log stream ended")
            return wrapper

        api = docker.api.client.APIClient
        own_send = api.__dict__.get("send")
        api.send = send(own_send or requests.Session.send)  # type: ignore[method-assign]
        self._undo.append(lambda: setattr(api, "send", own_send) if own_send else delattr(api, "send"))
        self._patch(tc_container.DockerClient, "__init__", tc_client_init)
        self._patch(runtime.Running, "__init__", running_init)
        self._patch(runtime.Running, "_take", take)
        self._patch(runtime.Running, "_pump", pump)
        try:
            yield self
        finally:
            for undo in reversed(self._undo):
                undo()
            self._undo.clear()

    def _watch(self, cid: str) -> None:
        """From the host: when does the target first listen? (Its own thread and client.)"""
        def poll() -> None:
            try:
                pid = int(self._host.api.inspect_container(cid)["State"]["Pid"] or 0)
            except docker.errors.DockerException:
                return
            while pid > 0 and not self._stop.is_set():
                if listening(pid):
                    self._once("host: target first LISTEN")
                    return
                time.sleep(0.005)
        self._poller = threading.Thread(target=poll, daemon=True)
        self._poller.start()

    def begin(self) -> None:
        self._events = []
        self._seen = set()
        self._current = None
        self._stop.clear()
        self._main = threading.get_ident()
        self._t0_wall, self._t0 = time.time(), time.monotonic()

    def end(self, t0: float, t_verdict: float, extra: float, found: dict[str, float]) -> list[tuple[str, float, float]]:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=2)
        events = list(self._events)
        events.append(("verdict() returned", t_verdict, t_verdict))
        if "finished" in found:  # wall clock -> this process's monotonic clock
            finished = found["finished"] - self._t0_wall + self._t0
            events.append(("dockerd: State.FinishedAt", finished, finished))
        # The bench's own after-the-fact calls (inspect, logs) ran right after the verdict:
        # drop them, and shift what followed (the removal) back by their duration.
        out = []
        for what, start, end in events:
            if extra and start > t_verdict:
                if start < t_verdict + extra:
                    continue
                start, end = start - extra, end - extra
            out.append((what, start - t0, end - t0))
        return sorted(out, key=lambda e: e[1])
