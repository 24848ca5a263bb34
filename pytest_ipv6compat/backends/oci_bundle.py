"""An OCI bundle's ``config.json`` for one cell, as a ``--network none`` container of the engine gets it.

Pure: data in, JSON-ready data out; no runtime, no engine. What the engine backend asks Docker for
(:mod:`.docker_api`) is written out here: the namespaces of a ``--network none`` container, the
stack's sysctls and the two network sysctls Docker sets in every container, Docker's 14 default
capabilities, the project's seccomp profile (:mod:`..seccomp`) in OCI form, the default mounts with
``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf`` written as Docker writes them for
``--network none``, the probe read-only at ``/.ipv6compat``, and the cell's run settings (user,
working directory, environment, command, read-only root, tmpfs, mounts, pids, memory and CPU bounds).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..seccomp import build_profile
from ..spec import PROBE_MOUNT, RunSpec
from ..stacks import Stack
from . import UnknownUser
from .uml_rootfs import SYSCTLS

__all__ = [
    "CAPABILITIES", "DEFAULT_PATH", "ExecUser", "config", "hosts_text", "oci_seccomp", "resolv_text",
    "resolve_user", "tmpfs_options",
]  # fmt: skip

# The capabilities Docker gives an unprivileged container (20.10 and later): bounding, effective and
# permitted; none inheritable or ambient (a non-root target loses them at execve, as under Docker).
CAPABILITIES = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
                "CAP_KILL", "CAP_AUDIT_WRITE")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A --network none container's namespaces: everything but the user namespace (and the time namespace).
NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "cgroup")
# What Docker hides (masked) and makes read-only in /proc and /sys of every unprivileged container.
MASKED = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware")
READ_ONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# The devices the cgroup lets a container use (everything else: denied): null, zero, full, random, urandom,
# tty, console, ptmx, the pty slaves and tun; any device may be created (mknod), none opened.
# (type, major, minor, access): None is any; the User-mode Linux cell gets the same (uml_rootfs.device_program).
DEVICES: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"),
    ("c", 1, 8, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
    ("c", 136, None, "rwm"), ("c", 10, 200, "rwm"))
_TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev")  # what Docker gives a --tmpfs mount unless its options say
_CPU_PERIOD_US = 100_000
_ARCHES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "i686": "SCMP_ARCH_X86"}


@dataclass(frozen=True)
class ExecUser:
    """A ``user`` setting resolved against the image's ``/etc/passwd`` and ``/etc/group``."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str = "/"


def _table(text: str, fields: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= fields and not line.startswith("#"):
            rows.append(parts)
    return rows


def resolve_user(user: str, image: str, passwd: str, group: str) -> ExecUser:
    """``user`` (``name``, ``uid``, ``name:group``, ``uid:gid``; empty for root) as the runtime of an engine
    resolves it in the image; :class:`UnknownUser` (the engine's words) for a name the image does not have."""
    name, _, group_part = (user or "0").partition(":")
    users = _table(passwd, 7)
    groups = _table(group, 4)
    entry = next((row for row in users if (row[2] if name.isdigit() else row[0]) == name), None)
    if name.isdigit():
        uid = int(name)
    elif entry is None:
        words = f"unable to find user {name}: no matching entries in passwd file"
        raise UnknownUser(user, image, words, "user", name)
    else:
        uid = int(entry[2]) if entry[2].isdigit() else 0
    gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    home = entry[5] if entry is not None and entry[5] else "/"
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            found = next((row for row in groups if row[0] == group_part), None)
            if found is None:
                words = f"unable to find group {group_part}: no matching entries in group file"
                raise UnknownUser(user, image, words, "group", group_part)
            gid = int(found[2]) if found[2].isdigit() else 0
    member = entry[0] if entry is not None else None
    extra = tuple(sorted({int(row[2]) for row in groups if member and row[2].isdigit()
                          and member in row[3].split(",") and int(row[2]) != gid}))
    return ExecUser(uid, gid, extra, home)


def hosts_text(extra_hosts: Sequence[tuple[str, str]]) -> str:
    """``/etc/hosts`` as Docker writes it for a ``--network none`` container, with ``extra_hosts`` after."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
             "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
    lines += [f"{address}\t{host}" for host, address in extra_hosts]
    return "\n".join(lines) + "\n"


def resolv_text(host: str) -> str:
    """``/etc/resolv.conf`` as Docker writes it from the host's: without loopback name servers (none
    answers from another network namespace), and Google's two IPv4 servers if no server is left."""
    kept = []
    servers = 0
    for line in host.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            address = words[1].split("%")[0]
            if address.startswith("127.") or address == "::1":
                continue
            servers += 1
        kept.append(line)
    if not servers:
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(kept) + "\n"


def tmpfs_options(options: str) -> list[str]:
    """A tmpfs mount's options as Docker merges them: ``noexec,nosuid,nodev`` unless the cell's say
    ``exec``, ``suid`` or ``dev``, then the cell's own."""
    given = [o.strip() for o in options.split(",") if o.strip()]
    base = [d for d in _TMPFS_DEFAULTS if d.removeprefix("no") not in given]
    return [*base, *(o for o in given if o not in _TMPFS_DEFAULTS)]


def oci_seccomp(stack: Stack, arch: str | None = None) -> dict[str, Any]:
    """The project's seccomp profile (:func:`..seccomp.build_profile`, with the AF_INET6 rule on a stack
    that has one) in the form an OCI runtime reads: this machine's architecture and its sub-architectures."""
    profile = build_profile(inet6_errno=stack.inet6_errno)
    machine = _ARCHES.get(arch or platform.machine(), "SCMP_ARCH_X86_64")
    arches = [machine]
    for entry in profile["archMap"]:  # type: ignore[attr-defined]
        if entry["architecture"] == machine:
            arches += list(entry["subArchitectures"])
    syscalls = []
    for rule in profile["syscalls"]:  # type: ignore[attr-defined]
        out = {"names": list(rule["names"]), "action": rule["action"]}
        if "errnoRet" in rule:
            out["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            out["args"] = [dict(arg) for arg in rule["args"]]
        syscalls.append(out)
    return {"defaultAction": profile["defaultAction"], "defaultErrnoRet": profile["defaultErrnoRet"],
            "architectures": arches, "syscalls": syscalls}


def _bind(destination: str, source: str, *, read_only: bool) -> dict[str, Any]:
    options = ["rbind", "rprivate", "ro" if read_only else "rw"]
    return {"destination": destination, "type": "bind", "source": source, "options": options}


def config(*, stack: Stack, run: RunSpec, argv: Sequence[str], env: Mapping[str, str], user: ExecUser,
           workdir: str, hostname: str, files: Mapping[str, str], probe: str, cgroup: str,
           cap_add: Sequence[str] = ()) -> dict[str, Any]:
    """The cell's ``config.json``. ``files``: ``/etc/hosts`` etc. to their files on this host; ``probe``:
    the probe's directory on this host; ``cgroup``: the container's cgroup path; ``cap_add``: capabilities
    added to the defaults as the engine's ``cap_add`` names them (``NET_ADMIN``: the pod set-up's, which it
    drops before the target runs, :func:`.pod.pod_entry`). The root is ``rootfs``
    beside it (the cell's overlay). The memory bound is not here: it is set on the cell's parent cgroup,
    which outlives the container, so that the runtime's clean-up does not take the sign of an OOM kill."""
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    ]
    mounts += [_bind(path, source, read_only=False) for path, source in files.items()]
    mounts.append(_bind(PROBE_MOUNT, probe, read_only=True))
    mounts += [{"destination": path, "type": "tmpfs", "source": "tmpfs", "options": tmpfs_options(options)}
               for path, options in run.tmpfs]
    mounts += [_bind(path, source, read_only=True) for path, source in run.mounts]
    sysctls = dict(SYSCTLS) | stack.sysctls()
    resources: dict[str, Any] = {
        "devices": [{"allow": False, "access": "rwm"}]
        + [{"allow": True, "type": kind, "major": major, "minor": minor, "access": access}
           if major is not None else {"allow": True, "type": kind, "access": access}
           for kind, major, minor, access in DEVICES],
        "pids": {"limit": run.pids},
        "cpu": {"quota": round(run.cpus * _CPU_PERIOD_US), "period": _CPU_PERIOD_US},
    }
    caps = [*CAPABILITIES, *(f"CAP_{c}" for c in cap_add if f"CAP_{c}" not in CAPABILITIES)]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": user.uid, "gid": user.gid, **({"additionalGids": list(user.groups)} if user.groups
                                                          else {})},
            "args": list(argv),
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": workdir,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": False,  # as Docker: the probe's watcher is setgid (probe/watch.c)
        },
        "root": {"path": "rootfs", "readonly": run.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": kind} for kind in NAMESPACES],
            "sysctl": sysctls,
            "resources": resources,
            "cgroupsPath": cgroup,
            "seccomp": oci_seccomp(stack),
            "maskedPaths": list(MASKED),
            "readonlyPaths": list(READ_ONLY),
        },
    }


def dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))
