"""Helpers for the reliability and bad-input tests: real Docker, real processes, no mocks.

Plain functions and classes; each test module declares the few fixtures it needs.
Everything that counts containers filters by labels this test created or observed
(a process id, a session id), so tests running in parallel under ``-n 2`` never
count each other's containers.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import pytest

from pytest_ipv6compat import images

NEVER_LISTENS = Path(__file__).resolve().parent / "data" / "never-listens"
SYSCTLS = tuple(Path(f"/proc/sys/net/ipv6/conf/{iface}/disable_ipv6") for iface in ("all", "default", "lo"))

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > end:
            pytest.fail(f"gave up after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def containers(client: docker.DockerClient, **labels: str) -> list[Any]:
    """Containers (any state) carrying every ``label=value`` given; keys use '_' for '-' and '.'."""
    wanted = [f"ipv6compat.{k.replace('_', '-')}={v}" for k, v in labels.items()]
    found = client.containers.list(all=True, filters={"label": wanted}, ignore_removed=True)
    # A volume filler lives for one API call before the cell's container exists: not a cell.
    return [c for c in found if c.labels.get("ipv6compat.purpose") != "volume-filler"]


def volumes(client: docker.DockerClient, host: str) -> list[str]:
    """Names of the volumes of sessions of ``host`` (removing those a test leaves is the test's job)."""
    return [v.name for v in client.volumes.list(filters={"label": f"ipv6compat.host={host}"})]


def exists(client: docker.DockerClient, container_id: str) -> bool:
    try:
        client.containers.get(container_id)
    except docker.errors.NotFound:
        return False
    return True


def host_sysctls() -> dict[str, str]:
    return {str(p): p.read_text().strip() for p in SYSCTLS}


def never_listens_image(client: docker.DockerClient, base: str) -> str:
    """``tests/data/never-listens`` built FROM the base image (cached by content)."""
    return images.ensure_target_image(client, NEVER_LISTENS, base=base, name="never-listens", build_args={})


def image_matrix(dest: Path, image: str, expectation: str, *, name: str = "svc", stem: str = "svc") -> Path:
    """A one-cell matrix (variant ``v``, dual-stack, knob unset) starting ``image``."""
    path = dest / f"{stem}.ipv6.toml"
    path.write_text(
        f'[target]\nname = "{name}"\nimages = {{ v = "{image}" }}\nvariants = ["v"]\nknob = "SVC_V6"\n'
        f'settings = ["unset"]\nstacks = ["dual-stack"]\n\n[expect.v.dual-stack]\nunset = "{expectation}"\n',
        encoding="utf-8",
    )
    return path


# A conftest for pytester runs: records every container of this process that is alive
# while a cell runs, with the settings that lock it down, one JSON object per line.
RECORDER = '''
import json, os
import docker
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    client = docker.from_env()
    with open(os.environ["IPV6COMPAT_RECORD"], "a") as out:
        mine = {"label": f"ipv6compat.pid={os.getpid()}"}
        for c in client.containers.list(all=True, filters=mine, ignore_removed=True):
            host = c.attrs["HostConfig"]
            out.write(json.dumps({
                "item": item.name, "id": c.id, "name": c.name, "status": c.status,
                "labels": c.labels,
                "Privileged": host.get("Privileged"), "CapAdd": host.get("CapAdd"),
                "NetworkMode": host.get("NetworkMode"), "SecurityOpt": host.get("SecurityOpt"),
                "Sysctls": host.get("Sysctls"), "ReadonlyRootfs": host.get("ReadonlyRootfs"),
                "Entrypoint": c.attrs["Config"].get("Entrypoint"),
            }) + "\\n")
    client.close()
    return (yield)
'''


def isolate_host(pytester: pytest.Pytester) -> str:
    """Give the sessions run in ``pytester.path`` a host name of their own; return it.

    The sweep only judges containers labelled with its own host name. Other sessions on
    this machine (parallel tests, other users of the engine) sweep too, and would remove a
    dead session's leftovers before the session under test could; with a unique host name
    only sessions run here can, so a leak cannot be hidden by someone else's sweep and a
    sweep can be attributed. The name is patched in configure and restored in unconfigure,
    so an in-process run leaves this process as it was.
    """
    name = f"ipv6compat-test-{uuid.uuid4().hex[:8]}"
    pytester.makeconftest(
        f"""
        import socket

        _real = socket.gethostname

        def pytest_configure(config):
            socket.gethostname = lambda: {name!r}

        def pytest_unconfigure(config):
            socket.gethostname = _real
        """
    )
    return name


class StallingEngine:
    """A TCP front for the real Docker socket, on the host's loopback, that can stall.

    While ``stalled``, every byte in either direction is swallowed: a call in flight,
    or one made meanwhile, never gets an answer, as with a hung engine. Connections
    that saw the stall are closed by :meth:`resume`, so no stale request reaches the
    engine late.
    """

    def __init__(self, socket_path: str = "/var/run/docker.sock") -> None:
        self.socket_path = socket_path
        self.stalled = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._pairs: list[tuple[socket.socket, socket.socket, list[bool]]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="stalling-engine", daemon=True).start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self._server.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                front, _ = self._server.accept()
            except OSError:
                return
            back = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            back.connect(self.socket_path)
            dead = [self.stalled.is_set()]
            with self._lock:
                self._pairs.append((front, back, dead))
            threading.Thread(target=self._pump, args=(front, back, dead), daemon=True).start()

    def _pump(self, front: socket.socket, back: socket.socket, dead: list[bool]) -> None:
        peers = {front: back, back: front}
        with contextlib.suppress(OSError, ValueError):
            while True:
                ready, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.stalled.is_set():
                        dead[0] = True
                    if not dead[0]:
                        peers[sock].sendall(data)
                if dead[0] and not self.stalled.is_set():
                    return

    def stall(self) -> None:
        self.stalled.set()
        with self._lock:
            for _, _, dead in self._pairs:
                dead[0] = True

    def resume(self) -> None:
        self.stalled.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for front, back, dead in pairs:
            if dead[0]:
                for sock in (front, back):
                    sock.close()
            else:
                self._pairs.append((front, back, dead))

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self.resume()
        for front, back, _ in self._pairs:
            front.close()
            back.close()


@contextlib.contextmanager
def stalling_engine() -> Iterator[StallingEngine]:
    front = StallingEngine()
    try:
        yield front
    finally:
        front.close()


def silent_server() -> socket.socket:
    """A loopback TCP server that accepts connections and never says a word (a hung engine)."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    return server


def pid_is_gone_or_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
    return found


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
