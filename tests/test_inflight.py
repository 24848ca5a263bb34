"""Several cells in flight per process (--ipv6-inflight): the scheduling alone, without an engine.

The unit tests drive :mod:`pytest_ipv6compat.inflight` with plain callables. The pytester
tests run the real plugin on a matrix whose cells a fake backend "runs" (recording when each
starts and ends, and answering after a short hold), so that the order, the overlap, the
errors and the cancellations are seen from outside; whether containers behave the same is
proven against the real engine in tests/test_inflight_docker.py.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_ipv6compat.inflight import Cancelled, Gate, Scheduler, Slot, default_starts, upcoming

# ---------------------------------------------------------------- the gate


def test_gate_admits_in_ticket_order_and_never_more_than_its_slots() -> None:
    gate = Gate(2)
    order: list[int] = []
    inside = threading.Semaphore(0)
    release = threading.Event()
    lock = threading.Lock()
    busy = [0, 0]  # now, most

    def holder(ticket: int) -> None:
        with gate.holding(ticket):
            with lock:
                order.append(ticket)
                busy[0] += 1
                busy[1] = max(busy[1], busy[0])
            inside.release()
            release.wait(5)
            with lock:
                busy[0] -= 1

    first = [threading.Thread(target=holder, args=(t,)) for t in (1, 2)]
    for t in first:
        t.start()
    assert inside.acquire(timeout=5)
    assert inside.acquire(timeout=5)
    # Later tickets arrive in reverse order while both slots are taken: they are admitted lowest first.
    later = [threading.Thread(target=holder, args=(t,)) for t in (6, 5, 4, 3)]
    for t in later:
        t.start()
    deadline = time.monotonic() + 5
    while len(gate._waiting) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    release.set()
    for t in first + later:
        t.join(5)
    assert order[:2] == sorted(order[:2]) == [1, 2]
    assert order[2:] == [3, 4, 5, 6]
    assert busy[1] == 2
    assert gate.peak == 2


def test_a_cancelled_waiter_leaves_the_gate_without_a_slot() -> None:
    gate = Gate(1)
    cancelled = threading.Event()
    seen: list[str] = []
    with gate.holding(1):

        def waiter() -> None:
            try:
                with gate.holding(2, cancelled.is_set):
                    seen.append("admitted")
            except Cancelled:
                seen.append("cancelled")

        thread = threading.Thread(target=waiter)
        thread.start()
        cancelled.set()
        gate.wake()
        thread.join(5)
    assert seen == ["cancelled"]
    with gate.holding(3):  # the slot it never took is free
        pass


def test_gate_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot, not 0"):
        Gate(0)


def test_default_starts_is_the_process_share_of_the_cpus() -> None:
    assert default_starts(1, cpus=2) == 2
    assert default_starts(2, cpus=2) == 1
    assert default_starts(4, cpus=2) == 1
    assert default_starts(2, cpus=8) == 4
    assert default_starts(1) >= 1


# ---------------------------------------------------------------- the order items will run in


def test_upcoming_follows_session_items_when_nextitem_agrees() -> None:
    items = ["a", "b", "c", "d"]
    assert upcoming(items, items[1], items[2], None, None) == (["c", "d"], True)
    assert upcoming(items, items[3], None, None, None) == ([], True)


def test_upcoming_trusts_only_nextitem_when_the_order_disagrees() -> None:
    items = ["a", "b", "c", "d"]
    assert upcoming(items, items[0], items[3], None, None) == (["d"], False)  # another plugin's loop
    assert upcoming(items, "x", "c", None, None) == (["c"], False)  # not even in the list
    assert upcoming(items, "x", None, None, None) == ([], False)


def test_upcoming_under_xdist_is_the_worker_queue_up_to_its_shutdown_marker() -> None:
    items = ["a", "b", "c", "d", "e"]
    shutdown = object()
    assert upcoming(items, "a", "d", [1, 4], 3) == (["d", "b", "e"], True)
    assert upcoming(items, "a", "d", [1, shutdown, 4], 3) == (["d", "b"], True)  # type: ignore[list-item]
    assert upcoming(items, "a", "c", [1, 4], 3) == (["c"], False)  # the queue is not what runs: nextitem only


# ---------------------------------------------------------------- jobs


class Cell:
    """A fake cell's work: records when it was made and released, holds, answers its name."""

    def __init__(self, name: str, log: list[tuple[str, str]], hold: float = 0.05, error: bool = False,
                 wait: threading.Event | None = None) -> None:
        self.name, self.log, self.hold, self.error, self.wait = name, log, hold, error, wait
        self.released = threading.Event()

    def work(self, slot: Slot) -> dict[str, Any]:
        with slot.starting(), slot.entering():
            self.log.append(("made", self.name))
            slot.made(self.release)
        if self.wait is not None:
            self.wait.wait(5)
        else:
            time.sleep(self.hold)
        return {"name": self.name, "error": "boom" if self.error else None}

    def release(self) -> None:
        if not self.released.is_set():
            self.released.set()
            self.log.append(("released", self.name))

    def discard(self, outcome: dict[str, Any]) -> None:
        self.release()


def test_plan_starts_at_most_inflight_jobs_and_each_item_takes_its_own() -> None:
    log: list[tuple[str, str]] = []
    cells = {n: Cell(n, log) for n in "abcdef"}
    scheduler: Scheduler[dict[str, Any]] = Scheduler(inflight=3, starts=1)
    scheduler.plan([(n, cells[n].work, cells[n].discard) for n in "abcdef"])
    assert sorted(scheduler.pending()) == ["a", "b", "c"]  # the window, not the whole list
    job = scheduler.take("a")
    assert job is not None
    assert job.result() == {"name": "a", "error": None}
    assert job.timing.duration > 0
    assert job.timing.stop >= job.timing.start
    scheduler.plan([(n, cells[n].work, cells[n].discard) for n in "bcdef"])  # a again: already taken
    assert sorted(scheduler.pending()) == ["b", "c", "d"]
    scheduler.cancel_all()
    assert scheduler.pending() == []
    assert scheduler.cancelled == 3
    made = [n for kind, n in log if kind == "made"]
    assert [n for kind, n in log if kind == "released"] != []
    assert "a" not in [n for k, n in log if k == "released"]
    assert sorted(n for kind, n in log if kind == "released") == sorted(m for m in made if m != "a")
    assert scheduler.gate.peak == 1


def test_cancel_releases_a_cell_still_being_observed_and_discards_its_outcome() -> None:
    log: list[tuple[str, str]] = []
    blocked = threading.Event()
    cell = Cell("a", log, wait=blocked)
    scheduler: Scheduler[dict[str, Any]] = Scheduler(inflight=2, starts=1)
    scheduler.plan([("a", cell.work, cell.discard)])
    deadline = time.monotonic() + 5
    while ("made", "a") not in log:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    scheduler.forget("a")  # its item will not run here (stolen, deselected)
    assert cell.released.is_set(), "a cancel must remove the cell at once, not after its hold"
    blocked.set()
    assert log.count(("released", "a")) == 1


def test_a_job_cancelled_before_its_start_makes_nothing() -> None:
    log: list[tuple[str, str]] = []
    hold = threading.Event()
    first, second = Cell("a", log, wait=hold), Cell("b", log)
    scheduler: Scheduler[dict[str, Any]] = Scheduler(inflight=2, starts=1)

    def slow_start(slot: Slot) -> dict[str, Any]:
        with slot.starting():  # holds the only start slot until told
            hold.wait(5)
        return first.work(slot)

    scheduler.plan([("a", slow_start, first.discard), ("b", second.work, second.discard)])
    scheduler.forget("b")  # waits at the gate: never made
    hold.set()
    job = scheduler.take("a")
    assert job is not None
    assert job.result()["name"] == "a"
    assert ("made", "b") not in log


def test_a_bug_in_the_work_is_raised_in_the_item() -> None:
    def broken(slot: Slot) -> dict[str, Any]:
        raise KeyError("not a cell's error: a bug")

    scheduler: Scheduler[dict[str, Any]] = Scheduler(inflight=2, starts=1)
    scheduler.plan([("a", broken, lambda o: None)])
    job = scheduler.take("a")
    assert job is not None
    with pytest.raises(KeyError, match="a bug"):
        job.result()


# ---------------------------------------------------------------- the plugin, with a fake backend

FAKE_CONFTEST = r'''
import contextlib, json, os, threading, time

from pytest_ipv6compat.backends import EngineError, StackUnsupported
from pytest_ipv6compat.model import Attestation, Outcome, Verdict
from pytest_ipv6compat.state import SessionState, Unavailable

LOG = os.environ["FAKE_LOG"]
HOLD = float(os.environ.get("FAKE_HOLD", "0.3"))
_lock = threading.Lock()


def note(kind, name, **more):
    with _lock, open(LOG, "a") as out:
        out.write(json.dumps({"kind": kind, "name": name, "t": time.monotonic(), "pid": os.getpid(),
                              "thread": threading.current_thread().name, **more}) + "\n")


class FakeRun:
    keep = False

    def __init__(self, launch, name):
        self.launch, self._name, self.container_id, self.t0 = launch, name, name, time.monotonic()

    @property
    def name(self):
        return self._name

    def inspection(self):
        return [f"fake-inspect {self._name}"]

    def attestation(self):
        return Attestation(self.launch.stack.name, True, (("fake", "yes"),))

    def verdict(self):
        time.sleep(max(0.0, HOLD - (time.monotonic() - self.t0)))  # the hold, from this cell's own start
        note("verdict", self._name)
        return Verdict(Outcome.EXITED, exit_code=int(self.launch.env["K"]), seconds=time.monotonic() - self.t0)


class FakeBackend:
    def info(self):
        return {"engine": "Fake", "version": "1", "address": "fake://", "url": "fake://"}

    def image_config(self, image):
        return {}

    @contextlib.contextmanager
    def run(self, launch):
        value = launch.env.get("K")
        if value == "err":
            raise EngineError("fake engine: no start for K=err")
        if value == "unsup":
            raise StackUnsupported("fake engine: cannot realise this stack for K=unsup")
        name = f"fake-{value}"
        note("start", name)
        run = FakeRun(launch, name)
        try:
            yield run
        finally:
            note("end", name, keep=run.keep)


FAKE = FakeBackend()


def _no_engine(self):
    raise Unavailable("no engine in this test")


SessionState.backend = lambda self, stack: FAKE
SessionState.engine = _no_engine
'''


def fake_matrix(dest: Path, values: list[str], *, wrong: str | None = None) -> list[str]:
    """Cells ``K=value`` on dual-stack, each expected to exit with its value (``wrong``: expected otherwise)."""
    expect = "\n".join(f'"={v}" = "exited {int(v) + (1 if v == wrong else 0) if v.isdigit() else 0}"'
                       for v in values)
    settings = ", ".join(json.dumps(f"={v}") for v in values)
    (dest / "fake.ipv6.toml").write_text(
        f'[target]\nname = "fake"\nimages = {{ v = "fake/image:1" }}\nvariants = ["v"]\nknob = "K"\n'
        f'settings = [{settings}]\nstacks = ["dual-stack"]\n\n[expect.v.dual-stack]\n{expect}\n',
        encoding="utf-8",
    )
    return [f"fake[v-dual-stack-K={v}]" for v in values]


@pytest.fixture
def fake(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest(FAKE_CONFTEST)
    monkeypatch.setenv("FAKE_LOG", str(pytester.path / "fake.jsonl"))
    return pytester


def events(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    path = pytester.path / "fake.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return [json.loads(line) for line in lines]


def most_at_once(log: list[dict[str, Any]]) -> dict[int, int]:
    """Per process, the most cells started and not yet ended at one time."""
    live: dict[int, int] = {}
    most: dict[int, int] = {}
    for e in sorted(log, key=lambda e: e["t"]):
        if e["kind"] in ("start", "end"):
            live[e["pid"]] = live.get(e["pid"], 0) + (1 if e["kind"] == "start" else -1)
            most[e["pid"]] = max(most.get(e["pid"], 0), live[e["pid"]])
    return most


def every_start_ended(log: list[dict[str, Any]]) -> None:
    starts = sorted(e["name"] for e in log if e["kind"] == "start")
    ends = sorted(e["name"] for e in log if e["kind"] == "end")
    assert starts == ends, f"started {starts}, ended {ends}"


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Item name -> PASSED/FAILED/ERROR/SKIPPED from the -v lines (one per phase that has an outcome)."""
    out: dict[str, str] = {}
    for line in result.outlines:
        found = re.match(r"\S+::fake\[(.+?)\] (PASSED|FAILED|ERROR|SKIPPED)", line)
        if found and out.get(found[1]) in (None, "PASSED"):
            out[found[1]] = found[2]
    return out


def test_cells_overlap_up_to_inflight_with_the_serial_verdicts_and_errors(fake: pytest.Pytester) -> None:
    values = ["0", "1", "2", "3", "4", "5", "6", "err", "7", "unsup"]
    fake_matrix(fake.path, values, wrong="2")
    serial = fake.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "-v", "--ipv6-inflight=1")
    serial_log = events(fake)
    ahead = fake.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "-v", "--ipv6-inflight=4")
    ahead_log = events(fake)
    assert outcomes(serial) == outcomes(ahead)
    assert outcomes(ahead) == {
        "v-dual-stack-K=0": "PASSED", "v-dual-stack-K=1": "PASSED", "v-dual-stack-K=2": "FAILED",
        "v-dual-stack-K=err": "ERROR", "v-dual-stack-K=3": "PASSED", "v-dual-stack-K=unsup": "SKIPPED",
        "v-dual-stack-K=4": "PASSED", "v-dual-stack-K=5": "PASSED", "v-dual-stack-K=6": "PASSED",
        "v-dual-stack-K=7": "PASSED",
    }
    for result in (serial, ahead):  # each error and skip on its own item, in the same words
        result.stdout.fnmatch_lines([
            "*ERROR at setup of fake[[]v-dual-stack-K=err[]]*", "*fake engine: no start for K=err*",
        ])
        result.stdout.fnmatch_lines(["SKIPPED*fake engine: cannot realise this stack for K=unsup*"])
        result.stdout.fnmatch_lines(["*exited with code 2*"])
    assert most_at_once(serial_log) == {serial_log[0]["pid"]: 1}
    assert list(most_at_once(ahead_log).values()) == [4]
    every_start_ended(serial_log)
    every_start_ended(ahead_log)
    ahead_starts = [e["name"] for e in ahead_log if e["kind"] == "start"]
    assert sorted(ahead_starts) == sorted(e["name"] for e in serial_log if e["kind"] == "start")
    assert ahead_starts[0] == "fake-0"  # the item that runs first starts first (two starts may pass the gate at once)


def test_a_stopped_run_removes_the_cells_started_ahead_and_reports_only_what_ran(fake: pytest.Pytester) -> None:
    values = [str(n) for n in range(8)]
    fake_matrix(fake.path, values, wrong="1")
    docs, logs = [], []
    for inflight in ("1", "4"):
        result = fake.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "-v", "-x", f"--ipv6-inflight={inflight}",
                                           "--ipv6-json=r.json")
        logs.append(events(fake))
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        assert outcomes(result) == {"v-dual-stack-K=0": "PASSED", "v-dual-stack-K=1": "FAILED"}
        docs.append(json.loads((fake.path / "r.json").read_text()))
    started = {e["name"] for e in logs[1] if e["kind"] == "start"}
    assert started > {"fake-0", "fake-1"}, "cells were started ahead: the test would prove nothing"
    every_start_ended(logs[1])
    serial, ahead = ([(c["id"], c["status"], c["reasons"]) for c in d["cells"]] for d in docs)
    assert ahead == serial  # the cells started ahead have no result: "the run stopped early", as serially
    assert serial[2] == ("v-dual-stack-K=2", "error", ["no result: the run stopped early (stopping after 1 failures)"])
    assert docs[1]["run"] == docs[0]["run"]
    assert docs[1]["run"]["complete"] is False


def test_keep_failed_keeps_the_failed_cell_started_ahead(fake: pytest.Pytester) -> None:
    fake_matrix(fake.path, ["0", "1", "2"], wrong="1")
    result = fake.runpytest_subprocess("-p", "no:cacheprovider", "--ipv6-inflight=3", "--ipv6-keep-failed")
    log = events(fake)
    assert {e["name"]: e["keep"] for e in log if e["kind"] == "end"} == {"fake-0": False, "fake-1": True,
                                                                          "fake-2": False}
    result.stdout.fnmatch_lines(["*fake-inspect fake-1*"])


def test_a_cells_duration_is_its_own_not_the_wait_for_it(fake: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setenv("FAKE_HOLD", "0.5")
    fake_matrix(fake.path, ["0", "1", "2", "3"])
    fake.runpytest_subprocess("-p", "no:cacheprovider", "--ipv6-inflight=4", "--junitxml=j.xml")
    import xml.etree.ElementTree as ET

    times = [float(c.get("time", "0")) for c in ET.parse(fake.path / "j.xml").getroot().iter("testcase")]
    assert len(times) == 4
    # Each cell held 0.5 s from its own start: its time says so, though the last three waited less than that.
    assert all(0.45 <= t < 2.0 for t in times), times


def test_under_xdist_each_worker_keeps_several_cells_in_flight(fake: pytest.Pytester) -> None:
    values = [str(n) for n in range(16)]
    fake_matrix(fake.path, values)
    result = fake.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--ipv6-inflight=3")
    log = events(fake)
    result.assert_outcomes(passed=16)
    most = most_at_once(log)
    assert sorted(most.values()) == [3, 3], most  # without a deeper queue, xdist leaves each worker 2
    every_start_ended(log)
    assert sorted(e["name"] for e in log if e["kind"] == "start") == sorted(f"fake-{v}" for v in values)


@pytest.mark.parametrize("value", ["0", "65", "x", "2.5"])
def test_inflight_must_be_a_whole_number_from_1_to_64(pytester: pytest.Pytester, value: str) -> None:
    result = pytester.runpytest(f"--ipv6-inflight={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--ipv6-inflight={value}: '{value}' is not a whole number from 1 to 64*"])


def test_inflight_from_the_ini_file_names_it(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nipv6_inflight = many\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option ipv6_inflight = 'many' in *: 'many' is not a whole number*"])


def test_an_interrupted_wait_cancels_the_job_its_item_took(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while an item waits for its cell: the job is its item's, so no later cancel_all would see it."""
    log: list[tuple[str, str]] = []
    blocked = threading.Event()
    cell = Cell("a", log, wait=blocked)
    scheduler: Scheduler[dict[str, Any]] = Scheduler(inflight=2, starts=1)
    scheduler.plan([("a", cell.work, cell.discard)])
    job = scheduler.take("a")
    assert job is not None
    deadline = time.monotonic() + 5
    while ("made", "a") not in log:
        assert time.monotonic() < deadline
        time.sleep(0.005)

    def interrupted(timeout: float | None = None) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(job._done, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        job.result()
    assert cell.released.is_set()
    blocked.set()
    job.join()
    assert log.count(("released", "a")) == 1


def test_the_engine_session_reads_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells started ahead call the engine from threads while pytest changes os.environ (PYTEST_CURRENT_TEST)
    at every phase: requests must not read os.environ per call, and a proxy it named still applies."""
    import docker

    from pytest_ipv6compat.state import read_environment_once

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = docker.DockerClient(base_url="tcp://192.0.2.1:2375", version="1.41")  # never contacted
    read_environment_once(client)
    assert client.api.trust_env is False
    assert client.api.proxies["http"] == "http://proxy.invalid:3128"
    client.close()
