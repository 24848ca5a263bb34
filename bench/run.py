"""Benchmark pytest-ipv6compat against a bare ``docker run`` floor measured in the same run.

    python bench/run.py [--runs N] [--hold SECONDS] [--quick] [--skip SECTION,...]

Prints, section by section, then one table: figure, median, floor, ratio, target, met?
See bench/README.md for what each figure means and how to read it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import docker
import docker.errors
import suite
from breakdown import ApiTrace, exec_roundtrip, render
from common import (
    PREPARE_HINT,
    BenchError,
    CpuSnapshot,
    Row,
    Summary,
    Table,
    docker_cli,
    load_average,
    ms,
    progress,
    remove_labelled,
    use_cli,
)
from floor import FloorRun, floor_exit, floor_up
from percell import EXIT_STACK, UP_STACK, BenchBackend, CellRun, launch_for, plugin_cell

from pytest_ipv6compat import images
from pytest_ipv6compat.backends import EngineError, Launch
from pytest_ipv6compat.matrix import Matrix
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.options import Settings
from pytest_ipv6compat.seccomp import profile_json

SECTIONS = ("warm", "cells", "profile", "matrix", "cold")
TARGET_RATIO = 1.25
TARGET_LATENCY_S = 0.2
TARGET_WARM_S = 1.0
TARGET_COLD_S = 180.0
TARGET_RSS_MIB = 150.0


@dataclass
class Context:
    run_id: str
    backend: BenchBackend
    cache: Path
    matrix: Matrix
    refs: dict[str, str]
    settle: float
    timeout: float
    tmp: Path
    hold: float = 1.0

    @property
    def reference(self) -> str:
        return self.refs["unpatched"]

    def launch(self, stack: str, hold: float | None = None) -> Launch:
        return launch_for(self.reference, stack, hold=self.hold if hold is None else hold, settle=self.settle,
                          timeout=self.timeout)


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 72 - len(title)), flush=True)


def preflight(run_id: str, tmp: Path, hold: float) -> Context:
    settings = Settings()
    cache = images.default_cache_dir()
    with suite.no_builds():
        try:
            probe = images.ensure_probe(cache)
        except suite.NotPrepared:
            raise BenchError(f"the probe is not built: {PREPARE_HINT}") from None
    try:  # the API timeout the plugin itself uses (state.py)
        backend = BenchBackend.connect(probe, api_timeout=max(60.0, settings.timeout + 10))
        info = backend.info()
    except EngineError as exc:
        raise BenchError(f"{exc}; start the engine (dockerd as .ci/run does, or a Podman service as README says) "
                         "and check DOCKER_HOST") from None
    assert isinstance(backend, BenchBackend)  # connect() builds cls(...)
    if info["engine"] == "Podman":  # its own thin client, on the same service the plugin talks to
        use_cli(["podman", "--remote", "--url", os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"])
    cli = common.CLI[0]
    if shutil.which(cli) is None:
        raise BenchError(f"the {cli} CLI is not on PATH; the floor is measured with it, exactly as a user runs it")
    server = docker_cli("version", "--format", "{{.Server.Version}}", timeout=30)
    if os.geteuid() != 0:
        progress("warning: not root; reading /proc/<pid>/net/tcp of container processes may fail")
    backend.bench_run = run_id
    matrix = suite.matrix_target()
    refs = suite.warm_images(backend.client, cache, matrix).refs
    progress(f"engine {info['engine']} {server} at {info['address']}; floor CLI `{' '.join(common.CLI)}`; "
             f"reference target {refs['unpatched']}; load {load_average()}")
    return Context(run_id, backend, cache, matrix, refs, settings.settle, settings.timeout, tmp, hold)


# --- sections -----------------------------------------------------------------------------------


def bench_warm(ctx: Context, runs: int, table: Table) -> None:
    section("warm image step (everything built; builds are forbidden while timed)")
    client = ctx.backend.client
    before = suite.image_ids(client, ctx.refs)
    walls = []
    for _ in range(min(runs, 5)):
        wall, _out = suite.prepare_subprocess()
        walls.append(wall)
    inproc = [suite.warm_images(client, ctx.cache, ctx.matrix) for _ in range(runs)]
    after_refs = suite.warm_images(client, ctx.cache, ctx.matrix).refs
    after = suite.image_ids(client, after_refs)
    rebuilt = sorted(set(before.items()) ^ set(after.items()))
    for step in inproc[0].steps:
        print(f"  {step:<36} {Summary.of([w.steps[step] for w in inproc]).fmt()}")
    total = Summary.of([w.total for w in inproc])
    print(f"  {'in-process total':<36} {total.fmt()}")
    sub = Summary.of(walls)
    print(f"  {'`python -m pytest_ipv6compat prepare`':<36} {sub.fmt()}  (interpreter start and imports included)")
    verdict = "yes, zero rebuilds" if not rebuilt else "NO: " + ", ".join(map(str, rebuilt))
    print(f"  image ids before == after: {verdict}")
    ok = not rebuilt
    table.add(Row("warm image step, in-process (probe+base+3 targets)", f"{total.median:.3f} s",
                  target=f"<= {TARGET_WARM_S:g} s", met=ok and total.median <= TARGET_WARM_S,
                  note="" if ok else "images were rebuilt during the bench (tree changed?)"))
    table.add(Row("warm `prepare` command, wall (incl. interpreter)", f"{sub.median:.3f} s",
                  target=f"<= {TARGET_WARM_S:g} s", met=ok and sub.median <= TARGET_WARM_S))


def _interleaved(ctx: Context, runs: int, seccomp: Path) -> tuple[dict[str, list[object]], dict[str, list[float]]]:
    """Round 0 warms up and is discarded; each later round runs every kind once, rotating the order."""
    up, up0, down = ctx.launch(UP_STACK), ctx.launch(UP_STACK, hold=0.0), ctx.launch(EXIT_STACK)
    kinds: dict[str, Callable[[], object]] = {
        "floor-up": lambda: floor_up(ctx.reference, ctx.run_id, ctx.hold),
        "plugin-up": lambda: plugin_cell(ctx.backend, up, expect=Outcome.UP),
        "floor-exit": lambda: floor_exit(ctx.reference, ctx.run_id, seccomp),
        "plugin-exit": lambda: plugin_cell(ctx.backend, down, expect=Outcome.EXITED, latency=True),
    }
    if ctx.hold > 0:  # the same cells without any hold: the plugin's pure overhead
        kinds["floor-up-0"] = lambda: floor_up(ctx.reference, ctx.run_id, 0.0)
        kinds["plugin-up-0"] = lambda: plugin_cell(ctx.backend, up0, expect=Outcome.UP)
    names = list(kinds)
    results: dict[str, list[object]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for i in range(runs + 1):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            before = CpuSnapshot.take()  # outside the timed call: scanning /proc takes a few ms
            value = kinds[name]()
            if i:
                results[name].append(value)
                cpu[name].append(CpuSnapshot.take().since(before).busy)
        if i and (i % 5 == 0 or i == runs):
            progress(f"per-cell round {i}/{runs}")
    return results, cpu


def _compare(title: str, floors: list[FloorRun], cells: list[CellRun], cpu: tuple[list[float], list[float]]
             ) -> tuple[Summary, Summary, Summary]:
    f = Summary.of([r.total for r in floors])
    p = Summary.of([r.total for r in cells])
    paired = Summary.of([c.total / fl.total for c, fl in zip(cells, floors, strict=True)])
    print(f"  {title}")
    print(f"    floor  {f.fmt()}")
    for phase in floors[0].phases:
        print(f"             {phase:<22} median {ms(Summary.of([r.phases[phase] for r in floors]).median)}")
    print(f"    plugin {p.fmt()}")
    print(f"    ratio of medians {p.median / f.median:.3f}x   median of paired ratios {paired.median:.3f}x  "
          f"(p90 {paired.p90:.3f}x)")
    fc, pc = Summary.of(cpu[0]), Summary.of(cpu[1])
    print(f"    CPU, whole machine, during each run: floor median {fc.median * 1000:.0f} ms, plugin median "
          f"{pc.median * 1000:.0f} ms ({pc.median / fc.median:.2f}x; other users' load included)")
    return f, p, paired


def bench_cells(ctx: Context, runs: int, table: Table) -> None:
    section(f"per cell: bare `{common.CLI[0]} run` floor vs the plugin (N={runs}, interleaved, after 1 warm-up round)")
    seccomp = ctx.tmp / "seccomp-inet6-97.json"
    seccomp.write_text(profile_json(inet6_errno=97))
    res, cpu = _interleaved(ctx, runs, seccomp)
    holds = [("", ctx.hold)] + ([("-0", 0.0)] if ctx.hold > 0 else [])
    for suffix, hold in holds:
        floors = [r for r in res[f"floor-up{suffix}"] if isinstance(r, FloorRun)]
        cells = [r for r in res[f"plugin-up{suffix}"] if isinstance(r, CellRun)]
        title = f"up cell: unpatched on {UP_STACK}, https GET /healthz, hold {hold:g} s on both sides"
        f, p, paired = _compare(title, floors, cells, (cpu[f"floor-up{suffix}"], cpu[f"plugin-up{suffix}"]))
        bare = (p.median - ctx.settle) / f.median
        print(f"    without the settle wait ({ctx.settle:g} s, a policy, not a cost): "
              f"{p.median - ctx.settle:.3f} s = {bare:.2f}x the floor")
        print(f"    evidence: {cells[0].evidence}")
        ratio = p.median / f.median
        note = f"p90 {p.p90:.3f} s; median paired ratio {paired.median:.2f}x; {bare:.2f}x without the settle wait"
        table.add(Row(f"floor: {common.CLI[0]} run -> first LISTEN -> hold {hold:g} s -> rm", f"{f.median:.3f} s",
                      note=f"p90 {f.p90:.3f} s, min {f.min:.3f} s"))
        same = hold == ctx.hold  # the target is for the configured hold; hold 0 shows the pure overhead
        table.add(Row(f"plugin cost per up cell, hold {hold:g} s", f"{p.median:.3f} s", f"{f.median:.3f} s",
                      f"{ratio:.2f}x", f"<= {TARGET_RATIO}x" if same else "(info)",
                      ratio <= TARGET_RATIO if same else None, note=note))
    floors_exit = [r for r in res["floor-exit"] if isinstance(r, FloorRun)]
    cells_exit = [r for r in res["plugin-exit"] if isinstance(r, CellRun)]
    f, p, paired = _compare(f"exited cell: unpatched on {EXIT_STACK} (errno 97)", floors_exit, cells_exit,
                            (cpu["floor-exit"], cpu["plugin-exit"]))
    print(f"    evidence: {cells_exit[0].evidence}")
    ratio = p.median / f.median
    table.add(Row(f"floor: {common.CLI[0]} run -> wait -> rm", f"{f.median:.3f} s",
                  note=f"p90 {f.p90:.3f} s, min {f.min:.3f} s"))
    table.add(Row("plugin cost per exited cell", f"{p.median:.3f} s", f"{f.median:.3f} s", f"{ratio:.2f}x",
                  f"<= {TARGET_RATIO}x", ratio <= TARGET_RATIO,
                  note=f"p90 {p.p90:.3f} s; median paired ratio {paired.median:.2f}x"))
    lat = Summary.of([r.latency for r in cells_exit if r.latency is not None])
    lat_log = Summary.of([r.latency_log for r in cells_exit if r.latency_log is not None])
    print("  failure latency: wall clock when verdict() returned minus ...")
    print(f"    ... State.FinishedAt (dockerd's record of the exit)     {lat.fmt()}")
    print(f"    ... timestamp of the target's last log line (<= exit)   {lat_log.fmt()}")
    floor_lat = Summary.of([r.latency for r in floors_exit if r.latency is not None])
    print(f"  the floor's, for comparison: `{common.CLI[0]} wait` returned - State.FinishedAt  {floor_lat.fmt()}")
    table.add(Row("failure latency: target exit -> verdict known", f"{lat.median:.3f} s",
                  target=f"<= {TARGET_LATENCY_S:g} s", met=lat.median <= TARGET_LATENCY_S,
                  note=f"vs State.FinishedAt; p90 {lat.p90:.3f} s; vs last log line: median "
                       f"{lat_log.median:.3f} s, p90 {lat_log.p90:.3f} s; the floor's `{common.CLI[0]} wait`: median "
                       f"{floor_lat.median:.3f} s"))


def bench_profile(ctx: Context, runs: int) -> None:
    n = max(3, min(runs, 8))
    section(f"where a cell's time goes (traced runs, N={n}; the tracing adds a little)")
    host = docker.from_env()
    trace = ApiTrace()
    holds = [ctx.hold] + ([0.0] if ctx.hold > 0 else [])
    cases = [(f"up, hold {h:g} s", ctx.launch(UP_STACK, hold=h), Outcome.UP) for h in holds]
    cases.append(("exited", ctx.launch(EXIT_STACK), Outcome.EXITED))
    try:
        with trace.installed(host.api):
            for kind, launch, expect in cases:
                cells = [plugin_cell(ctx.backend, launch, expect=expect, latency=expect is Outcome.EXITED,
                                     trace=trace) for _ in range(n + 1)][1:]
                print(render(cells, f"{kind} ({launch.stack.name})"))
    finally:
        host.close()
    calls, first = exec_roundtrip(ctx.backend, ctx.launch(UP_STACK, hold=0.0), n)
    print(f"  exec session into a running target (busybox echo, untraced, N={n}): exec_create + exec_start "
          f"median {ms(calls.median)} (p90 {ms(calls.p90)}), then first output after median {ms(first.median)} "
          f"(p90 {ms(first.p90)})")


def bench_matrix(ctx: Context, quick: bool, table: Table) -> None:
    selection = suite.QUICK_SELECTION if quick else ()
    what = f"subset {' '.join(selection)}" if quick else "full default matrix"
    section(f"matrix wall time and peak memory ({what}; hold {ctx.hold:g} s per up cell)")
    runs: dict[int, suite.MatrixRun] = {}
    for workers in (0, 4):
        progress(f"matrix {'serial' if not workers else f'-n {workers}'} ...")
        run = runs[workers] = suite.run_matrix(workers, (*selection, f"--ipv6-hold={ctx.hold:g}"),
                                               ctx.backend.client)
        workers_mib = ", ".join(f"{k / 1024:.0f}" for k in run.worker_hwm_kib) or "-"
        print(f"  {run.label:<7} wall {run.wall:6.1f} s  exit {run.returncode}  [{run.summary}]")
        print(f"          peak RSS: wait4 max {run.maxrss_kib / 1024:.0f} MiB; pytest process VmHWM "
              f"{run.main_hwm_kib / 1024:.0f} MiB; workers VmHWM {workers_mib} MiB")
        if run.cpu is not None:
            c = run.cpu
            print(f"          CPU: machine busy {c.busy:.1f} of {c.total:.1f} cpu-s ({100 * c.busy / c.total:.0f}%); "
                  f"pytest {run.pytest_cpu:.1f}; container stack {c.stack:.1f} (container processes "
                  f"{c.containers:.1f}) for {run.starts_all} container starts, {run.starts_ours} of them ours; "
                  f"this run's estimated share {run.own_cpu:.1f} cpu-s")
        if run.returncode not in (0, 1) or not run.counts.get("passed", 0) + run.counts.get("failed", 0):
            print("          output tail:\n" + "\n".join("          | " + ln for ln in run.tail.splitlines()))
    serial = runs[0].wall
    cpus = os.cpu_count() or 1
    own = runs[0].own_cpu
    if own == own and own > 0:  # not NaN
        cells_n = max(1, sum(runs[0].counts.values()))
        print(f"  serial run's own work keeps {own / serial:.2f} cores busy ({own / cells_n:.2f} cpu-s per cell, "
              f"estimated): if the matrix is CPU-bound, no -n can beat about {cpus * serial / own:.2f}x on "
              f"{cpus} cores, and other users' load lowers that")
    sp = serial / runs[4].wall
    print(f"  speedup -n 4 vs serial: {sp:.2f}x")
    cells = runs[0].counts
    note = f"{sum(cells.values())} cells: {runs[0].summary}" + (" (--quick subset)" if quick else "")
    ok = runs[0].returncode == 0 and runs[4].returncode == 0
    table.add(Row("matrix wall, serial", f"{serial:.1f} s", met=None if ok else False, note=note))
    table.add(Row("matrix wall, -n 4 (speedup vs serial)", f"{runs[4].wall:.1f} s", f"{serial:.1f} s",
                  f"{sp:.2f}x", met=None if ok else False, note=f"[{runs[4].summary}]"))
    serial_rss = max(runs[0].maxrss_kib, runs[0].main_hwm_kib) / 1024
    table.add(Row("peak RSS, serial pytest process", f"{serial_rss:.0f} MiB", target=f"<= {TARGET_RSS_MIB:g} MiB",
                  met=serial_rss <= TARGET_RSS_MIB))
    worker_rss = max(runs[4].worker_hwm_kib or [0]) / 1024
    table.add(Row("peak RSS, one xdist worker (-n 4)", f"{worker_rss:.0f} MiB", target=f"<= {TARGET_RSS_MIB:g} MiB",
                  met=worker_rss <= TARGET_RSS_MIB if worker_rss else None,
                  note=f"controller {runs[4].main_hwm_kib / 1024:.0f} MiB"))


def bench_cold(ctx: Context, table: Table) -> None:
    section(f"cold base-image bootstrap (fresh cache dir, repository {suite.COLD_REPOSITORY})")
    seconds, ref, fetched = suite.cold_base(ctx.backend.client)
    print(f"  ensure_base_image -> {ref} in {seconds:.1f} s; {fetched}; then removed")
    table.add(Row("cold base-image bootstrap", f"{seconds:.1f} s", target=f"<= {TARGET_COLD_S:.0f} s",
                  met=seconds <= TARGET_COLD_S, note="one run: apt download + unpack + import + smoke test"))


# --- main ---------------------------------------------------------------------------------------


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="runs per per-cell figure (default 15; 5 with --quick)")
    parser.add_argument("--hold", type=float, default=1.0,
                        help="hold window in seconds, the same on both sides of the up-cell comparison "
                             "and in the matrix runs (default 1.0, the plugin's default)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer runs, a matrix subset, and no cold bootstrap (it downloads .debs)")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to skip: {','.join(SECTIONS)}")
    parser.add_argument("--engines", default="",
                        help="comma-separated engine addresses (DOCKER_HOST form) to measure one after the other "
                             "in this run, each against its own floor (default: the one DOCKER_HOST names); a "
                             "Podman engine's floor is `podman --remote --url ADDRESS`")
    args = parser.parse_args(argv)
    runs = args.runs if args.runs is not None else (5 if args.quick else 15)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if runs < 1 or args.hold < 0 or skip - set(SECTIONS):
        parser.error(f"--runs must be >= 1, --hold >= 0 and --skip among {','.join(SECTIONS)} "
                     f"(got {args.runs}, {args.hold}, {args.skip!r})")
    if args.quick:
        skip.add("cold")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()] if args.engines else [None]
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    tables: list[tuple[str, Table]] = []
    for url in engines:  # one after the other, each against its own floor, in this one run
        if url is not None:
            os.environ["DOCKER_HOST"] = url  # the backend, the profile's client and the matrix's pytest
        use_cli(["docker"])
        table = Table()
        code = _bench_engine(args, runs, skip, table)
        if code:
            return code
        tables.append((str(url or os.environ.get("DOCKER_HOST") or "the default engine"), table))
    section(f"summary (load {load_average()}, {time.monotonic() - started:.0f} s)")
    for url, table in tables:
        if len(tables) > 1:
            print(f"\n-- {url}")
        print(table.render())
    return 0 if all(r.met is not False for _, table in tables for r in table.rows) else 1


def bench_session(hold: float, body: Callable[[Context], None]) -> int:
    """``body`` with a fresh run id and temporary directory, its one-line errors and its clean-up: every
    container labelled with the run, and the plugin's own (a cell cut short, the probe volumes), on every
    exit path. 0, or the exit code to stop with (2: could not run, 130: interrupted)."""
    run_id = uuid.uuid4().hex[:10]
    tmp = Path(tempfile.mkdtemp(prefix="ipv6compat-bench-"))
    ctx: Context | None = None
    try:
        ctx = preflight(run_id, tmp, hold)
        body(ctx)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (docker.errors.DockerException, EngineError) as exc:
        print(f"error: the engine failed during the bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        left = remove_labelled(run_id)
        if ctx is not None:
            left += ctx.backend.remove_session()
        if left:
            progress(f"removed {left} leftover bench container(s)")
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _bench_engine(args: argparse.Namespace, runs: int, skip: set[str], table: Table) -> int:
    """Every section not skipped, against the engine DOCKER_HOST names; 0, or the exit code to stop with."""

    def body(ctx: Context) -> None:
        info = ctx.backend.info()
        section(f"engine: {info['engine']} {info['version']} at {info['address']}")
        print(f"engine: {info['engine']} {info['version']} at {info['address']}, runtime {info['runtime']}; "
              f"floor CLI: {' '.join(common.CLI)}")
        print(f"pytest-ipv6compat bench  run {ctx.run_id}  runs={runs}{'  --quick' if args.quick else ''}  "
              f"load {load_average()}  cpus {os.cpu_count()}")
        print(f"reference target: {ctx.reference} (cloud-proxy unpatched, probe https GET /healthz); "
              f"hold {ctx.hold:g} s, settle {ctx.settle:g} s, timeout {ctx.timeout:g} s")
        if "warm" not in skip:
            bench_warm(ctx, runs, table)
        if "cells" not in skip:
            bench_cells(ctx, runs, table)
        if "profile" not in skip:
            bench_profile(ctx, runs)
        if "matrix" not in skip:
            bench_matrix(ctx, args.quick, table)
        if "cold" not in skip:
            bench_cold(ctx, table)

    return bench_session(args.hold, body)

if __name__ == "__main__":
    sys.exit(main())
