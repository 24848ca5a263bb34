"""Where an ``oci`` up cell's time goes: milestones on the plugin's own code path, medians over N cells.

The reference target on dual-stack, hold 0 and the plugin's default settle (as bench/oci.py runs it),
driven as items.py drives a cell (bench/percell.py). The milestones are taken by wrapping the oci
backend's own functions in this process (nothing of the plugin is changed); each is the time since
``run()`` was entered, its median over the cells, and the median step from the milestone before:

* bundle: the cell's directories, files and config.json written (just before its memory cgroup);
* crun run started: ``Popen`` of ocistart (which execs the runtime) returned (``OciRun`` built);
* shim first line / shim attested: the target's stdout (the shim runs after podsetup);
* listener / settled / probes done / ready: the watcher's records as the plugin reads them;
* kill, wait (``crun run`` ended), close (threads joined), cgroups removed, directory removed.

    python bench/ociprofile.py --runs 20
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchError, Summary, load_average, progress
from oci import runtime_or_say
from percell import UP_STACK
from run import bench_session

from pytest_ipv6compat.backends import oci as oci_mod
from pytest_ipv6compat.backends import oci_run
from pytest_ipv6compat.backends.oci import OciBackend
from pytest_ipv6compat.backends.oci_bundle import oci_seccomp
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.probe import report

ORDER = ("bundle written", "memory cgroup made", "crun run started", "shim first line", "shim ::1 fact",
         "shim pod tables read", "shim attested", "attestation() returned", "watcher started",
         "watch exec started",
         "first listener", "settled", "probes done", "ready", "verdict() returned", "kill sent", "crun run ended",
         "close() done", "cgroups removed", "cell removed")

_marks: dict[str, float] = {}
_t0 = 0.0


def mark(name: str, *, first: bool = True) -> None:
    if first and name in _marks:
        return
    _marks[name] = time.monotonic() - _t0


def _wrap(owner: Any, attr: str, before: str | None = None, after: str | None = None,
          when: Callable[..., bool] | None = None) -> None:
    original = getattr(owner, attr, None)
    if original is None:  # an older version of the backend (this bench also profiles main's code)
        return

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hit = when is None or when(*args, **kwargs)
        if hit and before:
            mark(before)
        try:
            return original(*args, **kwargs)
        finally:
            if hit and after:
                mark(after)

    setattr(owner, attr, wrapper)


def instrument() -> None:
    _wrap(oci_mod, "_memory_bound", before="bundle written", after="memory cgroup made")
    _wrap(oci_run.OciRun, "__init__", before="crun run started")
    _wrap(oci_mod, "_ctl", after="kill sent", when=lambda runtime, *args: args[:1] == ("kill",))
    _wrap(oci_mod, "_kill_cgroup", after="kill sent")
    _wrap(oci_run.OciRun, "close", before="crun run ended", after="close() done")
    _wrap(oci_mod, "_remove_cgroups", after="cgroups removed")
    line = oci_run.OciRun._line

    def on_line(self: oci_run.OciRun, text: str, when: float | None, *, shim: bool) -> None:
        if shim:
            mark("shim first line")
            if " fact lo ::1=" in text:
                mark("shim ::1 fact")
            if " fact raw inet6 default=" in text:
                mark("shim pod tables read")
        line(self, text, when, shim=shim)
        if shim and self._shim.attested:
            mark("shim attested")

    oci_run.OciRun._line = on_line
    feed = report.WatchReport.feed

    def on_record(self: report.WatchReport, text: str) -> None:
        word = text.split(" ", 1)[0]
        mark("watch exec started")
        if word == "listener":
            mark("first listener")
        elif word == "settled":
            mark("settled")
            with contextlib.suppress(IndexError, ValueError):  # its own clock: seconds since it started
                _marks["watcher started"] = _marks["settled"] - float(text.split(" ")[1])
        elif word in ("reach", "pod"):
            mark("probes done", first=False)
        elif word == "ready":
            mark("ready")
        feed(self, text)

    report.WatchReport.feed = on_record


def one_cell(oci: OciBackend, launch: Any, *, attest: bool = True) -> dict[str, float]:
    global _t0
    _marks.clear()
    _t0 = time.monotonic()
    with oci.run(launch) as run:
        attestation = run.attestation()
        mark("attestation() returned")
        verdict = run.verdict()
        mark("verdict() returned")
    mark("cell removed")
    if (attest and not attestation.ok) or verdict.outcome is not Outcome.UP:
        raise BenchError(f"oci cell: attested {attestation.ok}, verdict {verdict.outcome}\n{verdict.logs[-800:]}")
    return dict(_marks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-pod", action="store_true",
                        help="the stack without its pod address (no podsetup): what podsetup costs; the attestation "
                             "fails then (it expects the pod address) and is not checked")
    parser.add_argument("--crun-compiles-seccomp", action="store_true",
                        help="no run.oci.seccomp_bpf_data: crun compiles the profile at each start, as before "
                             "backends/oci_seccomp.py (what the precompiled program saves)")
    args = parser.parse_args(argv)
    runtime = runtime_or_say()
    if runtime is None:
        return 2

    def body(ctx: object) -> None:
        from run import Context

        assert isinstance(ctx, Context)
        instrument()
        oci = OciBackend(ctx.backend, ctx.cache, ctx.backend.probe_dir, runtime)
        if args.crun_compiles_seccomp:
            oci.precompile_seccomp = False
        launch = ctx.launch(UP_STACK, hold=0.0)
        if args.no_pod:
            launch = dataclasses.replace(launch, stack=dataclasses.replace(launch.stack, pod=()))
        started = time.monotonic()  # the backend's own choice, made once per profile and process: not a cell's
        once = (f"; seccomp program compiled once in {(time.monotonic() - started) * 1000:.1f} ms"
                if oci._seccomp_annotation(oci_seccomp(launch.stack)) is not None
                else "; crun compiles the seccomp profile at each start (runc, told to, or the warning's reason)")
        cells: list[dict[str, float]] = []
        loads = [load_average()]
        try:
            for i in range(args.runs + 1):
                marks = one_cell(oci, launch, attest=not args.no_pod)
                if i:  # the first is a warm-up
                    cells.append(marks)
                if i and i % 10 == 0:
                    progress(f"cell {i}/{args.runs}")
        finally:
            oci.remove_session()
        loads.append(load_average())
        what = launch.stack.name + (" without its pod address" if args.no_pod else "")
        what += ", crun compiles the seccomp profile" if args.crun_compiles_seccomp else ""
        print(f"== oci up cell ({what}, hold 0, settle {launch.run.settle:g} s), N={len(cells)}, "
              f"{runtime.name} {runtime.version}; load {' | '.join(loads)}{once}")
        print(f"  {'milestone':<26} {'at (median)':>12} {'p90':>8} {'step (median)':>14}")
        previous: str | None = None
        for name in ORDER:
            at = [c[name] for c in cells if name in c]
            if not at:
                continue
            steps = [c[name] - c[previous] for c in cells if previous and name in c and previous in c]
            s = Summary.of(at)
            step = f"{Summary.of(steps).median * 1000:>11.1f} ms" if steps else ""
            print(f"  {name:<26} {s.median * 1000:>9.1f} ms {s.p90 * 1000:>5.0f} ms {step:>14}")
            previous = name

    return bench_session(0.0, body)


if __name__ == "__main__":
    raise SystemExit(main())
