"""The floor: what a bare ``docker run`` of the same target costs, through the docker CLI.

Nothing of the plugin is involved: no shim, no probe mount, no watcher exec session. The first
LISTEN socket is seen from the host by reading ``/proc/<pid>/net/tcp{,6}`` of the
container's init process (we are root on the engine's host), so the image needs no tools.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from common import BENCH_LABEL, CLI, DOMAIN, BenchError, docker_cli, parse_docker_time

POLL_S = 0.005


def listening(pid: int) -> bool:
    """True once ``pid``'s network namespace has a TCP socket in LISTEN state (0A).

    Each read of ``/proc/<pid>/net/tcp{,6}`` walks the kernel's global TCP hash table (~3 ms
    of CPU per file on this host), so a poll takes ~7 ms on top of its interval.
    """
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        if any(len(parts) > 3 and parts[3] == "0A" for parts in (line.split() for line in lines)):
            return True
    return False


def wait_listening(pid: int, deadline: float, interval: float = POLL_S) -> float:
    """Poll until ``pid`` listens; return the ``time.monotonic()`` it was seen. Raises at the deadline."""
    while True:
        if listening(pid):
            return time.monotonic()
        if time.monotonic() > deadline or not Path(f"/proc/{pid}").exists():
            raise BenchError(f"process {pid} never listened (exited, or not within the deadline)")
        time.sleep(interval)


def sysctl_args(disable_ipv6: bool) -> list[str]:
    value = "1" if disable_ipv6 else "0"
    args: list[str] = []
    for iface in ("all", "default", "lo"):
        args += ["--sysctl", f"net.ipv6.conf.{iface}.disable_ipv6={value}"]
    return args


@dataclass
class FloorRun:
    total: float
    phases: dict[str, float] = field(default_factory=dict)
    latency: float | None = None  # exited: wall clock when `docker wait` returned - State.FinishedAt


def floor_up(image: str, run_label: str, hold: float, timeout: float = 30.0) -> FloorRun:
    """``docker run -d`` (dual-stack) -> first LISTEN seen from the host -> sleep ``hold`` -> ``docker rm -f``.

    The sleep is the same hold window the plugin waits before it calls a cell ``up``, so
    both sides pay it and the ratio compares like with like.
    """
    t0 = time.monotonic()
    cid = docker_cli("run", "-d", "--network", "none", "--label", f"{BENCH_LABEL}={run_label}",
                     "-e", f"PL_DOMAIN_NAME={DOMAIN}", *sysctl_args(False), image)
    t1 = time.monotonic()
    try:
        pid = int(docker_cli("inspect", "-f", "{{.State.Pid}}", cid) or 0)
        t2 = time.monotonic()
        if pid <= 0:
            raise BenchError(f"container {cid[:12]} of {image} is not running (it should listen)")
        t3 = wait_listening(pid, t0 + timeout)
        time.sleep(hold)
    finally:
        t_rm = time.monotonic()
        docker_cli("rm", "-f", cid, check=False)
        t4 = time.monotonic()
    cli = CLI[0]
    return FloorRun(t4 - t0, {f"{cli} run -d": t1 - t0, f"{cli} inspect (pid)": t2 - t1,
                              "until first LISTEN": t3 - t2, f"hold (sleep {hold:g} s)": t_rm - t3,
                              f"{cli} rm -f": t4 - t_rm})


def floor_exit(image: str, run_label: str, seccomp_file: Path) -> FloorRun:
    """``docker run -d`` (kernel-off stack: seccomp + sysctls=1) -> ``docker wait`` -> ``docker rm -f``."""
    t0 = time.monotonic()
    cid = docker_cli("run", "-d", "--network", "none", "--label", f"{BENCH_LABEL}={run_label}",
                     "--security-opt", f"seccomp={seccomp_file}",
                     "-e", f"PL_DOMAIN_NAME={DOMAIN}", *sysctl_args(True), image)
    t1 = time.monotonic()
    try:
        code = docker_cli("wait", cid)
        wall_known, t2 = time.time(), time.monotonic()
        if code.strip() == "0":
            raise BenchError(f"{image} exited 0 on the kernel-off stack; expected errno 97 exit (code 1)")
        finished = parse_docker_time(docker_cli("inspect", "-f", "{{.State.FinishedAt}}", cid))
        extra = time.monotonic() - t2  # after the fact: not part of the floor
    finally:
        t_rm = time.monotonic()
        docker_cli("rm", "-f", cid, check=False)
        t3 = time.monotonic()
    cli = CLI[0]
    return FloorRun(t3 - t0 - extra, {f"{cli} run -d": t1 - t0, f"{cli} wait": t2 - t1, f"{cli} rm -f": t3 - t_rm},
                    latency=wall_known - finished)
