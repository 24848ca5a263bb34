"""What a fork bomb in one cell does to its neighbours' verdicts, by the CPU bound of the bomb's cell.

A neighbour is the reference up cell (cloud-proxy unpatched on dual-stack, https GET /healthz,
hold 0), run through the plugin's backend as ``items.py`` runs it; its cost is from before ``run``
to after the container is removed. While it runs, a bomb cell runs beside it (busy loops forked up to the
pids bound, then fork attempts), started with the docker CLI as the plugin starts a cell (``--network none``, the
plugin's default ``--pids-limit 512`` and ``--memory 512m`` without swap) and a CPU bound:

    none      no bomb (the neighbour alone: the floor of this comparison)
    unbounded the bomb, no CPU bound (the plugin's behaviour before the bound)
    cpus=C    the bomb with ``--cpus C`` for each C of ``--cpus`` (default 1, 0.5)

The conditions alternate in rounds so that drift in the machine's load falls on all of them alike.
Printed: each condition's median neighbour cost, its ratio to ``none``, and the host's runnable tasks
while the neighbours ran (``procs_running`` of /proc/stat, sampled every 0.1 s: what the load average
averages, without its minute of lag). A benchmark, not a test: nothing asserts.

    python bench/bomb.py [--rounds 5] [--cells 3] [--cpus 1,0.5]
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from common import BENCH_LABEL, Summary, docker_cli, load_average, progress
from percell import UP_STACK, plugin_cell
from run import Context, _on_sigterm, bench_session

from pytest_ipv6compat.model import Outcome

BOMB = "while :; do (while :; do :; done) & done 2>/dev/null"  # busy loops up to the pids bound, then fork attempts
RAMP_S = 2.0  # let the bomb reach its pids bound before the neighbours start


def start_bomb(image: str, run_id: str, cpus: str | None) -> str:
    bound = ["--cpus", cpus] if cpus else []
    return docker_cli("run", "-d", "--network", "none", "--pids-limit", "512", "--memory", "512m",
                      "--memory-swap", "512m", "--label", f"{BENCH_LABEL}={run_id}", *bound, "--entrypoint", "sh",
                      image, "-c", BOMB)


class Runnable:
    """``procs_running`` of /proc/stat, sampled every 0.1 s while it is entered."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            for line in Path("/proc/stat").read_text().splitlines():
                if line.startswith("procs_running "):
                    self.samples.append(int(line.split()[1]))

    def __enter__(self) -> Runnable:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bomb.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every condition (default 5)")
    parser.add_argument("--cells", type=int, default=3, help="neighbour cells per condition and round (default 3)")
    parser.add_argument("--cpus", default="1,0.5", help="the bomb's CPU bounds to compare (default 1,0.5)")
    args = parser.parse_args(argv)
    bounds = [c.strip() for c in args.cpus.split(",") if c.strip()]
    conditions: list[tuple[str, str | None, bool]] = [("none", None, False), ("unbounded", None, True)]
    conditions += [(f"cpus={c}", c, True) for c in bounds]
    signal.signal(signal.SIGTERM, _on_sigterm)
    costs: dict[str, list[float]] = {name: [] for name, _, _ in conditions}
    runnable: dict[str, list[int]] = {name: [] for name, _, _ in conditions}

    def body(ctx: Context) -> None:
        launch = ctx.launch(UP_STACK, hold=0.0)
        print(f"pytest-ipv6compat bomb bench  run {ctx.run_id}  rounds={args.rounds} cells={args.cells}  "
              f"load {load_average()}  target {ctx.matrix.target.name}")
        for r in range(args.rounds):
            for name, cpus, bomb in conditions:
                progress(f"round {r + 1}/{args.rounds}: {name}")
                bomb_id = start_bomb(ctx.reference, ctx.run_id, cpus) if bomb else None
                try:
                    if bomb_id:
                        time.sleep(RAMP_S)
                    with Runnable() as sampled:
                        for _ in range(args.cells):
                            costs[name].append(plugin_cell(ctx.backend, launch, expect=Outcome.UP).total)
                    runnable[name] += sampled.samples
                finally:
                    if bomb_id:
                        docker_cli("rm", "-f", bomb_id, check=False, timeout=120)

    code = bench_session(0.0, body)
    if code:
        return code
    floor = Summary.of(costs["none"]).median
    print(f"\n{'condition':<11} {'neighbour cell (median, p90)':<31} {'vs none':>7}  runnable tasks (median, max)")
    for name, _, _ in conditions:
        s, r = Summary.of(costs[name]), Summary.of([float(n) for n in runnable[name]])
        print(f"{name:<11} {s.median:.3f} s, {s.p90:.3f} s (n={s.n}){'':<7} {s.median / floor:>6.2f}x  "
              f"{r.median:.0f}, {max(runnable[name], default=0)}")
    print(f"load {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
