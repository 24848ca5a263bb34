"""The Docker API backend: a target in a container, on Docker (or an engine speaking its API).

One container per observation, on ``--network none``, never privileged, labelled
with the session. Nothing is bind-mounted from the pytest host: the probe (and any
config directory) reaches the engine as a read-only volume filled through the API
(:mod:`.docker_volumes`), so a remote engine works like a local one. The probe is
mounted at ``/.ipv6compat``;
the shim there attests the stack and execs the target as PID 1. The watcher then
runs as an exec session, so its report travels on a stream the target cannot
write to, while the engine's wait call reports the exit as soon as it happens.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import secrets
import socket
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.transport import UnixHTTPAdapter

from . import EngineError, Launch, StackUnsupported, UnknownUser
from .docker_run import FAULTS, DockerRun, reason
from .docker_volumes import SESSION_LABEL, Volumes, remove_volume
from .pod import pod_entry
from .ssh_tunnel import Tunnel, is_ssh

log = logging.getLogger(__name__)

PROBE_MOUNT = "/.ipv6compat"
KEPT_PREFIX = "ipv6compat-kept-"  # containers of failed cells left for inspection (--ipv6-keep-failed)
KEPT_HOURS = 24  # the sweep leaves them alone this long, then removes them
LOG_FILE_MAX = "16m"  # what the engine keeps of a target's output; the verdict keeps only a tail of it
LABEL = SESSION_LABEL
SSH_POOLS = 4  # docker-py's connection pools (one per URL) kept for an ssh:// engine: the idle channels' bound
SSH_POOL_SIZE = 2  # idle connections each keeps


@dataclass
class DockerBackend:
    """A connection to the engine plus this process's session labels."""

    client: docker.DockerClient
    probe_dir: Path
    api_timeout: float = 60.0
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    address: str = field(default_factory=lambda: engine_address())
    _image_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    _info: dict[str, str] = field(default_factory=dict)
    _started: int = 0
    _volumes: Volumes | None = None
    gone: str | None = None  # why the engine stopped answering during an earlier cell
    tunnel: Tunnel | None = None  # the SSH connection of an ssh:// engine

    @classmethod
    def connect(
        cls, probe_dir: Path, *, api_timeout: float = 60.0, connect_timeout: float = 10.0, url: str | None = None,
        ssh_config: Path | None = None,
    ) -> DockerBackend:
        """Connect to ``url`` (from --ipv6-engines), else the engine the environment names (``DOCKER_HOST``,
        else the default socket).

        Every API call is bounded: ``connect_timeout`` for the first contact (an engine
        that accepts but never answers must not stall a session), ``api_timeout`` after.
        An ``ssh://`` engine is reached through one OpenSSH connection that forwards its
        socket (:mod:`.ssh_tunnel`, with ``ssh_config`` as ``ssh -F``), never through
        docker-py's own SSH transport.
        """
        address = f"{url} (from --ipv6-engines)" if url else engine_address()
        given = url or os.environ.get("DOCKER_HOST") or None
        session = uuid.uuid4().hex[:12]
        tunnel: Tunnel | None = None
        try:
            timeout = min(api_timeout, connect_timeout)
            if is_ssh(given):
                assert given is not None
                try:
                    tunnel = Tunnel(given, session=session, connect_timeout=connect_timeout, config=ssh_config).open()
                except EngineError as exc:
                    raise EngineError(f"Docker engine at {address} is unreachable: {exc}") from None
                client = docker.DockerClient(base_url=tunnel.local_url, timeout=timeout)
                # docker-py keeps a connection pool per URL (25, whatever num_pools says for a unix:// address),
                # each keeping its idle connections: here each is an SSH channel, so keep few (README, ssh://).
                previous = client.api.get_adapter("http+docker://localhost")
                client.api.mount("http+docker://", UnixHTTPAdapter(
                    f"http+unix://{tunnel.local_socket}", timeout, pool_connections=SSH_POOLS,
                    max_pool_size=SSH_POOL_SIZE))
                previous.close()  # its connection (the API version query) would hold ssh open at the end
            else:
                client = docker.DockerClient(base_url=url, timeout=timeout) if url else docker.from_env(timeout=timeout)
            client.ping()
        except FAULTS as exc:
            why = (tunnel.ended(wait=3.0) or tunnel.forwarding_refused()) if tunnel is not None else None
            if tunnel is not None:
                tunnel.close()
            why = why or reason(exc)
            raise EngineError(f"Docker engine at {address} is unreachable: {why}") from None
        except ValueError as exc:  # an address docker-py cannot even parse
            if tunnel is not None:
                tunnel.close()
            raise EngineError(f"Docker engine at {address} is not a usable address: {exc}") from None
        client.api.timeout = api_timeout
        return cls(client=client, probe_dir=probe_dir, api_timeout=api_timeout, address=address, session=session,
                   tunnel=tunnel)

    def link_down(self, wait: float = 3.0) -> str | None:
        """Why the SSH connection to the engine is gone (one line, a hint), or None: it works, or there is none.

        ssh may notice a cut connection a moment after docker-py does: when the engine does not
        answer through the tunnel, wait up to ``wait`` s for ssh to say why.
        """
        if self.tunnel is None:
            return None
        why = self.tunnel.ended()
        if why is not None:
            return why
        try:
            self.client.api.ping()
            return None
        except FAULTS:
            pass
        return self.tunnel.ended(wait) or self.tunnel.forwarding_refused()

    def close(self) -> None:
        """End the SSH connection of an ``ssh://`` engine (after :meth:`remove_session`); nothing otherwise."""
        if self.tunnel is not None:
            with contextlib.suppress(Exception):
                self.client.close()  # its pooled connections are channels ssh would wait for
            self.tunnel.close()
            self.tunnel = None

    def info(self) -> dict[str, str]:
        """Engine kind (Docker or Podman), version, API, default OCI runtime, seccomp, where it runs, and its
        host's OS and kernel as the engine reports them (each cell's provenance is made from these)."""
        if "version" not in self._info:
            try:
                ver = self.client.version()
                info = self.client.info()
            except FAULTS as exc:
                raise EngineError(f"cannot query the Docker engine: {reason(exc)}") from None
            components = " ".join(str(c.get("Name", "")) for c in ver.get("Components") or [])
            self._info |= {
                "engine": "Podman" if "podman" in components.lower() else "Docker",
                "version": str(ver.get("Version", "?")),
                "api": str(ver.get("ApiVersion", "?")),
                "runtime": str(info.get("DefaultRuntime") or "?"),
                "seccomp": "yes" if any("seccomp" in str(o) for o in info.get("SecurityOptions") or []) else "no",
                "address": self.address,
                "url": self.address.split(" (from ", 1)[0],  # as given, without where it came from
                "os": str(info.get("OperatingSystem") or "?"),
                "kernel": str(info.get("KernelVersion") or "?"),
                "files": "local" if self._local() else "remote (nothing is bind-mounted: works the same)",
            }
        return dict(self._info)

    def _local(self) -> bool:
        """The engine runs on this machine (it may share its files); through an SSH tunnel it does not."""
        return self.tunnel is None and _is_local(self.client)

    def answers(self) -> bool:
        """Whether the engine answers a ping now (after a cell's engine error: is the engine gone?)."""
        try:
            self.client.ping()
        except FAULTS:
            return False
        return True

    def _podman(self) -> bool:
        """The engine is Podman; an engine that does not answer now says so at the next call instead."""
        try:
            return self.info().get("engine") == "Podman"
        except EngineError:
            return False

    def _engine_arch(self) -> str:
        if "arch" not in self._info:
            try:
                self._info["arch"] = str(self.client.version().get("Arch") or "")
            except FAULTS:
                return ""
        return self._info["arch"]

    def _security_opt(self, launch: Launch) -> list[str]:
        """The stack's options in the form this engine takes: Docker wants a seccomp profile's JSON
        itself, Podman a path to it on the engine's host, which only a local Podman can be given."""
        options = launch.stack.security_opt()
        if self.info().get("engine") != "Podman":
            return options
        out = []
        for option in options:
            if option.startswith("seccomp={"):
                if not self._local():
                    raise StackUnsupported(
                        f"stack {launch.stack.name} needs a seccomp profile, which a remote Podman takes only as a "
                        "file on its own host; run these cells on Docker or a local Podman"
                    )
                profile = option.removeprefix("seccomp=")
                path = self.probe_dir.parent / f"seccomp-{hashlib.sha256(profile.encode()).hexdigest()[:12]}.json"
                if not path.exists():
                    path.write_text(profile, encoding="utf-8")
                option = f"seccomp={path}"
            out.append(option)
        return out

    @property
    def volumes(self) -> Volumes:
        """The probe and config directories, shipped to the engine as this session's volumes."""
        if self._volumes is None:
            self._volumes = Volumes(self.client, self.session, lambda: self.labels)
        return self._volumes

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
                raise EngineError(self.link_down() or f"cannot inspect image {image!r}: {reason(exc)}") from None
            arch, engine_arch = attrs.get("Architecture"), self._engine_arch()
            if arch and engine_arch and arch != engine_arch:
                raise EngineError(
                    f"image {image!r} is built for {arch}, but the engine runs {engine_arch}: "
                    f"use an image built for {engine_arch}"
                )
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
            if container.name.startswith(KEPT_PREFIX) and _age_hours(container) < KEPT_HOURS:
                continue  # kept for inspection: the user removes it, or a later sweep does
            pid = labels.get("ipv6compat.pid", "")
            if pid.isdigit() and process_start(int(pid)) == labels.get("ipv6compat.pid-start"):
                continue  # its session is alive
            if remove(self.client, container.id, container.name):
                removed.append(container.name)
        self._sweep_volumes(host)
        return removed

    def _sweep_volumes(self, host: str) -> None:
        """Volumes of dead sessions on this host (one still used by a kept container stays)."""
        try:
            found = self.client.api.volumes(filters={"label": LABEL}).get("Volumes") or []
        except FAULTS as exc:
            log.warning("cannot list leftover volumes: %s", reason(exc))
            return
        for volume in found:
            labels = volume.get("Labels") or {}
            if labels.get("ipv6compat.host") != host:
                continue
            pid = labels.get("ipv6compat.pid", "")
            if pid.isdigit() and process_start(int(pid)) == labels.get("ipv6compat.pid-start"):
                continue
            remove_volume(self.client, str(volume.get("Name")))

    def remove_session(self, keep: Collection[str] = ()) -> int:
        """Remove every container this process started and still has, except ``keep`` (names)."""
        if self.tunnel is not None and self.tunnel.ended() is not None:
            return 0  # the engine is out of reach; the guard on its host removes the session's containers
        try:
            found = self.client.containers.list(
                all=True, filters={"label": f"{LABEL}={self.session}"}, ignore_removed=True
            )
        except FAULTS as exc:
            log.warning("cannot list this session's containers: %s", reason(exc))
            return 0
        mine = [c for c in found if c.name not in keep and not c.name.startswith(KEPT_PREFIX)]
        removed = sum(remove(self.client, c.id, c.name) for c in mine)
        self.volumes.remove_all()
        return removed

    @contextlib.contextmanager
    def run(self, launch: Launch) -> Iterator[DockerRun]:
        """Start ``launch``; yield its :class:`DockerRun`; remove the container on exit.

        Set ``run.keep = True`` to leave the container for inspection (a failed cell
        under --ipv6-keep-failed); it still carries the session label.
        """
        why = self.tunnel.ended() if self.tunnel is not None else None
        if why is not None:
            raise EngineError(why)
        if self.gone is not None:
            try:
                self.client.ping()
            except FAULTS:
                raise EngineError(
                    f"the Docker engine at {self.address} stopped responding earlier in this session "
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
        entry, user, cap_add = pod_entry(launch, config, nonce)
        api = self.client.api
        container_id: str | None = None
        run: DockerRun | None = None
        try:
            try:
                probe = self.volumes.volume_for(self.probe_dir, launch.image)
                # suid: Podman mounts volumes nosuid unless told, and the watcher is setgid (probe/watch.c).
                binds = {probe: {"bind": PROBE_MOUNT, "mode": "ro,suid" if self._podman() else "ro"}}
                for path, host in spec.mounts:
                    binds[self.volumes.volume_for(Path(host), launch.image)] = {"bind": path, "mode": "ro,nocopy"}
                host_config = api.create_host_config(
                    network_mode="none",
                    sysctls=launch.stack.sysctls(),
                    security_opt=self._security_opt(launch),
                    binds=binds,
                    read_only=spec.read_only,
                    tmpfs=dict(spec.tmpfs) or None,
                    extra_hosts=dict(spec.extra_hosts) or None,
                    privileged=False,
                    cap_add=cap_add or None,
                    mem_limit=spec.memory,
                    memswap_limit=spec.memory,  # no swap: a memory hog ends at the limit
                    pids_limit=spec.pids,
                    nano_cpus=round(spec.cpus * 1e9),
                    log_config={"Type": "json-file", "Config": {"max-size": LOG_FILE_MAX, "max-file": "1"}},
                )
                created = api.create_container(
                    launch.image,
                    command=argv,
                    entrypoint=entry,
                    environment=[f"{k}={v}" for k, v in launch.env.items()],
                    labels=self.labels,
                    name=name,
                    user=user,
                    host_config=host_config,
                )
                container_id = str(created["Id"])
                api.start(container_id)
            except FAULTS as exc:
                down = self.link_down()
                if down:
                    raise EngineError(down) from None
                why = reason(exc)
                unknown = UnknownUser.find(spec.user, launch.image, why)
                if unknown is not None:
                    raise unknown from None
                raise EngineError(f"the engine could not start a container from {launch.image!r}: {why}") from None
            except (StackUnsupported, UnknownUser):
                raise
            except EngineError as exc:  # a volume that could not be made, often for the same reason
                raise EngineError(self.link_down() or str(exc)) from None
            run = DockerRun(
                self.client, container_id, name, launch, nonce, probe=PROBE_MOUNT,
                poll_exit=self._podman(), link=self.link_down if self.tunnel is not None else None,
                exec_user=spec.user or str(config.get("User") or ""),
            )
            yield run
        finally:
            # Bounded even when the engine hangs: every call below has the API timeout,
            # and a container that cannot be removed now still has the session label.
            if run is not None:
                run.close()
                self.gone = run.engine_fault or self.gone
            if run is not None and run.keep:
                run.rename(KEPT_PREFIX + name.removeprefix("ipv6compat-"))
                log.warning("kept container %s for inspection", run.name)
            elif container_id is not None:
                remove(self.client, container_id, name)


def _age_hours(container: Any) -> float:
    """Hours since the container was created; unknown counts as old."""
    created = container.attrs.get("Created")
    if isinstance(created, (int, float)):  # a sparse list gives seconds since the epoch
        return (time.time() - created) / 3600
    if isinstance(created, str):  # an inspect gives RFC 3339 with nanoseconds: 2026-12-02T06:13:14.123456789Z
        found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", created)
        if found:
            when = dt.datetime.strptime(found[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
            return (time.time() - when.timestamp()) / 3600
    return float("inf")


def _is_local(client: docker.DockerClient) -> bool:
    """Whether the engine is reached through a unix socket on this machine (it may share its files)."""
    return str(client.api.base_url).startswith(("http+docker://localunixsocket", "http+docker://localhost"))


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


_BUSY_RETRIES = 5  # Podman: removal can race its own clean-up process for the container's mounts
_BUSY_WAIT_S = 0.1


def remove(client: docker.DockerClient, container_id: str, name: str) -> bool:
    """Force-remove a container; True if this call removed it. Never raises."""
    try:
        for attempt in range(_BUSY_RETRIES + 1):
            try:
                client.api.remove_container(container_id, force=True, v=True)
                break
            except docker.errors.APIError as exc:
                # Podman 4.3 fails a removal that meets its clean-up process unmounting the container's
                # /dev/shm ("unlinkat .../userdata/shm: device or resource busy"); a moment later it succeeds.
                if "resource busy" not in reason(exc) or attempt == _BUSY_RETRIES:
                    raise
                time.sleep(_BUSY_WAIT_S * (attempt + 1))
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

