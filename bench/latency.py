"""Failure latency by a clock the engines do not keep: engines interleaved, cell by cell.

    python bench/latency.py [--runs N] [--engines URL,URL]

The target (the base image, ``sh -c "sleep 0.3; exit 3"``) runs through the backend as items.py runs a cell.
A thread polls ``/proc/<pid>/stat`` of its init process from the host every millisecond and notes when it is
gone or a zombie: the exit. Latency = wall clock when ``verdict()`` returned - that moment. Also printed: the
run's start (before ``run()``) to the verdict. Root on the engine's host is needed (it reads /proc).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchError, Summary, load_average
from percell import BenchBackend

from pytest_ipv6compat import images
from pytest_ipv6compat.backends import EngineError, Launch
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.spec import RunSpec
from pytest_ipv6compat.stacks import get_stack


def _gone(pid: int, out: list[float], deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = "X"
        if state in ("Z", "X"):
            out.append(time.time())
            return
        time.sleep(0.001)


def one_cell(backend: BenchBackend, image: str) -> tuple[float, float]:
    """(exit -> verdict, start -> verdict) in seconds, for one cell."""
    spec = RunSpec(command=("sh", "-c", "sleep 0.3; exit 3"), probe="none", settle=0.05, hold=1.0, timeout=30)
    launch = Launch(image, get_stack("dual-stack"), run=spec)
    t0 = time.monotonic()
    with backend.run(launch) as run:
        pid = int(backend.client.api.inspect_container(run.container_id)["State"]["Pid"] or 0)
        if pid <= 0:
            raise BenchError("the target exited before its pid could be read; the machine is too slow for 0.3 s")
        gone: list[float] = []
        watcher = threading.Thread(target=_gone, args=(pid, gone, t0 + 30), daemon=True)
        watcher.start()
        run.attestation()
        verdict = run.verdict()
        wall, t1 = time.time(), time.monotonic()
        watcher.join(5)
    if verdict.outcome is not Outcome.EXITED or verdict.exit_code != 3 or not gone:
        raise BenchError(f"expected exited 3 and an exit seen from the host, got {verdict.outcome} "
                         f"{verdict.exit_code} ({'seen' if gone else 'not seen'})")
    return wall - gone[0], t1 - t0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python bench/latency.py", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--engines", default=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
                        help="comma-separated engine addresses, measured in turn within every round")
    args = parser.parse_args()
    urls = [u.strip() for u in args.engines.split(",") if u.strip()]
    cache = images.default_cache_dir()
    backends: dict[str, BenchBackend] = {}
    results: dict[str, tuple[list[float], list[float]]] = {u: ([], []) for u in urls}
    print(f"load {load_average()}")
    try:
        for url in urls:
            backend = BenchBackend.connect(images.ensure_probe(cache), api_timeout=60, url=url)
            assert isinstance(backend, BenchBackend)
            backend.bench_run = "latency"
            backends[url] = backend
        for i in range(args.runs + 1):  # round 0 warms up; the order alternates
            for url in urls if i % 2 else urls[::-1]:
                exit_to_verdict, start_to_verdict = one_cell(backends[url], images.base_image_ref())
                if i:
                    results[url][0].append(exit_to_verdict)
                    results[url][1].append(start_to_verdict)
    except (BenchError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for backend in backends.values():
            backend.remove_session()
    for url in urls:
        lat, total = results[url]
        exit_to_verdict = Summary.of(lat)
        print(f"{backends[url].info()['engine']:<7} {url}: exit -> verdict median {exit_to_verdict.median:.3f} s "
              f"(p90 {exit_to_verdict.p90:.3f} s); start -> verdict median {Summary.of(total).median:.3f} s; "
              f"n={len(lat)}")
    print(f"load {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
