"""How a cell with a pod address starts, shared by the engine (:mod:`.docker_api`) and oci (:mod:`.oci`) backends."""

from __future__ import annotations

from typing import Any

from ..spec import PROBE_MOUNT
from . import Launch

__all__ = ["pod_entry"]


def pod_entry(launch: Launch, config: dict[str, Any], nonce: str) -> tuple[list[str], str, list[str]]:
    """The container's entrypoint, the user it starts as and the capabilities added, for ``launch``.

    A stack with a pod address starts the container as root with CAP_NET_ADMIN, running the
    probe's ``podsetup`` (probe/pod_setup.c): it makes the pod interface inside the cell's own
    namespace (still ``--network none``), drops CAP_NET_ADMIN from every set, takes the cell's user
    as the runtime would (the cell's ``user``, else the image's; with neither, the container starts
    as the engine's default root and keeps it) and runs the shim. With
    neither the image nor the cell setting ``HOME``, the engine sets root's: podsetup then sets the
    user's instead, as the engine would have. A stack without a pod address starts the shim as the
    cell's user, as before.
    """
    shim = [f"{PROBE_MOUNT}/busybox", "sh", f"{PROBE_MOUNT}/shim.sh", nonce, "--"]
    user = launch.run.user or str(config.get("User") or "")
    networks = launch.stack.pod_networks()
    if not networks:
        return shim, launch.run.user or "", []
    if not user:  # the engine's root as it is (its groups and HOME differ between engines)
        return [f"{PROBE_MOUNT}/podsetup", ",".join(networks), "-", *shim], "", ["NET_ADMIN"]
    env = [str(e).partition("=")[0] for e in config.get("Env") or []]
    home = "HOME" not in env and "HOME" not in launch.env
    entry = [f"{PROBE_MOUNT}/podsetup", *(["--home"] if home else []), ",".join(networks), user, *shim]
    return entry, "0", ["NET_ADMIN"]
