"""The User-mode Linux backend: a target under a real Linux kernel booted with ``ipv6.disable=1``.

The kernel (Debian's ``user-mode-linux``) runs as an ordinary process of this user,
in a process group of its own, killed when the run ends. A watchdog shell leads the
group and holds the read end of a pipe only this process can write to: when this
process dies however it dies (SIGKILL, a killed xdist worker), the pipe reaches EOF
and the watchdog kills the kernel's process group (UML makes one of its own with
``setsid``: the kernel and its helper processes) and then its own. Its root filesystem is the image's, exported
from the engine and cached (:mod:`.uml_rootfs`); its init (``probe/uml_init.sh``)
runs the same shim and watcher as every backend. Two channels, as with Docker:

* the first console (the kernel's standard output): the target's output, after the
  shim's attestation lines tagged with the nonce;
* the second console, on a pipe the target's output never reaches: the watcher's
  records, then ``exit CODE`` when the target exits, each line tagged with a secret
  that only init holds (a root target could make the console's device, not the tag).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import platform
import queue
import re
import secrets
import select
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..diagnose import error_line, oom_error_line
from ..model import Attestation, Family, Outcome, Verdict
from ..probe.report import STALL_S, SealedChannel, ShimReport, WatchReport, is_shim_line
from ..spec import TMPFS_DEFAULT_FLAGS
from . import EngineError, Launch, UnknownUser
from .logtext import LOG_TAIL_LINES, clean
from .uml_rootfs import PROBE_DIR, cell_archive, cell_initramfs, elf32_programs, ensure_rootfs, kernel_version

# What the kernel skips at boot, none of it networking: the raid6 and xor benchmarks, zswap, the
# stream parser, the JFS filesystem (a module a Debian host loads only to mount JFS), the crypto
# self-tests (cryptomgr.notests: they took 27-66 ms of the boot, measured with initcall_debug), and
# the legacy ptys. The raid6 benchmark's initcall is raid6_select_algo in 6.1 and raid6_init in 7.2, where it took
# ~0.85 of a 1.1 CPU-s boot; a name the kernel does not have is ignored.
FAST_BOOT = ("initcall_blacklist=raid6_select_algo,raid6_init,init_zswap,strp_dev_init,init_jfs_fs",
             "cryptomgr.notests=1", "pty.legacy_count=0")
INSTALL_HINT = "apt-get install user-mode-linux"
# What a kernel that cannot hand a guest program its FPU state says, and what to do: Debian 12's and 13's UML (6.1,
# 6.12) give the host a fixed-size buffer, which a host whose CPU has a larger one (AVX-512 with AMX) refuses.
FPU_REFUSED = "ptrace set fp regs failed"
FPU_HINT = ("the host refuses its fixed-size FPU buffer (a CPU with AVX-512 and AMX); boot a newer kernel with "
            "--ipv6-uml=PATH (Debian unstable's user-mode-linux 7.2 runs there: .ci/setup unpacks it)")
_KERNEL_MEM_MB = 96  # the kernel and the unpacked initramfs need this beyond the target's memory
# Leads a process group: starts the kernel, says its pid, then waits for EOF on its stdin (this process
# died, or the run ended) and kills the kernel's group (the kernel calls setsid) and its own. Its stderr
# is the write end of the private channel: the kernel gets it as fd 3 (its second console) and its own
# stderr on the first console's pipe, and the watchdog closes both, so that the private channel ends
# when the kernel does however it ends (a kernel that dies is an error, not the target's timeout).
_WATCHDOG = (
    '"$@" 3>&2 2>&1 </dev/null & echo "ipv6compat-kernel $!"; exec >/dev/null 2>&1; read -r _ || true; '
    'kill -9 -$! $! 0'
)


def find_kernel(given: str | None, flag: str = "--ipv6-uml") -> Path:
    """The ``linux`` binary to boot, or :class:`EngineError` saying how to install it.

    ``flag`` names the option ``given`` came from in the message (``prepare`` has ``--uml``)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "amd64"):
        raise EngineError(f"User-mode Linux runs on Linux x86-64 only, not {platform.system()} "
                          f"{platform.machine()}: the ipv6-boot-disabled stack is unavailable here")
    name = given or "linux"
    found = shutil.which(name) if "/" not in name else (name if os.access(name, os.X_OK) else None)
    if found is None:
        where = f"{flag}={given}" if given else "'linux' on PATH"
        raise EngineError(f"User-mode Linux kernel not found ({where}): {INSTALL_HINT}")
    return Path(found)


def memory_mb(text: str) -> int:
    """``512m``, ``1g``, ``262144k`` or bytes, in MiB (at least 1)."""
    found = re.fullmatch(r"(\d+)([bkmg]?)", text.strip().lower())
    if not found:
        raise EngineError(f"memory limit {text!r} is not a size such as 512m")
    scale = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[found[2]]
    return max(1, int(found[1]) * scale >> 20)


@dataclass
class UmlBackend:
    """Boots one kernel per observation; images come from (and are configured by) the Docker backend."""

    docker: Any  # the DockerBackend: image configs and root filesystem exports
    kernel: Path
    cache_dir: Path
    probe_dir: Path
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    tables: bool = False  # tests' ground truth: init sends the kernel's /proc/net tables (UmlRun.tables)
    _started: int = 0

    def info(self) -> dict[str, str]:
        """The kernel that boots cells: its path and version (``linux --version``), for the header and each
        cell's provenance."""
        return {"uml": str(self.kernel), "uml_version": kernel_version(self.kernel)}

    def image_config(self, image: str) -> dict[str, Any]:
        return dict(self.docker.image_config(image))

    def prepare(self, image: str) -> Path:
        """Export and cache the image's root filesystem (a second call prepares nothing)."""
        return ensure_rootfs(self.docker.client, image, self.cache_dir, self.probe_dir, self.kernel,
                             self.docker.labels)

    @property
    def _runs(self) -> Path:
        return self.cache_dir / "uml" / "run"

    def sweep(self) -> list[str]:
        """Remove the run directories of dead sessions (their kernels died with them)."""
        from .docker_api import process_start

        removed = []
        for path in self._runs.glob("*-*-*") if self._runs.is_dir() else []:
            pid, start, _ = path.name.split("-", 2)
            if pid.isdigit() and process_start(int(pid)) != start:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return removed

    def remove_session(self, keep: Collection[str] = ()) -> int:
        return 0  # every run removes its own kernel and directory when it ends

    @contextlib.contextmanager
    def run(self, launch: Launch) -> Iterator[UmlRun]:
        from .docker_api import process_start

        spec = launch.run
        config = self.image_config(launch.image)
        rootfs = self.prepare(launch.image)
        self._started += 1
        name = launch.name or f"ipv6compat-uml-{self.session}-{self._started}"
        nonce, tag, channel = secrets.token_hex(12), secrets.token_hex(12), SealedChannel()
        words = _words(launch, config, nonce)
        elf32 = elf32_programs(rootfs)
        program = _program(words, elf32)
        if program is not None:
            raise EngineError(f"{program} is a 32-bit x86 program: this User-mode Linux kernel cannot run 32-bit "
                              "binaries (Debian's is built without IA32 emulation)")
        settings = _settings(launch, nonce, tag, channel, self.tables)
        tail = cell_archive(settings, words, spec.mounts, _hosts(spec.extra_hosts, launch.stack.pod_addresses()))
        mem = memory_mb(spec.memory) + _KERNEL_MEM_MB + (rootfs.stat().st_size >> 19)
        rundir = self._runs / f"{os.getpid()}-{process_start(os.getpid())}-{self.session}{self._started}"
        rundir.mkdir(parents=True)
        proc: subprocess.Popen[bytes] | None = None
        run: UmlRun | None = None
        read_end, write_end = os.pipe()
        alive_read, alive_write = os.pipe()  # the watchdog's: EOF when this process is gone
        try:
            with cell_initramfs(rootfs, tail) as initrd:
                argv = [str(self.kernel), f"mem={mem}M", f"initrd=/proc/self/fd/{initrd}", f"rdinit={PROBE_DIR}/init",
                        *launch.stack.kernel_args, *FAST_BOOT, "quiet", f"uml_dir={rundir}", f"umid={name}",
                        "con0=null,fd:1", "con1=null,fd:3", "con=null", "ssl=null"]  # fd 3: the watchdog's 3>&2
                # (initrd is never fd 3: the pipes above were opened first and take the lowest free numbers)
                proc = subprocess.Popen(["/bin/sh", "-c", _WATCHDOG, "ipv6compat-watchdog", *argv], stdin=alive_read,
                                        stdout=subprocess.PIPE, stderr=write_end,
                                        pass_fds=(initrd,), start_new_session=True)
                for fd in (write_end, alive_read):
                    os.close(fd)
                write_end = alive_read = -1
                run = UmlRun(proc, os.fdopen(read_end, "rb"), name, launch, nonce, tag, rundir, channel, self.kernel)
                run.elf32 = elf32
                read_end = -1
                yield run
        finally:
            for fd in (read_end, write_end, alive_read, alive_write):
                if fd >= 0:
                    os.close(fd)
            if run is not None:
                run.closing()  # its kernel is killed here: no second kill from the run
            if proc is not None:
                for group in (run.pid if run is not None else None, proc.pid):
                    if group:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(group, signal.SIGKILL)
                proc.wait()
            if run is not None:
                run.close()
                if run.keep:
                    run.kept = self._keep(run, rootfs)
            shutil.rmtree(rundir, ignore_errors=True)

    def _keep(self, run: UmlRun, rootfs: Path) -> Path:
        """What can outlive a kernel: its console (the boot and the target's output), beside the image's root."""
        kept = self.cache_dir / "uml" / "kept" / run.name
        kept.mkdir(parents=True, exist_ok=True)
        (kept / "console.log").write_text(run.console_text() + "\n", encoding="utf-8")
        (kept / "rootfs").unlink(missing_ok=True)
        (kept / "rootfs").symlink_to(rootfs)  # the cell's image, as a cpio archive (shared, cached by image id)
        return kept


_CPU_PERIOD_US = 100_000  # the kernel is one CPU: a cell's cpus of 1 or more is all of it


def _settings(launch: Launch, nonce: str, tag: str, channel: SealedChannel, tables: bool) -> dict[str, str]:
    spec = launch.run
    tmpfs = " ".join(f"{path}:{_tmpfs_options(opts) or 'mode=1777'}" for path, opts in spec.tmpfs)
    return {"NONCE": nonce, "TAG": tag, "KEY": channel.key.hex(), "TABLES": "1" if tables else "0",
            "READ_ONLY": "1" if spec.read_only else "0", "POD": ",".join(launch.stack.pod_networks()) or "-",
            "TMPFS": tmpfs, "PIDS": str(spec.pids), "MEMORY": f"{memory_mb(spec.memory)}M",
            "CPU_MAX": "max" if spec.cpus >= 1 else f"{round(spec.cpus * _CPU_PERIOD_US)} {_CPU_PERIOD_US}"}


def _tmpfs_options(options: str) -> str:
    """The options umlsetup passes to mount(2), without the flags that name the kernel's default
    (``exec``, ``suid`` ...): umlsetup would give them to tmpfs as data, which refuses them."""
    return ",".join(o for o in (w.strip() for w in options.split(",")) if o and o not in TMPFS_DEFAULT_FLAGS)


def _words(launch: Launch, config: dict[str, Any], nonce: str) -> dict[str, list[str]]:
    spec = launch.run
    env: dict[str, str] = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    for entry in config.get("Env") or []:
        key, _, value = entry.partition("=")
        env[key] = value
    user = spec.user or config.get("User") or ""
    if user in ("root", "0", "0:0"):
        user = ""
    # HOME as the engine's runtime sets it: the image's or the cell's, else the user's home from the
    # image's /etc/passwd (umlsetup --as; "/" for a uid not there), root's /root.
    env |= {"HOSTNAME": "ipv6compat"} | ({} if user else {"HOME": env.get("HOME", "/root")})
    env |= dict(launch.env)
    env |= launch.stack.pod_env()  # POD_IP, POD_IPS: set last, as podsetup sets them over the engine's environment
    argv = list(config.get("Entrypoint") or []) + list(
        spec.command if spec.command is not None else config.get("Cmd") or [])
    workdir = config.get("WorkingDir") or "/"
    words = [workdir, user, nonce, "--", *argv]
    watch = [f"{spec.settle:g}", f"{spec.hold:g}", spec.probe, spec.http_path, ",".join(spec.http_status)]
    if launch.stack.pod:  # each listener is probed over the pod address too, as in a container cell
        watch.append(",".join(launch.stack.pod_addresses()))
    return {"ENV": [f"{k}={v}" for k, v in env.items()], "EXEC": words, "WATCH": watch}


def _program(words: dict[str, list[str]], elf32: frozenset[str]) -> str | None:
    """The cell's program, as its PATH finds it in the image, if it is one of the image's 32-bit ones."""
    if not elf32 or len(words["EXEC"]) < 5:
        return None
    workdir, command = words["EXEC"][0], words["EXEC"][4]
    if "/" in command:
        candidates = [command if command.startswith("/") else f"{workdir.rstrip('/')}/{command}"]
    else:
        path = next((e[5:] for e in words["ENV"] if e.startswith("PATH=")), "")
        candidates = [f"{d.rstrip('/')}/{command}" for d in path.split(":") if d.startswith("/")]
    # Only 32-bit programs are known here: a 64-bit one of the same name earlier on PATH is not seen.
    return next((c for c in map(os.path.normpath, candidates) if c in elf32), None)


def _hosts(extra: tuple[tuple[str, str], ...], pod: tuple[str, ...] = ()) -> str:
    """The cell's /etc/hosts: the host name on each pod address (as podsetup writes it in a container cell),
    or on 127.0.1.1 without one."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{address}\tipv6compat" for address in pod or ("127.0.1.1",)]
    lines += [f"{address}\t{host}" for host, address in extra]
    return "\n".join(lines) + "\n"


_NO_EXEC = ('syntax error: unexpected "("', "Exec format error", "cannot execute binary file")


def _zombie_leader(pid: int) -> bool:
    """``pid`` has ended but is not reaped, and leads its own process group."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] in ("Z", "X") and fields[2] == str(pid)


class UmlRun:
    """A booted kernel running the target; methods block until they know (bounded by the timeout)."""

    def __init__(self, proc: subprocess.Popen[bytes], private: IO[bytes], name: str, launch: Launch,
                 nonce: str, tag: str, rundir: Path, channel: SealedChannel, kernel: Path) -> None:
        self._proc = proc
        self._kernel_path = kernel
        self._name = name
        self._rundir = rundir
        self.container_id = f"uml:{proc.pid}"
        self.launch = launch
        self.keep = False
        self.kept: Path | None = None  # where a kept run's console log went, once the kernel has ended
        self.started = time.monotonic()
        self.deadline = self.started + launch.run.timeout
        self.booted: float | None = None  # seconds from start to the init's first line
        self.shim_started: float | None = None  # ... to the shim's first line
        self._shim = ShimReport(nonce)
        self._watch = WatchReport(pod=tuple(Family(f) for f in launch.stack.pod))
        self._channel = channel
        self._last_record: float | None = None
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._attested = threading.Event()
        self._console: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._kernel: collections.deque[str] = collections.deque(maxlen=20)  # before the init's first line
        self._fpu_refused: str | None = None  # the kernel's line, when it cannot run a program on this CPU
        self._attestation: Attestation | None = None
        self._verdict: Verdict | None = None
        self._private = private
        self._tag = tag + " "
        self._kernel_pid: int | None = None
        self._pid_known = threading.Event()
        self._private_other: collections.deque[str] = collections.deque(maxlen=10)
        self._tables: dict[str, dict[str, list[str] | None]] = {}  # dump id -> file -> rows (None: absent)
        self._tables_done: list[tuple[str, dict[str, str | None]]] = []
        self._closed = False
        self.elf32: frozenset[str] = frozenset()  # the image's 32-bit programs, which this kernel cannot run
        self._threads = [self._spawn(self._read_console, "console"), self._spawn(self._read_private, "private")]

    @property
    def name(self) -> str:
        return self._name

    @property
    def mconsole(self) -> Path:
        """The kernel's management console (``uml_dir``/``umid``/mconsole), a UNIX datagram socket."""
        return self._rundir / self._name / "mconsole"

    @property
    def pid(self) -> int | None:
        """The kernel's pid, which is also its process group (the kernel makes one); None before it is known."""
        self._pid_known.wait(max(0.0, self.deadline - time.monotonic()))
        return self._kernel_pid

    def _spawn(self, target: Callable[[], None], what: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=f"ipv6compat-{what}-{self._name}", daemon=True)
        thread.start()
        return thread

    def _read_console(self) -> None:
        assert self._proc.stdout is not None
        tag = f"@@ipv6compat {self._shim.nonce} boot"
        for raw in self._proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if self._kernel_pid is None and line.startswith("ipv6compat-kernel "):
                self._kernel_pid = int(line.split()[1])
                self._pid_known.set()
                self._spawn(self._reap_helpers, "kernel")
                continue
            if FPU_REFUSED in line:
                self._fpu_refused = clean(line)  # a panic's trace follows, longer than the tail kept
            if self.booted is None:
                if tag in line:
                    self.booted = time.monotonic() - self.started
                else:
                    self._kernel.append(clean(line))
                continue
            if is_shim_line(line, self._shim.nonce):
                if self.shim_started is None:
                    self.shim_started = time.monotonic() - self.started
                self._shim.feed(line)
                if self._shim.attested:
                    self._attested.set()
            else:
                self._console.append(clean(line))
        self._attested.set()
        self._pid_known.set()

    def _reap_helpers(self) -> None:
        """When the kernel's own process ends, killed or halted, kill its helper processes too.

        They hold both consoles open, so a kernel killed from outside (or by the OOM killer) would
        leave the channels open until the cell's timeout, read as the target's ``timeout``; with the
        helpers gone the private channel ends without the target's exit, which is an error. The
        kernel stays a zombie until the watchdog ends (it waits on its stdin, not on the kernel), so
        its pid, which is also its process group, is not reused before this kill.
        """
        pid = self._kernel_pid
        assert pid is not None
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return  # already reaped: the run has ended
        try:
            select.select([pidfd], [], [])
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if not self._closed and _zombie_leader(pid):
                    signal.pidfd_send_signal(pidfd, 0)  # ProcessLookupError once reaped: then the pid may be reused
                    os.killpg(pid, signal.SIGKILL)
        finally:
            os.close(pidfd)

    def _read_private(self) -> None:
        # close() closes the stream under this thread's read once the run has ended: that read's error is the end.
        with contextlib.suppress(OSError, ValueError):
            self._read_private_lines()
        self._events.put(("dead", None))

    def _read_private_lines(self) -> None:
        for raw in self._private:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line.startswith(self._tag):
                continue  # not init's nor the watcher's: written by someone who cannot know the tag
            line = line[len(self._tag):]
            word, _, rest = line.partition(" ")
            if word == "exit":
                self._events.put(("exit", rest.split()))
            elif word == "watch":  # the watcher's output, sealed (or anything written into its pipe)
                self._events.put(("watch", rest))
            elif word == "error":
                self._events.put(("init-error", rest))
            elif word == "table":
                self._table_row(rest)
                continue
            if word != "watch":
                self._private_other.append(clean(line))

    def _table_row(self, rest: str) -> None:
        dump, _, rest = rest.partition(" ")
        file, _, row = rest.partition(" ")
        files = self._tables.setdefault(dump, {})
        if file == "end":
            done = {name: None if rows is None else "\n".join(rows) + "\n" for name, rows in files.items()}
            self._tables_done.append((dump, done))
            del self._tables[dump]
        elif row == "absent" and file not in files:
            files[file] = None
        else:
            rows = files.setdefault(file, [])
            if rows is not None:
                rows.append(row)

    def tables(self) -> list[tuple[str, dict[str, str | None]]]:
        """With ``UmlBackend.tables``: the kernel's listener tables as init read them, raw, in the order
        they came: (``ready`` or ``tN``, {``tcp``: the text of /proc/net/tcp, ... None for an absent file}).
        ``ready``: taken when the hold was over, before the watcher's ready went out; ``tN``: every 0.2 s."""
        return list(self._tables_done)

    def attestation(self) -> Attestation:
        if self._attestation is None:
            self._attested.wait(max(0.0, self.deadline - time.monotonic()))
            if not self._shim.attested:
                unknown = next((x for x in self._console if x.startswith("unable to find ")), None)
                if unknown:
                    named = UnknownUser.find(self.launch.run.user, self.launch.image, unknown)
                    if named is not None:
                        raise named
                    raise EngineError(f"the image's user: {unknown}")
                refused = self._fpu_refused
                if refused is not None:
                    kernel = self._kernel_path
                    raise EngineError(f"User-mode Linux {kernel_version(kernel)} ({kernel}) cannot run a program on "
                                      f"this CPU ({refused.strip()}): {FPU_HINT}")
                why = "did not reach the shim within the cell's timeout" if not self._attested.is_set() \
                    else "ended before the stack could be attested"
                raise EngineError(f"the User-mode Linux kernel {why}; console:\n{self._diagnostics()}")
            self._attestation = self._shim.attestation(self.launch.stack)
        if self._shim.missing:
            raise EngineError(f"the kernel could not start the target: {self._shim.missing}")
        return self._attestation

    def verdict(self) -> Verdict:
        if self._verdict is None:
            self.attestation()
            self._verdict = self._observe()
        return self._verdict

    def _observe(self) -> Verdict:
        spec = self.launch.run
        settled_at: float | None = None
        timed_out = False  # the cell's time is up: a timeout once a record shows the watcher is still alive
        while True:
            limit = self.deadline if settled_at is None else self._watch.report_deadline(settled_at, spec.hold)
            if timed_out:
                limit = (self._last_record or time.monotonic()) + STALL_S
            stall = limit if self._last_record is None else self._last_record + STALL_S
            try:
                kind, value = self._events.get(timeout=max(0.0, min(limit, stall) - time.monotonic()))
            except queue.Empty:
                if self._last_record is not None and time.monotonic() - self._last_record >= STALL_S:
                    raise EngineError(f"the probe's watcher stopped reporting: no record for {STALL_S:g} s after "
                                      f"{self._channel.last!r} (killed or stopped with SIGSTOP by something in the "
                                      "target, or frozen); no verdict without it") from None
                if time.monotonic() < limit:
                    continue
                if settled_at is None:
                    if not self._channel.started:
                        raise EngineError(f"{self._channel.cut_short()} within the cell's timeout") from None
                    timed_out = True  # not yet: a watcher stopped less than STALL_S ago must not make a timeout
                    continue
                raise EngineError("the probe's report did not complete in time after the listeners settled") from None
            if kind == "init-error":
                raise EngineError(f"the probe could not observe the target: {value}")
            if kind == "watch":
                try:
                    record = self._channel.open(value)
                    if self._channel.started:
                        self._last_record = time.monotonic()
                    if timed_out and self._channel.started:
                        return self._make(Outcome.TIMEOUT)
                    if record is None:
                        continue
                    self._watch.feed(record)
                except ValueError as exc:  # TamperError too
                    raise EngineError(str(exc)) from None
                if self._watch.listening and settled_at is None:
                    settled_at = time.monotonic()
                elif not self._watch.listening and settled_at is not None:
                    settled_at = None  # every listener closed: the watcher waits, the run's timeout decides
                if self._watch.error:
                    why = "; a socket dump failed, so the target's listeners cannot be known" \
                        if self._watch.error.startswith("sock_diag") else ""
                    raise EngineError(f"the probe could not observe the target: {self._watch.error}{why}")
                if self._watch.ready:
                    return self._make(Outcome.UP)
            elif kind == "exit":
                verdict = self._make(Outcome.EXITED, exit_code=int(value[0]))
                if "oom" in value[1:]:
                    verdict = dataclasses.replace(verdict, error_line=oom_error_line(spec.memory))
                return verdict
            else:
                raise EngineError("the User-mode Linux kernel died before the target ended (killed, crashed, or "
                                  "halted from inside the target): no verdict; console:\n" + self._diagnostics())

    def _make(self, outcome: Outcome, *, exit_code: int | None = None) -> Verdict:
        if outcome is Outcome.EXITED:
            self._threads[0].join(2.0)  # the console's last lines: it ends when the kernel has halted
        logs = self.logs()
        if outcome is Outcome.EXITED and self.elf32:
            # A shell runs a program the kernel refused (ENOEXEC) as a script ("PROGRAM: line 1: ..."):
            # a 32-bit one, here.
            named = next((p for p in sorted(self.elf32) if f"{p}: line " in logs), None)
            if named is not None:
                raise EngineError(f"{named} is a 32-bit x86 program: this User-mode Linux kernel cannot run "
                                  "32-bit binaries (Debian's is built without IA32 emulation)")
            if any(x in logs for x in _NO_EXEC):
                some = ", ".join(sorted(self.elf32)[:3])
                raise EngineError(f"the target exited after a program could not be run, and the image has 32-bit "
                                  f"x86 programs ({some}): this User-mode Linux kernel cannot run 32-bit binaries")
        return self._watch.verdict(
            outcome,
            exit_code=exit_code,
            error_line=error_line(logs.splitlines()) if outcome is Outcome.EXITED else None,
            logs=logs,
            seconds=time.monotonic() - self.started,
        )

    def logs(self, lines: int = LOG_TAIL_LINES) -> str:
        kept = [line for line in list(self._console) if not line.startswith(("reboot: ", "kmsg_dump"))]
        return "\n".join(kept[-lines:])

    def console_text(self) -> str:
        """The kernel's lines before the init, then the target's output (never the plugin's records)."""
        return "\n".join([*self._kernel, *self._console])

    def inspection(self) -> list[str]:
        if self.kept is None:
            return ["(nothing kept: the kernel's console could not be saved)"]
        # rootfs: the image's root filesystem as the kernel got it, a cpio archive (cpio -it lists it)
        return [f"cat {self.kept}/console.log", f"ls -l {self.kept}/rootfs", f"rm -r {self.kept}"]

    def _diagnostics(self) -> str:
        lines = [*list(self._kernel)[-10:], *list(self._console)[-10:], *self._private_other]
        return "\n".join(lines) or "(nothing)"

    def closing(self) -> None:
        """The run is ending: the kernel and its group are killed by the backend from now on."""
        self._closed = True

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._private.close()
        for thread in self._threads:
            thread.join(2.0)

