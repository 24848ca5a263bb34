"""The Docker API backend: a target in a container, on Docker (or an engine speaking its API).

One container per observation, on ``--network none``, never privileged, labelled
with the session. The probe directory is mounted read-only at ``/.ipv6compat``;
the shim there attests the stack and execs the target as PID 1. The watcher then
runs as an exec session, so its report travels on a stream the target cannot
write to, while the engine's wait call reports the exit as soon as it happens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from . import EngineError, Launch
from .docker_run import FAULTS, DockerRun, reason

log = logging.getLogger(__name__)

PROBE_MOUNT = "/.ipv6compat"
LABEL = "ipv6compat.session"


@dataclass
class DockerBackend:
    """A connection to the engine plus this process's session labels."""

    client: docker.DockerClient
    probe_dir: Path
    api_timeout: float = 60.0
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _image_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    _info: dict[str, str] = field(default_factory=dict)
    _started: int = 0
    gone: str | None = None  # why the engine stopped answering during an earlier cell

    @classmethod
    def connect(cls, probe_dir: Path, *, api_timeout: float = 60.0, connect_timeout: float = 10.0) -> DockerBackend:
        """Connect to the engine named by the environment (``DOCKER_HOST``, else the default socket).

        Every API call is bounded: ``connect_timeout`` for the first contact (an engine
        that accepts but never answers must not stall a session), ``api_timeout`` after.
        """
        try:
            client = docker.from_env(timeout=min(api_timeout, connect_timeout))
            client.ping()
        except FAULTS as exc:
            raise EngineError(f"Docker engine at {engine_address()} is unreachable: {reason(exc)}") from None
        client.api.timeout = api_timeout
        return cls(client=client, probe_dir=probe_dir, api_timeout=api_timeout)

    def info(self) -> dict[str, str]:
        """Engine version, API version and whether it enforces seccomp."""
        if not self._info:
            try:
                ver = self.client.version()
                sec = self.client.info().get("SecurityOptions") or []
            except FAULTS as exc:
                raise EngineError(f"cannot query the Docker engine: {reason(exc)}") from None
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
            "ipv6compat.pid-start": process_start(os.getpid()),
        }

    def image_config(self, image: str) -> dict[str, Any]:
        if image not in self._image_config:
            try:
                attrs = self.client.images.get(image).attrs
            except docker.errors.ImageNotFound:
                raise EngineError(f"image {image!r} is not present in the Docker engine") from None
            except FAULTS as exc:
                raise EngineError(f"cannot inspect image {image!r}: {reason(exc)}") from None
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
        except FAULTS as exc:
            log.warning("cannot list leftover containers: %s", reason(exc))
            return removed
        host = socket.gethostname()
        for container in found:
            labels = container.labels
            if labels.get("ipv6compat.host") != host:
                continue
            pid = labels.get("ipv6compat.pid", "")
            if pid.isdigit() and process_start(int(pid)) == labels.get("ipv6compat.pid-start"):
                continue  # its session is alive
            if remove(self.client, container.id, container.name):
                removed.append(container.name)
        return removed

    def remove_session(self, keep: Collection[str] = ()) -> int:
        """Remove every container this process started and still has, except ``keep`` (names)."""
        try:
            found = self.client.containers.list(
                all=True, filters={"label": f"{LABEL}={self.session}"}, ignore_removed=True
            )
        except FAULTS as exc:
            log.warning("cannot list this session's containers: %s", reason(exc))
            return 0
        return sum(remove(self.client, c.id, c.name) for c in found if c.name not in keep)

    @contextlib.contextmanager
    def run(self, launch: Launch) -> Iterator[DockerRun]:
        """Start ``launch``; yield its :class:`DockerRun`; remove the container on exit.

        Set ``run.keep = True`` to leave the container for inspection (a failed cell
        under --ipv6-keep-failed); it still carries the session label.
        """
        if self.gone is not None:
            try:
                self.client.ping()
            except FAULTS:
                raise EngineError(
                    f"the Docker engine at {engine_address()} stopped responding earlier in this session "
                    f"({self.gone}) and still does not answer"
                ) from None
            self.gone = None
        spec = launch.run
        config = self.image_config(launch.image)
        argv = list(config.get("Entrypoint") or [])
        argv += list(spec.command if spec.command is not None else config.get("Cmd") or [])
        nonce = secrets.token_hex(12)
        self._started += 1
        name = launch.name or f"ipv6compat-{self.session}-{self._started}"
        entry = [f"{PROBE_MOUNT}/busybox", "sh", f"{PROBE_MOUNT}/shim.sh", nonce, "--"]
        binds = {str(self.probe_dir): {"bind": PROBE_MOUNT, "mode": "ro"}}
        for path, host in spec.mounts:
            binds[host] = {"bind": path, "mode": "ro"}
        api = self.client.api
        container_id: str | None = None
        run: DockerRun | None = None
        try:
            try:
                host_config = api.create_host_config(
                    network_mode="none",
                    sysctls=launch.stack.sysctls(),
                    security_opt=launch.stack.security_opt(),
                    binds=binds,
                    read_only=spec.read_only,
                    tmpfs=dict(spec.tmpfs) or None,
                    extra_hosts=dict(spec.extra_hosts) or None,
                    privileged=False,
                )
                created = api.create_container(
                    launch.image,
                    command=argv,
                    entrypoint=entry,
                    environment=[f"{k}={v}" for k, v in launch.env.items()],
                    labels=self.labels,
                    name=name,
                    user=spec.user or "",
                    host_config=host_config,
                )
                container_id = str(created["Id"])
                api.start(container_id)
            except FAULTS as exc:
                why = reason(exc)
                raise EngineError(f"the engine could not start a container from {launch.image!r}: {why}") from None
            run = DockerRun(self.client, container_id, name, launch, nonce, probe=PROBE_MOUNT)
            yield run
        finally:
            # Bounded even when the engine hangs: every call below has the API timeout,
            # and a container that cannot be removed now still has the session label.
            if run is not None:
                run.close()
                self.gone = run.engine_fault or self.gone
            if run is not None and run.keep:
                log.warning("kept container %s for inspection", run.name)
            elif container_id is not None:
                remove(self.client, container_id, name)


def engine_address() -> str:
    host = os.environ.get("DOCKER_HOST")
    return f"{host} (from DOCKER_HOST)" if host else "unix:///var/run/docker.sock (the default)"


def process_start(pid: int) -> str:
    """Start time of ``pid`` in clock ticks since boot, or '' if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # dead, not yet reaped: its session will never clean up
        return ""
    return fields[19]


def remove(client: docker.DockerClient, container_id: str, name: str) -> bool:
    """Force-remove a container; True if this call removed it. Never raises."""
    try:
        client.api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # removal already in progress (a concurrent sweep)
            return False
        log.warning("cannot remove container %s: %s", name, reason(exc))
        return False
    except FAULTS as exc:
        log.warning("cannot remove container %s: %s", name, reason(exc))
        return False
    return True

