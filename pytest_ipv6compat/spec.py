"""How a target is started and probed: the settings a matrix, a marker or a fixture call may give.

Pure: validation and merging, no Docker, no pytest. One table of keys serves the
``[target]`` and ``[variant.NAME]`` tables of a matrix file, the ``ipv6_target``
marker and ``ipv6_target_factory.start()``, so every source accepts the same
names and rejects unknown ones with the same one-line message.
"""

from __future__ import annotations

import ipaddress
import math
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "PROBES", "PROBE_MOUNT", "RUN_KEYS", "TMPFS_DEFAULT_FLAGS", "RunSpec", "SpecError", "check_image",
    "check_mount_point", "check_run", "check_settle", "parse_run_settings",
]  # fmt: skip

PROBES = ("tcp", "http", "https", "none")
_STATUS = re.compile(r"[1-5](?:xx|\d\d)\Z")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\Z")
_MEMORY = re.compile(r"[1-9][0-9]*[kKmMgG]?\Z")
_MEMORY_MAX = 2**63 - 1  # bytes: the engines keep the limit in a signed 64-bit integer
_USER_PART = re.compile(r"[A-Za-z0-9_.-]+\Z")
_ID_MAX = 2**31 - 1  # the largest uid or gid the engines accept (Docker refuses 2147483648 and more)
PROBE_MOUNT = "/.ipv6compat"  # where every backend mounts the probe (docker_api.PROBE_MOUNT, uml_rootfs.PROBE_DIR)
# Mount points the engine itself owns: the root, the probe, proc (the runtime cannot make a directory
# there), /dev as a whole, and the files the engine writes into every container.
_OWNED = ("/", "/dev", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
_OWNED_TREES = (PROBE_MOUNT, "/proc")
# What a tmpfs mount takes on every backend: flags (mount(8)) and key=value options (tmpfs(5)). Docker
# refuses an unknown name before the container exists; a bad value reaches the kernel at start (EINVAL).
# TMPFS_DEFAULT_FLAGS name what the kernel does anyway: User-mode Linux's init leaves them out. Docker also
# takes sync, dirsync, mand, strictatime and nodiratime, which that init cannot set: they are refused.
TMPFS_DEFAULT_FLAGS = frozenset({"rw", "defaults", "exec", "suid", "dev", "async", "atime", "diratime",
                                 "norelatime", "nostrictatime", "nomand"})
_TMPFS_FLAGS = TMPFS_DEFAULT_FLAGS | {"ro", "noexec", "nosuid", "nodev", "noatime", "relatime"}
_TMPFS_VALUES = {
    "size": re.compile(r"(0|[1-9][0-9]*)[kKmMgG]?\Z|(100|[1-9]?[0-9])%\Z"),
    "nr_blocks": re.compile(r"(0|[1-9][0-9]*)[kKmMgG]?\Z"),
    "nr_inodes": re.compile(r"(0|[1-9][0-9]*)[kKmMgG]?\Z"),
    "mode": re.compile(r"[0-7]{1,4}\Z"),
    "uid": re.compile(r"[0-9]+\Z"),
    "gid": re.compile(r"[0-9]+\Z"),
}
_TMPFS_HELP = {
    "size": "a size in bytes with k, m or g, or a percentage of memory",
    "nr_blocks": "a number of blocks, with k, m or g",
    "nr_inodes": "a number of inodes, with k, m or g",
    "mode": "octal permissions such as 1777",
    "uid": "a numeric uid",
    "gid": "a numeric gid",
}


class SpecError(ValueError):
    """A run setting is malformed; the message names the key, the value and where it came from."""


@dataclass(frozen=True)
class RunSpec:
    """Everything about starting and observing a target except the image, stack and env.

    ``probe``: ``tcp`` (a connection is accepted), ``http``/``https`` (``GET http_path``
    answers with a status in ``http_status``), or ``none``. ``settle``: seconds the
    listener set must stay unchanged. ``hold``: seconds the target must stay up after
    that. ``mounts``: (container path, host path) pairs mounted read-only. ``memory``
    and ``pids`` bound the cell (memory without swap; processes and threads).
    """

    probe: str = "tcp"
    http_path: str = "/"
    http_status: tuple[str, ...] = ("2xx", "3xx")
    settle: float = 0.05
    hold: float = 1.0
    timeout: float = 30.0
    read_only: bool = False
    tmpfs: tuple[tuple[str, str], ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()
    mounts: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    command: tuple[str, ...] | None = None
    memory: str = "512m"
    pids: int = 512
    cpus: float = 1.0

    def updated(self, settings: Mapping[str, Any]) -> RunSpec:
        """A copy with ``settings`` (already validated by :func:`parse_run_settings`) applied.

        Naming ``http_path`` without ``probe`` makes the probe ``http``, as the README says.
        """
        values = dict(settings)
        if "http_path" in values and "probe" not in values and self.probe == "tcp":
            values["probe"] = "http"
        return replace(self, **values)


RUN_KEYS = tuple(f.name for f in fields(RunSpec))


def _seconds(key: str, value: Any, where: str, *, zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where}: {key} = {value!r} is not a number of seconds")
    number = float(value)
    low_ok = number >= 0 if zero else number > 0
    if not (math.isfinite(number) and low_ok and number <= 3600):
        bound = "at least 0" if zero else "more than 0"
        raise SpecError(f"{where}: {key} = {value!r} must be {bound} and at most 3600 seconds")
    return number


# An image reference as the engines parse it: [DOMAIN[:PORT]/]PATH[:TAG][@DIGEST], each path component
# lowercase letters and digits joined by '.', '_', '__' or dashes; a tag of up to 128 word characters,
# dots and dashes; a digest ALGORITHM:HEX. An engine refuses anything else only when a cell starts.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?\Z"
)


def check_image(image: Any, where: str) -> str:
    """An image reference an engine can look up (``my/app:1.2``, ``registry:5000/app@sha256:...``)."""
    found = _IMAGE.match(image) if isinstance(image, str) else None
    if found is None or len(found["name"]) > 255:
        raise SpecError(f"{where}: {image!r} is not an image reference (NAME[:TAG][@DIGEST], the name lowercase)")
    return str(image)


def check_mount_point(key: str, value: Any, where: str) -> str:
    """A path the cell may mount something on (``tmpfs``, ``mounts``, ``config_dir``), normalised.

    Absolute, and none the engine owns: not ``/``, not the probe's ``/.ipv6compat`` or below
    it, not ``/proc`` or below, not ``/dev`` itself, not the files the engine writes
    (``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf``). Docker refuses ``/`` when the
    container is created, the rest only when it starts, without naming the setting.
    """
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value or ":" in value \
            or not value.isprintable():
        raise SpecError(f"{where}: {key}: {value!r} is not an absolute path in the container")
    if any(c.isspace() for c in value):
        raise SpecError(f"{where}: {key}: {value!r} holds white space, which not every backend can mount on")
    path = "/" + posixpath.normpath(value).lstrip("/")
    owned = path in _OWNED or any(path == tree or path.startswith(tree + "/") for tree in _OWNED_TREES)
    if owned:
        what = "the probe's own mount point" if path.startswith(PROBE_MOUNT) else "a path the engine itself mounts"
        raise SpecError(f"{where}: {key}: {value!r} is {what}; mount on another path")
    return path


def _tmpfs_options(path: str, options: Any, where: str) -> str:
    """``size=64m,mode=1777,noexec``: names every engine takes, and values the kernel takes."""
    if not isinstance(options, str) or not options.isprintable():
        raise SpecError(f"{where}: tmpfs options for {path!r} must be a string, got {options!r}")
    for option in filter(None, (o.strip() for o in options.split(","))):
        name, eq, value = option.partition("=")
        if not eq and name in _TMPFS_FLAGS:
            continue
        if name not in _TMPFS_VALUES:
            known = ", ".join([*sorted(_TMPFS_VALUES), *sorted(_TMPFS_FLAGS)])
            raise SpecError(f"{where}: tmpfs {path} = {options!r}: {option!r} is not a tmpfs option (known: {known})")
        if not eq or not _TMPFS_VALUES[name].match(value):
            raise SpecError(f"{where}: tmpfs {path} = {options!r}: {name} = {value!r} is not {_TMPFS_HELP[name]}")
        if name in ("uid", "gid") and int(value) > _ID_MAX:
            raise SpecError(f"{where}: tmpfs {path} = {options!r}: {name} = {value} is more than {_ID_MAX}")
    return options


def _user(value: Any, where: str) -> str:
    """NAME, UID, NAME:GROUP or UID:GID; numbers within the engines' range. Whether the image has
    the name is known only when the cell starts (see :class:`~.backends.UnknownUser`)."""
    parts = value.split(":") if isinstance(value, str) else []
    if not 1 <= len(parts) <= 2 or not all(_USER_PART.match(part) for part in parts):
        raise SpecError(f"{where}: user = {value!r} is not NAME, UID, NAME:GROUP or UID:GID")
    for part in parts:
        if part.isdigit() and int(part) > _ID_MAX:
            raise SpecError(f"{where}: user = {value!r}: {part} is not a uid or gid (0 to {_ID_MAX})")
    return str(value)


def _pairs(key: str, value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: {key} must be a table, got {value!r}")
    return dict(value)


def _string_list(key: str, value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise SpecError(f"{where}: {key} must be a non-empty list of strings, got {value!r}")
    if not all(isinstance(v, str) and "\0" not in v for v in value):
        raise SpecError(f"{where}: {key} must be a non-empty list of strings, got {value!r}")
    return tuple(value)


def parse_run_settings(raw: Mapping[str, Any], where: str, *, base: Path | None = None) -> dict[str, Any]:
    """Validate run settings from one source; return them as :class:`RunSpec` field values.

    ``where`` names the source in messages (``matrix.ipv6.toml: [target]``, ``marker
    ipv6_target``). Relative host paths in ``mounts`` are resolved against ``base``.
    """
    unknown = sorted(set(raw) - set(RUN_KEYS))
    if unknown:
        raise SpecError(f"{where}: unknown setting(s): {', '.join(unknown)} (known: {', '.join(RUN_KEYS)})")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "probe":
            if value not in PROBES:
                raise SpecError(f"{where}: probe = {value!r} is not one of {', '.join(PROBES)}")
            out[key] = value
        elif key == "http_path":
            if not isinstance(value, str) or not re.fullmatch(r"/[!-~]*", value):
                raise SpecError(f"{where}: http_path = {value!r} is not an absolute URL path")
            out[key] = value
        elif key == "http_status":
            statuses = (value,) if isinstance(value, str) else _string_list(key, value, where)
            bad = [s for s in statuses if not _STATUS.match(s)]
            if bad:
                raise SpecError(f"{where}: http_status {bad[0]!r} is not a status (200) or a class (2xx)")
            out[key] = tuple(statuses)
        elif key in ("settle", "hold", "timeout"):
            out[key] = _seconds(key, value, where, zero=key == "hold")
        elif key == "read_only":
            if not isinstance(value, bool):
                raise SpecError(f"{where}: read_only = {value!r} must be true or false")
            out[key] = value
        elif key == "tmpfs":
            if isinstance(value, (list, tuple)) and not isinstance(value, str):
                value = {path: "" for path in value}
            table = _pairs(key, value, where)
            tmpfs = {check_mount_point(key, path, where): _tmpfs_options(path, options, where)
                     for path, options in table.items()}
            if len(tmpfs) < len(table):
                raise SpecError(f"{where}: tmpfs names one path twice: {', '.join(map(repr, table))}")
            out[key] = tuple(sorted(tmpfs.items()))
        elif key == "extra_hosts":
            table = _pairs(key, value, where)
            for host, ip in table.items():
                if not isinstance(host, str) or not _HOST.match(host):
                    raise SpecError(f"{where}: extra_hosts: {host!r} is not a host name")
                if not _ip_address(ip):
                    raise SpecError(f"{where}: extra_hosts: {host} = {ip!r} is not an IP address")
            out[key] = tuple(sorted(table.items()))
        elif key == "mounts":
            table = _pairs(key, value, where)
            mounts = []
            for path, source in table.items():
                path = check_mount_point(key, path, where)
                if not isinstance(source, (str, Path)) or not str(source) or "\0" in str(source):
                    raise SpecError(f"{where}: mounts: {path} = {source!r} must name a host directory")
                host_path = Path(source)
                if not host_path.is_absolute():
                    if base is None:
                        raise SpecError(f"{where}: mounts: {path} = {str(source)!r} must be an absolute path")
                    host_path = (base / host_path).resolve()
                if not host_path.exists():
                    raise SpecError(f"{where}: mounts: {path} = {str(source)!r}: {str(host_path)!r} does not exist")
                if not host_path.is_dir():  # an engine's volume is a directory; only User-mode Linux could mount a file
                    raise SpecError(f"{where}: mounts: {path} = {str(source)!r}: {str(host_path)!r} is not a "
                                    "directory (mount the directory that holds it)")
                mounts.append((path, str(host_path)))
            if len({path for path, _ in mounts}) < len(mounts):
                raise SpecError(f"{where}: mounts names one path twice: {', '.join(map(repr, table))}")
            out[key] = tuple(sorted(mounts))
        elif key == "user":
            out[key] = _user(value, where)
        elif key == "command":
            out[key] = _string_list(key, value, where)
        elif key == "memory":
            if not isinstance(value, str) or not _MEMORY.match(value) or _bytes(value) < 6 * 2**20:
                raise SpecError(f"{where}: memory = {value!r} is not a size of at least 6m (e.g. '256m', '1g')")
            if _bytes(value) > _MEMORY_MAX:
                raise SpecError(f"{where}: memory = {value!r} is more than an engine can hold (at most 8589934591g)")
            out[key] = value
        elif key == "pids":
            if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= 65536:
                raise SpecError(f"{where}: pids = {value!r} is not a whole number from 8 to 65536")
            out[key] = value
        elif key == "cpus":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.01 <= value <= 1024:
                raise SpecError(f"{where}: cpus = {value!r} is not a number of CPUs from 0.01 to 1024 (e.g. 0.5, 2)")
            out[key] = float(value)
    if "settle" in out and out["settle"] >= out.get("timeout", out["settle"] + 1):
        raise SpecError(f"{where}: settle = {out['settle']:g} must be shorter than timeout = {out['timeout']:g}")
    _check_overlap(out.get("tmpfs", ()), out.get("mounts", ()), (), where)
    return out


def _ip_address(value: Any) -> bool:
    """An IPv4 or IPv6 address as the engines parse it: no zone (``%eth0``), no prefix, no host name."""
    if not isinstance(value, str) or "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _check_overlap(tmpfs: Any, mounts: Any, extra: tuple[tuple[str, Any], ...], where: str) -> None:
    """No path is mounted twice (Docker: "Duplicate mount point", when the container is created)."""
    seen: dict[str, str] = {}
    for what, pairs in (("tmpfs", tmpfs), ("mounts", mounts), *extra):
        for path, _ in pairs:
            if path in seen:
                raise SpecError(f"{where}: {what} {path} is also in {seen[path]}: a path takes one mount")
            seen[path] = what


def check_run(spec: RunSpec, where: str, config_dir: str | None = None) -> None:
    """What only the combined settings show (``[target]`` with ``[variant.NAME]`` and the options):
    ``settle < timeout``, and no path mounted twice, counting a read-only config's ``config_dir``."""
    check_settle(spec, where)
    extra = (("config_dir", ((config_dir, ""),)),) if config_dir is not None else ()
    _check_overlap(spec.tmpfs, spec.mounts, extra, where)


def check_settle(spec: RunSpec, where: str) -> None:
    """``settle`` must be shorter than ``timeout``: a longer settle turns every listener into a timeout."""
    if spec.settle >= spec.timeout:
        raise SpecError(f"{where}: settle = {spec.settle:g} must be shorter than timeout = {spec.timeout:g}")


def _bytes(size: str) -> int:
    number, unit = int(size[:-1]) if size[-1].isalpha() else int(size), size[-1].lower()
    return number * {"k": 2**10, "m": 2**20, "g": 2**30}.get(unit, 1)
