"""Debian package bootstrap behind the base image and the probe: no Docker, only apt and dpkg-deb.

Resolves a dependency closure with ``apt-cache depends``, downloads (or reuses, when the
checksum matches) the .debs with ``apt-get download``, unpacks them with ``dpkg-deb -x``
into a root filesystem with a minimal skeleton, and writes that as a root-owned tar.
Every failure is a :class:`DebianError` whose message says what to fix; ``images.py``
turns it into an ``ImageError``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence, Set
from pathlib import Path

log = logging.getLogger(__name__)

#: The root filesystem skeleton around the unpacked packages (part of the base image's cache key).
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "www-data:x:33:33:www-data:/var/www:/bin/false\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n"
DIRS = {"etc": 0o755, "bin": 0o755, "tmp": 0o1777, "var/tmp": 0o1777, "run": 0o755, "var/log/nginx": 0o755,
        "var/lib/nginx": 0o755, "root": 0o700, "dev": 0o755, "proc": 0o555, "sys": 0o555}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "armhf",
         "i686": "i386", "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64"}
_TOOLS = ("apt-get", "apt-cache", "dpkg-deb")


class DebianError(Exception):
    """A package could not be resolved, downloaded or unpacked; the message says why."""


def dpkg_arch() -> str:
    """Debian's name for the host architecture, without running dpkg (the warm path stays cheap)."""
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)


def distribution() -> str:
    """``ID-VERSION_CODENAME`` of the host, whose apt sources provide the packages."""
    try:
        text = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    fields = {k: v.strip('"') for k, _, v in (ln.partition("=") for ln in text.splitlines())}
    release = fields.get("VERSION_CODENAME") or fields.get("VERSION_ID") or "unknown"
    return f"{fields.get('ID', 'unknown')}-{release}"


def require_tools(purpose: str, hint: str) -> None:
    """Fail with ``cannot <purpose>: <tool> not found; <hint>`` unless apt and dpkg-deb are on PATH."""
    for tool in _TOOLS:
        if shutil.which(tool) is None:
            raise DebianError(f"cannot {purpose}: {tool} not found; {hint}")


def _tail(lines: Iterable[str], n: int) -> str:
    kept = [line.rstrip() for line in lines if line.strip()][-n:]
    return "".join(f"\n    {line}" for line in kept)


def _last_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("E:")]
    lines = lines or [ln for ln in stderr.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no error output"


def _run(cmd: Sequence[str], what: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False,
                              env={**os.environ, "LC_ALL": "C"})
    except OSError as exc:
        raise DebianError(f"cannot {what}: {cmd[0]} did not start: {exc.strerror}") from exc


def resolve_closure(roots: Sequence[str], excluded: Set[str]) -> list[str]:
    """``roots`` plus their Depends/Pre-Depends closure, without ``excluded`` (whose dependencies are not followed)."""
    flags = ["--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
             "--no-enhances"]
    out = _run(["apt-cache", "depends", *flags, *roots], "resolve package dependencies")
    graph: dict[str, list[str]] = {}
    deps: list[str] = []
    in_or_group = False
    for line in out.stdout.splitlines():
        if line and not line[0].isspace():
            deps = graph.setdefault(line.strip(), [])
            in_or_group = False
        elif m := re.match(r"\s+(\|?)(?:Pre)?Depends: (\S+)$", line):
            # "|Depends: a" opens an or-group: keep its first real (non-virtual) member.
            if not in_or_group and not m.group(2).startswith("<"):
                deps.append(m.group(2))
                in_or_group = m.group(1) == "|"
            elif not m.group(1):
                in_or_group = False
    missing = [r for r in roots if r not in graph]
    if missing:
        raise DebianError(f"Debian package(s) {', '.join(missing)} unknown to apt-cache (was 'apt-get update' run?)"
                          f"{_tail(out.stderr.splitlines(), 3)}")
    closure: list[str] = []
    todo = list(roots)
    while todo:
        name = todo.pop(0)
        if name not in closure and name not in excluded:
            closure.append(name)
            todo.extend(graph.get(name, []))
    return closure


def fetch_debs(packages: Sequence[str], debs_dir: Path) -> dict[str, tuple[str, Path]]:
    """Download, or reuse when the checksum matches, each candidate .deb: name -> (version, path)."""
    debs_dir.mkdir(parents=True, exist_ok=True)
    # apt lists nothing for a .deb already in the working directory: ask from an empty one.
    with tempfile.TemporaryDirectory(dir=debs_dir.parent, prefix=".uris-") as empty:
        out = _run(["apt-get", "download", "--print-uris", *packages], "list package downloads", cwd=Path(empty))
    unknown = re.findall(r"Unable to locate package (\S+)", out.stderr)
    if unknown or out.returncode != 0:
        raise DebianError(f"cannot download Debian package(s) {', '.join(unknown or packages)}: "
                          f"{_last_error(out.stderr)}")
    wanted: dict[str, tuple[str, Path, str]] = {}
    for m in re.finditer(r"^'[^']+' (\S+\.deb) \d+ (?:SHA256:([0-9a-f]+))?", out.stdout, re.M):
        name, version = m.group(1).split("_")[:2]
        wanted[name] = (version.replace("%3a", ":"), debs_dir / m.group(1), m.group(2) or "")
    absent = [n for n in packages if n not in wanted]
    if absent:
        raise DebianError(f"apt-get offered no download for Debian package(s) {', '.join(absent)}")
    stale = [n for n, (_, path, sha) in wanted.items() if not _deb_ok(path, sha)]
    if stale:
        for name in stale:
            wanted[name][1].unlink(missing_ok=True)
        log.info("downloading %s into %s", " ".join(stale), debs_dir)
        res = _run(["apt-get", "download", *stale], "download packages", cwd=debs_dir)
        failed = [n for n in stale if not _deb_ok(wanted[n][1], wanted[n][2])]
        if failed:
            raise DebianError(f"cannot download Debian package(s) {', '.join(failed)}: {_last_error(res.stderr)}")
    return {name: (version, path) for name, (version, path, _) in wanted.items()}


def _deb_ok(path: Path, sha256: str) -> bool:
    return path.is_file() and (not sha256 or hashlib.sha256(path.read_bytes()).hexdigest() == sha256)


def extract(deb: Path, dest: Path) -> None:
    """Unpack the files of ``deb`` under ``dest`` (no maintainer scripts run)."""
    res = _run(["dpkg-deb", "-x", str(deb), str(dest)], f"unpack {deb.name}")
    if res.returncode != 0:
        raise DebianError(f"dpkg-deb could not unpack {deb}: {_last_error(res.stderr)}")


def assemble_rootfs(debs: Mapping[str, tuple[str, Path]], rootfs: Path, applets: Iterable[str]) -> None:
    """Unpack ``debs`` into ``rootfs``, add the skeleton, and link each busybox applet into /bin."""
    for _, deb in debs.values():
        extract(deb, rootfs)
    for rel, mode in DIRS.items():
        (rootfs / rel).mkdir(parents=True, exist_ok=True)
        os.chmod(rootfs / rel, mode)
    (rootfs / "etc/passwd").write_text(PASSWD, encoding="utf-8")
    (rootfs / "etc/group").write_text(GROUP, encoding="utf-8")
    if not (rootfs / "bin/busybox").is_file():
        raise DebianError("the base image needs busybox-static: no /bin/busybox was unpacked")
    for applet in applets:
        link = rootfs / "bin" / applet
        if not link.exists() and not link.is_symlink():
            link.symlink_to("busybox")


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_tar(rootfs: Path, dest: Path) -> None:
    """``rootfs`` as an uncompressed tar at ``dest``, every entry owned by root (what ``docker import`` takes)."""
    with tarfile.open(dest, "w") as tar:
        tar.add(rootfs, arcname=".", filter=_root_owned)
