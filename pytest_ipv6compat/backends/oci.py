"""The OCI backend: a target started by crun (or runc) from a bundle, without the engine on the cell's path.

The engine only exports each image once (:func:`.uml_rootfs._export`, as for User-mode Linux);
the export is unpacked into ``CACHE/oci/images/ID/rootfs``, a read-only lower layer. Each cell
gets a directory under ``CACHE/oci/run/PID-START-SESSION/`` with its overlay's upper and work
directories, ``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf`` and ``config.json``
(:mod:`.oci_bundle`). The overlay is mounted by the runtime's wrapper in a private mount
namespace of its own (so no mount outlives the cell), where this host's hybrid cgroup layout is
also fixed for crun: crun 1.8 refuses cgroup v1 with a cgroup2 mount beside it, so the wrapper
unmounts ``/sys/fs/cgroup/unified`` in that namespace only.

Observation is the engine backend's (:class:`.docker_run.DockerRun`): the same shim, the same
watcher with its sealed channel (run by ``crun exec``, its output read from the exec's pipe),
the same parser; the exit code comes from ``crun run`` in the foreground, the OOM kill from the
cell's own memory cgroup. Every cell is removed when it ends; a per-session guard (it reads a pipe
only this process holds) removes what is left if the process is killed, and :meth:`OciBackend.sweep`
removes what dead sessions left, by the same liveness rule as the engine backend.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import secrets
import shutil
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

from ..model import Outcome, Verdict
from ..probe.report import WATCH_GROUP, SealedChannel, ShimReport, WatchReport, is_shim_line
from ..spec import PROBE_MOUNT
from . import EngineError, Launch
from .docker_run import DockerRun
from .logtext import LOG_TAIL_LINES, clean
from .oci_bundle import DEFAULT_PATH, config, dumps, hosts_text, resolv_text, resolve_user
from .uml_rootfs import _export

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
HYBRID_V2 = CGROUP_ROOT / "unified"  # the cgroup2 mount of a hybrid layout, which crun 1.8 refuses
KEPT_HOURS = 24
_STOP_S = 5.0  # after a kill: how long the runtime may take to end
_EXEC_RETRY_S = 2.0  # how long an exec into a running container may fail before it counts
_EXEC_RETRY_WAIT_S = 0.01
_OOM_SLACK = 65536  # a peak this close to the memory bound (bytes) is the bound reached
# The runtime's wrapper, in a mount namespace of its own: hide the cgroup2 mount (crun), mount the
# cell's overlay, run the container in the foreground (its exit status is the target's).
_WRAPPER = """set -e
[ -z "$HIDE" ] || umount -l "$HIDE"
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$1/upper,workdir=$1/work" "$1/rootfs"
exec "$RUNTIME" run --bundle "$1" "$2"
"""
# The session's guard: when the pipe on its stdin ends (this process is gone however it ended), reap.
_GUARD = 'read -r _ || true; exec "$0" -m pytest_ipv6compat.backends.oci reap "$1" "$2"'


@dataclass(frozen=True)
class Runtime:
    name: str  # crun or runc
    path: str
    version: str

    @property
    def hide(self) -> str:
        """The cgroup2 mount the wrapper hides (crun on a hybrid layout), or ''."""
        return str(HYBRID_V2) if self.name == "crun" and _is_hybrid() else ""


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
            return Runtime(name, path, version)
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


def _v1_hierarchies() -> list[Path]:
    """The cgroup v1 hierarchies' mount points (empty on a cgroup2-only host)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    return [Path(line.split()[1]) for line in mounts if len(line.split()) > 2 and line.split()[2] == "cgroup"]


def _remove_cgroups(relative: str) -> None:
    """Remove ``relative`` (and everything under it) in every v1 hierarchy; its processes are gone."""
    for hierarchy in _v1_hierarchies():
        top = hierarchy / relative.strip("/")
        if not top.is_dir():
            continue
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _ctl(runtime: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([runtime, *args], capture_output=True, timeout=30, check=False)


def reap(session_dir: Path, runtime: str) -> list[str]:
    """Kill and delete every container of a session's directory, remove its cgroups and the directory."""
    removed = []
    cells = [p for p in session_dir.iterdir() if p.is_dir()] if session_dir.is_dir() else []
    for cell in cells:
        _ctl(runtime, "kill", cell.name, "KILL")
    for cell in cells:
        until = time.monotonic() + _STOP_S
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
        """The image's root filesystem, exported once through the engine and unpacked (cached by image id)."""
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
        user = resolve_user(spec.user or str(image_config.get("User") or ""), launch.image,
                            _read(lower / "etc/passwd"), _read(lower / "etc/group"))
        self._ensure_guard()
        with self._lock:
            self._started += 1
            number = self._started
        cid = f"ipv6compat-{self.session}-{number}"
        name = launch.name or cid
        nonce = secrets.token_hex(12)
        hostname = secrets.token_hex(6)
        env = {"PATH": DEFAULT_PATH}
        for entry in image_config.get("Env") or []:
            key, _, value = str(entry).partition("=")
            env[key] = value
        env = {"PATH": env.pop("PATH"), "HOSTNAME": hostname, **env}
        env.setdefault("HOME", user.home)
        env |= dict(launch.env)
        argv = list(image_config.get("Entrypoint") or [])
        argv += list(spec.command if spec.command is not None else image_config.get("Cmd") or [])
        entry = [f"{PROBE_MOUNT}/busybox", "sh", f"{PROBE_MOUNT}/shim.sh", nonce, "--", *argv]
        workdir = str(image_config.get("WorkingDir") or "/")
        cell = self.session_dir / cid
        memory_cgroup = CGROUP_ROOT / "memory" / "ipv6compat" / self.session / str(number)
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
            cfg = config(stack=launch.stack, run=spec, argv=entry, env=env, user=user, workdir=workdir,
                         hostname=hostname, files=paths, probe=str(self.probe),
                         cgroup=f"/ipv6compat/{self.session}/{number}/c")
            if spec.read_only:
                for mount in cfg["mounts"]:
                    if mount["destination"] in files:
                        mount["options"][-1] = "ro"
            (cell / "config.json").write_text(dumps(cfg))
            _memory_bound(memory_cgroup, spec.memory)
            proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", _WRAPPER, "oci-wrapper",
                 str(cell), cid],
                env={"PATH": os.environ.get("PATH", DEFAULT_PATH), "HIDE": self.runtime.hide, "LOWER": str(lower),
                     "RUNTIME": self.runtime.path},
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            run = OciRun(proc, self.runtime, cid, name, launch, nonce, user=(user.uid, user.gid),
                         memory_cgroup=memory_cgroup)
            yield run
        finally:
            if proc is not None:
                if proc.poll() is None:
                    _ctl(self.runtime.path, "kill", cid, "KILL")
                try:
                    proc.wait(_STOP_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    _ctl(self.runtime.path, "delete", "-f", cid)
            if run is not None:
                run.close()
                if run.keep:
                    run.kept = self._keep(run, cell)
            _remove_cgroups(f"ipv6compat/{self.session}/{number}")
            shutil.rmtree(cell, ignore_errors=True)

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


class OciRun(DockerRun):
    """A target started by the runtime, observed as :class:`DockerRun` observes a container."""

    def __init__(self, proc: subprocess.Popen[bytes], runtime: Runtime, container_id: str, name: str,
                 launch: Launch, nonce: str, *, user: tuple[int, int], memory_cgroup: Path) -> None:
        import queue

        self._proc = proc
        self._runtime = runtime
        self._user = user
        self._memory_cgroup = memory_cgroup
        self.container_id = container_id
        self._name = name
        self.launch = launch
        self.keep = False
        self.kept: Path | None = None
        self._probe = PROBE_MOUNT
        self._poll_exit = False
        self._link = None
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.deadline = self.started + launch.run.timeout
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._shim = ShimReport(nonce)
        self._watch = WatchReport()
        self._channel = SealedChannel()
        self._last_record: float | None = None
        self._attested = threading.Event()
        self._closed = threading.Event()
        self._closers: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._attestation = None
        self._verdict = None
        self._tail = None
        self._settled_wall: float | None = None
        self._other: list[str] = []
        self.engine_fault: str | None = None
        self._output: collections.deque[tuple[float | None, str]] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._output_done = threading.Event()
        self._output_lock = threading.Lock()
        self._fragments: list[str] = []
        self._streams_open = 2
        self._exit_state: dict[str, Any] | None = None
        self._exec: subprocess.Popen[bytes] | None = None
        self._spawn(self._wait_for_exit, "wait")
        self._spawn(self._read_shim, "shim")
        self._spawn(self._read_errors, "stderr")

    def _wait_for_exit(self) -> None:
        code = self._proc.wait()
        oom = False
        if code == 137:  # SIGKILL: the kernel's, when the cell's memory cgroup reached its bound
            try:
                limit = int((self._memory_cgroup / "memory.limit_in_bytes").read_text())
                peak = int((self._memory_cgroup / "memory.max_usage_in_bytes").read_text())
                oom = peak >= limit - _OOM_SLACK
            except (OSError, ValueError):
                oom = False
        self._exit_state = {"Status": "exited", "ExitCode": code, "OOMKilled": oom}
        self._events.put(("exit", {"StatusCode": code, "State": dict(self._exit_state)}))

    def _read_shim(self) -> None:
        """The target's standard output: the shim's lines until it attested, then a bounded tail."""
        self._read_output(self._proc.stdout, shim=True)

    def _read_errors(self) -> None:
        self._read_output(self._proc.stderr, shim=False)

    def _read_output(self, stream: IO[bytes] | None, *, shim: bool) -> None:
        """One of the target's two streams, kept apart as the engine keeps them (a fragment without a
        newline on one is not joined to the next line of the other); fragments come last, as the engine's."""
        assert stream is not None
        pending = b""
        try:
            while True:
                chunk = os.read(stream.fileno(), 65536)
                if not chunk:
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                now = time.time()
                for raw in complete:
                    self._line(raw.decode("utf-8", "replace"), now, shim=shim)
                pending = pending[-65536:]
        except (OSError, ValueError) as exc:
            log.debug("output of %s ended: %s", self.name, exc)
        finally:
            with self._output_lock:
                if pending:
                    self._fragments.append(pending.decode("utf-8", "replace"))
                self._streams_open -= 1
                if self._streams_open == 0:
                    for fragment in self._fragments:
                        self._line(fragment, None, shim=False)
                    self._output_done.set()
            if shim:
                self._attested.set()

    def _line(self, line: str, when: float | None, *, shim: bool) -> None:
        if shim and not self._shim.attested:
            self._shim.feed(line)
            if self._shim.attested:
                self._attested.set()
        if not is_shim_line(line, self._shim.nonce):
            self._output.append((when, clean(line)))

    def _read_watcher(self) -> None:
        spec = self.launch.run
        argv = [self._runtime.path, "exec", "--user", f"{self._user[0]}:{self._user[1]}", "--env",
                self._channel.environment, self.container_id, f"{self._probe}/watch", f"{spec.settle:g}",
                f"{spec.hold:g}", spec.probe, spec.http_path, ",".join(spec.http_status)]
        self._events.put(("watch-open", None))  # from now on, the watcher must write every STALL_S
        until = time.monotonic() + _EXEC_RETRY_S
        while True:
            try:
                # The runtime's own words (an exec into a container that has just ended) on stderr: never on the
                # watcher's channel, where a line beginning "error" would be taken for an unsealed record.
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True)
            except OSError as exc:
                self._other.append(f"exec failed: {exc}")
                break
            self._exec = proc
            assert proc.stdout is not None
            assert proc.stderr is not None
            wrote = False
            with contextlib.suppress(OSError, ValueError):
                for raw in proc.stdout:
                    wrote = True
                    self._events.put(("watch", raw.decode("utf-8", "replace").rstrip("\n")))
            proc.wait()
            words: list[str] = []
            with contextlib.suppress(OSError, ValueError):
                words = [w.strip() for w in proc.stderr.read(65536).decode("utf-8", "replace").split("\n")]
            # crun writes the container's status file a moment after the target has started (and the shim
            # attested): an exec that soon fails to read it. While the container runs, try again.
            if (not wrote and proc.returncode != 0 and self._proc.poll() is None and not self._closed.is_set()
                    and time.monotonic() < until):
                time.sleep(_EXEC_RETRY_WAIT_S)
                continue
            self._other += [f"exec failed: {w}" for w in words if w][-3:]
            break
        self._events.put(("watch-end", None))

    def _state_if_exited(self) -> dict[str, Any] | None:
        if self._proc.poll() is None:
            return None
        for thread in self._threads:
            if thread.name.startswith("ipv6compat-wait-"):
                thread.join(_STOP_S)
        return dict(self._exit_state) if self._exit_state is not None else None

    def _inspect_state(self) -> dict[str, Any]:
        return self._state_if_exited() or {"Status": "running"}

    def _check_engine(self) -> None:
        return None

    def _kills_from_outside(self) -> list[str]:
        return []  # the runtime keeps no record of signals sent to a container

    def _make(self, outcome: Outcome, *, exit_code: int | None = None) -> Verdict:
        if outcome is Outcome.EXITED:
            self._output_done.wait(1.0)  # what the target wrote before it exited is still in the pipe
        return super()._make(outcome, exit_code=exit_code)

    def _timed_tail(self, lines: int = LOG_TAIL_LINES) -> list[tuple[float | None, str]]:
        return list(self._output)[-lines:]

    def inspection(self) -> list[str]:
        where = self.kept or Path("CACHE/oci/kept") / self.name
        return [f"cat {where}/output.log", f"ls -la {where}/upper", f"cat {where}/config.json", f"rm -rf {where}"]

    def rename(self, name: str) -> None:
        self._name = name

    def close(self) -> None:
        self._closed.set()
        if self._exec is not None and self._exec.poll() is None:
            with contextlib.suppress(OSError):
                self._exec.kill()
        for thread in self._threads:
            thread.join(2.0)
        if self._exec is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._exec.wait(2.0)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def main(argv: list[str]) -> int:
    """``python -m pytest_ipv6compat.backends.oci reap SESSION_DIR RUNTIME``: the guard's clean-up."""
    if len(argv) == 3 and argv[0] == "reap":
        reap(Path(argv[1]), argv[2])
        return 0
    print("usage: python -m pytest_ipv6compat.backends.oci reap SESSION_DIR RUNTIME", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
