"""Several cells in flight per pytest process: the next matrix items' cells start while one is judged.

A cell mostly waits (its hold window, a slow start), so one process may keep up to
``--ipv6-inflight`` cells going. When an item is about to run, :class:`Scheduler`
starts its cell and those of the next items this process will run (their order from
``session.items``, or the xdist worker's queue of indices), each in a thread of its
own, through the very code an item runs serially (:class:`Job` runs a ``work``
callable). The item then takes its cell's outcome: its verdict, or the error or skip
the cell met, raised in the item as serially.

Nothing else changes about a cell: its own container, its hold measured from its own
start, its own teardown in its item. A cell whose item never runs (``-x``, Ctrl-C, an
item another worker stole) is cancelled: its container is removed, and no result is
made of it. Starts are CPU-heavy, holds are not: :class:`Gate` admits a bounded number
of starts at a time, in the order the items will run, while any number of started
cells (up to the in-flight bound) hold.

The scheduling here is pure: no pytest item is run, no engine is touched; a job's
``work`` does that (see :meth:`pytest_ipv6compat.items.CellItem.observe`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Cancelled", "Gate", "Job", "Scheduler", "Slot", "default_starts", "upcoming"]

T = TypeVar("T")
_JOIN_S = 2.0  # a cancelled job's thread: how long to wait for it (its container is removed by then)


class Cancelled(Exception):
    """The job was cancelled before its cell started: nothing was made."""


class Slot(Protocol):
    """What a cell's work asks of the scheduler around its start (serially: nothing)."""

    def starting(self) -> contextlib.AbstractContextManager[None]:
        """The CPU-heavy part (engine calls, the target's boot, up to its attestation): a bounded number at once."""
        ...

    def entering(self) -> contextlib.AbstractContextManager[None]:
        """Where the cell is made (session state, the backend's start call): one job at a time per process.
        Raises :class:`Cancelled` when the job was cancelled; once entered, a cancel waits for it to end."""
        ...

    def made(self, release: Callable[[], None]) -> None:
        """The cell exists (called inside :meth:`entering`): a cancel calls ``release`` to remove it, even while
        the work still observes it (the work then meets an error, and its outcome is discarded)."""
        ...


class Serial:
    """The slot of a cell run in its item, one at a time: no gate, nothing to cancel."""

    def starting(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def entering(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def made(self, release: Callable[[], None]) -> None:
        pass


class Gate:
    """At most ``slots`` holders at once, admitted in ticket order (lowest first), not in arrival order."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a gate needs at least one slot, not {slots}")
        self.slots = slots
        self._cond = threading.Condition()
        self._busy = 0
        self._waiting: list[float] = []
        self.peak = 0  # the most holders at once (for tests and the benchmark)

    @contextlib.contextmanager
    def holding(self, ticket: float, cancelled: Callable[[], bool] = lambda: False) -> Iterator[None]:
        """Hold a slot; :class:`Cancelled` if ``cancelled()`` turns true while waiting (after :meth:`wake`)."""
        with self._cond:
            self._waiting.append(ticket)
            try:
                while not (self._busy < self.slots and ticket == min(self._waiting)):
                    if cancelled():
                        raise Cancelled
                    self._cond.wait()
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()  # the next ticket may be admitted now
            self._busy += 1
            self.peak = max(self.peak, self._busy)
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def wake(self) -> None:
        """Let waiters look at whether they were cancelled."""
        with self._cond:
            self._cond.notify_all()


@dataclass
class Timing:
    """When a cell's own work ran: from its admission through the gate to its outcome (this host's clocks)."""

    start: float = 0.0  # time.time()
    stop: float = 0.0
    duration: float = 0.0  # from time.perf_counter(), as pytest measures a phase


class Job(Generic[T]):
    """One cell's work, started ahead of its item in a thread; the item takes its outcome (:meth:`result`).

    ``work(slot)`` returns the outcome (errors included: it raises nothing but :class:`Cancelled`);
    ``discard(outcome)`` releases what an outcome holds (its container) when no item takes it.
    """

    def __init__(self, key: Hashable, ticket: float, work: Callable[[Slot], T], discard: Callable[[T], None],
                 gate: Gate, enter_lock: threading.Lock) -> None:
        self.key = key
        self.ticket = ticket
        self._work = work
        self._discard = discard
        self._gate = gate
        self._enter_lock = enter_lock
        self._lock = threading.Lock()  # held while the cell is made, so a cancel waits for a start in progress
        self._done = threading.Event()
        self._outcome: T | None = None
        self._failure: BaseException | None = None  # a bug in work itself, raised in the item
        self._release: Callable[[], None] | None = None
        self.cancelled = False
        self.taken = False
        self.timing = Timing()
        self._perf = 0.0
        self._thread = threading.Thread(target=self._run, name=f"ipv6compat-inflight-{ticket:g}", daemon=True)

    def start(self) -> Job[T]:
        self._thread.start()
        return self

    # ------------------------------------------------------------ the slot the work sees

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        with self._gate.holding(self.ticket, lambda: self.cancelled):
            self.timing.start, self._perf = time.time(), time.perf_counter()
            yield

    @contextlib.contextmanager
    def entering(self) -> Iterator[None]:
        with self._lock:
            if self.cancelled:
                raise Cancelled
            with self._enter_lock:
                yield

    def made(self, release: Callable[[], None]) -> None:
        self._release = release

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            outcome = self._work(self)
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the item, which raises it
            self._failure = exc
        else:
            self.timing.stop = time.time()
            self.timing.duration = time.perf_counter() - self._perf if self._perf else 0.0
            with self._lock:
                if self.cancelled:  # cancelled while it held: no item takes it
                    self._discard(outcome)
                else:
                    self._outcome = outcome
        finally:
            self._done.set()

    # ------------------------------------------------------------ the item's side

    def result(self) -> T:
        """Wait for the outcome; the job is then taken. An interrupt of the wait (Ctrl-C) cancels the job, whose
        cell no item will take now."""
        try:
            self._done.wait()
        except BaseException:
            self.cancel()
            raise
        self.taken = True
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        if self._outcome is None:
            raise RuntimeError(f"job {self.key!r} was cancelled before its item took it")
        return self._outcome

    def cancel(self) -> None:
        """No item will take this job: stop it before it starts a cell, or release the cell it started."""
        with self._lock:  # waits for a cell being made
            self.cancelled = True
            outcome, self._outcome = self._outcome, None
            release, self._release = self._release, None
        self._gate.wake()
        if outcome is not None:
            self._discard(outcome)
        elif release is not None and not self._done.is_set():
            release()  # still being observed: its outcome, when it comes, is discarded

    def join(self, timeout: float = _JOIN_S) -> None:
        self._thread.join(timeout)


def upcoming(items: Sequence[Any], item: Any, nextitem: Any | None, worker_queue: Sequence[int] | None,
             next_index: int | None) -> tuple[list[Any], bool]:
    """The items this process will run after ``item``, in order, and whether that list is known to be whole.

    Under xdist a worker runs the indices of its queue (``next_index`` first, then ``worker_queue``);
    otherwise pytest runs ``items`` in order. Either is trusted only when it agrees with ``nextitem``,
    the item pytest itself names as next; when nothing agrees, only ``nextitem`` is known (not whole).
    """
    if worker_queue is not None and next_index is not None:
        indices = [next_index, *worker_queue]
        order: list[Any] = []
        for index in indices:
            if not isinstance(index, int) or not 0 <= index < len(items):
                break  # the queue's shutdown marker: nothing runs after it
            order.append(items[index])
        if order and order[0] is nextitem:
            return order, True
    else:
        for position, candidate in enumerate(items):
            if candidate is item:
                after = list(items[position + 1:])
                if (after[0] if after else None) is nextitem:
                    return after, True
                break
    return ([nextitem] if nextitem is not None else []), False


def default_starts(workers: int, cpus: int | None = None) -> int:
    """Starts at once in one process: its share of the CPUs (at least one)."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // max(1, workers))


class Scheduler(Generic[T]):
    """Jobs keyed by item: :meth:`plan` starts the ones due, :meth:`take` hands one to its item, the rest are
    cancelled (:meth:`forget`, :meth:`cancel_all`)."""

    def __init__(self, inflight: int, starts: int) -> None:
        if inflight < 1:
            raise ValueError(f"in flight must be at least 1, not {inflight}")
        self.inflight = inflight
        self.gate = Gate(starts)
        self._enter_lock = threading.Lock()
        self._jobs: dict[Hashable, Job[T]] = {}
        self._tickets = 0
        self.started = 0  # jobs started (for tests and the benchmark)
        self.cancelled = 0  # of them, cancelled before an item took them

    def plan(self, due: Sequence[tuple[Hashable, Callable[[Slot], T], Callable[[T], None]]],
             keep: Callable[[Hashable], bool] | None = None) -> None:
        """Start the jobs of ``due`` (this item's first, then the next ones, at most ``inflight``) not yet
        started; with ``keep``, cancel started jobs whose key it rejects (items that will not run here)."""
        if keep is not None:
            for key in [k for k in self._jobs if not keep(k)]:
                self.forget(key)
        for key, work, discard in due[: self.inflight]:
            if key in self._jobs:
                continue
            self._tickets += 1
            self._jobs[key] = Job(key, self._tickets, work, discard, self.gate, self._enter_lock).start()
            self.started += 1

    def take(self, key: Hashable) -> Job[T] | None:
        """The job started for ``key``, now its item's (None: run the cell in the item)."""
        return self._jobs.pop(key, None)

    def pending(self) -> list[Hashable]:
        return list(self._jobs)

    def forget(self, key: Hashable) -> None:
        """Cancel the job of ``key`` if no item took it."""
        job = self._jobs.pop(key, None)
        if job is not None:
            self.cancelled += 1
            job.cancel()

    def cancel_all(self) -> None:
        """Cancel every job no item took (the run ends, or the engine changed); wait briefly for their threads."""
        jobs = list(self._jobs.values())
        self._jobs.clear()
        for job in jobs:
            self.cancelled += 1
            job.cancel()
        for job in jobs:
            job.join()
