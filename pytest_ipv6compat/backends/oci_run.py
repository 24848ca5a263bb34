"""Observing a cell of the oci backend (:mod:`.oci`): :class:`.docker_run.DockerRun`'s observation on the
runtime's channels.

The target's stdout and stderr are the pipes of ``crun run`` (in the foreground), read apart into the
engine backend's bounded tail; the exit code is ``crun run``'s, an OOM kill the target SIGKILLed with the
cell's memory cgroup at its bound; the watcher is started in the container by the probe's ``ocienter``
(probe/oci_enter.c: what ``crun exec`` does, without crun), its sealed records read from its stdout (the
launcher's own words on its stderr, never on the channel). Under runc it runs by ``runc exec`` under the probe's
``reap`` (probe/reap.c), a child subreaper: a runtime helper the exec orphans in the container's pid namespace is
reaped there at once, not by this host's PID 1 (see :meth:`OciRun._read_watcher`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from ..model import Outcome, Verdict
from ..probe.report import is_shim_line
from ..spec import PROBE_MOUNT
from . import Launch
from .docker_run import DockerRun
from .logtext import LOG_TAIL_LINES, clean

log = logging.getLogger(__name__)

STOP_S = 5.0  # after a kill: how long the runtime may take to end
_EXEC_RETRY_S = 2.0  # how long runc's exec into a running container may fail before it counts
_EXEC_RETRY_WAIT_S = 0.01
# What the runtime says when an exec meets a container whose process has ended (or is ending).
_GONE = ("container process not found", "setns(", "stopped")
_OOM_SLACK = 65536  # a peak this close to the memory bound (bytes) is the bound reached


class OciRun(DockerRun):
    """A target started by the runtime, observed as :class:`DockerRun` observes a container."""

    def __init__(self, proc: subprocess.Popen[bytes], runtime: str, container_id: str, name: str,
                 launch: Launch, nonce: str, *, user: tuple[int, int], memory_cgroup: Path, reaper: Path,
                 enter: list[str] | None = None) -> None:
        self._proc = proc
        self._runtime = runtime
        self._reaper = reaper
        self._enter = enter
        self._user = user
        self._memory_cgroup = memory_cgroup
        self.kept: Path | None = None
        self._poll_exit = False
        self._link = None
        self._begin_observing(container_id, name, launch, nonce, PROBE_MOUNT)
        self._output: collections.deque[tuple[float | None, str]] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._output_done = threading.Event()
        self._output_lock = threading.Lock()
        self._fragments: list[str] = []
        self._streams_open = 2
        self._exit_state: dict[str, Any] | None = None
        self._exec: subprocess.Popen[bytes] | None = None
        self._spawn(self._wait_for_exit, "wait")
        self._spawn(self._read_shim, "shim")
        self._spawn(self._read_errors, "stderr")

    def _wait_for_exit(self) -> None:
        code = self._proc.wait()
        oom = False
        if code == 137:  # SIGKILL: the kernel's, when the cell's memory cgroup reached its bound
            try:
                limit = int((self._memory_cgroup / "memory.limit_in_bytes").read_text())
                peak = int((self._memory_cgroup / "memory.max_usage_in_bytes").read_text())
                oom = peak >= limit - _OOM_SLACK
            except (OSError, ValueError):
                oom = False
        self._exit_state = {"Status": "exited", "ExitCode": code, "OOMKilled": oom}
        self._events.put(("exit", {"StatusCode": code, "State": dict(self._exit_state)}))

    def _read_shim(self) -> None:
        """The target's standard output: the shim's lines until it attested, then a bounded tail."""
        self._read_output(self._proc.stdout, shim=True)

    def _read_errors(self) -> None:
        self._read_output(self._proc.stderr, shim=False)

    def _read_output(self, stream: IO[bytes] | None, *, shim: bool) -> None:
        """One of the target's two streams, kept apart as the engine keeps them (a fragment without a
        newline on one is not joined to the next line of the other); fragments come last, as the engine's."""
        assert stream is not None
        pending = b""
        try:
            while True:
                chunk = os.read(stream.fileno(), 65536)
                if not chunk:
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                now = time.time()
                for raw in complete:
                    self._line(raw.decode("utf-8", "replace"), now, shim=shim)
                pending = pending[-65536:]
        except (OSError, ValueError) as exc:
            log.debug("output of %s ended: %s", self.name, exc)
        finally:
            with self._output_lock:
                if pending:
                    self._fragments.append(pending.decode("utf-8", "replace"))
                self._streams_open -= 1
                if self._streams_open == 0:
                    for fragment in self._fragments:
                        self._line(fragment, None, shim=False)
                    self._output_done.set()
            if shim:
                self._attested.set()

    def _line(self, line: str, when: float | None, *, shim: bool) -> None:
        if shim and not self._shim.attested:
            self._shim.feed(line)
            if self._shim.attested:
                self._attested.set()
        if not is_shim_line(line, self._shim.nonce):
            self._output.append((when, clean(line)))

    def _read_watcher(self) -> None:
        # As the cell's user (docker_run's exec_user), not the root a pod address starts the container as.
        user = f"{self._user[0]}:{self._user[1]}"
        if self._enter is not None:
            # crun: ocienter does what `crun exec --user UID:GID --env KEY` does, without crun (no status file to
            # wait for: nothing to try again; an init already gone fails at once, as the exec did). It is a child
            # subreaper itself: nothing it starts is left to this host's PID 1.
            argv = [*self._enter, user, "--env", self._channel.environment, "--", *self._watch_argv()]
        else:
            # runc: under reap, a child subreaper: an exec that meets the target as it dies can orphan the helper it
            # forked into the container's pid namespace; orphaned to this host's PID 1 (which may reap late: a
            # sandbox's process manager took 1-2 s), it stayed a zombie, and the namespace's init, so `runc run` and
            # the verdict, waited for it. reap reaps it as it exits (and the exec itself; its status is the exec's).
            argv = [str(self._reaper), self._runtime, "exec", "--user", user, "--env", self._channel.environment,
                    self.container_id, *self._watch_argv()]
        self._events.put(("watch-open", None))  # from now on, the watcher must write every STALL_S
        until = time.monotonic() + (_EXEC_RETRY_S if self._enter is None else 0.0)
        while True:
            try:
                # The launcher's or runtime's own words (an exec into a container that has just ended) on stderr:
                # never on the watcher's channel, where a line beginning "error" would be taken for an unsealed record.
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True)
            except OSError as exc:
                self._other.append(f"exec failed: {exc}")
                break
            self._exec = proc
            assert proc.stdout is not None
            assert proc.stderr is not None
            wrote = False
            with contextlib.suppress(OSError, ValueError):
                for raw in proc.stdout:
                    wrote = True
                    self._events.put(("watch", raw.decode("utf-8", "replace").rstrip("\n")))
            proc.wait()
            words: list[str] = []
            with contextlib.suppress(OSError, ValueError):
                words = [w.strip() for w in proc.stderr.read(65536).decode("utf-8", "replace").split("\n")]
            # The runtime may write the container's state a moment after the target has started (crun's status file
            # did; runc is given the same grace): an exec that soon fails to read it. While the container runs, try
            # again; but not once the runtime says its process is gone (a try that meets the ending container would
            # only fail again).
            gone = any(sign in w for w in words for sign in _GONE)
            if (not wrote and not gone and proc.returncode != 0 and self._proc.poll() is None
                    and not self._closed.is_set() and time.monotonic() < until):
                time.sleep(_EXEC_RETRY_WAIT_S)
                continue
            self._other += [f"exec failed: {w}" for w in words if w][-3:]
            break
        self._events.put(("watch-end", None))

    def _state_if_exited(self) -> dict[str, Any] | None:
        if self._proc.poll() is None:
            return None
        for thread in self._threads:
            if thread.name.startswith("ipv6compat-wait-"):
                thread.join(STOP_S)
        return dict(self._exit_state) if self._exit_state is not None else None

    def _inspect_state(self) -> dict[str, Any]:
        return self._state_if_exited() or {"Status": "running"}

    def _check_engine(self) -> None:
        return None

    def _kills_from_outside(self) -> list[str]:
        return []  # the runtime keeps no record of signals sent to a container

    def _make(self, outcome: Outcome, *, exit_code: int | None = None) -> Verdict:
        if outcome is Outcome.EXITED:
            self._output_done.wait(1.0)  # what the target wrote before it exited is still in the pipe
        return super()._make(outcome, exit_code=exit_code)

    def _timed_tail(self, lines: int = LOG_TAIL_LINES) -> list[tuple[float | None, str]]:
        return list(self._output)[-lines:]

    def inspection(self) -> list[str]:
        where = self.kept or Path("CACHE/oci/kept") / self.name
        return [f"cat {where}/output.log", f"ls -la {where}/upper", f"cat {where}/config.json", f"rm -rf {where}"]

    def rename(self, name: str) -> None:
        self._name = name

    def close(self) -> None:
        self._closed.set()
        if self._exec is not None and self._exec.poll() is None:
            with contextlib.suppress(OSError):
                self._exec.kill()
        for thread in self._threads:
            thread.join(2.0)
        if self._exec is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._exec.wait(2.0)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
