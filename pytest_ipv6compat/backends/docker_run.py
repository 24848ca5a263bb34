"""Observing one started container through the Docker API.

Three channels, none of which the target can write to or slow down:

* the first lines of the container's output, written by the shim before the
  target runs and tagged with a nonce the target never sees: the attestation;
* an exec session running the watcher (``probe/watch.c``): listeners, probes,
  ``ready`` once the hold window has passed, each record sealed with a key made for
  this cell (:class:`~pytest_ipv6compat.probe.report.SealedChannel`), so that a target
  that reaches the exec's output still cannot write a record there; a watcher that is
  killed or stopped is an error, never a verdict;
* the engine's wait call: the exit code, as soon as the target exits.

The target's own output is read once, at the end, as a bounded tail
(:data:`LOG_TAIL_LINES` lines of at most :data:`LOG_LINE_CHARS` characters), so a
target that logs megabytes costs nothing and cannot delay the verdict.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import docker
import docker.errors
import docker.types.daemon

from ..diagnose import error_line, oom_error_line
from ..model import Attestation, Family, Outcome, Verdict
from ..probe.report import (
    STALL_S,
    WATCH_GROUP,
    SealedChannel,
    ShimReport,
    TamperError,
    WatchReport,
    is_shim_line,
)
from . import EngineError, Launch, UnknownUser
from .logtext import LOG_TAIL_LINES, clean, lines, split_timestamp

log = logging.getLogger(__name__)

# What a failing or hung engine raises: docker-py's errors, plus the connection errors and
# timeouts of requests (subclasses of OSError), which docker-py passes through unwrapped.
FAULTS = (docker.errors.DockerException, OSError)
_EXIT_GRACE_S = 3.0  # after the watcher ends without "ready": how long the exit may take to be reported
_JOIN_S = 2.0
_KILLED = (137, 143)  # SIGKILL, SIGTERM
# Where the wait call answers late (Podman: 0.3-0.5 s after the exit), the state is asked for instead: every
# 20 ms until the watcher reports (a target that exits at once exits then), every 50 ms after, when the end of
# the watcher's stream says first that the target's processes are gone. A Podman inspect costs its service
# about 4 ms of CPU.
_EXIT_POLL_FAST_S = 0.02
_EXIT_POLL_S = 0.05
_REMOVAL_S = 0.3
# States of a container whose process has exited: Podman says "stopped" from the exit (its exit code
# already known) until its clean-up process has run, which can be 0.1 s or more later, then "exited".
_ENDED = ("exited", "dead", "stopped")


class DockerRun:
    """A started container being observed. Methods block until they know."""

    def __init__(
        self, client: docker.DockerClient, container_id: str, name: str, launch: Launch, nonce: str, *, probe: str,
        poll_exit: bool = False, link: Callable[[], str | None] | None = None, exec_user: str = "",
    ) -> None:
        self._client = client
        self._api = client.api
        self._poll_exit = poll_exit  # the engine's wait call answers late (Podman): ask for the state instead
        self._link = link  # why the connection to the engine is gone (an ssh:// engine's tunnel), else None
        self._exec_user = exec_user  # the target's user: the watcher runs as it ("" the container's)
        self._begin_observing(container_id, name, launch, nonce, probe)
        self._spawn(self._wait_for_exit, "wait")
        self._spawn(self._read_shim, "shim")

    def _begin_observing(self, container_id: str, name: str, launch: Launch, nonce: str, probe: str) -> None:
        """The state of observing a started target, whoever started it (the engine, or an OCI runtime)."""
        self.container_id = container_id
        self._name = name
        self.launch = launch
        self.keep = False
        self._probe = probe
        self.started = time.monotonic()
        self.started_wall = time.time()  # the engine's events are on the wall clock
        self.deadline = self.started + launch.run.timeout
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._shim = ShimReport(nonce)
        self._watch = WatchReport(pod=tuple(Family(f) for f in launch.stack.pod))
        self._channel = SealedChannel()
        self._last_record: float | None = None  # when the watcher's last sealed record arrived
        self._attested = threading.Event()
        self._closed = threading.Event()
        self._closers: list[Callable[[], object]] = []
        self._threads: list[threading.Thread] = []
        self._attestation: Attestation | None = None
        self._verdict: Verdict | None = None
        self._tail: list[tuple[float | None, str]] | None = None
        self._settled_wall: float | None = None  # when the watcher's settled record arrived (this host's clock)
        self._other: list[str] = []  # lines on the watcher's channel that are not its records
        self.engine_fault: str | None = None  # why the engine stopped answering, if it did

    @property
    def name(self) -> str:
        return self._name

    # ------------------------------------------------------------ channels (threads)

    def _spawn(self, target: Callable[[], None], what: str) -> None:
        thread = threading.Thread(target=target, name=f"ipv6compat-{what}-{self.name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _wait_for_exit(self) -> None:
        spec = self.launch.run
        if self._poll_exit:
            self._poll_for_exit(time.monotonic() + spec.timeout + spec.hold + 600)
            return
        try:
            status = self._api.wait(self.container_id, timeout=spec.timeout + spec.hold + 600)
            self._events.put(("exit", status))
        except docker.errors.NotFound:
            self._events.put(("gone", None))
        except FAULTS as exc:
            self._events.put(("fault", reason(exc)))

    def _poll_for_exit(self, until: float) -> None:
        while not self._closed.is_set() and time.monotonic() < until:
            try:
                state = self._api.inspect_container(self.container_id)["State"]
            except docker.errors.NotFound:
                self._events.put(("gone", None))
                return
            except FAULTS as exc:
                self._events.put(("fault", reason(exc)))
                return
            if state.get("Status") in _ENDED:  # the state comes along: no second inspect on the verdict's path
                self._events.put(("exit", {"StatusCode": state.get("ExitCode"), "State": state}))
                return
            self._closed.wait(_EXIT_POLL_FAST_S if self._last_record is None else _EXIT_POLL_S)

    def _read_shim(self) -> None:
        stream: Any = None
        try:
            stream = self._api.logs(self.container_id, stream=True, follow=True, stdout=True, stderr=True)
            self._closers.append(stream.close)
            for line in lines(stream):
                self._shim.feed(line)
                if self._shim.attested:
                    break
            else:
                self._reread_shim()
        except Exception as exc:  # noqa: BLE001 - any stream failure ends the attestation
            log.debug("shim stream of %s ended: %s", self.name, exc)
        finally:
            self._attested.set()
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()

    def _reread_shim(self) -> None:
        """The followed output ended without the attestation: read the whole log until it has it.

        Podman's followed logs can end before the last lines of a container that exits as the
        stream attaches, though its log has them (podman#10675, #18501; seen once here on 4.3 with
        a target that exits within milliseconds). The log is read again, whole, until it holds the
        attestation or a read made after the container stopped running does not: its verdict then.
        """
        while not self._closed.is_set() and time.monotonic() < self.deadline:
            running = self._state_if_exited() is None
            for line in lines([self._logs_tail("all")]):
                self._shim.feed(line)
            if self._shim.attested:
                log.debug("the followed output of %s ended before the attestation; the log had it", self.name)
                return
            if not running:
                return
            self._closed.wait(_EXIT_POLL_S)

    def _watch_argv(self) -> list[str]:
        """The watcher's command line (probe/watch.c), the same on every backend that runs it in the container."""
        spec = self.launch.run
        argv = [f"{self._probe}/watch", f"{spec.settle:g}", f"{spec.hold:g}", spec.probe, spec.http_path,
                ",".join(spec.http_status)]
        if self.launch.stack.pod:  # each listener is probed over the pod address too (its addresses, by family)
            argv.append(",".join(self.launch.stack.pod_addresses()))
        return argv

    def _read_watcher(self) -> None:
        argv = self._watch_argv()
        if self._poll_exit:
            # Podman 4.3 loses the exit of a container whose target exits as an exec session starts in it (runc:
            # "cannot exec in a stopped container"): it resets it to "created", exit code unknown, and its
            # removal may fail once. Its inspect notices an exit at once, so look first: a target that has
            # already exited gets its verdict without an exec.
            state = self._state_if_exited()
            if state is not None:
                self._events.put(("exit", {"StatusCode": state.get("ExitCode", -1), "State": state}))
                return
        try:
            exec_id = self._api.exec_create(
                self.container_id, argv, stdout=True, stderr=True, environment=[self._channel.environment],
                user=self._exec_user,
            )["Id"]
            stream = exec_output(self._api, exec_id)
            self._closers.append(stream.close)
            self._events.put(("watch-open", None))  # from now on, the watcher must write every STALL_S
            for line in lines(stream):
                self._events.put(("watch", line))
        except FAULTS as exc:
            # Often the target exited before the exec began ("is not running"): its exit is on its way. If
            # it is not, the observation ends with this reason once the grace time has passed.
            self._other.append(f"exec failed: {reason(exc)}")
        self._events.put(("watch-end", None))

    # ------------------------------------------------------------ what the caller asks

    def _linked(self, exc: EngineError) -> EngineError:
        """The error to report: the lost connection to the engine when that is why (one line), else ``exc``."""
        why = self._link() if self._link is not None else None
        return EngineError(why) if why else exc

    def attestation(self) -> Attestation:
        """Wait for the shim's attestation; a target that never reported one is an error."""
        try:
            return self._attest()
        except EngineError as exc:
            raise self._linked(exc) from None

    def _attest(self) -> Attestation:
        if self._attestation is None:
            self._attested.wait(max(0.0, self.deadline - time.monotonic()))
            if not self._shim.attested:
                unknown = UnknownUser.find(self.launch.run.user, self.launch.image, self.logs(15))
                if unknown is not None:  # the pod set-up looks the user up, as the engine would have
                    raise unknown
                timeout = self.launch.run.timeout
                why = (
                    f"did not report within the cell's timeout of {timeout:g} s (raise the run setting timeout "
                    "or --ipv6-timeout if the engine is slow)"
                    if not self._attested.is_set()
                    else "exited"
                )
                raise EngineError(
                    f"the container {why} before the stack could be attested; logs:\n{self.logs(15)}"
                )
            self._attestation = self._shim.attestation(self.launch.stack)
        if self._shim.missing:
            raise EngineError(f"the engine could not start the target: {self._shim.missing}")
        return self._attestation

    def verdict(self) -> Verdict:
        """``up`` once the watcher says ``ready`` (the hold window has passed), ``exited``, or ``timeout``."""
        if self._verdict is None:
            self.attestation()
            self._spawn(self._read_watcher, "watch")
            try:
                verdict = self._observe()
            except EngineError as exc:
                raise self._linked(exc) from None
            # Streams cut by a lost connection may end the observation early: no verdict then, an error.
            why = self._link() if self._link is not None else None
            if why:
                raise EngineError(why)
            self._verdict = verdict
        return self._verdict

    def _observe(self) -> Verdict:
        spec = self.launch.run
        settled_at: float | None = None
        watcher_ended: float | None = None
        timed_out = False  # the cell's time is up: a timeout once a record shows the watcher is still alive
        while True:
            if watcher_ended is not None:
                limit = watcher_ended + _EXIT_GRACE_S
            elif timed_out:
                limit = (self._last_record or time.monotonic()) + STALL_S
            elif settled_at is not None:
                limit = self._watch.report_deadline(settled_at, spec.hold)
            else:
                limit = self.deadline
            stall = self._last_record + STALL_S if self._last_record is not None and watcher_ended is None else limit
            try:
                kind, value = self._events.get(timeout=max(0.0, min(limit, stall) - time.monotonic()))
            except queue.Empty:
                if watcher_ended is None:
                    self._check_stall()
                if time.monotonic() < limit:
                    continue
                if settled_at is None and watcher_ended is None and self._channel.started and not timed_out:
                    # Not yet: a watcher stopped less than STALL_S ago must not make this a timeout.
                    timed_out = True
                    continue
                return self._no_event(settled_at, watcher_ended)
            if kind == "watch-open":
                self._last_record = self._last_record or time.monotonic()
            elif kind == "watch":
                record = self._open(value)
                if timed_out and self._channel.started:
                    return self._make(Outcome.TIMEOUT)
                if record is None:
                    continue
                try:
                    self._watch.feed(record)
                except ValueError as exc:  # with whatever else came on the watcher's stream
                    other = "; ".join(self._other[-3:])
                    raise EngineError(f"{exc}{f' (also on its stream: {other})' if other else ''}") from None
                if self._watch.listening and settled_at is None:
                    settled_at = time.monotonic()
                    if self._settled_wall is None:
                        self._settled_wall = time.time()
                elif not self._watch.listening and settled_at is not None:
                    settled_at = None  # every listener closed: the watcher waits, the run's timeout decides
                if self._watch.error:
                    raise EngineError(f"the probe could not observe the target: {self._watch.error}")
                if self._watch.ready:
                    return self._make(Outcome.UP)
            elif kind == "watch-end":
                watcher_ended = time.monotonic()
                # The watcher ends with the target's processes: look now rather than wait for the engine's wait
                # call, which some engines (Podman) answer only after a poll interval.
                state = self._state_if_exited()
                if state is not None:
                    return self._exited({"StatusCode": state.get("ExitCode", -1), "State": state})
            elif kind == "exit":
                return self._exited(value)
            elif kind == "gone":
                raise EngineError(f"container {self.name} was removed by someone else while the cell ran")
            elif kind == "fault":
                raise self._fault(value)

    def _open(self, line: str) -> str | None:
        """The record a line of the watcher's stream carries; None for the channel's own and the engine's words."""
        try:
            record = self._channel.open(line)
        except TamperError as exc:
            raise EngineError(str(exc)) from None
        if self._channel.started:
            if self._channel.next_seq == 1 and self._channel.protection != "exec":
                raise EngineError(
                    "the probe's watcher was not protected from its start (it did not run setgid, so the target "
                    f"could reach it in /proc before it made itself non-dumpable): the probe volume is mounted nosuid, "
                    f"the container has no_new_privs, or the target runs as group {WATCH_GROUP}"
                )
            self._last_record = time.monotonic()
        elif record is None:
            self._other.append(line.strip())  # the engine's words, e.g. an exec into an exiting container
        return record

    def _check_stall(self) -> None:
        """A watcher that has not written for STALL_S (it writes every 0.2 s) was stopped: an error naming it."""
        if self._last_record is not None and time.monotonic() - self._last_record >= STALL_S:
            after = f"after {self._channel.last!r}" if self._channel.started else "before its start record"
            raise EngineError(
                f"the probe's watcher stopped: no record for {STALL_S:g} s {after} "
                "(stopped with SIGSTOP by something in the target, or frozen); no verdict without it"
            )

    def _no_event(self, settled_at: float | None, watcher_ended: float | None) -> Verdict:
        self._check_engine()
        if watcher_ended is not None:
            state = self._inspect_state()
            if state["Status"] in _ENDED:  # the wait call has not said so yet
                return self._exited({"StatusCode": state["ExitCode"]})
            if state["Status"] == "gone":
                raise EngineError(f"container {self.name} was removed by someone else while the cell ran")
            status = state["Status"]
            if self._poll_exit and status == "created":
                when = "while the watcher's exec session ran" if self._channel.started else \
                    "as the watcher's exec session started"
                raise EngineError(
                    f"Podman lost the target's exit: the target exited {when}, and Podman reset the container to "
                    "created with no exit code (Podman 4.3); no verdict"
                )
            if not self._channel.ended:
                other = "; ".join(self._other[-3:])
                raise EngineError(f"{self._channel.cut_short()}{f' ({other})' if other else ''}; the container is "
                                  f"{status}")
            detail = self._watch.error or "; ".join(self._other[-3:]) or "no report"
            raise EngineError(f"the probe's watcher ended without a verdict ({detail}); the container is {status}")
        if settled_at is None:
            if not self._channel.started:  # a timeout says the target never listened: only the watcher can say so
                raise EngineError(f"{self._channel.cut_short()} within the cell's timeout; no verdict without it")
            return self._make(Outcome.TIMEOUT)
        raise EngineError("the probe's report did not complete in time after the listeners settled")

    def _exited(self, status: Any) -> Verdict:
        while True:  # records the watcher sent before the exit was reported
            try:
                kind, value = self._events.get_nowait()
            except queue.Empty:
                break
            if kind == "watch":
                record = self._open(value)  # tampering is an error even when the target has exited
                if record is not None:
                    with contextlib.suppress(ValueError):
                        self._watch.feed(record)
        code = status.get("StatusCode") if isinstance(status, dict) else None
        known = status.get("State") if isinstance(status, dict) else None
        state = dict(known) if isinstance(known, dict) else self._inspect_state()
        oom = bool(state.get("OOMKilled"))
        if state["Status"] in _ENDED and code in _KILLED and not oom:
            # Killed, not by the kernel: maybe by someone removing the container, which the engine does
            # after the wait call has returned. Look again once removal would have begun.
            time.sleep(_REMOVAL_S)
            state = self._inspect_state()
        if state["Status"] in ("gone", "removing"):
            raise EngineError(f"container {self.name} was removed by someone else while the cell ran")
        if code in _KILLED and not oom:
            signals = self._kills_from_outside()
            if signals:
                raise EngineError(f"container {self.name} was stopped or killed from outside the cell (the engine "
                                  f"sent signal {', '.join(signals)}: docker stop or kill?); no verdict")
        verdict = self._make(Outcome.EXITED, exit_code=int(code) if code is not None else None)
        if oom:
            verdict = replace(verdict, error_line=oom_error_line(self.launch.run.memory))
        return verdict

    def _kills_from_outside(self) -> list[str]:
        """The signals the engine was asked to send this container (its ``kill`` events): the plugin never
        sends one before the verdict, so each came from someone else. Empty when the engine cannot say."""
        try:
            events = self._api.events(since=int(self.started_wall) - 1, until=f"{time.time():.6f}",
                                      filters={"container": self.container_id, "event": "kill"}, decode=True)
            return [str(e.get("Actor", {}).get("Attributes", {}).get("signal", "?")) for e in events
                    if e.get("Action") == "kill"]
        except FAULTS:
            return []

    def _state_if_exited(self) -> dict[str, Any] | None:
        try:
            state = dict(self._api.inspect_container(self.container_id)["State"])
        except FAULTS:
            return None  # the wait call or the grace period will tell
        return state if state.get("Status") in _ENDED else None

    def _make(self, outcome: Outcome, *, exit_code: int | None = None) -> Verdict:
        return self._watch.verdict(
            outcome,
            exit_code=exit_code,
            error_line=self._error_line() if outcome is Outcome.EXITED else None,
            logs=self.logs(),
            seconds=time.monotonic() - self.started,
        )

    def _fault(self, why: str) -> EngineError:
        """The engine stopped answering: an error for this cell, remembered so later cells say so at once."""
        self.engine_fault = why
        return EngineError(f"the Docker engine stopped responding during the cell: {why}")

    def _check_engine(self) -> None:
        try:
            self._api.ping()
        except FAULTS as exc:
            raise self._fault(reason(exc)) from None

    def _inspect_state(self) -> dict[str, Any]:
        """The container's state as the engine reports it; ``Status`` is "gone" once it no longer exists."""
        try:
            return dict(self._api.inspect_container(self.container_id)["State"])
        except docker.errors.NotFound:
            return {"Status": "gone"}
        except FAULTS as exc:
            raise self._fault(reason(exc)) from None

    def logs(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the target's own output (the shim's removed, control codes dropped)."""
        return "\n".join(text for _, text in self._timed_tail(lines))

    def _timed_tail(self, lines: int = LOG_TAIL_LINES) -> list[tuple[float | None, str]]:
        """(engine time, text) of the last lines; a trailing fragment without a newline has time None.

        The engine hands over a partial line only when the stream closes, so it comes last
        whenever it was printed: it has no place in time.
        """
        if self._tail is not None and lines == LOG_TAIL_LINES:
            return self._tail
        try:
            raw = self._logs_tail(lines)
        except FAULTS as exc:
            return [(None, f"(logs unavailable: {reason(exc)})")]
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        entries: list[tuple[float | None, str]] = []
        rows = text.split("\n")
        for number, row in enumerate(rows):
            if not row and number == len(rows) - 1:
                break  # the text ended with a newline
            when, line = split_timestamp(row)
            if number == len(rows) - 1:
                when = None  # no newline after it: a fragment flushed when the stream closed
            if not is_shim_line(line, self._shim.nonce):
                entries.append((when, clean(line)))
        if lines == LOG_TAIL_LINES:
            self._tail = entries
        return entries

    def _logs_tail(self, lines: int | str) -> bytes:
        """The engine's logs call without docker-py's inspect before it (it asks whether the container has a
        tty, and ours never has): one round trip fewer on the verdict's path, some 20-40 ms on Podman."""
        params = {"stdout": 1, "stderr": 1, "timestamps": 1, "tail": lines, "follow": 0}
        api: Any = self._api
        try:
            answer = api._get(api._url("/containers/{0}/logs", self.container_id), params=params, stream=False)
            return bytes(api._get_result_tty(False, answer, False))
        except AttributeError:  # a docker-py without these internals: its public call, one inspect more
            return bytes(self._api.logs(self.container_id, stdout=True, stderr=True, tail=lines, timestamps=True))

    def _error_line(self) -> str | None:
        """The line that explains an exit: from what the target printed after it listened when it did,
        and never a trailing fragment unless nothing else was printed."""
        entries = self._timed_tail()
        whole = [text for when, text in entries if when is not None] or [text for _, text in entries]
        if self._settled_wall is not None and self._watch.listeners:
            after = [text for when, text in entries if when is not None and when >= self._settled_wall]
            return error_line(after) or error_line(whole)
        return error_line(whole)

    def inspection(self) -> list[str]:
        """How to look at this container once kept: its output without the plugin's lines, its state, removal."""
        cli = "podman" if self._poll_exit else "docker"  # the engine's own CLI (Podman's wait answers late)
        name = self._name
        look = [f"{cli} logs {name} 2>&1 | grep -v '^@@ipv6compat '"]
        if self._verdict is not None and self._verdict.outcome is Outcome.UP:
            look.append(f"{cli} exec -i {name} /.ipv6compat/busybox sh")  # no -t: works without a terminal too
        else:
            look += [f"{cli} inspect {name}", f"{cli} diff {name}"]
        return [*look, f"{cli} rm -f {name}"]

    def rename(self, name: str) -> None:
        """Give the container a new name (kept containers); a failure leaves the old one."""
        try:
            self._api.rename(self.container_id, name)
            self._name = name
        except FAULTS as exc:
            log.warning("cannot rename container %s to %s: %s", self._name, name, reason(exc))

    def close(self) -> None:
        """Stop following the streams; the reader threads then end (waited for, bounded)."""
        self._closed.set()
        for close in self._closers:
            with contextlib.suppress(Exception):
                close()
        for thread in self._threads:
            if thread.name.startswith("ipv6compat-wait-"):
                continue  # ends when the container is removed
            thread.join(_JOIN_S)


_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)|(Read timed out|timed out|Connection aborted)")


def reason(exc: BaseException) -> str:
    """One line saying why an engine call failed: the engine's own words, else the root cause."""
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return " ".join(str(exc.explanation).split())
    seen: BaseException | None = exc
    while seen is not None:  # the innermost OS error says it best ("Connection refused")
        if isinstance(seen, OSError) and seen.strerror:
            return str(seen.strerror)
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    found = _ERRNO_TEXT.search(text)
    if found:
        return (found.group(1) or found.group(2)).strip()
    lines = text.strip().splitlines()
    return lines[-1] if lines else type(exc).__name__


def exec_output(api: Any, exec_id: str) -> Any:
    """Start an exec and stream what it writes (stdout and stderr, no tty), as ``exec_start(stream=True)``
    does, but read through the HTTP response's own buffer.

    docker-py reads the exec's frames from the raw socket beneath that buffer, so whatever arrived
    in the same read as the response's headers is lost: on a loaded machine, where this thread reads
    the headers late, the watcher's first records (seen under Docker at load average 116 and on
    Podman at 15, as a report that began with record 1). The stream's ``close`` ends the read from
    another thread, as docker-py's does.
    """
    res = api._post_json(api._url("/exec/{0}/start", exec_id), headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                         data={"Tty": False, "Detach": False}, stream=True)
    api._raise_for_status(res)
    buffered = res.raw._fp.fp  # the response's reader: the headers came through it, and what followed them

    def frames() -> Iterator[bytes]:
        while True:
            header = buffered.read(8)  # stream (1 byte), 3 zero bytes, payload length (big-endian)
            if len(header) < 8:
                return
            payload = buffered.read(int.from_bytes(header[4:], "big"))
            if payload:
                yield payload
            if len(payload) < int.from_bytes(header[4:], "big"):
                return

    return docker.types.daemon.CancellableStream(frames(), res)
