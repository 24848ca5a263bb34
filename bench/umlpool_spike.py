"""What a cell would cost in a kernel that is booted once and runs cells in turn (a measurement, not a backend).

    python -m pytest_ipv6compat prepare matrix/cloud-proxy.ipv6.toml   # once
    python bench/umlpool_spike.py [--cells 6] [--runs 3] [--isolated] [--target httpd]
    python bench/umlpool_spike.py --attack

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
With ``--isolated``, two more kinds of kernel alternate with those: cells started by one static
program (``umlpool_cell.c``, compiled here with ``gcc -static``) instead of busybox, ``plain`` (chroot,
as above) and ``isolated``, which closes the four ways a root target of one cell reaches the next in
the busybox cells: pivot_root into the overlay (chroot can be escaped), a cgroup v2 device program
(a root target can ``mknod`` /dev/kmsg and write the shared kernel log), /proc/sys read-only (global
sysctls), a seccomp filter on keyctl, add_key and request_key (keyrings are per user, kernel-wide).
plain vs isolated is the price of the closures; busybox vs plain what one program saves.

``--attack`` boots one kernel per kind (plain, isolated) with two cells: the first, root with
Docker's default capabilities, tries each of the four (``attack`` lines); the second looks for what
it left (``next`` line); init, outside any cell and unfiltered, looks too between the cells
(``init`` lines). That is the proof that each closure works on this kernel.

The kernel is the plugin's (``linux`` on PATH; on a CPU with AVX-512 and AMX that is Debian unstable's 7.2,
which .ci/setup unpacks: README, "A real kernel"), with the modules of its own release and none its
configuration builds in (7.2: IPv6).

Measured 2026-12-07 on 2 cores, one more cell's CPU-s (a helper's runs, on Debian's 6.1 booted through a
workaround for this CPU that is gone since: AVX off in the guest, the FPU state saved in its old form, so the
proxy's nginx could not run and ``--target httpd`` was measured): ``--cells 11 --runs 5 --isolated``: busybox
0.161, plain 0.027, isolated 0.026 (medians of K=11: 0.617 plain, 0.621 isolated; load 3.9 -> 1.4);
``--cells 6 --runs 3``: 0.161, 0.056, 0.032 (load 3.2). The closures cost nothing measurable beside the boot's
noise (0.2-0.6 CPU-s per kernel). With the proxy's nginx on Debian unstable's 7.2 (raid6 benchmark off),
``--isolated --cells 6 --runs 3``, 2026-12-07, load 1.6 -> 0.7: one more cell 0.450 (busybox), 0.329 (plain),
0.231 (isolated) CPU-s; a kernel of one cell 0.846, 0.680, 0.742 CPU-s (isolated below plain is the noise).
Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
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
from pytest_ipv6compat.backends.uml_rootfs import CpioWriter, kernel_builtin, kernel_version, load_order, modules_dir

ROOT = Path(__file__).resolve().parent.parent
# Every kind of kernel boots the same way: proc, sysfs, devtmpfs, the modules (ipv6 with disable=1).
BOOT = r"""#!/.ipv6compat/busybox sh
P=/.ipv6compat
BB=$P/busybox
$BB mount -t proc proc /proc
$BB mount -t sysfs sysfs /sys
$BB mount -t devtmpfs dev $P/dev
for m in $($BB cat $P/spike-modules); do
    case $m in ipv6.ko) $BB insmod $P/spike/$m disable=1 ;; *) $BB insmod $P/spike/$m ;; esac
done
"""
INIT = BOOT + r"""$BB mkdir -p $P/c
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
        PL_DOMAIN_NAME=proxy.ipv6compat.test $BB chroot $R TARGET >/dev/null 2>&1 &
        read -t 1.5 _ <&5
        echo "listening $($BB grep -c ":DAC0 00000000:0000 0A" $R/proc/net/tcp)"
        kill -9 -1
    '
    $BB umount -l $P/c/r
    $BB umount -l $P/c
done
$BB poweroff -f
"""


# The same boot, then each cell by umlpool_cell (one exec instead of busybox's unshare, sh, mount, ip ...).
LAUNCHED = BOOT + r"""[ MODE = isolated ] && $P/spike/cell boot
i=0
while [ $i -lt CELLS ]; do
    i=$((i + 1))
    PL_DOMAIN_NAME=proxy.ipv6compat.test $P/spike/cell cell MODE 1.5 TARGET
done
$BB poweroff -f
"""
# --attack: the first cell tries, the second looks; init looks between them (busybox dmesg and cat, the
# launcher's haskey: full capabilities, no filter, the initial namespaces).
ATTACK = BOOT + r"""[ MODE = isolated ] && $P/spike/cell boot
echo "init $($P/spike/cell attack rootfs-pivot)"
$BB uname -r
$BB grep -E "^(Seccomp|CapBnd)" /proc/self/status
$P/spike/cell cell MODE 0 /bin/sh -c '
    A=/.ipv6compat/spike/cell
    echo "attack caps: $(grep CapEff /proc/self/status)"
    echo "attack seccomp: $(grep "^Seccomp:" /proc/self/status)"
    echo "attack sysctl: $({ echo 1 >/proc/sys/vm/overcommit_memory && echo ok; } 2>&1)"
    echo "attack mknod: $({ mknod /tmp/kmsg c 1 11 && echo ok; } 2>&1)"
    echo "attack kmsg: $({ echo ipv6compat-left-in-the-log >/tmp/kmsg && echo ok; } 2>&1)"
    echo "attack dmesg: $({ dmesg >/dev/null && echo ok; } 2>&1)"
    echo "attack null: $(head -c 3 /dev/zero | wc -c) bytes from /dev/zero"
    echo "attack mounts: $(wc -l </proc/self/mountinfo) in mountinfo"
    for a in keyctl addkey escape; do echo "attack $($A attack $a)"; done
'
echo "init: overcommit=$($BB cat /proc/sys/vm/overcommit_memory) log=$($BB dmesg | $BB grep -c ipv6compat-left)" \
     "escaped=$([ -e /ipv6compat-escaped ] && echo 1 || echo 0) $($P/spike/cell attack haskey)"
$P/spike/cell cell MODE 0 /bin/sh -c '
    echo "next: overcommit=$(cat /proc/sys/vm/overcommit_memory) log=$(dmesg | grep -c ipv6compat-left)" \
         "escaped=$([ -e /ipv6compat-escaped ] && echo 1 || echo 0) $(/.ipv6compat/spike/cell attack haskey)"
'
$BB poweroff -f
"""
MODES = ("busybox", "plain", "isolated")
# --target httpd: the image's busybox httpd on :56000 instead of the proxy's nginx
HTTPD = "#!/bin/sh\nexec httpd -f -p 56000 -h /tmp\n"


def compile_c(name: str, out: Path) -> Path:
    """bench/NAME.c compiled, static (the guest has no C library of its own)."""
    if shutil.which("gcc") is None:
        sys.exit(f"gcc is needed to build {name}.c")
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(out),
                    str(Path(__file__).with_name(f"{name}.c"))], check=True)
    return out


def archive(rootfs: Path, cells: int, kernel: Path, out: Path, mode: str = "busybox", cell: Path | None = None,
            attack: bool = False, target: str = "proxy") -> None:
    modules = modules_dir(kernel, kernel_version(kernel))
    order = load_order(modules, ("ipv6", "udp_diag", "overlay"), config_builtin=kernel_builtin(kernel))
    buf = io.BytesIO()
    writer = CpioWriter(buf)
    writer.directory(".ipv6compat/spike")
    init = ATTACK if attack else INIT if mode == "busybox" else LAUNCHED
    run = "/entrypoint.sh" if target == "proxy" else "/.ipv6compat/spike/target"
    writer.file(".ipv6compat/spike/init",
                init.replace("CELLS", str(cells)).replace("MODE", mode).replace("TARGET", run).encode(), 0o755)
    writer.file(".ipv6compat/spike/target", HTTPD.encode(), 0o755)
    if cell is not None:
        writer.file(".ipv6compat/spike/cell", cell.read_bytes(), 0o755)
        for sub in ("c", "r", "top"):  # the launcher's upper layer, overlay and bind of the initramfs
            writer.directory(f".ipv6compat/{sub}")
    for rel in order:
        writer.file(f".ipv6compat/spike/{Path(rel).name}", (modules / rel).read_bytes(), 0o644)
    writer.file(".ipv6compat/spike-modules", "".join(f"{Path(r).name}\n" for r in order).encode(), 0o644)
    writer.trailer()
    out.write_bytes(rootfs.read_bytes() + buf.getvalue())


def boot(kernel: Path, initrd: Path, mem: int, rundir: Path, console: list[str] | None = None
         ) -> tuple[float, float, int]:
    """CPU seconds of the kernel's whole process tree, wall seconds, cells that listened (the console's
    lines into ``console``)."""
    group = Path("/sys/fs/cgroup/cpuacct") / f"ipv6compat-spike-{os.getpid()}"
    group.mkdir()
    try:
        argv = [str(kernel), f"mem={mem}M", f"initrd={initrd}", "rdinit=/.ipv6compat/spike/init",
                "ipv6.disable=1", *FAST_BOOT, "quiet", f"uml_dir={rundir}", f"umid=spike{os.getpid()}",
                "con0=null,fd:1", "con=null", "ssl=null"]
        t0 = time.monotonic()
        done = subprocess.run(["/bin/sh", "-c", f'echo $$ >{group}/cgroup.procs && exec "$@"', "sh", *argv],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False)
        wall = time.monotonic() - t0
        cpu = int((group / "cpuacct.usage").read_text()) / 1e9
        listened = sum(1 for line in done.stdout.splitlines() if line.strip() == "listening 1")
        if console is not None:
            console.extend(done.stdout.splitlines())
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
    parser.add_argument("--isolated", action="store_true",
                        help="also the launcher's plain and isolated cells, interleaved with the busybox ones")
    parser.add_argument("--attack", action="store_true",
                        help="no measurement: what a root target of one cell leaves the next, plain and isolated")
    parser.add_argument("--target", choices=("proxy", "httpd"), default="proxy",
                        help="what each cell starts: the proxy's entrypoint (nginx) or busybox httpd")
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
    modes = MODES if args.isolated else ("busybox",)
    with tempfile.TemporaryDirectory(prefix="ipv6compat-spike-") as tmp:
        cell = compile_c("umlpool_cell", Path(tmp) / "umlpool_cell") if args.isolated or args.attack else None
        if args.attack:
            for mode in ("plain", "isolated"):
                archive(rootfs, 2, kernel, Path(tmp) / f"{mode}.cpio", mode, cell, attack=True)
                lines: list[str] = []
                boot(kernel, Path(tmp) / f"{mode}.cpio", mem, Path(tmp), lines)
                print(f"--- {mode}")
                print("\n".join(x for x in lines if x.startswith(("attack", "init", "next", "Seccomp", "CapBnd",
                                                                    "boot:", "umlpool_cell", "6."))))
            return 0
        print(f"load average before: {load_average()}")
        results: dict[tuple[str, int], list[tuple[float, float, int]]] = {
            (mode, k): [] for mode in modes for k in (1, args.cells)}
        for mode, k in results:
            archive(rootfs, k, kernel, Path(tmp) / f"{mode}-k{k}.cpio", mode, cell, target=args.target)
        for _ in range(args.runs):
            for mode, k in results:
                results[mode, k].append(boot(kernel, Path(tmp) / f"{mode}-k{k}.cpio", mem, Path(tmp)))
    print(f"load average after: {load_average()}")
    med = statistics.median
    for (mode, k), rows in results.items():
        listened = [n for _, _, n in rows]
        print(f"{mode}: {k} cell(s) per kernel: {med(c for c, _, _ in rows):.3f} CPU-s "
              f"({', '.join(f'{c:.3f}' for c, _, _ in rows)}), {med(w for _, w, _ in rows):.3f} s wall, "
              f"listening in {min(listened)}-{max(listened)} of {k}")
    for mode in modes:
        one, many = med(c for c, _, _ in results[mode, 1]), med(c for c, _, _ in results[mode, args.cells])
        print(f"{mode}: one more cell in a booted kernel: {(many - one) / (args.cells - 1):.3f} CPU-s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
