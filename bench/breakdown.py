"""Where a cell's time goes: every Docker API call the plugin makes, timed, and what its streams carried when.

:class:`ApiTrace` wraps a handful of docker-py ``APIClient`` methods in this process only
(create_container, start, logs, exec_create, exec_start, wait, inspect_container,
remove_container, ping). For the two streams the core follows (the container's output,
which carries the shim's attestation, and the watcher's exec session) it stamps when each
record arrives. A thread of its own polls ``/proc/<pid>/net/tcp{,6}`` from the host to see
when the target first listens, independently of the plugin. Nothing of the plugin's own
code is patched, so this keeps working as long as the core talks to the engine through
docker-py. Traced runs do a little extra work and are reported apart from the timed ones.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import docker.api.client
import docker.errors
from common import Summary
from floor import listening
from percell import CellRun

from pytest_ipv6compat.backends import Launch
from pytest_ipv6compat.backends.docker_api import PROBE_MOUNT, DockerBackend

TRACED = ("create_container", "start", "logs", "exec_create", "exec_start", "wait", "inspect_container",
          "remove_container", "ping")
WATCH_RECORDS = ("listener", "settled", "reach", "ready", "error")


class _Stamped:
    """A docker-py stream that reports each line's arrival; iteration and close() pass through."""

    def __init__(self, stream: Any, on_line: Callable[[bytes], None]) -> None:
        self._stream = stream
        self._on_line = on_line

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            for line in bytes(chunk).splitlines():
                self._on_line(line)
            yield chunk

    def close(self) -> None:
        self._stream.close()


class ApiTrace:
    """Times one cell's Docker API calls and stream records; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._ours: set[str] = set()  # the cell's container id and its exec ids
        self._events: list[tuple[str, float]] = []
        self._calls: list[tuple[str, float, float]] = []
        self._poller: threading.Thread | None = None
        self._host_api: Any = None
        self._stop = threading.Event()
        self._t0_wall = self._t0_mono = 0.0
        self._settled_s: float | None = None  # the watcher's own "settled SECONDS" (since it started)

    # --- recording ---

    def _event(self, what: str, when: float | None = None) -> None:
        with self._lock:
            self._events.append((what, time.monotonic() if when is None else when))

    def _is_ours(self, name: str, args: tuple[Any, ...], kw: dict[str, Any]) -> bool:
        if name in ("create_container", "ping"):
            return True
        target = args[0] if args else kw.get("container", kw.get("exec_id"))
        if isinstance(target, dict):
            target = target.get("Id")
        return str(target) in self._ours

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        trace = self

        def wrapper(api: Any, *args: Any, **kw: Any) -> Any:
            local = trace._local
            if getattr(local, "ignore", False):
                return original(api, *args, **kw)
            outer = getattr(local, "outer", None)
            label = f"{outer} > {name}" if outer else name
            local.outer = label
            start = time.monotonic()
            try:
                result = original(api, *args, **kw)
            finally:
                end = time.monotonic()
                local.outer = outer
            if name == "create_container":
                trace._ours = {str(result["Id"])}
            elif name == "exec_create" and trace._is_ours(name, args, kw):
                trace._ours.add(str(result["Id"]))
            if trace._is_ours(name, args, kw):
                with trace._lock:
                    trace._calls.append((label, start, end))
                if not outer:
                    call = f"{name}({'stream' if kw.get('stream') else 'tail'})" if name == "logs" else name
                    if name != "wait":  # called in a thread at once; it returns when the container exits
                        trace._first(f"{call} called", start)
                    trace._first(f"{call} returned", end)
                if name == "start":
                    trace._watch_listen(str(args[0] if args else kw["container"]))
                if kw.get("stream") and name == "logs":
                    return _Stamped(result, trace._shim_line)
                if kw.get("stream") and name == "exec_start":
                    return _Stamped(result, trace._watch_line)
            return result
        return wrapper

    def _shim_line(self, line: bytes) -> None:
        self._first("shim: first line on the output stream")
        if line.rstrip().endswith(b" attested"):
            self._first("shim: 'attested' received")

    def _watch_line(self, line: bytes) -> None:
        word = line.split(b" ", 1)[0].decode("ascii", "replace")
        if word in WATCH_RECORDS:
            self._first(f"watcher: first '{word}' received")
            if word == "settled":
                with contextlib.suppress(ValueError, IndexError):
                    self._settled_s = float(line.split()[1])
            if word == "reach":
                self._event("watcher: 'reach' received (last)")

    def _first(self, what: str, when: float | None = None) -> None:
        with self._lock:
            if any(w == what for w, _ in self._events):
                return
        self._event(what, when)

    def _watch_listen(self, cid: str) -> None:
        """From the host, independently of the plugin: when does the target first listen?"""
        def poll() -> None:
            self._local.ignore = True
            try:
                pid = int(self._host_api.inspect_container(cid)["State"]["Pid"] or 0)
            except docker.errors.DockerException:
                return
            while pid > 0 and not self._stop.is_set():
                if listening(pid):
                    self._first("host: target first LISTEN")
                    return
                time.sleep(0.005)
        self._poller = threading.Thread(target=poll, daemon=True)
        self._poller.start()

    # --- life cycle ---

    @contextlib.contextmanager
    def installed(self, host_api: Any) -> Iterator[ApiTrace]:
        api = docker.api.client.APIClient
        self._host_api = host_api
        own = {name: api.__dict__.get(name) for name in TRACED}  # None: inherited from a mixin
        for name in TRACED:
            setattr(api, name, self._wrap(name, getattr(api, name)))
        try:
            yield self
        finally:
            for name, method in own.items():
                if method is None:
                    delattr(api, name)
                else:
                    setattr(api, name, method)

    def begin(self) -> None:
        self._stop.clear()
        with self._lock:
            self._events, self._calls, self._ours = [], [], set()
            self._settled_s = None
        self._t0_wall, self._t0_mono = time.time(), time.monotonic()

    def end(self, t0: float, *, extra_after: tuple[float, float], finished: float | None
            ) -> tuple[dict[str, float], list[tuple[str, float]]]:
        """Milestones (offset from ``t0``) and calls (label, duration), without the bench's own calls.

        ``extra_after`` = (when, how long): the bench's after-the-fact calls ran then; they are
        dropped, and whatever followed is shifted back by their duration.
        """
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=2)
        when, extra = extra_after

        def shifted(t: float) -> float | None:
            if extra and t > when:
                if t < when + extra:
                    return None
                t -= extra
            return t - t0

        events: dict[str, float] = {}
        with self._lock:
            for what, t in self._events:
                off = shifted(t)
                if off is not None and (what not in events or what.endswith("(last)")):
                    events[what] = off
            calls = [(label, end - start) for label, start, end in self._calls if shifted(start) is not None]
        if self._settled_s is not None and "exec_start returned" in events:
            # The watcher's own "settled SECONDS" counted from exec_start's return. The watcher
            # starts only after that (the engine runs the exec process once the stream is
            # attached), so the gap from here to the 'settled' arrival is the exec process's
            # start-up plus the stream's delivery: what the exec session costs.
            events["exec_start returned + the watcher's own 'settled' seconds"] = (
                events["exec_start returned"] + self._settled_s)
        if finished is not None:  # wall clock -> this process's monotonic clock
            events["dockerd: State.FinishedAt"] = finished - self._t0_wall + self._t0_mono - t0
        return events, calls


def render(runs: Sequence[CellRun], kind: str) -> str:
    """The milestones in median order, with the median gap from the previous one, then the API calls."""
    per: dict[str, list[float]] = {}
    for run in runs:
        for what, off in run.events.items():
            per.setdefault(what, []).append(off)
    rows = sorted(((Summary.of(v).median, what, len(v)) for what, v in per.items()), key=lambda r: r[0])
    total = Summary.of([r.total for r in runs])
    lines = [f"  {kind} cell, milestones (median offset from before run(), median over {len(runs)} runs; "
             "gap = from the previous row seen in every run):"]
    prev = 0.0
    for off, what, n in rows:
        if n == len(runs):
            lines.append(f"    @{off * 1000:7.1f} ms  +{(off - prev) * 1000:6.1f}  {what}")
            prev = off
        else:  # a step only some runs took: its median is over those runs, so it gets no gap
            lines.append(f"    @{off * 1000:7.1f} ms  {'':7}  {what}  [{n}/{len(runs)} runs]")
    lines.append(f"    cell total: median {total.median * 1000:.1f} ms, p90 {total.p90 * 1000:.1f} ms")
    calls: dict[str, list[float]] = {}
    for run in runs:
        for label, dur in run.calls:
            calls.setdefault(label, []).append(dur)
    lines.append("  Docker API calls (per cell: count, median duration; 'a > b' = b made inside a):")
    for label, durs in sorted(calls.items(), key=lambda kv: -Summary.of(kv[1]).median):
        s = Summary.of(durs)
        what = f"{label} (in a thread: blocks until the container exits)" if label == "wait" else label
        lines.append(f"    {len(durs) / len(runs):4.1f}x  median {s.median * 1000:7.1f} ms  p90 {s.p90 * 1000:7.1f} ms"
                     f"  {what}")
    return "\n".join(lines)


def exec_roundtrip(backend: DockerBackend, launch: Launch, n: int) -> tuple[Summary, Summary]:
    """In a running target: (exec_create + exec_start calls, exec_start's return -> first output byte).

    The command is the probe's own ``busybox echo``, so the second figure is what it takes the
    engine to start a process in the container and deliver its first line: the fixed cost the
    watcher's exec session pays before it can observe anything.
    """
    calls, first = [], []
    api = backend.client.api
    with backend.run(launch) as run:
        run.verdict()
        for _ in range(n):
            t0 = time.monotonic()
            exec_id = api.exec_create(run.container_id, [f"{PROBE_MOUNT}/busybox", "echo", "x"])["Id"]
            stream = api.exec_start(exec_id, stream=True)
            t1 = time.monotonic()
            next(iter(stream), b"")
            t2 = time.monotonic()
            stream.close()
            calls.append(t1 - t0)
            first.append(t2 - t1)
    return Summary.of(calls), Summary.of(first)
