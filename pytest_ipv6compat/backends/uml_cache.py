"""The cache of User-mode Linux root filesystems: bounded in size, the least recently used out first.

Each image a ``ipv6-boot-disabled`` cell runs is exported once into ``CACHE/uml/rootfs-ID-KEY.cpio``
(``uml_rootfs.ensure_rootfs``), 20-40 MB each, and a new build of an image (or of the probe) makes a
new one. Without a bound the directory only grew (1.45 GB after about 35 minutes of use). Now:

* every use of an archive sets its modification time (:func:`used`), so the time says when it was
  last used, across processes and sessions;
* after an archive is built, :func:`evict` removes the least recently used ones until the directory
  holds at most ``LIMIT_BYTES``, but never one used in the last ``IN_USE_S`` seconds (another xdist
  worker of the same session may be about to boot from it: the bound may be passed for that long);
* ``python -m pytest_ipv6compat prepare --prune`` (:func:`prune`) removes every archive the matrix
  files it prepared do not use, with leftovers: stale probe builds, orphaned side files, temporary
  files of builds that died.

Pure file operations: tested without an engine or a kernel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

LIMIT_BYTES = 1 << 30  # 1 GiB: about 30 images
IN_USE_S = 600.0  # never evict what was used this recently
_ARCHIVES = "rootfs-*.cpio"
_SIDE = ".elf32"  # the 32-bit programs of an archive's image, next to it


def used(archive: Path) -> None:
    """Record that ``archive`` is being used now (its modification time)."""
    with contextlib.suppress(FileNotFoundError):
        os.utime(archive)


def _remove(archive: Path) -> int:
    """Remove an archive and its side file; the bytes freed (0 if someone else removed it first)."""
    try:
        size = archive.stat().st_size
        archive.unlink()
    except FileNotFoundError:
        return 0
    with contextlib.suppress(FileNotFoundError):
        archive.with_suffix(_SIDE).unlink()
    return size


def _archives(directory: Path) -> list[tuple[float, int, Path]]:
    """(last use, size, path) of every archive, least recently used first."""
    found = []
    for path in directory.glob(_ARCHIVES) if directory.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            st = path.stat()
            found.append((st.st_mtime, st.st_size, path))
    return sorted(found)


def evict(directory: Path, *, limit: int = LIMIT_BYTES, in_use: float = IN_USE_S,
          now: float | None = None) -> list[Path]:
    """Remove the least recently used archives of ``directory`` until it holds at most ``limit`` bytes,
    sparing those used in the last ``in_use`` seconds; the archives removed."""
    now = time.time() if now is None else now
    archives = _archives(directory)
    total = sum(size for _, size, _ in archives)
    removed = []
    for mtime, size, path in archives:
        if total <= limit or now - mtime < in_use:
            break  # the rest were used more recently still
        _remove(path)
        total -= size
        removed.append(path)
    return removed


@dataclass(frozen=True)
class Pruned:
    paths: tuple[Path, ...]
    freed: int  # bytes

    def describe(self) -> str:
        if not self.paths:
            return "nothing to remove"
        return f"{len(self.paths)} file{'s' * (len(self.paths) != 1)} removed, {self.freed / 1e6:.0f} MB freed"


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size


def prune(cache_dir: Path, keep: Collection[Path], probe: Path | None, *, in_use: float = IN_USE_S,
          now: float | None = None) -> Pruned:
    """Remove every archive of ``cache_dir/uml`` but ``keep``, every probe build but ``probe``, side files
    whose archive is gone, and temporary files of builds older than ``in_use`` seconds."""
    now = time.time() if now is None else now
    keep = {Path(p) for p in keep}
    uml = cache_dir / "uml"
    doomed: list[Path] = [p for _, _, p in _archives(uml) if p not in keep]
    if uml.is_dir():
        doomed += [p for p in uml.glob(f"rootfs-*{_SIDE}") if not p.with_suffix(".cpio").exists()]
        doomed += [p for p in uml.glob(".rootfs-*") if now - p.stat().st_mtime > in_use]
    if probe is not None:
        doomed += [p for p in cache_dir.glob("probe-*") if p.is_dir() and p != probe]
    removed, freed = [], 0
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            size = _size(path)
            if path.is_dir():
                shutil.rmtree(path)
            elif path.suffix == ".cpio":
                size = _remove(path)
            else:
                path.unlink()
            removed.append(path)
            freed += size
    return Pruned(tuple(removed), freed)
