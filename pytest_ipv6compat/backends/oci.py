"""The OCI backend: a target started by crun (or runc) from a bundle, without the engine on the cell's path.

The engine only exports each image once (:func:`.uml_rootfs._export`, as for User-mode Linux);
the export is unpacked into ``CACHE/oci/images/ID/rootfs``, a read-only lower layer. Each cell
gets a directory under ``CACHE/oci/run/PID-START-SESSION/`` with its overlay's upper and work
directories, ``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf`` and ``config.json``
(:mod:`.oci_bundle`). The overlay is mounted by the probe's ``ocistart`` (probe/oci_start.c) in a private
mount namespace of its own (so no mount outlives the cell), where this host's hybrid cgroup layout is
also fixed for crun: crun 1.8 refuses cgroup v1 with a cgroup2 mount beside it, so ocistart
unmounts ``/sys/fs/cgroup/unified`` in that namespace only; then it execs the runtime.

Observation is the engine backend's (:class:`.oci_run.OciRun` is a :class:`.docker_run.DockerRun`):
the same shim, the same watcher with its sealed channel (started in the container by the probe's ``ocienter`` as
``crun exec`` would start it, by ``runc exec`` under runc; its output read from that process's pipe),
the same parser; the exit code comes from ``crun run`` in the foreground, the OOM kill from the
cell's own memory cgroup. Every cell is removed when it ends; a per-session guard (it reads a pipe
only this process holds) removes what is left if the process is killed, and :meth:`OciBackend.sweep`
removes what dead sessions left, by the same liveness rule as the engine backend.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..probe.report import WATCH_GROUP
from ..spec import PROBE_MOUNT
from . import EngineError, Launch
from .oci_bundle import DEFAULT_PATH, config, dumps, hosts_text, resolv_text, resolve_user
from .oci_run import STOP_S, OciRun
from .oci_seccomp import ANNOTATION, SeccompError, annotation, linked_alike
from .pod import pod_entry
from .uml_rootfs import _export

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
HYBRID_V2 = CGROUP_ROOT / "unified"  # the cgroup2 mount of a hybrid layout, which crun 1.8 refuses
KEPT_HOURS = 24
CRUN_RUNDIR = "/run/crun"  # where crun keeps its state when its --version does not say
# The session's guard: it reads its pipe until the session ends. A session that ended cleanly has removed
# its cells and says "ended" (nothing to reap: no Python started, ~0.9 s of CPU and of the run's end saved);
# EOF without it (the process was killed) starts the reaper.
_GUARD = ('read -r said || true; [ "$said" = ended ] && exit 0; '
          'exec "$0" -m pytest_ipv6compat.backends.oci reap "$1" "$2"')


@dataclass(frozen=True)
class Runtime:
    name: str  # crun or runc
    path: str
    version: str
    rundir: str = CRUN_RUNDIR  # crun's state directory (``crun --version``'s ``rundir:``): RUNDIR/ID/seccomp.bpf

    @property
    def hide(self) -> str:
        """The cgroup2 mount ocistart hides (crun on a hybrid layout), or ''."""
        return str(HYBRID_V2) if self.name == "crun" and _is_hybrid() else ""  # ocistart's HIDE


def _is_hybrid() -> bool:
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        return False
    kinds = {line.split()[1]: line.split()[2] for line in mounts.splitlines() if len(line.split()) > 2}
    return kinds.get(str(HYBRID_V2)) == "cgroup2" and "cgroup" in kinds.values()


def find_runtime() -> Runtime | None:
    """crun, else runc, from PATH (and /usr/sbin, where Debian puts runc); None if neither is there."""
    for name in ("crun", "runc"):
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
        if path:
            try:
                out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
                version = out.stdout.split("\n", 1)[0].split()[-1] if out.stdout.strip() else "?"
            except (OSError, subprocess.TimeoutExpired):
                continue
            rundir = next((line.split(":", 1)[1].strip() for line in out.stdout.splitlines()
                           if line.startswith("rundir:")), CRUN_RUNDIR)
            return Runtime(name, path, version, rundir)
    return None


def unavailable_reason(engine_local: bool) -> str | None:
    """Why this host cannot run the oci backend (one clause), or None."""
    if os.geteuid() != 0:
        return "it needs root (the runtime creates namespaces, cgroups and an overlay mount)"
    if not engine_local:
        return "it needs a local engine to export images (remote engines keep --ipv6-backend=engine)"
    if find_runtime() is None:
        return "neither crun nor runc is installed (apt-get install crun)"
    return None


def _hierarchies() -> list[Path]:
    """Every cgroup hierarchy's mount point: v1 controllers and a cgroup2 mount (runc makes its cgroups in
    both on a hybrid layout; crun, which runs without the cgroup2 mount, in v1 only)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    return [Path(line.split()[1]) for line in mounts if len(line.split()) > 2 and line.split()[2] in ("cgroup",
                                                                                                       "cgroup2")]


def _remove_cgroups(relative: str, leaves: tuple[str, ...] = ()) -> None:
    """Remove ``relative`` (and everything under it) in every hierarchy; its processes are gone.

    ``leaves``: the directories expected under it (a cell's: the container's ``c``), removed first by name;
    only what is still there then is looked for (listing a cgroup directory reads all its control files)."""
    for hierarchy in _hierarchies():
        top = hierarchy / relative.strip("/")
        for leaf in (*leaves, ""):  # top / "" is top
            with contextlib.suppress(OSError):  # absent, or something else under it: found below
                os.rmdir(top / leaf)
        if not top.is_dir():
            continue
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _kill_cgroup(relative: str) -> int:
    """SIGKILL every process of the cgroup ``relative`` (a container's), as ``crun kill`` would its init (whose
    end ends the container's pid namespace), without starting the runtime; how many were signalled.

    Each process is pinned by a pidfd, then its membership is read from /proc and the pidfd signalled only if
    it still names a live process: then /proc named that process too, so a pid reused meanwhile is never hit.
    0 (nothing signalled: no such cgroup, no pidfd, or no process in it yet) leaves it to the runtime."""
    procs = next((h / relative / "cgroup.procs" for h in _hierarchies() if (h / relative / "cgroup.procs").is_file()),
                 None)
    if procs is None:
        return 0
    try:
        pids = [int(word) for word in procs.read_text().split()]
    except (OSError, ValueError):
        return 0
    want = "/" + relative.strip("/")
    killed = 0
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue  # gone (or no pidfd on this kernel)
        try:
            paths = [line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                     if line.count(":") >= 2]
            if any(path == want or path.startswith(want + "/") for path in paths):
                signal.pidfd_send_signal(fd, 0)  # still the process /proc was read for
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                killed += 1
        except OSError:
            pass  # it ended meanwhile
        finally:
            os.close(fd)
    return killed


def _ctl(runtime: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([runtime, *args], capture_output=True, timeout=30, check=False)


def reap(session_dir: Path, runtime: str) -> list[str]:
    """Kill and delete every container of a session's directory, remove its cgroups and the directory."""
    removed = []
    cells = [p for p in session_dir.iterdir() if p.is_dir()] if session_dir.is_dir() else []
    for cell in cells:
        _ctl(runtime, "kill", cell.name, "KILL")
    for cell in cells:
        until = time.monotonic() + STOP_S
        while _ctl(runtime, "state", cell.name).returncode == 0 and time.monotonic() < until:
            time.sleep(0.05)  # its `run` deletes it once the target has ended
        _ctl(runtime, "delete", "-f", cell.name)
        removed.append(cell.name)
    session = session_dir.name.split("-", 2)[-1]
    _remove_cgroups(f"ipv6compat/{session}")
    shutil.rmtree(session_dir, ignore_errors=True)
    return removed


def process_start(pid: int) -> str:
    from .docker_api import process_start as start

    return start(pid)


@dataclass
class OciBackend:
    """Cells started by an OCI runtime; images (and their configs) come from the local engine."""

    docker: Any  # the DockerBackend: image configs and exports
    cache_dir: Path
    probe_dir: Path
    runtime: Runtime
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _started: int = 0
    _guard: subprocess.Popen[bytes] | None = None
    _guard_pipe: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rootfs: dict[str, Path] = field(default_factory=dict)  # image -> its root filesystem, for this session
    # crun: each cell's seccomp program compiled here once per profile and passed as run.oci.seccomp_bpf_data
    # (:mod:`.oci_seccomp`) rather than compiled by crun at every start; False: crun compiles (the tests' ground truth)
    precompile_seccomp: bool = True
    _seccomp_said: set[str] = field(default_factory=set)

    @property
    def root(self) -> Path:
        return self.cache_dir / "oci"

    @property
    def session_dir(self) -> Path:
        return self.root / "run" / f"{os.getpid()}-{process_start(os.getpid())}-{self.session}"

    def info(self) -> dict[str, str]:
        engine = self.docker.info()
        return {"engine": "OCI runtime", "version": self.runtime.version, "runtime": self.runtime.path,
                "address": "local (--ipv6-backend=oci)", "os": engine.get("os", "?"),
                "kernel": engine.get("kernel", "?")}

    def image_config(self, image: str) -> dict[str, Any]:
        return dict(self.docker.image_config(image))

    # ------------------------------------------------------------ what is cached

    def prepare(self, image: str) -> Path:
        """The image's root filesystem, exported once through the engine and unpacked (cached by image id).

        The image's id is looked up once per session, as its config is (the engine backend's ``image_config``):
        the root filesystem and the config a cell runs with are of the same image throughout the session."""
        known = self._rootfs.get(image)
        if known is not None and known.is_dir():
            return known
        rootfs = self._prepare(image)
        self._rootfs[image] = rootfs
        return rootfs

    def _prepare(self, image: str) -> Path:
        try:
            image_id = str(self.docker.client.images.get(image).id).removeprefix("sha256:")
        except Exception as exc:  # noqa: BLE001 - any engine failure is one line
            raise EngineError(f"cannot inspect image {image!r} for the oci backend: {exc}") from None
        dest = self.root / "images" / image_id[:16]
        if (dest / "rootfs").is_dir():
            return dest / "rootfs"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".unpack-"))
        try:
            with tempfile.TemporaryFile(dir=dest.parent) as exported:
                _export(self.docker.client, image, exported, self.docker.labels)
                exported.seek(0)
                (tmp / "rootfs").mkdir()
                _unpack(exported, tmp / "rootfs")
            try:
                tmp.rename(dest)
            except OSError:  # another process unpacked it first
                if not (dest / "rootfs").is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest / "rootfs"

    @functools.cached_property
    def probe(self) -> Path:
        """The probe as the engine's volume ships it: the watcher setgid to WATCH_GROUP."""
        dest = self.root / self.probe_dir.name
        if not dest.is_dir():
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".probe-"))
            for path in self.probe_dir.iterdir():
                if path.is_file():
                    shutil.copy2(path, tmp / path.name)
                    mode = path.stat().st_mode & 0o7777 | 0o444
                    if mode & 0o2000:
                        os.chown(tmp / path.name, 0, WATCH_GROUP)
                    os.chmod(tmp / path.name, mode)
            tmp.chmod(0o755)
            try:
                tmp.rename(dest)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        return dest

    # ------------------------------------------------------------ clean-up

    def _ensure_guard(self) -> None:
        with self._lock:
            if self._guard is not None:
                return
            self.session_dir.mkdir(parents=True, exist_ok=True)
            read_end, self._guard_pipe = os.pipe()
            try:
                self._guard = subprocess.Popen(
                    ["/bin/sh", "-c", _GUARD, sys.executable, str(self.session_dir), self.runtime.path],
                    stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            finally:
                os.close(read_end)

    def sweep(self) -> list[str]:
        """Remove what dead sessions on this host left (containers, cgroups, overlays' directories)."""
        removed: list[str] = []
        runs = self.root / "run"
        for path in runs.glob("*-*-*") if runs.is_dir() else []:
            pid, start, _ = path.name.split("-", 2)
            if pid.isdigit() and process_start(int(pid)) == start:
                continue  # its session is alive
            removed += reap(path, self.runtime.path)
        kept = self.root / "kept"
        for path in kept.iterdir() if kept.is_dir() else []:
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > KEPT_HOURS * 3600:
                    shutil.rmtree(path, ignore_errors=True)
        return removed

    def remove_session(self, keep: Collection[str] = ()) -> int:
        """Remove what this session still has (every cell removes its own when it ends), end the guard."""
        removed = len(reap(self.session_dir, self.runtime.path)) if self.session_dir.is_dir() else 0
        with self._lock:
            if self._guard_pipe >= 0:
                with contextlib.suppress(OSError):  # a guard already gone: nothing to tell
                    os.write(self._guard_pipe, b"ended\n")  # all is removed: the guard ends without reaping
                os.close(self._guard_pipe)
                self._guard_pipe = -1
            if self._guard is not None:
                try:
                    self._guard.wait(30)
                except subprocess.TimeoutExpired:
                    self._guard.kill()
                    self._guard.wait()
                self._guard = None
        return removed

    # ------------------------------------------------------------ one cell

    @contextlib.contextmanager
    def run(self, launch: Launch) -> Iterator[OciRun]:
        spec = launch.run
        image_config = self.image_config(launch.image)
        lower = self.prepare(launch.image)
        passwd, group = _read(lower / "etc/passwd"), _read(lower / "etc/group")
        user = resolve_user(spec.user or str(image_config.get("User") or ""), launch.image, passwd, group)
        self._ensure_guard()
        with self._lock:
            self._started += 1
            number = self._started
        cid = f"ipv6compat-{self.session}-{number}"
        name = launch.name or cid
        nonce = secrets.token_hex(12)
        # As the engine backend: a pod address starts the container as root with CAP_NET_ADMIN, running podsetup,
        # which takes the cell's user (``user``, as the watcher runs) before the shim.
        start, start_as, cap_add = pod_entry(launch, image_config, nonce)
        process_user = resolve_user(start_as, launch.image, passwd, group) if start_as == "0" else user
        hostname = secrets.token_hex(6)
        env = {"PATH": DEFAULT_PATH}
        for entry in image_config.get("Env") or []:
            key, _, value = str(entry).partition("=")
            env[key] = value
        env = {"PATH": env.pop("PATH"), "HOSTNAME": hostname, **env}
        env.setdefault("HOME", process_user.home)  # the engine's: the user it starts (podsetup --home: the cell's)
        env |= dict(launch.env)
        argv = list(image_config.get("Entrypoint") or [])
        argv += list(spec.command if spec.command is not None else image_config.get("Cmd") or [])
        workdir = str(image_config.get("WorkingDir") or "/")
        cell = self.session_dir / cid
        memory_cgroup = CGROUP_ROOT / "memory" / "ipv6compat" / self.session / str(number)
        container_cgroup = f"ipv6compat/{self.session}/{number}/c"  # the runtime's, in every hierarchy it uses
        proc: subprocess.Popen[bytes] | None = None
        run: OciRun | None = None
        try:
            for sub in ("upper", "work", "rootfs"):
                (cell / sub).mkdir(parents=True)
            if not (lower / workdir.lstrip("/")).exists():
                (cell / "upper" / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
            files = {"/etc/resolv.conf": resolv_text(_read(Path("/etc/resolv.conf"))),
                     "/etc/hostname": hostname + "\n", "/etc/hosts": hosts_text(spec.extra_hosts)}
            paths = {}
            for path, text in files.items():
                (cell / Path(path).name).write_text(text)
                paths[path] = str(cell / Path(path).name)
            cfg = config(stack=launch.stack, run=spec, argv=[*start, *argv], env=env, user=process_user,
                         workdir=workdir, hostname=hostname, files=paths, probe=str(self.probe),
                         cgroup=f"/{container_cgroup}", cap_add=cap_add)
            data = self._seccomp_annotation(cfg["linux"]["seccomp"])
            if data is not None:
                cfg["annotations"] = {ANNOTATION: data}
            if spec.read_only:
                for mount in cfg["mounts"]:
                    if mount["destination"] in files:
                        mount["options"][-1] = "ro"
            (cell / "config.json").write_text(dumps(cfg))
            _memory_bound(memory_cgroup, spec.memory)
            # In a mount namespace of its own: the overlay, the cgroup2 mount hidden for crun, then `RUNTIME run`
            # in the foreground (its exit status is the target's).
            proc = subprocess.Popen(
                [str(self.probe / "ocistart"), str(cell), str(lower), self.runtime.hide, self.runtime.path, cid],
                env={"PATH": os.environ.get("PATH", DEFAULT_PATH)}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True)
            run = OciRun(proc, self.runtime.path, cid, name, launch, nonce, user=(user.uid, user.gid),
                         memory_cgroup=memory_cgroup, reaper=self.probe / "reap",
                         enter=self._enter(container_cgroup, cid, cfg["process"]["capabilities"]))
            yield run
        finally:
            if proc is not None:
                if proc.poll() is None and not _kill_cgroup(container_cgroup):
                    _ctl(self.runtime.path, "kill", cid, "KILL")
                try:
                    proc.wait(STOP_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    _ctl(self.runtime.path, "delete", "-f", cid)
            if run is not None:
                run.close()
                if run.keep:
                    run.kept = self._keep(run, cell)
            _remove_cgroups(f"ipv6compat/{self.session}/{number}", leaves=("c",))
            shutil.rmtree(cell, ignore_errors=True)

    def _enter(self, cgroup: str, cid: str, caps: dict[str, list[str]]) -> list[str] | None:
        """How the watcher is started in a crun cell's container: the probe's ``ocienter`` (probe/oci_enter.c) does
        what ``crun exec`` does, from the container's cgroup, seccomp program (crun's stored copy, the file its exec
        loads) and capabilities, without starting crun (~25 ms a cell). None for runc, whose exec compiles and loads
        its own seccomp program (:class:`.oci_run.OciRun` runs ``runc exec`` then)."""
        if self.runtime.name != "crun":
            return None
        sets = "/".join(",".join(caps.get(kind, [])) for kind in ("bounding", "effective", "permitted"))
        return [str(self.probe / "ocienter"), cgroup, f"{self.runtime.rundir}/{cid}/seccomp.bpf", sets]

    def _seccomp_annotation(self, profile: dict[str, Any]) -> str | None:
        """The compiled profile for crun's ``run.oci.seccomp_bpf_data``, or None: runc (which ignores it and
        compiles), turned off, a crun that does not link the library this process loads, or not compilable
        here (said once per reason; crun then compiles it as before)."""
        if self.runtime.name != "crun" or not self.precompile_seccomp:
            return None
        try:
            linked_alike(self.runtime.path)
            return annotation(profile)
        except SeccompError as exc:
            with self._lock:
                said = str(exc) in self._seccomp_said
                self._seccomp_said.add(str(exc))
            if not said:
                log.warning("oci: crun compiles the seccomp profile at every cell's start: %s", exc)
            return None

    def _keep(self, run: OciRun, cell: Path) -> Path:
        """What can outlive the cell: its output, its config.json and its writable layer."""
        kept = self.root / "kept" / run.name
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True)
        (kept / "output.log").write_text(run.logs() + "\n", encoding="utf-8")
        for sub in ("config.json", "upper"):
            with contextlib.suppress(OSError):
                shutil.move(str(cell / sub), str(kept / sub))
        return kept


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _unpack(archive: IO[bytes], dest: Path) -> None:
    """Unpack an exported root filesystem as it is (owners, modes, devices, links), without the probe's dir."""
    with tarfile.open(fileobj=archive, mode="r:") as tar:
        members = [m for m in tar if not m.name.lstrip("./").startswith(PROBE_MOUNT.lstrip("/"))]
        tar.extractall(dest, members=members, numeric_owner=True)


def _memory_bound(cgroup: Path, memory: str) -> None:
    """The cell's parent memory cgroup with its bound (no swap); the container's is made below it."""
    if not cgroup.parent.parent.parent.is_dir():  # no v1 memory hierarchy: the bound is not set
        return
    cgroup.mkdir(parents=True, exist_ok=True)
    (cgroup / "memory.limit_in_bytes").write_text(memory)
    with contextlib.suppress(OSError):  # swap accounting may be off
        (cgroup / "memory.memsw.limit_in_bytes").write_text(memory)


def main(argv: list[str]) -> int:
    """``python -m pytest_ipv6compat.backends.oci reap SESSION_DIR RUNTIME``: the guard's clean-up."""
    if len(argv) == 3 and argv[0] == "reap":
        reap(Path(argv[1]), argv[2])
        return 0
    print("usage: python -m pytest_ipv6compat.backends.oci reap SESSION_DIR RUNTIME", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
