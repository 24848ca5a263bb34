"""A testcontainers ``DockerContainer`` definition as a target (the ``testcontainers`` extra).

Users who already describe their service as a ``DockerContainer`` in their suites hand
that definition to ``ipv6_target_factory.start_container()``; it is read, never started
by testcontainers (no Ryuk, no ports published): the image, environment, command,
volumes, tmpfs mounts and the run keyword arguments the plugin can honour become the
target and its run settings. Whatever a cell cannot honour (a network, published
ports are ignored since every cell runs with ``--network none``) is one clear error.

Pure: it reads attributes of the object; it imports nothing from testcontainers.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from .spec import SpecError

__all__ = ["container_target"]

# DockerContainer(**kwargs) / with_kwargs(): the ones a cell can honour, as run settings.
_KWARGS = {"user": "user", "read_only": "read_only", "extra_hosts": "extra_hosts", "mem_limit": "memory",
           "pids_limit": "pids", "tmpfs": "tmpfs"}  # fmt: skip


def container_target(container: Any) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(image, environment, run settings) of a testcontainers ``DockerContainer``; SpecError when it cannot be.

    Run settings are in the forms :func:`~.spec.parse_run_settings` takes. Volumes become
    ``mounts`` (copied into the cell, as every mount is, so writes do not reach the host).
    """
    image = getattr(container, "image", None)
    where = f"DockerContainer({image!r})"
    if not isinstance(image, str) or not image:
        raise SpecError(f"{where}: not a testcontainers DockerContainer definition (no image)")
    if getattr(container, "_container", None) is not None:
        raise SpecError(f"{where}: already started by testcontainers; pass the definition, before start()")
    if getattr(container, "_network", None) is not None or getattr(container, "_network_aliases", None):
        raise SpecError(f"{where}: has a network; every cell runs with --network none, so leave it out")
    env = {str(k): str(v) for k, v in (getattr(container, "env", None) or {}).items()}
    run: dict[str, Any] = {}
    command = getattr(container, "_command", None)
    if isinstance(command, str):
        run["command"] = shlex.split(command)  # as the engine splits a command given as one string
    elif command is not None:
        run["command"] = [str(word) for word in command]
    mounts = {}
    for host, mount in (getattr(container, "volumes", None) or {}).items():
        if not isinstance(mount, Mapping) or "bind" not in mount:
            raise SpecError(f"{where}: volume {host!r}: not a testcontainers mapping, got {mount!r}")
        mounts[str(mount["bind"])] = str(host)
    if mounts:
        run["mounts"] = mounts
    tmpfs = {path: f"size={size}" if size else "" for path, size in (getattr(container, "tmpfs", None) or {}).items()}
    kwargs = dict(getattr(container, "_kwargs", None) or {})
    unknown = sorted(set(kwargs) - set(_KWARGS))
    if unknown:
        raise SpecError(
            f"{where}: keyword argument(s) a cell cannot honour: {', '.join(unknown)} (honoured: {', '.join(_KWARGS)})"
        )
    for key, value in kwargs.items():
        if key == "tmpfs":
            tmpfs.update(dict(value))
        elif key == "mem_limit":
            run["memory"] = str(value)
        else:
            run[_KWARGS[key]] = value
    if tmpfs:
        run["tmpfs"] = tmpfs
    return image, env, run
