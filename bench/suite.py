"""Whole-run figures: the matrix's wall time and peak memory, and the image steps (warm and cold)."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from common import PREPARE_HINT, REPO, BenchError, CpuSnapshot, children_of, cmdline, progress, vm_hwm_kib

from pytest_ipv6compat import images
from pytest_ipv6compat.matrix import Matrix, load_matrix

MATRIX_FILE = REPO / "matrix" / "cloud-proxy.ipv6.toml"
QUICK_SELECTION = ("--ipv6-variants=adaptive", "--ipv6-stacks=dual-stack,ipv6-kernel-off")
COLD_REPOSITORY = "ipv6compat-bench/base"


# --- the matrix ---------------------------------------------------------------------------------


@dataclass
class MatrixRun:
    workers: int  # 0: serial
    wall: float
    returncode: int
    summary: str
    maxrss_kib: int  # wait4(): max over the pytest process and every process it reaped (its workers)
    main_hwm_kib: int = 0  # VmHWM of the pytest process itself
    worker_hwm_kib: list[int] = field(default_factory=list)  # VmHWM of each xdist worker
    tail: str = ""
    cpu: CpuSnapshot | None = None  # deltas over the run
    pytest_cpu: float = 0.0  # user+system seconds of pytest and its workers (wait4)
    starts_ours: int = 0  # containers started by this pytest run (docker events)
    starts_all: int = 0  # containers started by anyone in the same window

    @property
    def own_cpu(self) -> float:
        """Estimated CPU seconds this run cost the machine: pytest + its share of the container stack."""
        if self.cpu is None or not self.starts_all:
            return math.nan
        return self.pytest_cpu + self.cpu.stack * self.starts_ours / self.starts_all

    @property
    def label(self) -> str:
        return "serial" if self.workers == 0 else f"-n {self.workers}"

    @property
    def counts(self) -> dict[str, int]:
        return {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error|errors|skipped)", self.summary)}


def run_matrix(workers: int, selection: tuple[str, ...], client: docker.DockerClient | None = None,
               sample_s: float = 0.3) -> MatrixRun:
    """``pytest matrix/ -q -p no:cacheprovider [-n W]`` in a child process, sampling its memory."""
    cmd = [sys.executable, "-m", "pytest", "matrix/", "-q", "-p", "no:cacheprovider", *selection]
    if workers:
        cmd += ["-n", str(workers)]
    output: list[str] = []
    hwm: dict[int, int] = {}
    kinds: dict[int, str] = {}
    counter = _StartCounter(client)
    cpu0 = CpuSnapshot.take()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        output.extend(proc.stdout)

    def sample() -> None:
        while not done.wait(sample_s):
            for pid, ppid in children_of(proc.pid).items():
                value = vm_hwm_kib(pid)
                if value is None:
                    continue
                hwm[pid] = max(hwm.get(pid, 0), value)
                if pid not in kinds:
                    kinds[pid] = "main" if pid == proc.pid else (
                        "worker" if ppid == proc.pid and "python" in cmdline(pid) else "other")

    threads = [threading.Thread(target=read, daemon=True), threading.Thread(target=sample, daemon=True)]
    for t in threads:
        t.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        _interrupt(proc)
        raise
    wall = time.monotonic() - t0
    cpu = CpuSnapshot.take().since(cpu0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for t in threads:
        t.join(timeout=5)
    ours, every = counter.stop({str(p) for p in hwm})
    lines = [ln.rstrip() for ln in output]
    summary = next((ln.strip(" =") for ln in reversed(lines) if re.search(r"\d+ (passed|failed|error)", ln)), "")
    return MatrixRun(workers, wall, proc.returncode, summary, int(usage.ru_maxrss),
                     main_hwm_kib=hwm.get(proc.pid, 0),
                     worker_hwm_kib=sorted(v for p, v in hwm.items() if kinds.get(p) == "worker"),
                     tail="\n".join(lines[-25:]), cpu=cpu, pytest_cpu=usage.ru_utime + usage.ru_stime,
                     starts_ours=ours, starts_all=every)


class _StartCounter:
    """Counts container starts live from the engine's event stream (dockerd keeps only a short backlog)."""

    def __init__(self, client: docker.DockerClient | None) -> None:
        self.starts: list[str] = []  # the ipv6compat.pid label of each start ("" when absent)
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        if client is None:
            return
        try:
            self._stream = client.events(decode=True, filters={"type": "container", "event": "start"})
        except docker.errors.DockerException as exc:
            progress(f"cannot follow docker events: {exc}")
            return
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream is closed under us at the end
            for event in self._stream:
                self.starts.append(str(event.get("Actor", {}).get("Attributes", {}).get("ipv6compat.pid", "")))

    def stop(self, pids: set[str]) -> tuple[int, int]:
        """(starts by these pids, all starts)."""
        if self._stream is None:
            return 0, 0
        time.sleep(0.3)  # let the last events arrive
        with contextlib.suppress(Exception):
            self._stream.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return sum(p in pids for p in self.starts), len(self.starts)


def _interrupt(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C for the child's process group (pytest tears down and removes its containers), then kill."""
    for sig, grace in ((signal.SIGINT, 30.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


# --- images: the warm path ----------------------------------------------------------------------


class NotPrepared(Exception):
    pass


@contextlib.contextmanager
def no_builds() -> Iterator[None]:
    """Make any build inside ``images`` an error, so a warm step provably rebuilds nothing."""
    saved = {}
    for name in ("_build_probe", "_build_base", "_build_target"):
        if hasattr(images, name):
            saved[name] = getattr(images, name)

            def refuse(*_a: object, _what: str = name, **_k: object) -> None:
                raise NotPrepared(_what.removeprefix("_build_"))
            setattr(images, name, refuse)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(images, name, fn)


@dataclass
class WarmRun:
    steps: dict[str, float]
    refs: dict[str, str]  # step -> image ref (or probe path)

    @property
    def total(self) -> float:
        return sum(self.steps.values())


def matrix_target() -> Matrix:
    return load_matrix(MATRIX_FILE)


def warm_images(client: docker.DockerClient, cache: Path, matrix: Matrix) -> WarmRun:
    """What ``prepare`` does, timed step by step, with every build forbidden."""
    steps: dict[str, float] = {}
    refs: dict[str, str] = {}
    try:
        with no_builds():
            t = time.monotonic()
            refs["probe"] = str(images.ensure_probe(cache))
            steps["ensure_probe"] = time.monotonic() - t
            t = time.monotonic()
            base = refs["base"] = images.ensure_base_image(client, cache)
            steps["ensure_base_image"] = time.monotonic() - t
            target = matrix.target
            assert target.build is not None, "the reference matrix builds its target"
            for variant in target.variants:
                t = time.monotonic()
                refs[variant] = images.ensure_target_image(
                    client, target.build, base=base, name=f"{target.name}-{variant}",
                    build_args={target.variant_arg: variant}, cache_dir=cache)
                steps[f"ensure_target_image({variant})"] = time.monotonic() - t
    except NotPrepared as exc:
        raise BenchError(f"the {exc} image/probe is not built (or the tree changed since): {PREPARE_HINT}") from None
    except images.ImageError as exc:
        raise BenchError(f"{exc}; {PREPARE_HINT}") from None
    return WarmRun(steps, refs)


def image_ids(client: docker.DockerClient, refs: dict[str, str]) -> dict[str, str]:
    out = {}
    for step, ref in refs.items():
        if step != "probe":
            out[ref] = client.images.get(ref).id
    return out


def prepare_subprocess() -> tuple[float, str]:
    """Wall time of ``python -m pytest_ipv6compat prepare matrix/cloud-proxy.ipv6.toml`` (interpreter included)."""
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "pytest_ipv6compat", "prepare", str(MATRIX_FILE.relative_to(REPO))],
                         cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    if res.returncode != 0:
        raise BenchError(f"prepare failed (exit {res.returncode}): {res.stderr.strip()[-400:]}")
    return wall, res.stdout


# --- images: the cold bootstrap -----------------------------------------------------------------


def cold_base(client: docker.DockerClient) -> tuple[float, str, str]:
    """``ensure_base_image`` into a fresh cache dir, under a repository no one else uses; then remove it."""
    _remove_repository(client, COLD_REPOSITORY)
    tmp = Path(tempfile.mkdtemp(prefix="ipv6compat-bench-cold-"))
    try:
        t0 = time.monotonic()
        try:
            ref = images.ensure_base_image(client, tmp, repository=COLD_REPOSITORY)
        except images.ImageError as exc:
            raise BenchError(f"cold bootstrap failed: {exc}") from None
        seconds = time.monotonic() - t0
        debs = list((tmp / "debs").glob("*.deb"))
        size = sum(d.stat().st_size for d in debs) / 2**20
        return seconds, ref, f"{len(debs)} .debs ({size:.1f} MiB) fetched into the fresh cache"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_repository(client, COLD_REPOSITORY)


def _remove_repository(client: docker.DockerClient, repository: str) -> None:
    """Untag (and delete, when no other tag holds it) every image of ``repository``: only ours."""
    try:
        found = client.images.list(name=repository)
    except docker.errors.DockerException as exc:
        progress(f"cannot list {repository} images: {exc}")
        return
    for image in found:
        for tag in image.tags:
            if tag.startswith(repository + ":"):
                with contextlib.suppress(docker.errors.DockerException):
                    client.images.remove(tag)
