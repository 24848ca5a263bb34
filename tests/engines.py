"""Engines the tests start for themselves, each on a private socket with its own state.

* a rootful Podman API service (``podman system service``), with its own storage root,
  run root and containers.conf (runc as the runtime; ulimits root may set here);
* a second dockerd in a mount namespace of its own, in which the pytest host's home,
  checkout and temporary directories are empty tmpfs mounts: an engine that does not
  share this machine's files, as a remote one does not.

Each is ended by the pid the test started, and its state removed. Outside CI a missing
``podman`` or ``dockerd`` skips; under CI (``CI`` set) it fails, so a missing install can
never look green.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

# Where the engines keep their state: not under /tmp, /root or the checkout, which the
# second dockerd must not see.
STATE_ROOT = Path("/var/tmp")

PODMAN_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
exit_command_delay = 0
"""  # README's containers.conf, line for line (tests/test_podman.py checks that they agree)


def _need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        message = f"{program} is not installed (apt-get install {'podman' if program == 'podman' else 'docker.io'})"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs it: {message}", pytrace=False)
        pytest.skip(message)
    return path


def _wait_for_engine(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the engine at {url} exited {proc.returncode}:\n{log.read_text()[-2000:]}", pytrace=False)
        with contextlib.suppress(Exception):
            client = docker.DockerClient(base_url=url, timeout=5)
            client.ping()
            client.close()
            return
        time.sleep(0.2)
    pytest.fail(f"the engine at {url} did not answer within {seconds:g} s:\n{log.read_text()[-2000:]}", pytrace=False)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """End the engine we started, by its pid: SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _end_monitors(state: Path) -> None:
    """End the conmon processes our service started (they daemonize, so they are not its children): by the pids
    of processes whose command line names our private state directory, which no one else's can."""
    for pid, _ in _monitors(str(state)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def podman_service(conf: str = PODMAN_CONF) -> Iterator[str]:
    """A rootful Podman API service on a private socket, configured by ``conf``; yields its DOCKER_HOST."""
    podman = _need("podman")
    state = Path(tempfile.mkdtemp(prefix="ipv6compat-podman-", dir=STATE_ROOT))
    (state / "containers.conf").write_text(conf)
    url = f"unix://{state / 'podman.sock'}"
    base = [podman, "--root", str(state / "storage"), "--runroot", str(state / "run")]
    (state / "tmp").mkdir()  # Podman's API keeps uploads (image imports) in TMPDIR: keep them in our state
    env = {**os.environ, "CONTAINERS_CONF": str(state / "containers.conf"), "TMPDIR": str(state / "tmp")}
    log = state / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*base, "system", "service", "--time=0", url], env=env, stdout=out, stderr=out)
    try:
        _wait_for_engine(url, proc, log)
        yield url
    finally:
        _end(proc)
        subprocess.run([*base, "system", "reset", "--force"], env=env, capture_output=True, timeout=120, check=False)
        _end_monitors(state)
        shutil.rmtree(state, ignore_errors=True)


@contextlib.contextmanager
def isolated_dockerd() -> Iterator[str]:
    """A second dockerd that cannot see this machine's home, checkout or temporary files; yields its DOCKER_HOST."""
    dockerd = _need("dockerd")
    unshare = _need("unshare")
    state = Path(tempfile.mkdtemp(prefix="ipv6compat-dockerd-", dir=STATE_ROOT))
    url = f"unix://{state / 'docker.sock'}"
    checkout = Path(__file__).resolve().parents[1]
    wanted = {Path.home(), checkout, Path(tempfile.gettempdir()), Path("/tmp"), Path("/root")} - {Path("/"), STATE_ROOT}
    hidden = [p for p in sorted(wanted) if not any(q in p.parents for q in wanted)]  # not inside another one
    mounts = " && ".join(f"mount -t tmpfs ipv6compat-hidden {p}" for p in hidden)
    script = (
        f"{mounts} && exec {dockerd} --data-root {state / 'data'} --exec-root {state / 'exec'} "
        f"--pidfile {state / 'dockerd.pid'} -H {url} --bridge=none --iptables=false --ip6tables=false"
    )
    log = state / "dockerd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([unshare, "-m", "--propagation", "private", "sh", "-c", script],
                                stdout=out, stderr=out)
    try:
        _wait_for_engine(url, proc, log)
        yield url
    finally:
        _end(proc)  # its mounts go with its mount namespace
        shutil.rmtree(state, ignore_errors=True)


@contextlib.contextmanager
def tcp_forward(unix_url: str) -> Iterator[str]:
    """A tcp://127.0.0.1:PORT address forwarded to the engine at ``unix_url``: to the plugin, an engine on
    another machine (it shares none of this one's files). Yields the address; its threads end with it."""
    path = unix_url.removeprefix("unix://")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)  # accept() wakes to see ``stop``
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for end in (src, dst):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX)
            try:
                engine.connect(path)
            except OSError:
                client.close()
                engine.close()
                continue
            for a, b in ((client, engine), (engine, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _monitors(state_dir: str) -> list[tuple[int, list[bytes]]]:
    """(pid, argv) of the conmon processes whose arguments name ``state_dir`` (a Podman service's own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"conmon") and any(state_dir.encode() in arg for arg in argv):
            found.append((int(entry.name), argv))
    return found


def monitors(state_dir: str) -> list[str]:
    """Command lines of the conmon processes whose arguments name ``state_dir`` (a Podman service's own)."""
    return [f"{pid}: " + b" ".join(argv).decode(errors="replace") for pid, argv in _monitors(state_dir)]


class EngineLink:
    """A unix socket forwarding to an engine's socket until :meth:`cut`: to its clients, an engine that dies
    (as a remote engine does when its host or network goes), while the engine itself, and the containers
    started through the link, stay (removed with the engine)."""

    def __init__(self, engine_url: str, path: Path, cut_after_starts: int | None = None, *,
                 cut_on: re.Pattern[bytes] | None = None, mute: re.Pattern[bytes] | None = None) -> None:
        self.target = engine_url.removeprefix("unix://")
        self._mute = mute  # requests answered here, with an empty stream, instead of by the engine
        self.muted = 0
        self.path = path
        self.url = f"unix://{path}"
        self.starts = 0  # container starts (POST .../containers/ID/start, or requests matching cut_on) passed on
        self.cut_after_starts = cut_after_starts
        self._pattern = cut_on or CONTAINER_START
        self.cut_done = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut_done.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                engine.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self.cut_done.is_set():
                    client.close()
                    engine.close()
                    return
                self._open += [client, engine]
            threading.Thread(target=self._pump, args=(client, engine, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(engine, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        try:
            while data := source.recv(65536):
                if requests and self._mute is not None and self._mute.search(data):
                    with self._lock:
                        self.muted += 1
                    source.sendall(EMPTY_STREAM)
                    sink.shutdown(socket.SHUT_RDWR)  # the engine never sees it; the answer's pump ends the stream
                    return
                if requests and self._pattern.search(data):
                    with self._lock:
                        self.starts += 1
                        due = self.cut_after_starts is not None and self.starts > self.cut_after_starts
                    if due:  # this start never reaches the engine: the link is cut under it
                        self.cut()
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """From now on the engine does not answer through the link: every connection ends, the socket is gone."""
        with self._lock:
            self.cut_done.set()
            conns, self._open = self._open, []
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self._server.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


# An engine's answer to a streamed request, with nothing in the stream: what a followed log that loses its lines
# gives (podman#10675, #18501).
EMPTY_STREAM = (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
                b"Connection: close\r\nContent-Length: 0\r\n\r\n")
# the followed log of a container: the shim's attestation is read from it
FOLLOWED_LOGS = re.compile(rb"^GET /v[\d.]+/containers/[0-9a-f]+/logs\?[^ ]*follow=1", re.M)
CONTAINER_START = re.compile(rb"^POST /v[\d.]+/containers/[0-9a-f]+/start ", re.M)
# the start of an exec session: the watcher's, once the target is running (the cell is being observed)
EXEC_START = re.compile(rb"^POST /v[\d.]+/exec/[0-9a-f]+/start ", re.M)


@contextlib.contextmanager
def engine_link(engine_url: str, cut_after_starts: int | None = None, *,
                cut_on: re.Pattern[bytes] | None = None, mute: re.Pattern[bytes] | None = None) -> Iterator[EngineLink]:
    """An :class:`EngineLink` to ``engine_url`` on a private socket; cut (if not yet) when the context ends."""
    state = Path(tempfile.mkdtemp(prefix="ipv6compat-link-", dir=STATE_ROOT))
    link = EngineLink(engine_url, state / "engine.sock", cut_after_starts, cut_on=cut_on, mute=mute)
    try:
        yield link
    finally:
        link.cut()
        shutil.rmtree(state, ignore_errors=True)
