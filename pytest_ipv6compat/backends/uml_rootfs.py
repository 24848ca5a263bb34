"""Root filesystems for User-mode Linux: an image exported through the engine's API, as an initramfs.

The engine exports a created, never-started container of the image (``docker export``:
it works for a remote engine too); the tar stream becomes a ``newc`` cpio archive
cached by image id, followed by the probe (busybox, shim, watcher, the UML init)
and the kernel modules IPv6 needs. A second run with the same image, probe and
kernel prepares nothing. Each cell adds a small archive of its own (its settings
and the contents of its read-only mounts); the kernel unpacks concatenated archives
in order, so the cell's initramfs is a copy of the cached one plus that tail.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import shlex
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from . import EngineError, uml_cache

PROBE_DIR = "/.ipv6compat"
# The modules init loads, by name, with what each depends on (from the kernel's modules.dep): IPv6, as a
# Debian host loads it, and what the watcher reads sockets with. Debian's UML kernel has inet_diag and
# tcp_diag built in (CONFIG_INET_DIAG=y, CONFIG_INET_TCP_DIAG=y) but udp_diag as a module: without it
# a UDP socket dump fails (ENOENT), as no modprobe runs inside the guest to load it on demand. veth (a module
# there too): the pod interface umlsetup makes, as podsetup does in a container cell.
# Newer kernels build IPv6 in (Linux 7.2 from Debian: CONFIG_IPV6=y, no ipv6.ko): then ipv6.disable=1 on the
# command line reaches it directly, and there is nothing to load. A module the kernel's modules.dep lacks counts as
# built in only when the kernel's own configuration (``linux --showconfig``) says so, by the symbol named here.
MODULES = ("ipv6", "udp_diag", "veth")
CONFIG_SYMBOLS = {"ipv6": "CONFIG_IPV6", "udp_diag": "CONFIG_INET_UDP_DIAG", "veth": "CONFIG_VETH",
                  "overlay": "CONFIG_OVERLAY_FS"}
# The network sysctls a container engine sets in every container's namespace, which a fresh kernel does
# not have (measured in /proc/sys inside a container, `--network none`): Docker 20.10 sets both; Podman 4.3's
# `podman run` leaves the kernel's defaults (1024 and "1 0"). The guest takes Docker's, so that a non-root
# service on a port below 1024 (or one that pings) behaves as on the container stacks. umlsetup writes each.
SYSCTLS = (("net.ipv4.ip_unprivileged_port_start", "0"), ("net.ipv4.ping_group_range", "0 2147483647"))
INIT = Path(__file__).parent.parent / "probe" / "uml_init.sh"
_ROOTFS_VERSION = "7"  # bump when the archive layout changes
DEVICES = (("console", 0o600, (5, 1)), ("null", 0o666, (1, 3)), ("zero", 0o666, (1, 5)), ("full", 0o666, (1, 7)),
           ("random", 0o666, (1, 8)), ("urandom", 0o666, (1, 9)), ("tty", 0o666, (5, 0)))
DEV_LINKS = (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
FSTAB = f"""proc /proc proc defaults 0 0
sysfs /sys sysfs defaults 0 0
cgroup2 /sys/fs/cgroup cgroup2 defaults 0 0
devtmpfs {PROBE_DIR}/dev devtmpfs defaults 0 0
/ {PROBE_DIR}/root none bind 0 0
proc {PROBE_DIR}/root/proc proc defaults 0 0
sysfs {PROBE_DIR}/root/sys sysfs ro 0 0
devpts {PROBE_DIR}/root/dev/pts devpts newinstance,ptmxmode=0666 0 0
shm {PROBE_DIR}/root/dev/shm tmpfs nosuid,nodev,size=64m 0 0
"""


class CpioWriter:
    """Writes a ``newc`` cpio archive (what an initramfs is made of); each entry's inode is new."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._ino = 1000

    def add(self, name: str, mode: int, data: bytes = b"", *, uid: int = 0, gid: int = 0, mtime: int = 0,
            rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        name = name.lstrip("/") or "."
        encoded = name.encode("utf-8", "surrogateescape") + b"\0"
        fields = (self._ino, mode, uid, gid, 1, mtime, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        self._out.write(header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4))
        self._out.write(data + b"\0" * (-len(data) % 4))

    def directory(self, name: str, mode: int = 0o755) -> None:
        self.add(name, stat.S_IFDIR | mode)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.add(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self.add(name, stat.S_IFLNK | 0o777, target.encode())

    def trailer(self) -> None:
        self.add("TRAILER!!!", 0)
        self._out.write(b"\0" * (-self._out.tell() % 512))


ELF32 = b"\x7fELF\x01"  # an ELF file's magic and class 1: a 32-bit program


def resolve(path: str, links: dict[str, str]) -> str | None:
    """``path`` (absolute) with every symbolic link in it followed, as the image's root has them; None for a loop."""
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            done = done[:-1]
            continue
        if part == ".":
            continue
        here = "/" + "/".join([*done, part])
        if here in links:
            hops += 1
            if hops > 40:
                return None
            target = links[here]
            parts = [p for p in target.split("/") if p] + parts
            if target.startswith("/"):
                done = []
            continue
        done.append(part)
    return "/" + "/".join(done)


def tar_to_cpio(tar: tarfile.TarFile, writer: CpioWriter) -> list[str]:
    """Copy every member of a (seekable) tar archive; hard links become copies, owners and modes are kept.

    Returns the paths (absolute, and every symbolic link to one) of the 32-bit ELF programs it holds.
    """
    elf32: set[str] = set()
    links: dict[str, str] = {}
    for member in tar:
        name = member.name.rstrip("/")
        if name in ("", ".") or name.startswith(PROBE_DIR.lstrip("/")):
            continue
        perm = member.mode & 0o7777
        owner: dict[str, Any] = {"uid": member.uid, "gid": member.gid, "mtime": int(member.mtime)}
        if member.isdir():
            writer.add(name, stat.S_IFDIR | perm, **owner)
        elif member.issym():
            writer.add(name, stat.S_IFLNK | 0o777, member.linkname.encode("utf-8", "surrogateescape"), **owner)
            links["/" + name] = member.linkname
        elif member.isreg() or member.islnk():
            source = tar.extractfile(member)
            data = source.read() if source is not None else b""
            writer.add(name, stat.S_IFREG | perm, data, **owner)
            if data.startswith(ELF32) and perm & 0o111:
                elf32.add("/" + name)
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            writer.add(name, kind | perm, rdev=(member.devmajor, member.devminor), **owner)
        elif member.isfifo():
            writer.add(name, stat.S_IFIFO | perm, **owner)
    if not elf32:
        return []
    named = set(elf32)
    for link in links:
        if resolve(link, links) in elf32:
            named.add(link)
    return sorted(named)


def elf32_programs(rootfs: Path) -> frozenset[str]:
    """The 32-bit programs of a cached root filesystem (and the links to them), noted when it was built."""
    try:
        return frozenset(rootfs.with_suffix(".elf32").read_text().splitlines())
    except FileNotFoundError:
        return frozenset()


@functools.lru_cache(maxsize=8)
def kernel_version(kernel: Path) -> str:
    """What ``linux --version`` prints (``6.1.176``), or ``?`` when it says nothing usable."""
    return (_ask(kernel, "--version").strip().splitlines() or ["?"])[0].strip()[:80]


@functools.lru_cache(maxsize=8)
def kernel_builtin(kernel: Path) -> frozenset[str]:
    """The names of :data:`CONFIG_SYMBOLS` the kernel at ``kernel`` builds in (``linux --showconfig``)."""
    return frozenset(built_in(_ask(kernel, "--showconfig")))


def _ask(kernel: Path, flag: str) -> str:
    """What ``kernel FLAG`` prints, or '' when it fails."""
    try:
        done = subprocess.run([str(kernel), flag], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def modules_dir(kernel: Path, version: str | None = None) -> Path:
    """Where Debian's user-mode-linux keeps the modules of the kernel at ``kernel`` (of release ``version``, as
    ``linux --version`` prints it): ``lib/uml/modules/VERSION`` beside the binary's ``bin`` (``/usr`` for the
    installed package; the package's own layout where it was unpacked elsewhere), else the newest there."""
    bases = [kernel.resolve().parent.parent / "lib" / "uml" / "modules", Path("/usr/lib/uml/modules")]
    for base in dict.fromkeys(bases):
        if version and (base / version / "modules.dep").is_file():
            return base / version
    base = next((b for b in bases if b.is_dir()), bases[-1])
    found = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    if not found:
        raise EngineError(f"no kernel modules under {base} for {kernel} (apt-get install user-mode-linux)")
    return found[-1]


def built_in(config: str) -> set[str]:
    """The names of :data:`CONFIG_SYMBOLS` that ``config`` (what ``linux --showconfig`` prints) builds in."""
    lines = set(config.splitlines())
    return {name for name, symbol in CONFIG_SYMBOLS.items() if f"{symbol}=y" in lines}


def load_order(modules: Path, wanted: Iterable[str] | None = None, config_builtin: Iterable[str] = ()) -> list[str]:
    """The files (relative to ``modules``) of ``wanted`` and what they depend on, in load order, from modules.dep.

    ``config_builtin``: the names the kernel's configuration builds in (:func:`built_in`); none is loaded."""
    deps: dict[str, list[str]] = {}
    try:
        text = (modules / "modules.dep").read_text()
    except OSError as exc:
        raise EngineError(f"cannot read the kernel's module list {modules / 'modules.dep'}: {exc.strerror}") from None
    for line in text.splitlines():
        path, _, rest = line.partition(":")
        deps[Path(path).name.removesuffix(".ko").replace("-", "_")] = [path, *rest.split()]
    builtin: set[str] = set()  # built into the kernel: nothing to load
    with contextlib.suppress(OSError):
        builtin = {Path(line).name.removesuffix(".ko").replace("-", "_")
                   for line in (modules / "modules.builtin").read_text().splitlines()}
    builtin |= set(config_builtin)
    order: list[str] = []
    for name in MODULES if wanted is None else wanted:
        if name in builtin:
            continue
        if name not in deps:
            raise EngineError(f"the kernel's {modules / 'modules.dep'} has no module {name}")
        path, *needs = deps[name]
        for rel in [*reversed(needs), path]:  # modules.dep lists what loads last first
            if rel not in order:
                order.append(rel)
    return order


# The confinement an engine gives a container, given to the target in the guest too (umlsetup): Docker's read-only
# and masked paths (``confine``: "ro PATH" and "mask PATH" lines), its device cgroup (``devices.bpf``: a cgroup
# device program, attached to the cell's cgroup) and the project's seccomp profile for a stack without the AF_INET6
# rule (``seccomp.bpf``: the real kernel refuses AF_INET6 itself), so that a root target can no more write a global
# sysctl, open a device it made, read the kernel's log or use a keyring there than in a container.
def confine_lines() -> str:
    """Docker's read-only and masked paths (``oci_bundle.READ_ONLY``, ``MASKED``), as umlsetup reads them."""
    from .oci_bundle import MASKED, READ_ONLY  # it takes SYSCTLS from here

    return "".join([*(f"ro {path}\n" for path in READ_ONLY), *(f"mask {path}\n" for path in MASKED)])


# eBPF, as the kernel's struct bpf_insn: code, dst | src << 4, offset, immediate (little-endian: x86-64 only here)
_LDX_W, _MOV_X, _AND_K, _RSH_K, _JNE_K, _JA, _MOV_K, _EXIT = 0x61, 0xBF, 0x57, 0x77, 0x55, 0x05, 0xB7, 0x95
_DEV_TYPE = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_DEV_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def device_program(rules: Iterable[tuple[str, int | None, int | None, str]] | None = None) -> bytes:
    """A cgroup device program (BPF_PROG_TYPE_CGROUP_DEVICE) allowing what ``rules`` (default: the engine's,
    ``oci_bundle.DEVICES``) allow, as an engine's device cgroup does: an access is allowed when a rule of its
    type (and major and minor, where the rule names them) grants every access asked for; anything else is denied."""
    from .oci_bundle import DEVICES

    # r1: struct bpf_cgroup_dev_ctx {u32 access_type (access << 16 | type), major, minor}
    code = [_insn(_LDX_W, 2, 1, 0), _insn(_MOV_X, 3, 2), _insn(_AND_K, 3, imm=0xFFFF), _insn(_RSH_K, 2, imm=16),
            _insn(_LDX_W, 4, 1, 4), _insn(_LDX_W, 5, 1, 8)]
    allows = []  # where each rule's jump to "allow" goes, once its place is known
    for kind, major, minor, access in DEVICES if rules is None else rules:
        tests = [(3, _DEV_TYPE[kind]), *((reg, v) for reg, v in ((4, major), (5, minor)) if v is not None)]
        end = len(code) + len(tests) + 4  # past this rule: its tests, r6 = r2, r6 &= not granted, the check, the jump
        for reg, value in tests:
            code.append(_insn(_JNE_K, reg, off=end - len(code) - 1, imm=value))
        code += [_insn(_MOV_X, 6, 2), _insn(_AND_K, 6, imm=~sum(_DEV_ACCESS[a] for a in access) & 7)]
        code.append(_insn(_JNE_K, 6, off=end - len(code) - 1, imm=0))  # asked for more than it grants
        allows.append(len(code))
        code.append(b"")
    allow = len(code) + 2
    code += [_insn(_MOV_K, 0, imm=0), _insn(_EXIT), _insn(_MOV_K, 0, imm=1), _insn(_EXIT)]
    for at in allows:
        code[at] = _insn(_JA, off=allow - at - 1)
    return b"".join(code)


@functools.lru_cache(maxsize=1)
def seccomp_program() -> bytes:
    """The project's seccomp profile without the AF_INET6 rule (dual-stack's: the real kernel refuses AF_INET6
    itself, and one booted without ipv6.disable=1 must not look as if it did), compiled for x86-64."""
    from ..stacks import STACKS
    from .oci_bundle import oci_seccomp
    from .oci_seccomp import SeccompError, compile_bpf

    try:
        return compile_bpf(oci_seccomp(STACKS["dual-stack"], "x86_64"))
    except SeccompError as exc:
        raise EngineError(f"cannot confine the real-kernel cell as a container: {exc}") from None


def sysctl_lines() -> str:
    """``SYSCTLS`` as umlsetup reads them: a /proc/sys path and its value, a line each."""
    return "".join(f"/proc/sys/{key.replace('.', '/')} {value}\n" for key, value in SYSCTLS)


def slim(path: Path, how: str) -> bytes:
    """``path``'s bytes without what the kernel never loads: ``strip HOW`` (binutils, which the probe's C
    compiler comes with), or the file as it is where ``strip`` is missing or fails.

    Every byte of the initramfs costs the kernel its unpacking (a page fault of the kernel's memory
    file on the host per page, twice: read, then unpacked), about 3.4 ms a MB measured on 2 cores.
    ``--strip-debug`` of a module is what ``make modules_install INSTALL_MOD_STRIP=1`` does: it
    removes the sections that are never loaded (``.debug_*`` and their relocations), so the module
    loads the same code with the same ``.modinfo`` (Debian's UML modules are not signed: nothing to
    invalidate). ``--strip-all`` of a static program removes its symbol table, which nothing reads.
    """
    tool = shutil.which("strip")
    if tool is None:
        return path.read_bytes()
    with tempfile.TemporaryDirectory(prefix="ipv6compat-strip-") as tmp:
        out = Path(tmp) / path.name
        try:
            done = subprocess.run([tool, how, "-o", str(out), str(path)], capture_output=True, timeout=60,
                                  check=False)
        except (OSError, subprocess.SubprocessError):
            return path.read_bytes()
        return out.read_bytes() if done.returncode == 0 and out.is_file() else path.read_bytes()


def probe_archive(probe_dir: Path, modules: Path, writer: CpioWriter, builtin: Iterable[str] = ()) -> None:
    """The probe at ``/.ipv6compat``: busybox, shim, watcher, init and its set-up, and the modules it loads
    (their files, and ``modules``: one file name a line, in load order, which umlsetup reads)."""
    writer.directory(PROBE_DIR)
    # The target's /dev, as an engine makes it (the kernel also opens /dev/console for init before
    # init runs, and an export may hold a plain file there); mount points of init's fstab.
    for name, mode in (("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("dev/pts", 0o755), ("dev/shm", 0o1777)):
        writer.directory(name, mode)
    for name, mode, rdev in DEVICES:
        writer.add(f"dev/{name}", stat.S_IFCHR | mode, rdev=rdev)
    for name, target in DEV_LINKS:
        writer.symlink(f"dev/{name}", target)
    writer.file(f"{PROBE_DIR}/fstab", FSTAB.encode(), 0o644)
    for name in ("busybox", "shim.sh", "watch", "umlsetup"):
        path = probe_dir / name
        data = slim(path, "--strip-all") if name in ("watch", "umlsetup") else path.read_bytes()
        writer.file(f"{PROBE_DIR}/{name}", data, stat.S_IMODE((probe_dir / name).stat().st_mode) | 0o444)
    writer.file(f"{PROBE_DIR}/init", INIT.read_bytes(), 0o755)
    writer.symlink(f"{PROBE_DIR}/sh", "busybox")
    order = load_order(modules, config_builtin=builtin)
    for rel in order:
        writer.file(f"{PROBE_DIR}/{Path(rel).name}", slim(modules / rel, "--strip-debug"), 0o644)
    writer.file(f"{PROBE_DIR}/modules", "".join(f"{Path(rel).name}\n" for rel in order).encode(), 0o644)
    writer.file(f"{PROBE_DIR}/sysctls", sysctl_lines().encode(), 0o644)
    writer.file(f"{PROBE_DIR}/confine", confine_lines().encode(), 0o644)
    writer.file(f"{PROBE_DIR}/devices.bpf", device_program(), 0o644)
    writer.file(f"{PROBE_DIR}/seccomp.bpf", seccomp_program(), 0o644)
    for sub in ("dev", "root", "mounts", "cell"):
        writer.directory(f"{PROBE_DIR}/{sub}", 0o700 if sub == "cell" else 0o755)


def ensure_rootfs(client: Any, image: str, cache_dir: Path, probe_dir: Path, kernel: Path,
                  labels: dict[str, str]) -> Path:
    """The cached initramfs of ``image`` with the probe: built once per (image id, probe, kernel).

    The exporting container carries ``labels`` (the session's), so a sweep finds it if this process dies.
    """
    try:
        image_id = str(client.images.get(image).id)
    except Exception as exc:  # noqa: BLE001 - any engine failure is one line
        raise EngineError(f"cannot inspect image {image!r} for User-mode Linux: {exc}") from None
    modules, builtin = modules_dir(kernel, kernel_version(kernel)), sorted(kernel_builtin(kernel))
    key = hashlib.sha256(
        "\0".join([_ROOTFS_VERSION, image_id, probe_dir.name, str(modules), INIT.read_text(), *MODULES, *builtin,
                   sysctl_lines(), confine_lines(), device_program().hex(), seccomp_program().hex(),
                   f"strip={shutil.which('strip') is not None}"]).encode()
    ).hexdigest()[:16]
    short = image_id.removeprefix("sha256:")[:12]
    dest = cache_dir / "uml" / f"rootfs-{short}-{key}.cpio"
    if dest.is_file():
        uml_cache.used(dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=dest.parent) as exported:
        _export(client, image, exported, labels)
        exported.seek(0)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".rootfs-")
        try:
            with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=exported, mode="r:") as tar:
                writer = CpioWriter(out)
                elf32 = tar_to_cpio(tar, writer)
                probe_archive(probe_dir, modules, writer, builtin)
                writer.trailer()
            dest.with_suffix(".elf32").write_text("".join(f"{p}\n" for p in elf32))  # before the archive: it
            os.replace(tmp, dest)  # is cached when the archive is
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    for stale in dest.parent.glob(f"rootfs-{short}-*.cpio"):  # this image with an older probe or init
        if stale != dest:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()  # a kernel booting from it has its own copy (the cell's initramfs)
            with contextlib.suppress(FileNotFoundError):
                stale.with_suffix(".elf32").unlink()
    uml_cache.evict(dest.parent)
    return dest


def _export(client: Any, image: str, out: IO[bytes], labels: dict[str, str]) -> None:
    """``docker export`` of a created (never started) container of ``image``, removed afterwards."""
    container = None
    try:
        container = client.api.create_container(image, command=["/nonexistent"], entrypoint=[],
                                                network_disabled=True, labels=labels)
        for chunk in client.api.export(container["Id"]):
            out.write(chunk)
    except Exception as exc:  # noqa: BLE001 - any engine failure is one line
        raise EngineError(f"cannot export the root filesystem of {image!r} from the engine: {exc}") from None
    finally:
        if container is not None:
            with contextlib.suppress(Exception):
                client.api.remove_container(container["Id"], force=True)


def cell_archive(settings: dict[str, str], words: dict[str, list[str]], mounts: Iterable[tuple[str, str]],
                 hosts: str) -> bytes:
    """The cell's own archive: ``cell/settings.sh`` (sourced by init: ``settings`` as values, ``words``
    as shell words for ``eval set --``), ``/etc/hosts``, ``cell/mounts`` and the mounts' contents."""
    buf = io.BytesIO()
    writer = CpioWriter(buf)
    lines = [f"{k}={shlex.quote(v)}" for k, v in settings.items()]
    lines += [f"{k}={shlex.quote(' '.join(shlex.quote(w) for w in v))}" for k, v in words.items()]
    writer.file(f"{PROBE_DIR}/cell/settings.sh", ("\n".join(lines) + "\n").encode(), 0o600)
    writer.directory("etc")
    writer.file("etc/hosts", hosts.encode(), 0o644)  # unpacked after the image's: it replaces its file
    table = []
    for index, (path, host) in enumerate(mounts):
        root = f"{PROBE_DIR}/mounts/{index}"
        _copy_tree(Path(host), root, writer)
        table.append(f"{root} {path}")
    writer.file(f"{PROBE_DIR}/cell/mounts", ("\n".join(table) + "\n").encode() if table else b"", 0o600)
    writer.trailer()
    return buf.getvalue()


def _copy_tree(host: Path, root: str, writer: CpioWriter) -> None:
    if host.is_file():
        writer.file(root, host.read_bytes(), stat.S_IMODE(host.stat().st_mode))
        return
    if not host.is_dir():
        raise EngineError(f"mount source {str(host)!r} does not exist on this host")
    writer.directory(root, stat.S_IMODE(host.stat().st_mode))
    for path in sorted(host.rglob("*")):
        name = f"{root}/{path.relative_to(host).as_posix()}"
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            writer.symlink(name, os.readlink(path))
        elif path.is_dir():
            writer.directory(name, mode)
        elif path.is_file():
            writer.file(name, path.read_bytes(), mode)


@contextlib.contextmanager
def cell_initramfs(rootfs: Path, tail: bytes) -> Iterator[int]:
    """An unlinked file holding the cached archive plus the cell's: its descriptor (nothing left on disk)."""
    with tempfile.TemporaryFile(dir=rootfs.parent) as out, rootfs.open("rb") as src:
        size = rootfs.stat().st_size
        copied = 0
        while copied < size:
            n = os.copy_file_range(src.fileno(), out.fileno(), size - copied) if hasattr(os, "copy_file_range") \
                else out.write(src.read(1 << 20))
            if n == 0:
                break
            copied += n
        out.write(tail)
        out.flush()
        yield out.fileno()
