"""The plugin's cost per cell, driven through the backend exactly as ``items.py`` drives it.

A cell is ``DockerBackend.run(launch)`` entered, ``attestation()``, ``verdict()``, then
the context exited (the container removed). The clock runs from before ``run`` to after
the exit, minus the bench's own after-the-fact calls (failure latency).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import docker
from common import BENCH_LABEL, DOMAIN, BenchError, parse_docker_time

from pytest_ipv6compat.backends import Launch
from pytest_ipv6compat.backends.docker_api import DockerBackend
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.spec import RunSpec
from pytest_ipv6compat.stacks import get_stack

if TYPE_CHECKING:
    from breakdown import ApiTrace

UP_STACK = "dual-stack"
EXIT_STACK = "ipv6-kernel-off"


@dataclass
class BenchBackend(DockerBackend):
    """The plugin's backend, its containers also labelled ``ipv6compat.bench=<run>`` for cleanup."""

    bench_run: str = ""

    @property
    def labels(self) -> dict[str, str]:
        return {**super().labels, BENCH_LABEL: self.bench_run}


def launch_for(image: str, stack: str, *, hold: float, settle: float, timeout: float) -> Launch:
    """The reference cell as the matrix runs it: knob unset, ``GET /healthz`` over https on every listener."""
    spec = RunSpec(probe="https", http_path="/healthz", settle=settle, hold=hold, timeout=timeout)
    return Launch(image, get_stack(stack), env={"PL_DOMAIN_NAME": DOMAIN}, run=spec)


@dataclass
class CellRun:
    total: float  # from before run() to after the context exited, minus the bench's own calls
    outcome: str
    latency: float | None = None  # wall clock at verdict() return - State.FinishedAt
    latency_log: float | None = None  # wall clock at verdict() return - timestamp of the last log line
    events: dict[str, float] = field(default_factory=dict)  # traced runs: milestone -> s from t0
    calls: list[tuple[str, float]] = field(default_factory=list)  # traced runs: (API call, duration s)
    evidence: str = ""  # listeners and which answered, or the exit and its error line


def plugin_cell(backend: DockerBackend, launch: Launch, *, expect: Outcome, latency: bool = False,
                trace: ApiTrace | None = None) -> CellRun:
    """One cell, as items.py runs it. With ``latency``, also how long after the exit the verdict was known."""
    found: dict[str, float] = {}
    if trace is not None:
        trace.begin()
    t0 = time.monotonic()
    with backend.run(launch) as run:
        attestation = run.attestation()
        t_attested = time.monotonic()
        verdict = run.verdict()
        wall_verdict, t_verdict = time.time(), time.monotonic()
        if latency and verdict.outcome is Outcome.EXITED:
            found = _exit_times(backend.client, run.container_id)
        extra = time.monotonic() - t_verdict
    t1 = time.monotonic()
    if not attestation.ok:
        raise BenchError(f"stack {launch.stack.name} was not attested:\n{attestation.describe()}")
    if verdict.outcome is not expect:
        raise BenchError(f"{launch.image} on {launch.stack.name}: verdict {verdict.outcome}, expected {expect}"
                         f"\n{verdict.logs[-800:]}")
    cell = CellRun(t1 - t0 - extra, str(verdict.outcome))
    error = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", verdict.error_line or "")  # nginx's timestamp
    cell.evidence = " ".join(sorted(f"{r.listener}:{r.via}={r.result}" for r in verdict.reach)
                             ) or f"{verdict.outcome} {verdict.exit_code} {error}"
    if "finished" in found:
        cell.latency = wall_verdict - found["finished"]
    if "last_line" in found:
        cell.latency_log = wall_verdict - found["last_line"]
    if trace is not None:
        cell.events, cell.calls = trace.end(t0, extra_after=(t_verdict, extra), finished=found.get("finished"))
        cell.events["attestation() returned"] = t_attested - t0
        cell.events["verdict() returned"] = t_verdict - t0
        cell.events["context exited (container removed)"] = cell.total
    return cell


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
