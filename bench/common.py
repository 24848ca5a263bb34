"""Shared pieces of the benchmark: statistics, the docker CLI, labels, cleanup, the result table.

Stdlib only (plus the project's own dependencies in the modules that need them).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_LABEL = "ipv6compat.bench"
DOMAIN = "proxy.ipv6compat.test"
PREPARE_HINT = "run `python -m pytest_ipv6compat prepare matrix/cloud-proxy.ipv6.toml` first"


class BenchError(Exception):
    """A precondition failed or a measurement could not be taken; the message says what to do."""


def progress(text: str) -> None:
    """Progress goes to stderr so that stdout holds only the results."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- statistics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Median, 90th percentile (nearest rank), minimum and count of a sample."""

    median: float
    p90: float
    min: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(math.nan, math.nan, math.nan, 0)
        ordered = sorted(values)
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
        return cls(median, p90, ordered[0], len(ordered))

    def fmt(self, unit: str = "s", digits: int = 3) -> str:
        if self.n == 0:
            return "n/a"
        return (f"median {self.median:.{digits}f}{unit}  p90 {self.p90:.{digits}f}{unit}  "
                f"min {self.min:.{digits}f}{unit}  (n={self.n})")


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


# --- docker CLI ---------------------------------------------------------------------------------


# The engine's CLI, as its users type it: ``docker``; for a Podman engine, ``podman --remote --url ADDRESS``
# (the thin client of the same API service the plugin talks to: the docker CLI cannot hand Podman a seccomp
# profile, since it sends the profile's JSON where Podman reads a path). Set once by run.py's preflight.
CLI: list[str] = ["docker"]


def use_cli(argv: Sequence[str]) -> None:
    """Drive the engine through ``argv`` (the CLI and its global options) from now on."""
    CLI[:] = list(argv)


def docker_cli(*args: str, check: bool = True, timeout: float = 120.0) -> str:
    """Run the engine's CLI (``docker ARGS...``, or Podman's) exactly as a user would; return stdout (stripped)."""
    try:
        res = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise BenchError(f"the {CLI[0]} CLI is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise BenchError(f"`{CLI[0]} {' '.join(args[:2])} ...` did not finish within {timeout:.0f}s") from None
    if check and res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no error output"])[-1]
        raise BenchError(f"`{CLI[0]} {' '.join(args[:2])} ...` failed (exit {res.returncode}): {last}")
    return res.stdout.strip()


def remove_labelled(label_value: str) -> int:
    """``docker rm -f`` every container carrying ``ipv6compat.bench=<label_value>``; return how many."""
    try:
        ids = docker_cli("ps", "-aq", "--filter", f"label={BENCH_LABEL}={label_value}", check=False).split()
        if ids:
            docker_cli("rm", "-f", *ids, check=False)
    except BenchError:
        return 0
    return len(ids)


# Docker's RFC 3339 (2026-12-07T06:43:09.751578811Z) or Podman's CLI form (2026-12-07 06:49:50.679587636 +0000 UTC)
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)")


def parse_docker_time(text: str) -> float:
    """The engine's nanosecond timestamps as Unix seconds (float, so ~µs precision)."""
    m = _RFC3339.match(text.strip())
    if not m:
        raise ValueError(f"not a docker timestamp: {text!r}")
    day, clock, frac, zone = m.groups()
    zone = "+00:00" if zone == "Z" else (zone if ":" in zone else f"{zone[:3]}:{zone[3:]}")
    whole = datetime.fromisoformat(f"{day}T{clock}{zone}").astimezone(timezone.utc).timestamp()
    return whole + (float("0." + frac) if frac else 0.0)


# --- processes and memory -----------------------------------------------------------------------


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU seconds of the machine and of the container stack, from /proc and cgroups.

    ``stack`` is what running containers costs, as far as /proc can tell: dockerd and
    containerd (with the children they reaped), PID 1's reaped children (the orphaned
    ``containerd-shim`` processes, with the ``runc`` and container processes they reaped) and
    kernel threads (namespace set-up and tear-down). Other users' containers count there too.
    """

    busy: float
    total: float
    stack: float
    containers: float  # cgroup cpuacct of /docker: every container's own processes (part of ``stack``)

    @classmethod
    def take(cls) -> CpuSnapshot:
        hz = os.sysconf("SC_CLK_TCK")
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        try:  # cgroup v1 with the cgroupfs driver: every container is under /docker
            containers = int(Path("/sys/fs/cgroup/cpuacct/docker/cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            containers = math.nan
        stack = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            parts = stat.rsplit(")", 1)[1].split()
            own, reaped = int(parts[11]) + int(parts[12]), int(parts[13]) + int(parts[14])
            if comm in ("dockerd", "containerd", "podman"):
                stack += own + reaped
            elif entry == "1":
                stack += reaped
            elif parts[1] == "2" or entry == "2":  # kernel threads
                stack += own
        return cls((sum(fields) - idle) / hz, sum(fields) / hz, stack / hz, containers)

    def since(self, before: CpuSnapshot) -> CpuSnapshot:
        return CpuSnapshot(self.busy - before.busy, self.total - before.total, self.stack - before.stack,
                           self.containers - before.containers)


def children_of(root: int) -> dict[int, int]:
    """pid -> ppid for ``root`` and all its descendants (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree = {root: 0}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree[pid] = ppid
                grew = True
    return tree


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of ``pid`` in KiB, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


# --- the result table ---------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the final table. ``ratio``/``floor`` are None where no floor applies."""

    figure: str
    median: str
    floor: str = "-"
    ratio: str = "-"
    target: str = "-"
    met: bool | None = None  # None: informational, or not measured
    note: str = ""


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def render(self) -> str:
        head = ("figure", "median", "floor", "ratio", "target", "met?")
        body = [(r.figure, r.median, r.floor, r.ratio, r.target,
                 "-" if r.met is None else ("yes" if r.met else "NO")) for r in self.rows]
        widths = [max(len(str(line[i])) for line in [head, *body]) for i in range(len(head))]
        out = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths, strict=True)).rstrip(),
               "  ".join("-" * w for w in widths)]
        out += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in body]
        notes = [f"  * {r.figure}: {r.note}" for r in self.rows if r.note]
        return "\n".join(out + (["", *notes] if notes else []))


def uml_bench_setup() -> tuple[Path, Any, Any, dict[str, str]]:
    """The cache, the engine backend, the User-mode Linux backend and the cloud-proxy images (unpatched,
    adaptive) the real-kernel benches run: built or found by content, as the plugin's matrix does."""
    from pytest_ipv6compat import images
    from pytest_ipv6compat.backends.docker_api import DockerBackend
    from pytest_ipv6compat.backends.uml import UmlBackend, find_kernel

    cache = images.default_cache_dir()
    docker = DockerBackend.connect(images.ensure_probe(cache))
    uml = UmlBackend(docker, find_kernel(None), cache, docker.probe_dir)
    base = images.ensure_base_image(docker.client, cache)
    root = Path(__file__).resolve().parent.parent
    image = {v: images.ensure_target_image(docker.client, root / "matrix" / "cloud-proxy", base=base,
                                           name=f"cloud-proxy-{v}", build_args={"VARIANT": v}, cache_dir=cache)
             for v in ("unpatched", "adaptive")}
    return cache, docker, uml, image
