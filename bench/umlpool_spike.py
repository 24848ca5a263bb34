"""What a cell would cost in a kernel that is booted once and runs cells in turn (a measurement, not a backend).

    python -m pytest_ipv6compat prepare matrix/cloud-proxy.ipv6.toml   # once
    python bench/umlpool_spike.py [--cells 6] [--runs 3]

Boots Debian's UML kernel with ``ipv6.disable=1`` and the cloud proxy's ``adaptive`` image (the
plugin's cached initramfs), with a throw-away init instead of the plugin's: it loads ipv6,
udp_diag and overlay once, then runs K cells in turn, each in new mount, pid, net, ipc and uts
namespaces (busybox ``unshare``) on a fresh overlay of the image's root (tmpfs upper layer), with
its own /proc, /dev/shm and lo; the proxy's entrypoint starts, the cell waits 1.5 s (idle: no
polling), counts the listeners on :56000, kills every process of its pid namespace and ends.
The whole kernel runs in a cpuacct cgroup of its own; K=1 and K=--cells alternate, --runs times.

The cost of one more cell is (median CPU of K cells - median of 1 cell) / (K - 1). It leaves out
what the plugin adds to a cell (watcher, shim and attestation, per-cell cgroup bounds and checks
that nothing is left), and it pays for busybox programs the plugin would not start (mount,
unshare, ip: 10-30 ms each here): it bounds what pooling could reach, it is not a pooled backend.
Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average

from pytest_ipv6compat import images
from pytest_ipv6compat.backends.docker_api import DockerBackend
from pytest_ipv6compat.backends.uml import FAST_BOOT, find_kernel
from pytest_ipv6compat.backends.uml import UmlBackend as Uml
from pytest_ipv6compat.backends.uml_rootfs import CpioWriter, load_order, modules_dir

ROOT = Path(__file__).resolve().parent.parent
INIT = r"""#!/.ipv6compat/busybox sh
P=/.ipv6compat
BB=$P/busybox
$BB mount -t proc proc /proc
$BB mount -t sysfs sysfs /sys
$BB mount -t devtmpfs dev $P/dev
for m in $($BB cat $P/spike-modules); do
    case $m in ipv6.ko) $BB insmod $P/spike/$m disable=1 ;; *) $BB insmod $P/spike/$m ;; esac
done
$BB mkdir -p $P/c
i=0
while [ $i -lt CELLS ]; do
    i=$((i + 1))
    $BB mount -t tmpfs t $P/c
    $BB mkdir $P/c/u $P/c/w $P/c/r
    $BB mount -t overlay o -o lowerdir=/,upperdir=$P/c/u,workdir=$P/c/w $P/c/r
    $BB unshare -m -n -i -u -p -f $BB sh -c '
        P=/.ipv6compat; BB=$P/busybox; R=$P/c/r
        $BB mount -t proc proc $R/proc
        $BB mount -t tmpfs shm $R/dev/shm
        $BB ip link set lo up
        $BB mkfifo $P/c/tick; exec 5<>$P/c/tick
        PL_DOMAIN_NAME=proxy.ipv6compat.test $BB chroot $R /entrypoint.sh >/dev/null 2>&1 &
        read -t 1.5 _ <&5
        echo "listening $($BB grep -c ":DAC0 00000000:0000 0A" $R/proc/net/tcp)"
        kill -9 -1
    '
    $BB umount -l $P/c/r
    $BB umount -l $P/c
done
$BB poweroff -f
"""


def archive(rootfs: Path, cells: int, kernel: Path, out: Path) -> None:
    modules = modules_dir(kernel)
    order = load_order(modules, ("ipv6", "udp_diag", "overlay"))
    buf = io.BytesIO()
    writer = CpioWriter(buf)
    writer.directory(".ipv6compat/spike")
    writer.file(".ipv6compat/spike/init", INIT.replace("CELLS", str(cells)).encode(), 0o755)
    for rel in order:
        writer.file(f".ipv6compat/spike/{Path(rel).name}", (modules / rel).read_bytes(), 0o644)
    writer.file(".ipv6compat/spike-modules", "".join(f"{Path(r).name}\n" for r in order).encode(), 0o644)
    writer.trailer()
    out.write_bytes(rootfs.read_bytes() + buf.getvalue())


def boot(kernel: Path, initrd: Path, mem: int, rundir: Path) -> tuple[float, float, int]:
    """CPU seconds of the kernel's whole process tree, wall seconds, cells that listened."""
    group = Path("/sys/fs/cgroup/cpuacct") / f"ipv6compat-spike-{os.getpid()}"
    group.mkdir()
    try:
        argv = [str(kernel), f"mem={mem}M", f"initrd={initrd}", "rdinit=/.ipv6compat/spike/init", "ipv6.disable=1",
                *FAST_BOOT, "quiet", f"uml_dir={rundir}", f"umid=spike{os.getpid()}", "con0=null,fd:1",
                "con=null", "ssl=null"]
        t0 = time.monotonic()
        done = subprocess.run(["/bin/sh", "-c", f'echo $$ >{group}/cgroup.procs && exec "$@"', "sh", *argv],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False)
        wall = time.monotonic() - t0
        cpu = int((group / "cpuacct.usage").read_text()) / 1e9
        listened = sum(1 for line in done.stdout.splitlines() if line.strip() == "listening 1")
        return cpu, wall, listened
    finally:
        for _ in range(100):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cache = images.default_cache_dir()
    docker = DockerBackend.connect(images.ensure_probe(cache))
    kernel = find_kernel(None)
    uml = Uml(docker, kernel, cache, docker.probe_dir)
    base = images.ensure_base_image(docker.client, cache)
    image = images.ensure_target_image(docker.client, ROOT / "matrix" / "cloud-proxy", base=base,
                                       name="cloud-proxy-adaptive", build_args={"VARIANT": "adaptive"}, cache_dir=cache)
    rootfs = uml.prepare(image)
    mem = 512 + 96 + (rootfs.stat().st_size >> 19)  # as the plugin sizes a cell of 512m
    print(f"load average before: {load_average()}")
    results: dict[int, list[tuple[float, float, int]]] = {1: [], args.cells: []}
    with tempfile.TemporaryDirectory(prefix="ipv6compat-spike-") as tmp:
        for k in results:
            archive(rootfs, k, kernel, Path(tmp) / f"k{k}.cpio")
        for _ in range(args.runs):
            for k in results:
                results[k].append(boot(kernel, Path(tmp) / f"k{k}.cpio", mem, Path(tmp)))
    print(f"load average after: {load_average()}")
    med = statistics.median
    for k, rows in results.items():
        listened = [n for _, _, n in rows]
        print(f"{k} cell(s) per kernel: {med(c for c, _, _ in rows):.3f} CPU-s, "
              f"{med(w for _, w, _ in rows):.3f} s wall, listening in {min(listened)}-{max(listened)} of {k}")
    one, many = med(c for c, _, _ in results[1]), med(c for c, _, _ in results[args.cells])
    print(f"one more cell in a booted kernel: {(many - one) / (args.cells - 1):.3f} CPU-s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
