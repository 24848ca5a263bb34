"""Start a target in a container, observe its verdict, and always remove it.

One container per observation. The probe directory (a static busybox and
``shim.sh``) is mounted read-only at ``/.ipv6compat`` and wraps the image's own
entrypoint: the shim attests the stack from inside the container's network
namespace, execs the target as PID 1, and a watcher reports the LISTEN sockets
and whether each answers over loopback. The plugin follows the container's log
stream, so an exit is seen as soon as the stream ends: nothing sleeps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.exceptions import ContainerStartException

from .listeners import parse_endpoint, parse_listeners
from .model import Attestation, Family, Listener, Outcome, Reach, Verdict
from .stacks import Stack, attest, inet6_probe_fact

log = logging.getLogger(__name__)

MARK = "@@ipv6compat "
PROBE_MOUNT = "/.ipv6compat"
LABEL = "ipv6compat.session"
_ERROR_WORDS = ("[emerg]", "[alert]", "[crit]", "error", "failed", "invalid", "required")
# What a failing or hung engine raises: docker-py's errors, plus the connection errors and
# timeouts of requests (subclasses of OSError), which docker-py passes through unwrapped.
_FAULTS = (docker.errors.DockerException, OSError)
_STREAM_JOIN_S = 2.0  # how long teardown waits for the log thread after closing its stream


class EngineError(Exception):
    """The Docker engine could not do what was asked; the message says what and why."""


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one target container."""

    image: str
    stack: Stack
    env: Mapping[str, str] = field(default_factory=dict)
    http_path: str = "/"
    read_only_mounts: tuple[tuple[str, str], ...] = ()  # (host path, container path)
    command: tuple[str, ...] | None = None  # replaces the image's CMD
    name: str | None = None


@dataclass
class Observation:
    """What one container showed: its attestation, then its verdict."""

    container_id: str
    attestation: Attestation | None = None
    verdict: Verdict | None = None


@dataclass
class Engine:
    """A connection to the Docker engine plus this process's session labels."""

    client: docker.DockerClient
    probe_dir: Path
    api_timeout: float = 60.0
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _image_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    _info: dict[str, str] = field(default_factory=dict)

    @classmethod
    def connect(cls, probe_dir: Path, *, api_timeout: float = 60.0, connect_timeout: float = 10.0) -> Engine:
        """Connect to the engine named by the environment (``DOCKER_HOST``, else the default socket).

        Every API call is bounded: ``connect_timeout`` for the first contact (an engine
        that accepts but never answers must not stall a session), ``api_timeout`` after.
        """
        # Ryuk needs an image that cannot be pulled here; cleanup is by session label.
        testcontainers_config.ryuk_disabled = True
        try:
            client = docker.from_env(timeout=min(api_timeout, connect_timeout))
            client.ping()
        except _FAULTS as exc:
            host = os.environ.get("DOCKER_HOST")
            where = f"{host} (from DOCKER_HOST)" if host else "unix:///var/run/docker.sock (the default)"
            raise EngineError(f"Docker engine at {where} is unreachable: {_reason(exc)}") from None
        client.api.timeout = api_timeout
        return cls(client=client, probe_dir=probe_dir, api_timeout=api_timeout)

    def info(self) -> dict[str, str]:
        """Engine version, API version and whether it enforces seccomp."""
        if not self._info:
            try:
                ver = self.client.version()
                sec = self.client.info().get("SecurityOptions") or []
            except _FAULTS as exc:
                raise EngineError(f"cannot query the Docker engine: {_reason(exc)}") from None
            self._info = {
                "version": str(ver.get("Version", "?")),
                "api": str(ver.get("ApiVersion", "?")),
                "seccomp": "yes" if any("seccomp" in str(o) for o in sec) else "no",
            }
        return dict(self._info)

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL: self.session,
            "ipv6compat.host": socket.gethostname(),
            "ipv6compat.pid": str(os.getpid()),
            "ipv6compat.pid-start": _process_start(os.getpid()),
        }

    def image_config(self, image: str) -> dict[str, Any]:
        if image not in self._image_config:
            try:
                attrs = self.client.images.get(image).attrs
            except docker.errors.ImageNotFound:
                raise EngineError(f"image {image!r} is not present in the Docker engine") from None
            except _FAULTS as exc:
                raise EngineError(f"cannot inspect image {image!r}: {_reason(exc)}") from None
            self._image_config[image] = attrs.get("Config") or {}
        return self._image_config[image]

    def sweep(self) -> list[str]:
        """Remove containers left by dead sessions on this host; never a live one's.

        A session is alive while its process exists with the recorded start time
        (pids are reused) and is not a zombie. Concurrent sweeps (xdist workers
        starting together) may race for the same leftover; losing is not an error.
        """
        removed: list[str] = []
        try:
            found = self.client.containers.list(all=True, filters={"label": LABEL}, ignore_removed=True)
        except _FAULTS as exc:
            log.warning("cannot list leftover containers: %s", _reason(exc))
            return removed
        host = socket.gethostname()
        for container in found:
            labels = container.labels
            if labels.get("ipv6compat.host") != host:
                continue
            pid = labels.get("ipv6compat.pid", "")
            if pid.isdigit() and _process_start(int(pid)) == labels.get("ipv6compat.pid-start"):
                continue  # its session is alive
            if _remove(container):
                removed.append(container.name)
        return removed

    def remove_session(self, keep: Collection[str] = ()) -> int:
        """Remove every container this process started and still has, except ``keep`` (names)."""
        try:
            found = self.client.containers.list(
                all=True, filters={"label": f"{LABEL}={self.session}"}, ignore_removed=True
            )
        except _FAULTS as exc:
            log.warning("cannot list this session's containers: %s", _reason(exc))
            return 0
        return sum(_remove(container) for container in found if container.name not in keep)

    @contextlib.contextmanager
    def run(self, launch: Launch, *, timeout: float, settle: float) -> Iterator[Running]:
        """Start ``launch``; yield a :class:`Running`; remove the container on exit.

        Set ``running.keep = True`` to leave the container for inspection (a
        failed cell under --ipv6-keep-failed); it still carries the session label.
        """
        config = self.image_config(launch.image)
        argv = list(config.get("Entrypoint") or [])
        argv += list(launch.command if launch.command is not None else config.get("Cmd") or [])
        entry = [f"{PROBE_MOUNT}/busybox", "sh", f"{PROBE_MOUNT}/shim.sh", f"{settle:g}", launch.http_path, "--"]
        container = DockerContainer(
            launch.image,
            docker_client_kw={"timeout": self.api_timeout, "version": self.client.api.api_version},
            command=argv,  # type: ignore[arg-type]
            name=launch.name,
        )
        container.with_volume_mapping(str(self.probe_dir), PROBE_MOUNT, "ro")
        for host_path, path in launch.read_only_mounts:
            container.with_volume_mapping(host_path, path, "ro")
        for key, value in launch.env.items():
            container.with_env(key, value)
        container.with_kwargs(
            entrypoint=entry,
            network="none",  # also stops testcontainers from picking a network
            sysctls=launch.stack.sysctls(),
            security_opt=launch.stack.security_opt(),
            labels=self.labels,
            privileged=False,
            cap_add=[],
        )
        running: Running | None = None
        try:
            try:
                container.start()
                running = Running(container, launch.stack, deadline=time.monotonic() + timeout)
            except _FAULTS as exc:
                raise EngineError(f"cannot start a container from {launch.image!r}: {_reason(exc)}") from None
            yield running
        finally:
            # Bounded even when the engine hangs: every call below has the API timeout,
            # and a container that cannot be removed now still has the session label.
            if running is not None:
                running.close_stream()
            if running is not None and running.keep:
                log.warning("kept container %s for inspection", running.name)
            else:
                with contextlib.suppress(ContainerStartException):  # create itself failed: nothing to remove
                    _remove(container.get_wrapped_container())
            if running is not None:
                running._join_reader()
            with contextlib.suppress(Exception):
                container.get_docker_client().client.close()


class Running:
    """A started container being observed. Methods block until they know."""

    def __init__(self, container: DockerContainer, stack: Stack, *, deadline: float) -> None:
        self._container = container
        self.wrapped = container.get_wrapped_container()
        self.stack = stack
        self.deadline = deadline
        self.started = time.monotonic()
        self.observation = Observation(container_id=self.wrapped.id or "")
        self.keep = False  # leave the container in place when the run ends
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._facts: dict[str, str] = {}
        self._rows: dict[str, list[str]] = {"tcp": [], "tcp6": []}
        self._reach: list[tuple[str, str, str]] = []
        self._logs: list[str] = []
        self._ended = False
        self._ready = False
        # docker-py disables the socket timeout on a followed stream, so a hung engine would
        # block this read for ever: the reader is a daemon thread, the waits here use the
        # deadline, and close_stream() shuts the socket to release it.
        self._stream = self.wrapped.logs(stream=True, follow=True, stdout=True, stderr=True)
        self._thread = threading.Thread(target=self._pump, name=f"ipv6compat-logs-{self.name}", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return str(self.wrapped.name)

    def _pump(self) -> None:
        pending = b""
        try:
            for chunk in self._stream:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._lines.put(line.decode("utf-8", "replace"))
        except Exception as exc:  # noqa: BLE001 - any stream failure ends the observation
            log.debug("log stream ended: %s", exc)
        if pending:
            self._lines.put(pending.decode("utf-8", "replace"))
        self._lines.put(None)

    def close_stream(self) -> None:
        """Stop following the logs: shuts the stream's socket, so the reader thread ends."""
        with contextlib.suppress(Exception):
            self._stream.close()

    def _join_reader(self) -> None:
        """Wait (bounded) for the reader thread; by now its stream is closed or its container gone."""
        self._thread.join(_STREAM_JOIN_S)
        if self._thread.is_alive():
            log.warning("the log stream of %s did not end within %gs", self.name, _STREAM_JOIN_S)

    def _next(self) -> bool:
        """Take one line; False when the stream ended or the deadline passed."""
        remaining = self.deadline - time.monotonic()
        if self._ended or remaining <= 0:
            return False
        try:
            line = self._lines.get(timeout=remaining)
        except queue.Empty:
            return False
        if line is None:
            self._ended = True
            return False
        self._take(line)
        return True

    def _take(self, line: str) -> None:
        if not line.startswith(MARK):
            self._logs.append(line.rstrip("\r"))
            return
        kind, _, rest = line[len(MARK):].partition(" ")
        if kind == "fact":
            key, _, value = rest.partition("=")
            self._facts[key] = value
        elif kind == "probe":
            self._facts["inet6 socket"] = inet6_probe_fact(rest.partition(" ")[2])
        elif kind == "attested":
            self.observation.attestation = attest(self.stack, self._facts)
        elif kind == "row":
            family, _, row = rest.partition(" ")
            self._rows.setdefault(family, []).append(row)
        elif kind == "reach":
            family, key, answer = [*rest.split(" ", 2), "", ""][:3]
            self._reach.append((family, key, answer))
        elif kind == "ready":
            self._ready = True

    def attestation(self) -> Attestation:
        """Wait for the shim's attestation; an unattested container is an error."""
        while self.observation.attestation is None and self._next():
            pass
        if self.observation.attestation is None:
            why = "exited" if self._ended else "did not report in time"
            tail = "\n".join(self._logs[-15:])
            raise EngineError(f"the container {why} before the stack could be attested; logs:\n{tail}")
        return self.observation.attestation

    def verdict(self) -> Verdict:
        """Wait until the target is listening, has exited, or the deadline passed."""
        if self.observation.verdict is not None:
            return self.observation.verdict
        while not self._ready and self._next():
            pass
        seconds = time.monotonic() - self.started
        logs = "\n".join(self._logs)
        if self._ready:
            listeners = parse_listeners(_proc_text(self._rows["tcp"]), _proc_text(self._rows["tcp6"]))
            verdict = Verdict(
                Outcome.UP,
                listeners=listeners,
                reach=tuple(self._reaches()),
                logs=logs,
                seconds=seconds,
            )
        elif self._ended:
            code = self._exit_code()
            verdict = Verdict(
                Outcome.EXITED, exit_code=code, error_line=error_line(self._logs), logs=logs, seconds=seconds
            )
        else:
            verdict = Verdict(Outcome.TIMEOUT, logs=logs, seconds=seconds)
        self.observation.verdict = verdict
        return verdict

    def _exit_code(self) -> int | None:
        try:
            status = self.wrapped.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - the code is evidence, not essential
            return None
        return int(status.get("StatusCode", -1))

    def _reaches(self) -> Iterator[Reach]:
        for family, key, answer in self._reach:
            listener = parse_endpoint(key, Family.INET if family == "tcp" else Family.INET6)
            answered = bool(answer) and not answer.startswith(("nc: ", "(no response)", "(not probed"))
            yield Reach(listener, answered, answer)

    def logs(self) -> str:
        """The target's own output so far (shim lines removed)."""
        return "\n".join(self._logs)

    def listeners(self) -> frozenset[Listener]:
        return self.verdict().listeners


def _proc_text(rows: list[str]) -> str:
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
    return "\n".join([header, *rows]) + "\n"


def error_line(lines: list[str]) -> str | None:
    """The line that best explains an exit: nginx's [emerg] first, else the last error-ish line."""
    text = [line.strip() for line in lines if line.strip()]
    for line in reversed(text):
        if any(w in line for w in ("[emerg]", "[alert]", "[crit]")):
            return line
    for line in reversed(text):
        if any(w in line.lower() for w in _ERROR_WORDS):
            return line
    return text[-1] if text else None


def _process_start(pid: int) -> str:
    """Start time of ``pid`` in clock ticks since boot, or '' if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # dead, not yet reaped: its session will never clean up
        return ""
    return fields[19]


def _remove(container: Any) -> bool:
    """Force-remove a container; True if this call removed it. Never raises."""
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # removal already in progress (a concurrent sweep)
            return False
        log.warning("cannot remove container %s: %s", container.name, _reason(exc))
        return False
    except _FAULTS as exc:
        log.warning("cannot remove container %s: %s", container.name, _reason(exc))
        return False
    return True


_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)|(Read timed out|timed out|Connection aborted)")


def _reason(exc: BaseException) -> str:
    """One line saying why an engine call failed: the engine's own words, else the root cause."""
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return " ".join(str(exc.explanation).split())
    seen: BaseException | None = exc
    while seen is not None:  # the innermost OS error says it best ("Connection refused")
        if isinstance(seen, OSError) and seen.strerror:
            return str(seen.strerror)
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    found = _ERRNO_TEXT.search(text)
    if found:
        return (found.group(1) or found.group(2)).strip()
    lines = text.strip().splitlines()
    return lines[-1] if lines else type(exc).__name__
