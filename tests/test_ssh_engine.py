"""ssh:// engines: the local dockerd reached through an sshd the tests own (tests/sshd.py).

A third of the reference matrix's 91 container cells (the stacks dual-stack and ipv6-kernel-off,
every variant, the knob settings unset, =1 and the trap =false, and their read-only config cells:
30 cells) runs with ``-n 4`` over ssh:// and on the local socket; the verdicts must match cell by
cell, with no error, and the channels the server holds stay bounded the whole run. Every SSH
failure is one line with a hint; a server killed mid-run leaves errors, a written report, and
nothing on the engine or this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from helpers import cloud_proxy_matrix, copy_matrix
from sshd import Sshd, descendants, running_sshd

from pytest_ipv6compat import images
from pytest_ipv6compat.backends import EngineError
from pytest_ipv6compat.backends.docker_api import DockerBackend
from pytest_ipv6compat.backends.ssh_tunnel import DIR_PREFIX
from pytest_ipv6compat.options import INFLIGHT_DEFAULT

pytestmark = pytest.mark.docker

THIRD = ("--ipv6-stacks=dual-stack,ipv6-kernel-off", "--ipv6-settings=unset,=1,=false", "--ipv6-require-docker")
THIRD_CELLS = 30  # 3 variants x 2 stacks x 3 settings, plus 12 with the config mounted read-only
# 3 streams per cell in flight (--ipv6-inflight's default) and docker-py's idle connections (4 pools x 2)
CHANNELS_PER_PROCESS = 3 * INFLIGHT_DEFAULT + 8


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


def _verdicts(report: Path) -> dict[str, tuple[str, object]]:
    """Cell id -> (status, verdict without its timing and logs), from a JSON report. The error line loses
    what differs from run to run on any engine: nginx's timestamp, sed's random temporary file name."""
    doc = json.loads(report.read_text())
    out: dict[str, tuple[str, object]] = {}
    for cell in doc["cells"]:
        verdict = cell["verdict"]
        if verdict is not None:
            verdict = {k: verdict[k] for k in ("outcome", "listeners", "answered", "listened", "exit_code",
                                               "error_line")}
            line = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", verdict["error_line"] or "")
            verdict["error_line"] = re.sub(r"\.tmp\w+", ".tmpXXXXXX", line)
        out[cell["id"]] = (cell["status"], verdict)
    return out


class ChannelCounter:
    """Samples, from the kernel's socket table, the connections the sshd holds to the engine's socket."""

    def __init__(self, server: Sshd) -> None:
        self.server = server
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.server.engine_connections())
            self._stop.wait(0.1)

    def __enter__(self) -> ChannelCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _ours(client: docker.DockerClient, pids: set[int]) -> tuple[list[str], list[str]]:
    """Containers and volumes on the engine labelled by one of ``pids`` (this test's pytest processes)."""
    containers = [c.name for c in client.containers.list(all=True, filters={"label": "ipv6compat.session"},
                                                           ignore_removed=True)
                  if c.labels.get("ipv6compat.pid", "").isdigit() and int(c.labels["ipv6compat.pid"]) in pids]
    volumes = [v.name for v in client.volumes.list(filters={"label": "ipv6compat.session"})
               if str((v.attrs.get("Labels") or {}).get("ipv6compat.pid", "")) in {str(p) for p in pids}]
    return containers, volumes


def _cmdline(pid: int) -> bytes:
    """A live process's command line; empty once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ssh_processes(port: int) -> list[int]:
    """ssh clients on this machine connecting to the test server's port."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and Path(argv[0].decode()).name == "ssh" and str(port).encode() in argv:
                found.append(int(entry.name))
    return found


def test_a_third_of_the_matrix_over_ssh_gives_the_local_verdicts(
    sshd: Sshd, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_matrix(pytester)
    local = pytester.runpytest(*THIRD, "-n", "4", "--ipv6-json=local.json")
    local.assert_outcomes(passed=THIRD_CELLS)
    monkeypatch.setenv("DOCKER_HOST", sshd.url)
    with ChannelCounter(sshd) as counter:
        remote = pytester.runpytest(*THIRD, "-n", "4", "--ipv6-json=ssh.json",
                                    f"--ipv6-ssh-config={sshd.client_config}")
    remote.assert_outcomes(passed=THIRD_CELLS)
    remote.stdout.fnmatch_lines([f"ipv6compat: Docker * at {sshd.url} (from DOCKER_HOST), *"])
    assert _verdicts(pytester.path / "ssh.json") == _verdicts(pytester.path / "local.json")
    # One connection per pytest process (the controller and 4 workers), each holding a bounded number of channels.
    assert max(counter.samples, default=0) > 0
    assert max(counter.samples) <= 5 * CHANNELS_PER_PROCESS, counter.samples
    assert sshd.engine_connections() == 0
    assert _ssh_processes(sshd.port) == []


def test_a_server_allowing_three_sessions_runs_cells(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_sshd(max_sessions=3) as server:
        copy_matrix(pytester)
        monkeypatch.setenv("DOCKER_HOST", server.url)
        result = pytester.runpytest("--ipv6-stacks=dual-stack,ipv6-kernel-off", "--ipv6-variants=env-toggle",
                                    "--ipv6-settings=unset,=1", "--ipv6-require-docker", "-n", "2",
                                    "--ipv6-json=ssh.json", f"--ipv6-ssh-config={server.client_config}")
        result.assert_outcomes(passed=8)
        assert json.loads((pytester.path / "ssh.json").read_text())["totals"]["pass"] == 8
        assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_the_connection_ends_by_itself_once_the_session_is_done(sshd: Sshd) -> None:
    """At the end, the plugin's connections close and the guard is disarmed: ssh exits 0 on its own, at once
    (a connection left open would hold it until it is terminated)."""
    engine = DockerBackend.connect(images.ensure_probe(images.default_cache_dir()), url=sshd.url,
                                   ssh_config=sshd.client_config)
    tunnel = engine.tunnel
    assert tunnel is not None
    assert engine.info()["files"].startswith("remote")
    engine.remove_session()
    engine.close()
    assert tunnel.returncode == 0
    assert tunnel.dir is None
    assert sshd.engine_connections() == 0


def _connect_error(url: str, config: Path | None) -> str:
    with pytest.raises(EngineError) as caught:
        DockerBackend.connect(images.ensure_probe(images.default_cache_dir()), url=url, ssh_config=config,
                              connect_timeout=5)
    return str(caught.value)


def test_each_ssh_failure_is_one_line_with_a_hint(sshd: Sshd, tmp_path: Path) -> None:
    mine = f"{DIR_PREFIX}{os.getpid()}-*"  # another xdist worker's tunnels come and go meanwhile
    before = {p.name for p in Path("/tmp").glob(mine)}
    closed = _connect_error("ssh://root@127.0.0.1:1", sshd.client_config)  # nothing listens on port 1
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")],
                   check=True, capture_output=True)
    stranger = tmp_path / "stranger_config"
    stranger.write_text(sshd.client_config.read_text().replace(f"{sshd.dir}/client_ed25519",
                                                               str(tmp_path / "stranger")))
    refused = _connect_error(sshd.url, stranger)
    unknown = tmp_path / "unknown_host_config"
    (tmp_path / "empty_known_hosts").write_text("")
    unknown.write_text(sshd.client_config.read_text().replace(f"{sshd.dir}/known_hosts",
                                                              str(tmp_path / "empty_known_hosts")))
    unknown_key = _connect_error(sshd.url, unknown)
    no_socket = _connect_error(f"{sshd.url}/var/run/no-such-engine.sock", sshd.client_config)
    for message, words in (
        (closed, ("ssh://root@127.0.0.1:1", "Connection refused", "Hint: is sshd running on 127.0.0.1")),
        (refused, ("Permission denied", "Hint: the key must log in without a prompt")),
        (unknown_key, ("Host key verification failed", "Hint: the server's host key is not known here")),
        (no_socket, ("open failed", "Hint: the server must allow forwarding", "/var/run/no-such-engine.sock")),
    ):
        assert "\n" not in message, message
        for word in words:
            assert word in message, message
    assert _ssh_processes(1) == []
    assert _ssh_processes(sshd.port) == []
    assert {p.name for p in Path("/tmp").glob(mine)} <= before  # no local socket left behind


def test_an_unreachable_ssh_engine_errors_every_cell_and_writes_the_reports(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, sshd: Sshd
) -> None:
    copy_matrix(pytester)
    monkeypatch.setenv("DOCKER_HOST", "ssh://root@127.0.0.1:1")
    result = pytester.runpytest("--ipv6-stacks=dual-stack", "--ipv6-variants=adaptive", "--ipv6-require-docker",
                                "--ipv6-json=r.json", "--junitxml=r.xml", f"--ipv6-ssh-config={sshd.client_config}")
    result.assert_outcomes(errors=14)
    result.stdout.fnmatch_lines(["*Docker engine at ssh://root@127.0.0.1:1 (from DOCKER_HOST) is unreachable: "
                                 "ssh: connect to host 127.0.0.1 port 1: Connection refused; Hint: *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert json.loads((pytester.path / "r.json").read_text())["totals"]["error"] == 14
    assert (pytester.path / "r.xml").read_text().count("<error") == 14


def test_a_server_killed_mid_run_errors_the_rest_and_leaves_nothing(tmp_path: Path) -> None:
    matrix = tmp_path / "m"
    matrix.mkdir()
    cloud_proxy_matrix(matrix)
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=30)
    with running_sshd() as server:
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(matrix), "-v", "-n", "2",
                "--ipv6-stacks=dual-stack,ipv6-kernel-off", "--ipv6-require-docker", f"--ipv6-json={tmp_path}/r.json",
                f"--junitxml={tmp_path}/r.xml", f"--ipv6-ssh-config={server.client_config}", "--ipv6-hold=2"]
        proc = subprocess.Popen(argv, env={**os.environ, "DOCKER_HOST": server.url}, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        guard = threading.Timer(600, proc.kill)  # a run that hangs without a line still ends (ours, by pid)
        guard.start()
        pids: set[int] = {proc.pid}
        lines: list[str] = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        passed: set[str] = set()
        for line in proc.stdout:  # the event: a cell has passed over ssh:// on each worker
            lines.append(line)
            pids |= set(descendants(proc.pid))
            if " PASSED " in line:
                passed.add(line.split("]", 1)[0])
            if len(passed) == 2 or time.monotonic() > deadline:
                break
        assert len(passed) == 2, "".join(lines)
        guards = [pid for pid in server.pids() if b"ipv6compat-guard" in _cmdline(pid)]
        assert len(guards) == 3, guards  # the controller's and each worker's connection
        server.kill()
        out, _ = proc.communicate(timeout=300)
        guard.cancel()
    text = "".join(lines) + out
    assert proc.returncode == 1, text
    doc = json.loads((tmp_path / "r.json").read_text())
    statuses = [c["status"] for c in doc["cells"]]
    assert len(statuses) == 70, statuses
    assert statuses.count("pass") >= 2, statuses
    assert statuses.count("error") >= 30, statuses
    assert statuses.count("fail") == 0, text  # never a verdict from a cut connection
    for cell in doc["cells"]:
        if cell["status"] == "error":
            (why,) = cell["reasons"]
            assert "\n" not in why, why
            assert "Hint:" in why, why
            assert server.url in why, why
    assert "Traceback" not in text
    assert (tmp_path / "r.xml").read_text().count("<error") == statuses.count("error")
    # The guards on the engine's host remove the sessions' containers and volumes once the connection is cut:
    # wait for them to end (bounded), then look once.
    deadline = time.monotonic() + 60
    while any(_cmdline(pid) for pid in guards) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_cmdline(pid) for pid in guards)
    assert _ours(client, pids) == ([], [])
    assert _ssh_processes(server.port) == []
    assert not [p for p in Path("/tmp").glob(f"{DIR_PREFIX}*") if int(p.name.split("-")[2]) in pids]
    client.close()
