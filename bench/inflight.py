"""The reference matrix's wall time with several cells in flight per process (--ipv6-inflight), not a test.

Runs the whole cloud-proxy matrix (126 cells) with each ``-n`` of ``--workers`` and each
``--ipv6-inflight`` of ``--inflight``, ``--runs`` times, the configurations interleaved so that
the machine's load falls on each alike. Prints per configuration the median wall time, the load
average around the runs, and how far cells overlapped: the sum of every cell's own time (start to
verdict, from the JSON report) over the wall time, i.e. the cells in flight on average, and the
same for the holds alone (the hold of every ``up`` cell).

    python -m pytest_ipv6compat prepare matrix/cloud-proxy.ipv6.toml   # once
    python bench/inflight.py                      # -n 2 and -n 4, inflight 1 and 4, 3 runs each
    python bench/inflight.py --workers 2 --inflight 1,2,4,6 --runs 3
    python bench/inflight.py --workers 2,4 --inflight 1,4 --backend engine,oci   # oci: root, crun or runc

Exit code 0 when every run passed, 2 when a run failed or could not run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MATRIX = REPO / "matrix" / "cloud-proxy.ipv6.toml"


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def one(workers: int, inflight: int, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ipv6compat-inflight-") as tmp:
        report = Path(tmp) / "r.json"
        argv = [sys.executable, "-m", "pytest", str(MATRIX), "-p", "no:cacheprovider", "-q", "--ipv6-require-docker",
                f"--ipv6-inflight={inflight}", f"--ipv6-json={report}", *extra]
        if workers:
            argv += ["-n", str(workers)]
        before = loadavg()
        start = time.monotonic()
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
        wall = time.monotonic() - start
        after = loadavg()
        if done.returncode != 0 or not report.exists():
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise SystemExit(f"run -n {workers} --ipv6-inflight={inflight} failed ({done.returncode}):\n{tail}")
        doc = json.loads(report.read_text())
    cells = doc["cells"]
    own = sum((c["verdict"] or {}).get("seconds", 0.0) for c in cells)
    holds = sum(1 for c in cells if (c["verdict"] or {}).get("outcome") == "up")
    return {"wall": wall, "load_before": before, "load_after": after, "own": own, "holds": holds,
            "cells": len(cells), "passed": doc["totals"]["pass"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="2,4", help="-n values, comma-separated (0: no xdist)")
    parser.add_argument("--inflight", default="1,4", help="--ipv6-inflight values, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hold", type=float, default=1.0, help="--ipv6-hold (the matrix's default: 1)")
    parser.add_argument("--backend", default="engine", help="--ipv6-backend values, comma-separated (engine, oci)")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    inflights = [int(i) for i in args.inflight.split(",")]
    backends = args.backend.split(",")
    results: dict[tuple[str, int, int], list[dict[str, float]]] = {}
    for run in range(args.runs):
        for b in backends:
            for w in workers:
                for k in inflights:
                    r = one(w, k, [f"--ipv6-hold={args.hold:g}", f"--ipv6-backend={b}"])
                    results.setdefault((b, w, k), []).append(r)
                    print(f"run {run + 1}: {b} -n {w} --ipv6-inflight={k}: {r['wall']:.1f} s, "
                          f"{r['passed']}/{r['cells']} passed, load {r['load_before']:.1f} -> {r['load_after']:.1f}",
                          file=sys.stderr, flush=True)
    print(f"| backend | -n | --ipv6-inflight | wall (median of {args.runs}) | runs | load average (min-max) "
          "| cells in flight (mean) | holds in flight (mean) |")
    print("|---|---|---|---|---|---|---|---|")
    for (b, w, k), rs in sorted(results.items()):
        walls = [r["wall"] for r in rs]
        loads = [r["load_before"] for r in rs] + [r["load_after"] for r in rs]
        wall = statistics.median(walls)
        inflight = statistics.median(r["own"] / r["wall"] for r in rs)
        holds = statistics.median(r["holds"] * args.hold / r["wall"] for r in rs)
        print(f"| {b} | {w or 'no xdist'} | {k} | {wall:.1f} s | {', '.join(f'{x:.1f}' for x in walls)} "
              f"| {min(loads):.1f}-{max(loads):.1f} | {inflight:.1f} | {holds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
