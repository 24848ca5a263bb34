"""What ran a cell: the engine (or User-mode Linux kernel) recorded with each result.

A cell's provenance is a small flat mapping of strings, made from its backend's
``info()`` and carried by the cell itself (``ran_on`` in the JSON, ``ipv6.ran_on.*``
JUnit properties, a line in the Markdown). Per cell rather than a table in the
report's ``meta`` with a key per cell: xdist workers and merged shards each know
only their own engines, so per-cell records need no numbering that two shards
could give to different engines, and a cell read on its own (a JUnit test case)
still says what ran it. It costs about 250 bytes a cell (a report cell is about
4 kB). Pure: no Docker, no pytest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["DOCKER_KEYS", "UML_KEYS", "Provenance", "describe", "distinct", "of_info", "redact", "with_guest_kernel"]

Provenance = tuple[tuple[str, str], ...]  # (key, value) pairs in the order of the keys below

# An engine reached through the Docker API (Docker or Podman): as the engine reports itself.
DOCKER_KEYS = ("backend", "engine", "address", "version", "api", "runtime", "os", "kernel", "failover")
# The User-mode Linux kernel that booted the cell (ipv6-boot-disabled).
UML_KEYS = ("backend", "uml", "uml_version", "guest_kernel")
KEYS = tuple(dict.fromkeys((*DOCKER_KEYS, *UML_KEYS)))


def redact(address: str) -> str:
    """An engine address without credentials: ``tcp://user:secret@host`` becomes ``tcp://user@host``.

    The text after the address (`` (from DOCKER_HOST)``) is kept as it is.
    """
    return re.sub(r"^([a-z+]+://)([^/@\s:]*):[^/@\s]*@", r"\1\2@", address)


def of_info(info: Mapping[str, str], *, failover: str | None = None) -> Provenance:
    """A cell's provenance from its backend's ``info()`` (see the backends' ``info``): only the keys
    above, with the engine's address as given (credentials removed) and ``failover`` when this
    process's own engine did not answer and another one ran the cell."""
    if "uml" in info:
        wanted = {"backend": "uml", **{k: info[k] for k in UML_KEYS if info.get(k)}}
    else:
        address = redact(str(info.get("url") or info.get("address") or ""))
        wanted = {"backend": "docker", **{k: str(info[k]) for k in DOCKER_KEYS if info.get(k)}, "address": address}
        if failover:
            wanted["failover"] = failover
    return tuple((k, wanted[k]) for k in KEYS if k in wanted)


def with_guest_kernel(provenance: Provenance, facts: Iterable[tuple[str, str]]) -> Provenance:
    """A User-mode Linux cell's provenance with the kernel release its shim attested (``kernel release``)."""
    release = dict(facts).get("kernel release", "")
    if dict(provenance).get("backend") != "uml" or release in ("", "unknown"):
        return provenance
    merged = {**dict(provenance), "guest_kernel": release}
    return tuple((k, merged[k]) for k in KEYS if k in merged)


def describe(provenance: Mapping[str, str] | Provenance) -> str:
    """One line: ``Docker 20.10.24 (API 1.41) at unix:///var/run/docker.sock, runtime runc, kernel ... (OS)``."""
    p = dict(provenance)
    if p.get("backend") == "uml":
        text = f"User-mode Linux {p.get('uml_version', '?')} ({p.get('uml', '?')})"
        return text + (f", guest kernel {p['guest_kernel']}" if p.get("guest_kernel") else "")
    if not p:
        return "not recorded"
    text = (f"{p.get('engine', '?')} {p.get('version', '?')} (API {p.get('api', '?')}) at {p.get('address', '?')}, "
            f"runtime {p.get('runtime', '?')}, kernel {p.get('kernel', '?')} ({p.get('os', '?')})")
    return text + (f"; failed over: {p['failover']}" if p.get("failover") else "")


def _engine_only(provenance: Provenance) -> Provenance:
    return tuple((k, v) for k, v in provenance if k != "failover")


def distinct(provenances: Iterable[Provenance]) -> list[tuple[Provenance, int]]:
    """Each engine or kernel that ran cells (a fail-over note does not make another), with its count of cells,
    in order of first appearance."""
    counts: dict[Provenance, int] = {}
    for p in provenances:
        if p:
            key = _engine_only(p)
            counts[key] = counts.get(key, 0) + 1
    return list(counts.items())
