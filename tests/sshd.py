"""An OpenSSH server the tests own: on 127.0.0.1 and a free port, with its own host key, pidfile,
authorized_keys (a key made for the test) and client config; Debian's default settings otherwise.

It logs in as root and reaches the local dockerd's socket (/var/run/docker.sock), so an
``ssh://`` engine is the local engine seen through SSH; no traffic leaves loopback. The server
and every connection process it forks are ended by pid (the ones this module started and their
children), and its directory removed. Outside CI a missing ``sshd`` skips; under CI it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it; Debian's unit makes it at start too

# Debian 12's /etc/ssh/sshd_config, minus the Include, plus what makes this server the test's own.
# StrictModes is off because the files live under /var/tmp (world-writable), which it refuses.
CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_ed25519
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
StrictModes no
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel {log_level}
{extra}
"""


@dataclass
class Sshd:
    """A running test sshd: its address for ``ssh://`` and the client config that reaches it."""

    dir: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    @property
    def client_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    def pids(self) -> list[int]:
        """The server and every process below it (connections, their sessions), by walking /proc."""
        return [self.proc.pid, *descendants(self.proc.pid)] if self.proc.poll() is None else descendants(self.proc.pid)

    def engine_connections(self, socket_path: str = "/var/run/docker.sock") -> int:
        """How many connections the server side holds open to the engine's socket: one per open channel, whether
        forwarded (sshd connects it) or a ``docker system dial-stdio`` session (its process connects it).
        Counted from the kernel's socket table, not from anything the client says."""
        peers = set()
        listing = subprocess.run(["ss", "-xn"], capture_output=True, text=True, timeout=30, check=True).stdout
        for line in listing.splitlines():
            fields = line.split()
            if len(fields) >= 8 and fields[4] == socket_path:
                peers.add(fields[7])
        held = set()
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if target.startswith("socket:["):
                            held.add(target[8:-1])
        return len(peers & held)

    def kill(self) -> None:
        """SIGKILL the server and its connection processes (every ``sshd``, not the sessions' commands), as a
        crash of sshd or ``systemctl kill -s KILL ssh`` would: every connection is cut at once."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def descendants(pid: int) -> list[int]:
    """Every live process whose chain of parents reaches ``pid``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    wanted = {pid}
    changed = True
    while changed:
        changed = False
        for child, parent in parents.items():
            if parent in wanted and child not in wanted:
                wanted.add(child)
                found.append(child)
                changed = True
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need_sshd() -> None:
    if not SSHD.exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        message = "sshd, ssh and ssh-keygen are needed (apt-get install openssh-server openssh-client)"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs them: {message}", pytrace=False)
        pytest.skip(message)
    if os.geteuid() != 0:
        pytest.skip("the test sshd logs in as root to reach /var/run/docker.sock: run the tests as root")


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ipv6compat-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def running_sshd(*, max_sessions: int | None = None, log_level: str = "INFO") -> Iterator[Sshd]:
    """Start ``sshd -D`` on 127.0.0.1:<free port>; yield it once it accepts connections; end it by pid."""
    _need_sshd()
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="ipv6compat-sshd-", dir="/var/tmp"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        _keygen(state / "host_ed25519")
        _keygen(state / "client_ed25519")
        (state / "authorized_keys").write_text((state / "client_ed25519.pub").read_text())
        port = _free_port()
        extra = f"MaxSessions {max_sessions}" if max_sessions is not None else ""
        (state / "sshd_config").write_text(CONFIG.format(port=port, dir=state, log_level=log_level, extra=extra))
        host_key = (state / "host_ed25519.pub").read_text().split()
        (state / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        (state / "ssh_config").write_text(
            "Host 127.0.0.1\n"
            f"  IdentityFile {state}/client_ed25519\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {state}/known_hosts\n"
            "  StrictHostKeyChecking yes\n"
        )
        log = state / "sshd.log"
        proc = subprocess.Popen([str(SSHD), "-D", "-f", str(state / "sshd_config"), "-E", str(log)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = Sshd(state, port, proc)
        _wait_until_listening(server)
        yield server
    finally:
        if proc is not None:
            for pid in reversed(descendants(proc.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(state, ignore_errors=True)


def _wait_until_listening(server: Sshd, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            text = server.log.read_text() if server.log.exists() else ""
            pytest.fail(f"the test sshd exited {server.proc.returncode}: {text[-2000:]}", pytrace=False)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1) as s:
            if s.recv(4).startswith(b"SSH-"):
                return
        time.sleep(0.05)
    pytest.fail(f"the test sshd did not answer on 127.0.0.1:{server.port} within {seconds:g} s", pytrace=False)
