"""Host directories shipped to the engine as read-only named volumes, through its API.

Nothing a cell needs is bind-mounted from the pytest host: an engine that does not
share its filesystem (a remote engine, dind, ``ssh://``) would see an empty, root-owned
directory there instead. Each directory (the probe, a config directory) becomes a
volume named by this session and the directory's content, filled once with
``put_archive`` through a container that is created and never started, labelled like
the session's containers, and removed with them (or by the sweep, once the session is
dead).
"""

from __future__ import annotations

import hashlib
import io
import logging
import stat
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path

import docker
import docker.errors

from ..probe.report import WATCH_GROUP
from . import EngineError
from .docker_run import FAULTS, reason

log = logging.getLogger(__name__)

FILL_AT = "/.ipv6compat-fill"
SESSION_LABEL = "ipv6compat.session"  # the label every container and volume of a session carries


def directory_tar(root: Path) -> bytes:
    """A deterministic tar of ``root``'s files: sorted, owned by root (a setgid file, the probe's
    watcher, by group :data:`~pytest_ipv6compat.probe.report.WATCH_GROUP`), modes kept, no timestamps.

    It ends right after the two zero blocks that close a tar archive, without the zeros that pad
    it to a whole record: Podman's archive upload stops reading at the end-of-archive blocks and
    then fails the request with "write |1: broken pipe" if the body goes on (containers/buildah
    #6573), now and then rather than always. Docker accepts both forms.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            info = tarfile.TarInfo(rel)
            info.mode = path.stat().st_mode & 0o7777 | 0o444
            info.mtime = 0
            if path.is_symlink():
                info.type, info.linkname = tarfile.SYMTYPE, str(path.readlink())
                tar.addfile(info)
            elif path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, info.mode | 0o111
                tar.addfile(info)
            elif path.is_file():
                data = path.read_bytes()
                info.size = len(data)
                if info.mode & stat.S_ISGID:
                    info.gid = WATCH_GROUP
                tar.addfile(info, io.BytesIO(data))
            else:
                raise EngineError(f"cannot ship {path} to the engine: not a regular file, directory or link")
    return buffer.getvalue()[: tar.offset]  # offset: the end of the end-of-archive blocks, before padding


def _signature(root: Path) -> tuple[tuple[str, int, int, int], ...]:
    """(path, size, mode, mtime in ns) of everything under ``root``: what changes when a file does."""
    out = []
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out.append((path.relative_to(root).as_posix(), st.st_size, st.st_mode, st.st_mtime_ns))
    return tuple(out)


class Volumes:
    """The volumes of one session: made on first use, one per directory content."""

    def __init__(self, client: docker.DockerClient, session: str, labels: Callable[[], Mapping[str, str]]) -> None:
        self._client = client
        self._session = session
        self._labels = labels
        self._made: dict[tuple[str, str], str] = {}  # (directory, content key) -> volume name
        self._seen: dict[str, tuple[tuple[tuple[str, int, int, int], ...], str]] = {}  # directory -> (stat, name)

    def volume_for(self, directory: Path, image: str) -> str:
        """The name of a volume holding ``directory``'s files, made through a never-started ``image`` container.

        Every cell asks, so the directory is read and hashed again only when its files' sizes, modes or
        times changed since the last time (the probe alone is several megabytes).
        """
        try:
            seen = _signature(directory)
            if self._seen.get(str(directory), (None, ""))[0] == seen:
                return self._seen[str(directory)][1]
            data = directory_tar(directory)
        except OSError as exc:
            raise EngineError(f"cannot read {directory} to ship it to the engine: {exc.strerror}") from None
        key = hashlib.sha256(data).hexdigest()[:12]
        if (str(directory), key) in self._made:
            self._seen[str(directory)] = (seen, self._made[(str(directory), key)])
            return self._made[(str(directory), key)]
        name = f"ipv6compat-{self._session}-{key}"
        api = self._client.api
        helper: str | None = None
        try:
            api.create_volume(name, labels=dict(self._labels()))
            host_config = api.create_host_config(binds={name: {"bind": FILL_AT, "mode": "rw"}}, network_mode="none")
            labels = {**self._labels(), "ipv6compat.purpose": "volume-filler"}
            helper = str(api.create_container(
                image, command=["true"], entrypoint=["true"], labels=labels, host_config=host_config,
            )["Id"])
            api.put_archive(helper, FILL_AT, data)
        except FAULTS as exc:
            raise EngineError(f"cannot ship {directory} to the engine as volume {name}: {reason(exc)}") from None
        finally:
            if helper is not None:
                try:
                    api.remove_container(helper, force=True)
                except FAULTS as exc:
                    log.warning("cannot remove the volume filler %s: %s", helper[:12], reason(exc))
        self._made[(str(directory), key)] = name
        self._seen[str(directory)] = (seen, name)
        return name

    def remove_all(self) -> int:
        """Remove this session's volumes that no container still uses; never raises.

        Those the engine lists with this session's label count too, not only those this object made: a
        volume request that timed out on a slow engine may still have made its volume, and a handle on
        the session made later (after a hung engine recovered) has made none itself.
        """
        names = set(self._made.values())
        try:
            found = self._client.api.volumes(filters={"label": f"{SESSION_LABEL}={self._session}"}).get("Volumes")
            names.update(str(v.get("Name")) for v in found or [])
        except FAULTS as exc:
            log.warning("cannot list this session's volumes: %s", reason(exc))
        removed = 0
        for name in sorted(names):
            if remove_volume(self._client, name):
                removed += 1
        self._made.clear()
        self._seen.clear()
        return removed


def remove_volume(client: docker.DockerClient, name: str) -> bool:
    """Remove a volume; True if this call did. In use (a kept container) or gone is not an error."""
    try:
        client.api.remove_volume(name, force=False)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: still used by a container, e.g. one kept for inspection
            log.warning("cannot remove volume %s: %s", name, reason(exc))
        return False
    except FAULTS as exc:
        log.warning("cannot remove volume %s: %s", name, reason(exc))
        return False
    return True
