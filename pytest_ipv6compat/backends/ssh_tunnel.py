"""An ``ssh://`` engine reached through ONE OpenSSH connection per pytest process.

docker-py's own ``ssh://`` transport opens an SSH session channel (running ``docker system
dial-stdio``) per HTTP connection in each of its per-URL pools, so a session held dozens of
channels and a stock sshd (``MaxSessions 10``) refused them. Instead, ``ssh`` forwards the
engine's unix socket to a local one (``-L LOCAL:REMOTE``) and docker-py talks ``unix://`` to
it, as to a local engine. Each HTTP connection is then one forwarding channel of that single
connection (not a session: ``MaxSessions`` does not count them), and the only session is a
guard: a small ``sh`` command that waits on its input. When this process ends normally it
disarms the guard; when the connection is cut (the server or the network gone) or this process
dies, the guard's input ends and it removes the session's containers and volumes on the
engine's host with the ``docker`` CLI there (when that is absent, the next session's sweep
does). The ssh process itself is ended by its pid; its private directory (the local socket)
is removed, and one left by a killed process is removed by the next one.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from . import EngineError

DEFAULT_SOCKET = "/var/run/docker.sock"
DIR_PREFIX = "ipv6compat-ssh-"
READY = "ipv6compat-guard-ready"
DISARM = "ipv6compat-guard-disarm"
ALIVE_S = 5  # ServerAliveInterval: a silent server is declared gone after three of these
_CLOSE_S = 10.0


@dataclass(frozen=True)
class SshAddress:
    """``ssh://[USER@]HOST[:PORT][/ENGINE/SOCKET]``; the socket defaults to /var/run/docker.sock."""

    host: str
    user: str | None = None
    port: int | None = None
    socket: str = DEFAULT_SOCKET

    @classmethod
    def parse(cls, url: str) -> SshAddress:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise EngineError("the port is not a number: use ssh://[USER@]HOST[:PORT][/ENGINE/SOCKET]") from None
        if parts.scheme != "ssh" or not parts.hostname or parts.password or parts.query or parts.fragment:
            raise EngineError("not an ssh:// engine address: use ssh://[USER@]HOST[:PORT][/ENGINE/SOCKET]")
        path = unquote(parts.path)
        return cls(parts.hostname, unquote(parts.username) if parts.username else None, port,
                   path if path not in ("", "/") else DEFAULT_SOCKET)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def ssh_command(self) -> str:
        """The plain ``ssh`` command a user runs to check the login (in hints)."""
        port = f"-p {self.port} " if self.port else ""
        return f"ssh -o BatchMode=yes {port}{self.destination} true"


def is_ssh(url: str | None) -> bool:
    return bool(url) and str(url).startswith("ssh://")


def guard_script(session: str, socket: str) -> str:
    """The remote command: say ready, wait on stdin; on anything but the disarm word, remove the session's
    containers and volumes through the engine's socket with the ``docker`` CLI there (if it has one).

    Requests already on their way when the connection was cut (a create, a volume) may still complete
    after a first look: it looks again, once a second, until two looks a second apart find nothing
    (at most 10 s)."""
    label = shlex.quote(f"label=ipv6compat.session={session}")
    host = shlex.quote(f"unix://{socket}")
    return (
        f"echo {READY}; read -r word; [ \"$word\" = {DISARM} ] && exit 0; "
        "command -v docker >/dev/null 2>&1 || exit 0; "
        f"export DOCKER_HOST={host}; i=0; "
        "while [ $i -lt 10 ]; do i=$((i+1)); "
        f"c=$(docker ps -aq --filter {label} 2>/dev/null); v=$(docker volume ls -q --filter {label} 2>/dev/null); "
        "[ -z \"$c$v\" ] && [ $i -gt 2 ] && break; "
        "for x in $c; do docker rm -fv \"$x\"; done >/dev/null 2>&1; "
        "for x in $v; do docker volume rm -f \"$x\"; done >/dev/null 2>&1; "
        "sleep 1; done; exit 0"
    )


def ssh_argv(address: SshAddress, local: Path, remote_command: str, *, connect_timeout: float,
             config: Path | None) -> list[str]:
    argv = ["ssh", "-T", "-x", "-a"]
    if config is not None:
        argv += ["-F", str(config)]
    if address.port:
        argv += ["-p", str(address.port)]
    for option in (
        "BatchMode=yes",  # never a prompt: a password or an unknown host key is an error, at once
        "ExitOnForwardFailure=yes",
        f"ConnectTimeout={max(1, round(connect_timeout))}",
        f"ServerAliveInterval={ALIVE_S}",
        "ServerAliveCountMax=3",
        "ControlMaster=no",  # our own connection: a user's ControlPersist master would outlive the session
        "ControlPath=none",
        "PermitLocalCommand=no",
        "LogLevel=INFO",  # the default: a refused forwarding channel is said at this level
    ):
        argv += ["-o", option]
    argv += ["-L", f"{local}:{address.socket}", "--", address.destination, remote_command]
    return argv


def hint(line: str, address: SshAddress) -> str:
    """The one-line advice for what ssh said."""
    low = line.lower()
    if "permission denied" in low or "too many authentication failures" in low:
        return (f"the key must log in without a prompt: `{address.ssh_command()}` must succeed (add the key to the "
                "server's authorized_keys, load it into ssh-agent, or name it in --ipv6-ssh-config)")
    if "host key" in low or "remote host identification" in low:
        return f"the server's host key is not known here: check and accept it once with `{address.ssh_command()}`"
    if "administratively prohibited" in low or "open failed" in low or "connect failed" in low:
        return (f"the server must allow forwarding to a unix socket (AllowStreamLocalForwarding yes, the default) "
                f"and {address.socket} must be the engine's socket, usable by "
                f"{address.user or 'the user'} (root, or in the docker group)")
    if "could not resolve" in low or "name or service" in low:
        return f"{address.host!r} does not resolve from here"
    return (f"is sshd running on {address.host} and reachable from here? `{address.ssh_command()}` must succeed")


class Tunnel:
    """One ``ssh -L`` connection forwarding the engine's socket to a private local one; see the module."""

    def __init__(self, url: str, *, session: str, connect_timeout: float = 10.0, config: Path | None = None) -> None:
        self.url = url
        self.address = SshAddress.parse(url)
        self.session = session
        self.connect_timeout = connect_timeout
        self.config = config
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._ended: str | None = None
        self.returncode: int | None = None  # how ssh ended, once closed: 0 when it ended by itself

    @property
    def local_socket(self) -> Path:
        assert self.dir is not None
        return self.dir / "engine.sock"

    @property
    def local_url(self) -> str:
        return f"unix://{self.local_socket}"

    def open(self) -> Tunnel:
        """Start ssh and wait (bounded) until the guard says it runs; :class:`EngineError` with ssh's line."""
        ssh = shutil.which("ssh")
        if ssh is None:
            raise EngineError("ssh:// needs OpenSSH's ssh client on PATH (apt-get install openssh-client)")
        sweep_local()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-{_start_ticks(os.getpid())}-",
                                         dir=_socket_parent()))
        argv = ssh_argv(self.address, self.local_socket, guard_script(self.session, self.address.socket),
                        connect_timeout=self.connect_timeout, config=self.config)
        argv[0] = ssh
        with (self.dir / "ssh.log").open("wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True)  # a Ctrl-C in the terminal is ours to handle
        try:
            self._wait_ready(time.monotonic() + self.connect_timeout + 5)
        except BaseException:
            self.close(disarm=False)
            raise
        return self

    def _wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        seen = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while READY.encode() not in seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EngineError(f"ssh did not log in within {self.connect_timeout:g} s; "
                                      f"Hint: {hint('', self.address)}")
                if not sel.select(timeout=left):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:  # ssh exited (or the remote shell did) before the guard ran
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(timeout=5)
                    raise EngineError(self._ssh_said())
                seen += chunk
        if not self.local_socket.exists():
            raise EngineError(f"ssh did not forward {self.address.socket}; Hint: {hint('open failed', self.address)}")

    def _ssh_said(self) -> str:
        """ssh's last meaningful line, with the hint for it."""
        line = last_line(self.dir / "ssh.log" if self.dir else None)
        code = self.proc.returncode if self.proc is not None else None
        said = line or f"ssh exited with status {code}"
        return f"{said}; Hint: {hint(line, self.address)}"

    def ended(self, wait: float = 0.0) -> str | None:
        """Why the connection is gone (one line with a hint), or None while ssh still runs (waited ``wait`` s)."""
        if self._ended is not None:
            return self._ended
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout=wait) if wait > 0 else None
        except subprocess.TimeoutExpired:
            return None
        if self.proc.poll() is None:
            return None
        self._ended = f"the SSH connection to the engine at {self.url} ended during the session: {self._ssh_said()}"
        return self._ended

    def forwarding_refused(self) -> str | None:
        """What ssh said when the server refused to open the forwarding channel (the socket path, the
        server's settings), with its hint; None when it said nothing of the kind."""
        line = last_line(self.dir / "ssh.log" if self.dir else None, pattern=r"open failed|prohibited")
        return f"{line}; Hint: {hint(line, self.address)}" if line else None

    def close(self, *, disarm: bool = True) -> None:
        """Disarm the guard (this process removed what it started), end ssh by its pid, remove the directory."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if disarm and proc.poll() is None and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.write(f"{DISARM}\n".encode())
                    proc.stdin.flush()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            try:
                proc.wait(timeout=_CLOSE_S)  # the guard exits, then ssh does
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=_CLOSE_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.returncode = proc.returncode
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def last_line(log: Path | None, pattern: str | None = None) -> str:
    """The last line of ssh's log worth showing (matching ``pattern`` if given), in one line."""
    if log is None:
        return ""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Warning: Permanently added", "**"))]
    if pattern is not None:
        lines = [line for line in lines if re.search(pattern, line)]
    return lines[-1][:300] if lines else ""


def _socket_parent() -> str:
    """A directory whose paths leave room for a socket name (at most 107 bytes)."""
    parent = tempfile.gettempdir()
    return parent if len(parent) < 60 else "/tmp"


def _start_ticks(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def sweep_local() -> list[Path]:
    """Remove the private directories (local sockets, logs) that dead processes' tunnels left."""
    removed = []
    for parent in {Path(_socket_parent()), Path("/tmp")}:
        with contextlib.suppress(OSError):
            for path in parent.glob(f"{DIR_PREFIX}*"):
                found = re.fullmatch(rf"{DIR_PREFIX}(\d+)-(\d+)-.*", path.name)
                if not found or not path.is_dir() or path.owner() != _me():
                    continue
                if _start_ticks(int(found[1])) == found[2]:
                    continue  # its process is alive
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _me() -> str:
    with contextlib.suppress(KeyError):
        return pwd.getpwuid(os.getuid()).pw_name
    return ""
