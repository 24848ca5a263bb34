"""What the ipv6-boot-disabled stack (User-mode Linux) costs, against the bare ``docker run`` floor.

    python -m pytest_ipv6compat prepare matrix/cloud-proxy.ipv6.toml   # once
    python bench/uml.py [--runs 9] [--skip matrix]

Figures (medians of --runs): boot to the init's first line and to the shim's attestation;
per-cell cost of an ``exited`` cell (unpatched, errno 97) and an ``up`` cell (adaptive,
IPv4 only; hold 0, as the floor does not hold) from start to the kernel gone; the floor
(``docker run -d`` to first LISTEN, then ``docker rm -f``, from floor.py); a second
``prepare`` of the root filesystem (cached: nothing to do); and the wall time of the 21
cloud-proxy ipv6-boot-disabled cells (3 variants x 7 settings) serially and with -n 2.
Not a test: nothing asserts; the exit code is 1 when a target of issue 9 is missed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOMAIN, remove_labelled, uml_bench_setup
from floor import floor_up

from pytest_ipv6compat.backends import Launch
from pytest_ipv6compat.backends.uml import UmlBackend
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.spec import RunSpec
from pytest_ipv6compat.stacks import STACKS

ROOT = Path(__file__).resolve().parent.parent


def cell(uml: UmlBackend, image: str, want: Outcome) -> tuple[float, float, float, float]:
    """(boot to init, boot to attested, whole cell, boot to the shim's first line) in seconds."""
    spec = RunSpec(hold=0.0, settle=0.05, probe="https", http_path="/healthz")
    t0 = time.monotonic()
    with uml.run(Launch(image, STACKS["ipv6-boot-disabled"], env={"PL_DOMAIN_NAME": DOMAIN}, run=spec)) as run:
        run.attestation()
        attested = time.monotonic() - t0
        verdict = run.verdict()
        booted = run.booted or float("nan")
        shim = run.shim_started or float("nan")
    total = time.monotonic() - t0
    if verdict.outcome is not want:
        raise SystemExit(f"{image}: {verdict.outcome}, expected {want}: {verdict.logs[-300:]}")
    return booted, attested, total, shim


def matrix_wall(workers: int) -> float:
    argv = [sys.executable, "-m", "pytest", "matrix", "-q", "-p", "no:cacheprovider", "-k",
            "ipv6-boot-disabled and not config-ro", "--ipv6-require-docker"]
    argv += ["-n", str(workers)] if workers > 1 else ["-p", "no:xdist"]
    t0 = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0 or "21 passed" not in done.stdout:
        raise SystemExit(f"matrix run failed: {done.stdout[-500:]}")
    return time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--skip", default="", help="comma-separated: floor, matrix")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    _, _, uml, image = uml_bench_setup()
    t0 = time.monotonic()
    for ref in image.values():
        uml.prepare(ref)
    warm = time.monotonic() - t0
    exited = [cell(uml, image["unpatched"], Outcome.EXITED) for _ in range(args.runs)]
    up = [cell(uml, image["adaptive"], Outcome.UP) for _ in range(args.runs)]
    floor: list[float] = []
    if "floor" not in skip:
        label = uuid.uuid4().hex[:8]
        try:
            floor = [floor_up(image["unpatched"], label, hold=0.0).total for _ in range(args.runs)]
        finally:
            remove_labelled(label)
    med = statistics.median
    rows = [
        ("boot to init (first line)", med(x[0] for x in exited + up), "", ""),
        ("boot to shim (first line)", med(x[3] for x in exited + up), "", "≤ 0.4 s"),
        ("boot to shim attested", med(x[1] for x in exited + up), "", ""),
        ("per exited cell", med(x[2] for x in exited), "", "≤ 2.0 s"),
        ("per up cell (hold 0)", med(x[2] for x in up), "", "≤ 2.0 s, ≤ 5x floor"),
        ("prepare, warm (2 images)", warm, "", "nothing to do"),
    ]
    if floor:
        rows.append(("floor: docker run to LISTEN + rm", med(floor), "", ""))
        rows[4] = (rows[4][0], rows[4][1], f"{med(x[2] for x in up) / med(floor):.2f}x floor", rows[4][3])
    if "matrix" not in skip:
        rows.append(("21 cells, serial", matrix_wall(1), "", ""))
        rows.append(("21 cells, -n 2", matrix_wall(2), "", ""))
    for name, value, ratio, target in rows:
        print(f"{name:36} {value:8.3f} s  {ratio:12} {target}")
    missed = med(x[2] for x in up) > 2.0 or med(x[3] for x in exited + up) > 0.4
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
