"""The oci backend's guard: the process that removes a session's cells when the session dies without ending.

Pure: no engine, no runtime (the runtime is /bin/true; a session with no cell never calls it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pytest_ipv6compat.backends.oci import OciBackend, Runtime


def test_the_guard_reaps_a_killed_session_and_only_that(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session that ends cleanly (its cells removed) tells its guard so: the guard ends without starting the
    reaper (a Python process that would find nothing). A session killed (its pipe closed without the word) is
    reaped as before. The reaper here is a stand-in for the interpreter the guard execs, which records its call."""
    called = tmp_path / "reaper-called"
    stand_in = tmp_path / "python"
    stand_in.write_text(f'#!/bin/sh\necho "$@" >>{called}\n', encoding="utf-8")
    stand_in.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(stand_in))  # the guard's $0: what it execs to reap
    runtime = Runtime("crun", "/bin/true", "0")
    ended = OciBackend(None, tmp_path / "ended", tmp_path / "probe", runtime)
    ended._ensure_guard()
    guard = ended._guard
    assert guard is not None
    assert ended.remove_session() == 0
    assert guard.returncode == 0
    assert not called.exists(), called.read_text()
    assert not ended.session_dir.exists()

    killed = OciBackend(None, tmp_path / "killed", tmp_path / "probe", runtime)
    killed._ensure_guard()
    guard = killed._guard
    assert guard is not None
    os.close(killed._guard_pipe)  # as when the session's process dies: EOF, and no word
    killed._guard_pipe = -1
    assert guard.wait(30) == 0
    assert called.read_text().split() == ["-m", "pytest_ipv6compat.backends.oci", "reap", str(killed.session_dir),
                                          "/bin/true"]
