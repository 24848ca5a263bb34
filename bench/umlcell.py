"""What one real-kernel cell (ipv6-boot-disabled, User-mode Linux) costs in CPU, and where it goes.

    python -m pytest_ipv6compat prepare matrix/cloud-proxy.ipv6.toml   # once
    python bench/umlcell.py [--runs 15]

The bench moves itself into a cgroup of its own (cgroup v1 ``cpuacct``, as on this host, or a
cgroup v2 leaf), so the CPU figure is the whole process tree of a cell: this process (the plugin's
side: the initramfs copy, the reader threads), the watchdog shell, the UML kernel and every host
process it makes for the guest's processes. It reads the cgroup's counter at each event of the cell:

* ``copy``: the cell's initramfs written (the cached archive plus the cell's own);
* ``boot``: from the kernel's start to the init's first line (the kernel's boot and the initramfs
  unpacked into its root);
* ``setup``: to the shim's first line (umlsetup: mounts, the modules, lo, sysctls, the cgroup);
* ``attest``: to the shim's attestation;
* ``target``: to the verdict (nginx starts and listens, the watcher settles, hold 0);
* ``halt``: to the end of the run (kill, exit code, the kernel gone, the run directory removed).

Cells: the reference target's ``unpatched`` variant (exited, errno 97) and ``adaptive`` (up, IPv4
only), hold 0, as in bench/uml.py. Medians of --runs, with the load average before and after.
``--unstripped`` also runs every cell from an archive built as before archives were stripped (the probe's programs
and the kernel modules as they are, not stripped: see ``uml_rootfs.slim``), in turn with the
stripped one, so that both meet the same load. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOMAIN, load_average, uml_bench_setup

from pytest_ipv6compat.backends import Launch, uml_rootfs
from pytest_ipv6compat.backends.uml import UmlBackend
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.spec import RunSpec
from pytest_ipv6compat.stacks import STACKS

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("copy", "boot", "setup", "attest", "target", "halt")


@contextmanager
def own_cgroup() -> Iterator[Path]:
    """This process in a cpuacct cgroup of its own (v1), its usage file; moved back and removed after."""
    base = Path("/sys/fs/cgroup/cpuacct")
    if not (base / "cpuacct.usage").exists():
        raise SystemExit("needs cgroup v1 cpuacct at /sys/fs/cgroup/cpuacct (run as root)")
    group = base / f"ipv6compat-umlcell-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cgroup.procs").write_text(str(os.getpid()))
        yield group / "cpuacct.usage"
    finally:
        (base / "cgroup.procs").write_text(str(os.getpid()))
        for _ in range(100):  # the kernel's last host processes may take a moment to be reaped
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.05)


class Clock:
    """CPU seconds of the cgroup at each mark, from the first."""

    def __init__(self, usage: Path) -> None:
        self._usage = usage
        self._last = self._read()
        self.phases: dict[str, float] = {}

    def _read(self) -> float:
        return int(self._usage.read_text()) / 1e9

    def mark(self, phase: str) -> None:
        now = self._read()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._last
        self._last = now


def cell(uml: UmlBackend, image: str, want: Outcome, usage: Path) -> tuple[dict[str, float], float]:
    """One cell: CPU seconds by phase, and its wall time."""
    spec = RunSpec(hold=0.0, settle=0.05, probe="https", http_path="/healthz")
    clock = Clock(usage)
    real_initramfs = uml_rootfs.cell_initramfs
    t0 = time.monotonic()

    @contextmanager
    def timed_initramfs(rootfs: Path, tail: bytes) -> Iterator[int]:
        with real_initramfs(rootfs, tail) as fd:
            clock.mark("copy")
            yield fd

    import pytest_ipv6compat.backends.uml as uml_module
    uml_module.cell_initramfs = timed_initramfs  # type: ignore[assignment]
    try:
        with uml.run(Launch(image, STACKS["ipv6-boot-disabled"], env={"PL_DOMAIN_NAME": DOMAIN}, run=spec)) as run:
            while run.booted is None and time.monotonic() - t0 < 30:
                time.sleep(0.002)
            clock.mark("boot")
            while run.shim_started is None and time.monotonic() - t0 < 30:
                time.sleep(0.002)
            clock.mark("setup")
            run.attestation()
            clock.mark("attest")
            verdict = run.verdict()
            clock.mark("target")
    finally:
        uml_module.cell_initramfs = real_initramfs  # type: ignore[assignment]
    clock.mark("halt")
    wall = time.monotonic() - t0
    if verdict.outcome is not want:
        raise SystemExit(f"{image}: {verdict.outcome}, expected {want}: {verdict.logs[-300:]}")
    return clock.phases, wall


def unstripped(uml: UmlBackend, image: str) -> None:
    """Build ``image``'s archive in ``uml``'s cache as it was built before archives were stripped."""
    real = uml_rootfs.slim
    uml_rootfs.slim = lambda path, how: path.read_bytes()  # type: ignore[assignment]
    try:
        uml.prepare(image)
    finally:
        uml_rootfs.slim = real  # type: ignore[assignment]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--unstripped", action="store_true", help="also run cells from unstripped archives")
    args = parser.parse_args()
    cache, docker, uml, image = uml_bench_setup()
    backends = {"": uml}
    if args.unstripped:  # its own cache directory: the two archives of an image have different keys
        backends["unstripped "] = UmlBackend(docker, uml.kernel, cache / "bench-unstripped", docker.probe_dir)
        for ref in image.values():
            unstripped(backends["unstripped "], ref)
    for ref in image.values():
        uml.prepare(ref)
    load_before = load_average()
    results: dict[str, list[tuple[dict[str, float], float]]] = {}
    with own_cgroup() as usage:
        for _ in range(args.runs):  # interleaved, so that a change of load hits all alike
            for label, backend in backends.items():
                results.setdefault(f"{label}exited", []).append(
                    cell(backend, image["unpatched"], Outcome.EXITED, usage))
                results.setdefault(f"{label}up", []).append(cell(backend, image["adaptive"], Outcome.UP, usage))
    med = statistics.median
    print(f"load average before: {load_before}; after: {load_average()}; runs: {args.runs}")
    print(f"{'cell':18} {'CPU-s':>7} {'wall s':>7}  " + " ".join(f"{p:>7}" for p in PHASES))
    for kind, rows in results.items():
        cpu = med(sum(p.values()) for p, _ in rows)
        wall = med(w for _, w in rows)
        print(f"{kind:18} {cpu:7.3f} {wall:7.3f}  " + " ".join(f"{med(p.get(x, 0.0) for p, _ in rows):7.3f}"
                                                              for x in PHASES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
