"""The oci backend against the engine and the bare ``docker run`` floor, side by side in one run.

Per container cell with hold 0 (the reference target, https GET /healthz on dual-stack, and its errno-97
exit on ipv6-kernel-off; the oci up cell also with settle 0, "oci up s=0", since the settle is a wait the run
settings ask for, as the hold is, and the floor has neither), interleaved rounds after one warm-up round:
whole-cell wall time and CPU seconds, medians and ratios to the floor. CPU is counted by process tree, so
that other users' load does not count (the machine-wide figure bench/run.py prints, ``CpuSnapshot.busy``, is shown too):

* ``tree``: this process and every process it started and reaped (getrusage self + children): the docker
  CLI for the floor, the plugin for the engine, the plugin and the runtime's whole tree (crun, its exec,
  the container's processes, which crun reaps) for oci;
* ``engine``: what the engine spent meanwhile (``CpuSnapshot.stack``: dockerd, containerd, the shims and
  runc reaped by PID 1, kernel threads; plus the cpuacct of /docker, the containers' own processes). Other
  users' containers count there too, so it is an upper bound; it is added to the floor's and the engine's
  figure, and shown (not added) for oci, whose cells do not go through the engine. Then the
reference matrix with ``-n 4`` on each backend (its ipv6-boot-disabled cells run under User-mode Linux
on both).

    python bench/oci.py                 # N=15 per cell kind, then the matrix on both backends
    python bench/oci.py --runs 40 --skip matrix
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import suite
from common import CpuSnapshot, Summary, load_average, progress
from floor import floor_exit, floor_up
from percell import EXIT_STACK, UP_STACK, plugin_cell
from run import bench_session

from pytest_ipv6compat.backends.oci import OciBackend, Runtime, find_runtime
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.seccomp import profile_json

TARGET = 0.3  # issue 18: oci's CPU and whole cell at most 0.3x the floor
SETTLE_0 = "oci up s=0"  # the oci up cell with settle 0


def runtime_or_say() -> Runtime | None:
    """crun or runc (:func:`find_runtime`); None, and one line on stderr, if neither is installed."""
    runtime = find_runtime()
    if runtime is None:
        print("error: neither crun nor runc is installed (apt-get install crun)", file=sys.stderr)
    return runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--skip", default="", help="sections to leave out: cells, matrix")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    runtime = runtime_or_say()
    if runtime is None:
        return 2

    def body(ctx: object) -> None:
        from run import Context

        assert isinstance(ctx, Context)
        oci = OciBackend(ctx.backend, ctx.cache, ctx.backend.probe_dir, runtime)
        try:
            if "cells" not in skip:
                cells(ctx, oci, args.runs)
            if "matrix" not in skip:
                matrix(ctx)
        finally:
            oci.remove_session()

    return bench_session(0.0, body)


def cells(ctx: object, oci: OciBackend, runs: int) -> None:
    from run import Context

    assert isinstance(ctx, Context)
    seccomp = ctx.tmp / "seccomp-inet6-97.json"
    seccomp.write_text(profile_json(inet6_errno=97))
    up, down = ctx.launch(UP_STACK, hold=0.0), ctx.launch(EXIT_STACK)
    # The settle, like the hold, is a wait the run settings ask for (0.05 s by default), not a cost of the
    # backend; the floor has neither. The up cell runs with both: the settle a user leaves as it is, and 0.
    bare = dataclasses.replace(up, run=dataclasses.replace(up.run, settle=0.0))
    kinds: dict[str, Callable[[], float]] = {
        "floor up": lambda: floor_up(ctx.reference, ctx.run_id, 0.0).total,
        "engine up": lambda: plugin_cell(ctx.backend, up, expect=Outcome.UP).total,
        "oci up": lambda: plugin_cell(oci, up, expect=Outcome.UP).total,  # type: ignore[arg-type]
        SETTLE_0: lambda: plugin_cell(oci, bare, expect=Outcome.UP).total,  # type: ignore[arg-type]
        "floor exit": lambda: floor_exit(ctx.reference, ctx.run_id, seccomp).total,
        "engine exit": lambda: plugin_cell(ctx.backend, down, expect=Outcome.EXITED).total,
        "oci exit": lambda: plugin_cell(oci, down, expect=Outcome.EXITED).total,  # type: ignore[arg-type]
    }
    names = list(kinds)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    busy: dict[str, list[float]] = {k: [] for k in names}
    stack: dict[str, list[float]] = {k: [] for k in names}
    loads = [load_average()]
    for i in range(runs + 1):
        for name in names[i % len(names):] + names[:i % len(names)]:
            before = CpuSnapshot.take()
            tree0 = _tree_cpu()
            seconds = kinds[name]()
            tree = _tree_cpu() - tree0
            delta = CpuSnapshot.take().since(before)
            if i:
                engine = delta.stack + (delta.containers if delta.containers == delta.containers else 0.0)
                wall[name].append(seconds)
                stack[name].append(engine)
                busy[name].append(delta.busy)
                cpu[name].append(tree + (0.0 if name.startswith("oci") else engine))
        if i and i % 5 == 0:
            loads.append(load_average())
            progress(f"round {i}/{runs}")
    loads.append(load_average())
    print(f"\n== per cell, hold 0, N={runs} interleaved ({oci.runtime.name} {oci.runtime.version}); "
          f"load average during the run: {' | '.join(loads)}")
    # The engine's processes also work for other users' containers: their rate, seen while oci cells ran (which
    # do not use the engine), is taken off the floor's and the engine's figure in the last column.
    rate = Summary.of([e / w for e, w in zip(stack["oci up"] + stack["oci exit"], wall["oci up"] + wall["oci exit"],
                                             strict=True)]).median
    net = {k: [max(0.0, c - (0.0 if k.startswith("oci") else rate * w)) for c, w in zip(cpu[k], wall[k], strict=True)]
           for k in names}
    print(f"  other users' load on the engine's processes while oci cells ran: {rate:.2f} CPU-s per s (median)")
    print(f"  {'kind':<12} {'wall median':>12} {'p90':>8} {'CPU-s median':>13} {'wall/floor':>11} {'CPU/floor':>10}"
          f" {'engine CPU-s':>13} {'machine busy':>13} {'CPU-s net':>10} {'net/floor':>10}")
    for name in names:
        floor = "floor exit" if name.endswith("exit") else "floor up"
        w, c = Summary.of(wall[name]), Summary.of(cpu[name])
        fw, fc = Summary.of(wall[floor]).median, Summary.of(cpu[floor]).median
        engine, machine = Summary.of(stack[name]).median, Summary.of(busy[name]).median
        n, fn = Summary.of(net[name]).median, Summary.of(net[floor]).median
        print(f"  {name:<12} {w.median:>10.3f} s {w.p90:>6.3f} s {c.median:>11.3f} s {w.median / fw:>10.2f}x "
              f"{c.median / fc:>9.2f}x {engine:>11.3f} s {machine:>11.3f} s {n:>8.3f} s {_ratio(n, fn):>10}")
    # a median hides a minority of slow cells (issue 18: an exit met PID 1)
    for name in ("oci up", SETTLE_0, "oci exit"):
        slow = [w for w in wall[name] if w > 1.0]
        print(f"  {name}: slowest {max(wall[name]):.3f} s; {len(slow)} of {len(wall[name])} cells over 1 s")
    for kind in ("up", "exit"):
        fw, fc = Summary.of(wall[f"floor {kind}"]).median, Summary.of(cpu[f"floor {kind}"]).median
        ow, oc = Summary.of(wall[f"oci {kind}"]).median, Summary.of(cpu[f"oci {kind}"]).median
        fn = Summary.of(net[f"floor {kind}"]).median
        met = ow / fw <= TARGET and oc / fc <= TARGET and (not fn or oc / fn <= TARGET)
        print(f"  oci {kind}: wall {ow / fw:.2f}x, CPU {oc / fc:.2f}x the floor ({_ratio(oc, fn)} with the background "
              f"taken off the floor) (target <= {TARGET}x): {'met' if met else 'NOT met'}")
    fw, bw = Summary.of(wall["floor up"]).median, Summary.of(wall[SETTLE_0]).median
    print(f"  oci up with settle 0 (a policy wait, as the hold; default {up.run.settle:g} s): wall {bw / fw:.2f}x the "
          f"floor (target <= {TARGET}x): {'met' if bw / fw <= TARGET else 'NOT met'}")


def _ratio(value: float, floor: float) -> str:
    """``value / floor`` as ``0.25x``; "n/a" when the floor is 0 (all of it was other users' background)."""
    return f"{value / floor:.2f}x" if floor > 0 else "n/a"


def _tree_cpu() -> float:
    """CPU seconds of this process and of every child it has reaped (and theirs, transitively)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def matrix(ctx: object) -> None:
    from run import Context

    assert isinstance(ctx, Context)
    print("\n== the reference matrix, -n 4 (ipv6-boot-disabled cells under User-mode Linux on both)")
    for backend in ("engine", "oci"):
        progress(f"matrix -n 4 on {backend} ...")
        load = load_average()
        t0 = time.monotonic()
        run = suite.run_matrix(4, (f"--ipv6-backend={backend}",), ctx.backend.client)
        print(f"  {backend:<7} wall {run.wall:6.1f} s  exit {run.returncode}  [{run.summary}]  "
              f"load before {load}, after {load_average()} ({time.monotonic() - t0:.0f} s)")
        if run.returncode not in (0, 1):
            print("\n".join("  | " + line for line in run.tail.splitlines()[-15:]))


if __name__ == "__main__":
    raise SystemExit(main())
