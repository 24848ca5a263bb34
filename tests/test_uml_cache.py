"""The User-mode Linux root-filesystem cache stays bounded (pure: files with set times, no engine)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_ipv6compat.backends import uml_cache

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_800_000_000.0
HOUR = 3600.0


def archive(directory: Path, name: str, size: int, last_used: float, *, side: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"rootfs-{name}.cpio"
    path.write_bytes(b"\0" * size)
    os.utime(path, (last_used, last_used))
    if side:
        path.with_suffix(".elf32").write_text("")
    return path


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_eviction_removes_the_least_recently_used_until_under_the_bound(tmp_path: Path) -> None:
    a = archive(tmp_path, "a", 400, NOW - 5 * HOUR)
    archive(tmp_path, "b", 400, NOW - 3 * HOUR)
    archive(tmp_path, "c", 400, NOW - 4 * HOUR)
    archive(tmp_path, "d", 400, NOW - 2 * HOUR)
    removed = uml_cache.evict(tmp_path, limit=900, now=NOW)
    assert [p.name for p in removed] == [a.name, "rootfs-c.cpio"]  # oldest use first, down to 800 bytes
    assert names(tmp_path) == ["rootfs-b.cpio", "rootfs-b.elf32", "rootfs-d.cpio", "rootfs-d.elf32"]


def test_a_use_counts_as_recent_and_recent_ones_are_never_evicted(tmp_path: Path) -> None:
    now = time.time()  # used() sets the real clock's time
    old = archive(tmp_path, "old", 500, now - 9 * HOUR)
    archive(tmp_path, "newer", 500, now - 2 * HOUR)
    archive(tmp_path, "fresh", 500, now - 60)  # a worker may be booting from it right now
    uml_cache.used(old)
    removed = uml_cache.evict(tmp_path, limit=100, now=now + 1)
    assert [p.name for p in removed] == ["rootfs-newer.cpio"]  # the bound is passed while the rest are in use
    assert (tmp_path / "rootfs-old.cpio").exists()
    assert (tmp_path / "rootfs-fresh.cpio").exists()


def test_under_the_bound_nothing_goes(tmp_path: Path) -> None:
    archive(tmp_path, "a", 100, NOW - 99 * HOUR)
    assert uml_cache.evict(tmp_path, limit=100, now=NOW) == []
    assert uml_cache.evict(tmp_path / "absent", now=NOW) == []


def test_prune_keeps_what_is_named_and_the_current_probe(tmp_path: Path) -> None:
    uml = tmp_path / "uml"
    kept = archive(uml, "kept", 10, NOW - 99 * HOUR)
    archive(uml, "other", 20, NOW - 60)  # used a minute ago, but not by the matrix files named: pruned
    (uml / "rootfs-orphan.elf32").write_text("")
    old_tmp, new_tmp = uml / ".rootfs-dead", uml / ".rootfs-building"
    old_tmp.write_bytes(b"\0" * 5)
    new_tmp.write_bytes(b"\0" * 5)
    os.utime(old_tmp, (NOW - 2 * HOUR, NOW - 2 * HOUR))
    os.utime(new_tmp, (NOW - 10, NOW - 10))
    current, stale = tmp_path / "probe-current", tmp_path / "probe-stale"
    for probe in (current, stale):
        probe.mkdir()
        (probe / "watch").write_bytes(b"\0" * 7)
    pruned = uml_cache.prune(tmp_path, {kept}, current, now=NOW)
    assert sorted(p.name for p in pruned.paths) == [".rootfs-dead", "probe-stale", "rootfs-orphan.elf32",
                                                     "rootfs-other.cpio"]
    assert pruned.freed == 20 + 5 + 7
    assert pruned.describe() == "4 files removed, 0 MB freed"
    assert names(uml) == [".rootfs-building", "rootfs-kept.cpio", "rootfs-kept.elf32"]
    assert current.is_dir()
    assert not stale.exists()
    assert uml_cache.prune(tmp_path, {kept}, current, now=NOW).describe() == "nothing to remove"


@pytest.mark.docker
def test_prepare_prune_leaves_what_the_matrix_uses(tmp_path: Path, base_image: str) -> None:
    """``prepare --prune`` with its own cache directory: the matrix's root filesystems stay, the rest goes."""
    cache = tmp_path / "cache"
    stale = archive(cache / "uml", "000000000000-0000000000000000", 1000, NOW - 99 * HOUR)
    done = subprocess.run(
        [sys.executable, "-m", "pytest_ipv6compat", "prepare", "--cache-dir", str(cache), "--base-image", base_image,
         "--prune", str(ROOT / "matrix" / "cloud-proxy.ipv6.toml")],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stderr
    rootfs = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("rootfs ")]
    assert len(rootfs) == 3, done.stdout  # the matrix's three variants
    assert not stale.exists()
    assert sorted(p.name for p in (cache / "uml").glob("*.cpio")) == sorted(Path(p).name for p in rootfs)
    assert "pruned     1 file removed, 0 MB freed" in done.stdout, done.stdout
