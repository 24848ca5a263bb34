"""ssh:// against unix:// on the same engine: per-cell cost, and the SSH channels a matrix run holds.

The engine is the local dockerd; the ssh:// side reaches it through an sshd this script starts
(tests/sshd.py: 127.0.0.1, a free port, its own keys, Debian's defaults), so the difference is
what SSH costs and nothing else. Needs root (the sshd logs in as root) and `prepare` done.

    python bench/ssh.py                   # N=15 interleaved cells per side, then the matrix runs
    python bench/ssh.py --runs 5 --skip matrix

Per-cell: the reference cell driven through the backend as items.py drives it (bench/percell.py),
up (dual-stack) and exited (ipv6-kernel-off), alternating unix:// and ssh:// run by run.
Matrix: `pytest matrix` subsets over ssh:// (serial, and -n 4), sampling every 0.1 s how many
connections the sshd side holds to the engine's socket: one per open SSH channel, whether a
forwarded one or a `docker system dial-stdio` session (docker-py's own transport).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from common import REPO, BenchError, Summary, load_average, progress
from percell import BenchBackend, launch_for, plugin_cell

from pytest_ipv6compat import images
from pytest_ipv6compat.backends import EngineError
from pytest_ipv6compat.model import Outcome

sys.path.insert(0, str(REPO / "tests"))
from sshd import Sshd, running_sshd  # the tests' own sshd

SUBSETS = {
    "serial, 7 cells": ["--ipv6-stacks=dual-stack", "--ipv6-variants=unpatched"],
    "-n 4, 30 cells": ["-n", "4", "--ipv6-stacks=dual-stack,ipv6-kernel-off", "--ipv6-settings=unset,=1,=false"],
}


def _cells(server: Sshd, runs: int) -> None:
    probe = images.ensure_probe(images.default_cache_dir())
    run_id = uuid.uuid4().hex[:8]
    sides = {}
    try:
        for name, url, config in (("unix://", "unix:///var/run/docker.sock", None),
                                  ("ssh://", server.url, server.client_config)):
            backend = BenchBackend.connect(probe, api_timeout=60, url=url, ssh_config=config)
            assert isinstance(backend, BenchBackend)
            backend.bench_run = run_id
            sides[name] = backend
    except EngineError as exc:
        raise BenchError(str(exc)) from None
    image = _reference(sides["unix://"])
    times: dict[tuple[str, str], list[float]] = {}
    errors: dict[str, list[str]] = {}
    try:
        for i in range(runs):
            for stack, expect in (("dual-stack", Outcome.UP), ("ipv6-kernel-off", Outcome.EXITED)):
                for name, backend in sides.items():
                    try:
                        cell = plugin_cell(backend, launch_for(image, stack, hold=1.0, settle=0.05, timeout=30),
                                           expect=expect)
                    except EngineError as exc:  # counted and shown, not timed
                        errors.setdefault(name, []).append(f"{stack}: {exc}")
                        continue
                    times.setdefault((name, stack), []).append(cell.total)
            progress(f"cells: run {i + 1}/{runs}; load {load_average()}")
    finally:
        for backend in sides.values():
            backend.remove_session()
            backend.close()
    for name, lines in errors.items():
        print(f"  errors on {name}: {len(lines)}: " + " | ".join(line.splitlines()[0][:200] for line in lines))
    print("per-cell cost (s), reference cell, hold 1 s: median / p90 / min (n)")
    for (name, stack), values in sorted(times.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        s = Summary.of(values)
        print(f"  {stack:16} {name:8} {s.median:.3f} / {s.p90:.3f} / {s.min:.3f} ({s.n})")


def _reference(backend: BenchBackend) -> str:
    from suite import matrix_target, warm_images

    return warm_images(backend.client, images.default_cache_dir(), matrix_target()).refs["unpatched"]


def _matrix(server: Sshd, pythonpath: str | None) -> None:
    """The subsets over ssh://, counting the server's channels into the engine's socket."""
    for title, args in SUBSETS.items():
        samples: list[int] = []
        stop = threading.Event()

        def sample(into: list[int] = samples, until: threading.Event = stop) -> None:
            while not until.is_set():
                into.append(server.engine_connections())
                until.wait(0.1)

        thread = threading.Thread(target=sample, daemon=True)
        env = {**os.environ, "DOCKER_HOST": server.url}
        cwd = REPO
        if pythonpath:  # another checkout (e.g. git archive of main): its package, its matrix, paramiko's config
            env |= {"PYTHONPATH": pythonpath, "HOME": str(_paramiko_home(server))}
            cwd = Path(pythonpath)
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "matrix", "-q", "--ipv6-require-docker",
                *args]
        if not pythonpath:
            argv.append(f"--ipv6-ssh-config={server.client_config}")
        thread.start()
        started = time.monotonic()
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800, check=False)
        elapsed = time.monotonic() - started
        stop.set()
        thread.join()
        summary = [line for line in done.stdout.splitlines() if " in " in line and ("passed" in line or
                                                                                   "error" in line)]
        lines = len(done.stdout.splitlines()) + len(done.stderr.splitlines())
        print(f"  {title}: {summary[-1] if summary else done.stdout[-300:]}; {elapsed:.1f} s; channels at the "
              f"server: peak {max(samples, default=0)}, median {Summary.of([float(x) for x in samples]).median:g}, "
              f"after the run {server.engine_connections()}; {lines} lines of output; load {load_average()}")


def _paramiko_home(server: Sshd) -> Path:
    """A HOME whose ~/.ssh tells paramiko (docker-py's ssh:// transport) the key, port and host key."""
    home = server.dir / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "known_hosts").write_text((server.dir / "known_hosts").read_text())
    (home / ".ssh" / "config").write_text(
        f"Host 127.0.0.1\n  IdentityFile {server.dir}/client_ed25519\n  Port {server.port}\n")
    return home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--skip", default="", help="sections to leave out: cells, matrix")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also run the matrix subsets with the package and matrix in DIR (e.g. `git archive` of "
                             "an earlier commit there, with a sitecustomize.py that drops the editable install)")
    args = parser.parse_args(argv)
    skip = set(args.skip.split(","))
    try:
        with running_sshd() as server:
            progress(f"sshd on 127.0.0.1:{server.port}; load {load_average()}")
            if "cells" not in skip:
                _cells(server, args.runs)
            if "matrix" not in skip:
                print("matrix over ssh:// (this checkout: one tunnel per pytest process)")
                _matrix(server, None)
                if args.baseline:
                    print(f"matrix over ssh:// ({args.baseline}: docker-py's paramiko transport)")
                    _matrix(server, args.baseline)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:  # pytest.skip/fail from the tests' sshd helper: one line
        if type(exc).__name__ in ("Skipped", "Failed"):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
