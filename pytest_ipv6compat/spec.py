"""How a target is started and probed: the settings a matrix, a marker or a fixture call may give.

Pure: validation and merging, no Docker, no pytest. One table of keys serves the
``[target]`` and ``[variant.NAME]`` tables of a matrix file, the ``ipv6_target``
marker and ``ipv6_target_factory.start()``, so every source accepts the same
names and rejects unknown ones with the same one-line message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["PROBES", "RUN_KEYS", "RunSpec", "SpecError", "check_settle", "parse_run_settings"]

PROBES = ("tcp", "http", "https", "none")
_STATUS = re.compile(r"[1-5](?:xx|\d\d)\Z")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\Z")
_MEMORY = re.compile(r"[1-9][0-9]*[kKmMgG]?\Z")
_IP = re.compile(r"[0-9.]+\Z|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\Z")


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


def _abs_path(key: str, value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value or ":" in value:
        raise SpecError(f"{where}: {key}: {value!r} is not an absolute path in the container")
    return value


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
            for path, options in table.items():
                _abs_path(key, path, where)
                if not isinstance(options, str) or "\0" in options:
                    raise SpecError(f"{where}: tmpfs options for {path!r} must be a string, got {options!r}")
            out[key] = tuple(sorted(table.items()))
        elif key == "extra_hosts":
            table = _pairs(key, value, where)
            for host, ip in table.items():
                if not isinstance(host, str) or not _HOST.match(host):
                    raise SpecError(f"{where}: extra_hosts: {host!r} is not a host name")
                if not isinstance(ip, str) or not _IP.match(ip):
                    raise SpecError(f"{where}: extra_hosts: {host} = {ip!r} is not an IP address")
            out[key] = tuple(sorted(table.items()))
        elif key == "mounts":
            table = _pairs(key, value, where)
            mounts = []
            for path, source in table.items():
                _abs_path(key, path, where)
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
            out[key] = tuple(sorted(mounts))
        elif key == "user":
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?", value):
                raise SpecError(f"{where}: user = {value!r} is not NAME, UID or UID:GID")
            out[key] = value
        elif key == "command":
            out[key] = _string_list(key, value, where)
        elif key == "memory":
            if not isinstance(value, str) or not _MEMORY.match(value) or _bytes(value) < 6 * 2**20:
                raise SpecError(f"{where}: memory = {value!r} is not a size of at least 6m (e.g. '256m', '1g')")
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
    return out


def check_settle(spec: RunSpec, where: str) -> None:
    """``settle`` must be shorter than ``timeout``: a longer settle turns every listener into a timeout."""
    if spec.settle >= spec.timeout:
        raise SpecError(f"{where}: settle = {spec.settle:g} must be shorter than timeout = {spec.timeout:g}")


def _bytes(size: str) -> int:
    number, unit = int(size[:-1]) if size[-1].isalpha() else int(size), size[-1].lower()
    return number * {"k": 2**10, "m": 2**20, "g": 2**30}.get(unit, 1)
