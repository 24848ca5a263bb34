"""The pure parts of the ssh:// tunnel: addresses, the ssh command line, the guard, hints, the local sweep."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from pytest_ipv6compat.backends import EngineError
from pytest_ipv6compat.backends.ssh_tunnel import (
    DEFAULT_SOCKET,
    DIR_PREFIX,
    DISARM,
    READY,
    SshAddress,
    guard_script,
    hint,
    ssh_argv,
    sweep_local,
)


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("ssh://build-2", SshAddress("build-2")),
        ("ssh://ci@build-2:2222", SshAddress("build-2", "ci", 2222)),
        ("ssh://root@10.0.0.5/run/podman/podman.sock", SshAddress("10.0.0.5", "root", None, "/run/podman/podman.sock")),
        ("ssh://root@[::1]:22/", SshAddress("::1", "root", 22, DEFAULT_SOCKET)),
    ],
)
def test_addresses(url: str, want: SshAddress) -> None:
    assert SshAddress.parse(url) == want


@pytest.mark.parametrize("url", ["ssh://", "ssh://u:secret@host", "ssh://host:port", "tcp://host:2375",
                                 "ssh://host?x=1"])
def test_bad_addresses_are_one_line(url: str) -> None:
    with pytest.raises(EngineError, match=r"use ssh://\[USER@\]HOST\[:PORT\]\[/ENGINE/SOCKET\]$"):
        SshAddress.parse(url)


def test_the_command_line_never_prompts_and_forwards_only_the_socket(tmp_path: Path) -> None:
    address = SshAddress("build-2", "ci", 2222, "/run/docker.sock")
    argv = ssh_argv(address, tmp_path / "engine.sock", "GUARD", connect_timeout=7, config=tmp_path / "cfg")
    assert argv[:4] == ["ssh", "-T", "-x", "-a"]
    assert argv[4:6] == ["-F", str(tmp_path / "cfg")]
    assert argv[6:8] == ["-p", "2222"]
    for option in ("BatchMode=yes", "ExitOnForwardFailure=yes", "ConnectTimeout=7", "ControlPath=none"):
        assert option in argv
    assert argv[-5:] == ["-L", f"{tmp_path / 'engine.sock'}:/run/docker.sock", "--", "ci@build-2", "GUARD"]


def test_the_guard_removes_only_its_session_unless_disarmed(tmp_path: Path) -> None:
    """Run the guard with a fake `docker` on PATH that records its calls; it lists the session's container and
    volume once (a later look finds nothing), so the guard removes them, looks again, and stops."""
    log = tmp_path / "calls"
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$DOCKER_HOST $*" >> {log}\n'
                    f'case "$*" in "ps -aq"*) [ -e {tmp_path}/c ] || {{ touch {tmp_path}/c; echo c1; }};;\n'
                    f'"volume ls -q"*) [ -e {tmp_path}/v ] || {{ touch {tmp_path}/v; echo v1; }};; esac\n')
    fake.chmod(0o755)
    script = guard_script("abc123", "/run/docker.sock")
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-c", script], input=f"{DISARM}\n", env=env, capture_output=True, text=True,
                          timeout=30, check=True)
    assert done.stdout == f"{READY}\n"
    assert not log.exists()
    subprocess.run(["sh", "-c", script], input="", env=env, capture_output=True, text=True, timeout=30, check=True)
    ps = "unix:///run/docker.sock ps -aq --filter label=ipv6compat.session=abc123"
    ls = "unix:///run/docker.sock volume ls -q --filter label=ipv6compat.session=abc123"
    assert log.read_text().splitlines() == [
        ps, ls, "unix:///run/docker.sock rm -fv c1", "unix:///run/docker.sock volume rm -f v1", ps, ls, ps, ls,
    ]


@pytest.mark.parametrize(
    ("said", "advice"),
    [
        ("root@h: Permission denied (publickey).", "must log in without a prompt"),
        ("Host key verification failed.", "host key is not known here"),
        ("channel 2: open failed: connect failed: open failed", "AllowStreamLocalForwarding"),
        ("channel 2: open failed: administratively prohibited: open failed", "AllowStreamLocalForwarding"),
        ("ssh: Could not resolve hostname nowhere: Name or service not known", "does not resolve"),
        ("ssh: connect to host h port 22: Connection refused", "is sshd running on h"),
    ],
)
def test_hints(said: str, advice: str) -> None:
    line = hint(said, SshAddress("h", "root"))
    assert advice in line
    assert "\n" not in line


def test_the_sweep_removes_only_dead_processes_directories() -> None:
    parent = Path(tempfile.gettempdir())
    dead = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}999999999-1-", dir=parent))
    alive = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-"
                                  f"{Path(f'/proc/{os.getpid()}/stat').read_text().rsplit(')', 1)[1].split()[19]}-",
                                  dir=parent))
    try:
        removed = sweep_local()
        assert dead in removed
        assert not dead.exists()
        assert alive.exists()
    finally:
        alive.rmdir()
