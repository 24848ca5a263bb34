"""The tar a shipped directory travels in: deterministic, complete, and without record padding."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from pytest_ipv6compat.backends.docker_volumes import directory_tar


def _tree(root: Path) -> Path:
    (root / "conf.d").mkdir(parents=True)
    (root / "conf.d" / "site.conf").write_text("listen 80;\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "empty").write_bytes(b"")
    (root / "zeros").write_bytes(b"\0" * 700)  # content that ends in zeros must survive the trim
    os.symlink("run.sh", root / "start")
    return root


def test_the_archive_ends_at_its_end_of_archive_blocks(tmp_path: Path) -> None:
    data = directory_tar(_tree(tmp_path / "d"))
    assert len(data) % tarfile.BLOCKSIZE == 0
    assert data.endswith(b"\0" * 2 * tarfile.BLOCKSIZE)
    # Python pads to a 10240-byte record; Podman fails the upload if those zeros follow (buildah #6573)
    assert len(data) % tarfile.RECORDSIZE != 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        last = members[-1]
        end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    assert len(data) == end + 2 * tarfile.BLOCKSIZE


def test_the_archive_holds_every_file_with_its_mode(tmp_path: Path) -> None:
    root = _tree(tmp_path / "d")
    with tarfile.open(fileobj=io.BytesIO(directory_tar(root))) as tar:
        names = tar.getnames()
        assert names == sorted(names) == ["conf.d", "conf.d/site.conf", "empty", "run.sh", "start", "zeros"]
        assert tar.getmember("run.sh").mode & 0o111
        assert tar.getmember("start").linkname == "run.sh"
        zeros = tar.extractfile("zeros")
        assert zeros is not None
        assert zeros.read() == b"\0" * 700


def test_the_archive_depends_only_on_content(tmp_path: Path) -> None:
    first = directory_tar(_tree(tmp_path / "a"))
    os.utime(tmp_path / "a" / "run.sh", (1, 1))
    assert directory_tar(tmp_path / "a") == first == directory_tar(_tree(tmp_path / "b"))
