"""The pure parts of the ground truth inside a User-mode Linux kernel: the /proc/net parser and the
mconsole client, the latter against a small fake console (no kernel, no Docker)."""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from groundtruth import GroundTruthError, parse_proc_net, parse_ss
from mconsole import (
    MAGIC,
    MAX_DATA,
    MconsoleError,
    ProcAbsent,
    ProcUnreadable,
    answers,
    pack_request,
    proc,
    request,
    unpack_reply,
)

# Captured from a zoo container (`zoosrv tcp4=0.0.0.0:8080 tcp4=127.0.0.1:7000 tcp6=:::8080
# udp4=0.0.0.0:5353 udp4=127.0.0.1:5300 udp6=:::5354`, --network none) after one HTTP request
# to 127.0.0.1:8080 (the TIME_WAIT row) and with a connected UDP client (the state 01 row), as
# /proc/PID/net/tcp and /proc/PID/net/udp on the host, next to `nsenter -t PID -n ss -H -l -n -t -u`.
PROC_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1B58 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 367686 1 0000000014c770dd 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 367685 1 0000000002cdc913 100 0 0 10 0
   2: 0100007F:1F90 0100007F:B2A0 06 00000000:00000000 03:0000176D 00000000     0        0 0 3 000000008ab8e88f
"""  # noqa: E501 - the kernel's own lines
PROC_UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  661: 0100007F:14B4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 367689 2 00000000282302a7 0
  714: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 367688 2 000000008b746cc9 0
12722: 0100007F:C3D1 0100007F:14E9 01 00000000:00000000 00:00000000 00000000     0        0 367542 2 00000000549e7e19 0
"""
SS = """\
udp UNCONN 0      0      127.0.0.1:5300 0.0.0.0:*
udp UNCONN 0      0        0.0.0.0:5353 0.0.0.0:*
udp UNCONN 0      0           [::]:5354    [::]:*
tcp LISTEN 0      64     127.0.0.1:7000 0.0.0.0:*
tcp LISTEN 0      64       0.0.0.0:8080 0.0.0.0:*
tcp LISTEN 0      64          [::]:8080    [::]:*
"""


def test_proc_net_tables_give_what_ss_gives_for_ipv4() -> None:
    got = parse_proc_net(PROC_TCP, "tcp") + parse_proc_net(PROC_UDP, "udp")
    assert sorted(s.notation for s in got) == sorted(
        s.notation for s in parse_ss(SS) if not s.address.startswith("[")
    ) == ["0.0.0.0:8080", "127.0.0.1:7000", "udp/0.0.0.0:5353", "udp/127.0.0.1:5300"]


def test_proc_net_refuses_ipv6_tables_and_junk() -> None:
    tcp6 = ("  sl  local_address                         remote_address                        st\n"
            "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A\n")
    with pytest.raises(GroundTruthError, match="cannot say v6only"):
        parse_proc_net(tcp6, "tcp")
    with pytest.raises(GroundTruthError, match="not a /proc/net/tcp table"):
        parse_proc_net("Read of file failed", "tcp")
    with pytest.raises(GroundTruthError, match="not hexadecimal"):
        parse_proc_net(PROC_TCP.replace("0100007F:1B58", "0100007G:1B58"), "tcp")
    with pytest.raises(GroundTruthError, match="is not tcp or udp"):
        parse_proc_net(PROC_TCP, "raw")
    assert parse_proc_net(PROC_TCP.splitlines()[0] + "\n", "tcp") == ()


def test_request_and_reply_layout() -> None:
    packed = pack_request("proc net/tcp")
    assert len(packed) == 12 + MAX_DATA
    assert struct.unpack_from("=III", packed) == (MAGIC, 2, len("proc net/tcp"))
    assert packed[12:24] == b"proc net/tcp"
    with pytest.raises(ValueError, match="at most 511"):
        pack_request("x" * MAX_DATA)
    assert unpack_reply(struct.pack("=III", 0, 1, 4) + b"abc\0") == (0, True, "abc")
    with pytest.raises(ValueError, match="says 9 bytes"):
        unpack_reply(struct.pack("=III", 0, 0, 9) + b"abc\0")


Handler = Callable[[str], list[tuple[int, int, str]]]


@pytest.fixture
def fake_console(tmp_path: Path) -> Iterator[Callable[[Handler], Path]]:
    """A console that answers each request with the replies ``handler`` gives: (err, more, text).

    Its path is longer than a UNIX socket address may be, as a kernel's run directory can be.
    """
    servers: list[tuple[socket.socket, threading.Thread]] = []

    def start(handler: Handler) -> Path:
        deep = tmp_path / f"{len(servers)}{'d' * 60}" / ("e" * 60)
        deep.mkdir(parents=True)
        path = deep / "mconsole"
        assert len(str(path)) > 108
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        directory = os.open(deep, os.O_PATH | os.O_DIRECTORY)
        try:
            sock.bind(f"/proc/self/fd/{directory}/mconsole")
        finally:
            os.close(directory)

        def serve() -> None:
            while True:
                try:
                    data, origin = sock.recvfrom(4096)
                except OSError:
                    return
                if not data:  # shut down
                    return
                magic, version, length = struct.unpack_from("=III", data)
                assert (magic, version, len(data)) == (MAGIC, 2, 12 + MAX_DATA)
                for err, more, text in handler(data[12:12 + length].decode()):
                    raw = text.encode() + b"\0"
                    sock.sendto(struct.pack("=III", err, more, len(raw)) + raw, origin)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((sock, thread))
        return path

    yield start
    for sock, thread in servers:
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        thread.join(2)


def test_replies_are_joined_while_more_is_set(fake_console: Callable[[Handler], Path]) -> None:
    def kernel(command: str) -> list[tuple[int, int, str]]:
        if command == "version":
            return [(0, 0, "Linux (none) 6.1")]
        assert command == "proc net/tcp"
        return [(0, 1, "\n"), (0, 1, PROC_TCP[:100]), (0, 1, PROC_TCP[100:]), (0, 0, "")]

    console = fake_console(kernel)
    assert request(console, "version") == "Linux (none) 6.1"
    assert proc(console, "net/tcp") == PROC_TCP
    assert answers(console)


def test_the_kernel_s_errors_are_told_apart(fake_console: Callable[[Handler], Path], tmp_path: Path) -> None:
    said = {"proc net/tcp6": "Failed to open file", "proc net/tcp": "Read of file failed", "bogus": "Unknown command"}
    console = fake_console(lambda command: [(1, 0, said[command])])
    with pytest.raises(ProcAbsent, match="'proc net/tcp6': Failed to open file"):
        proc(console, "net/tcp6")
    with pytest.raises(ProcUnreadable, match="Read of file failed"):
        proc(console, "net/tcp")
    with pytest.raises(MconsoleError, match="Unknown command") as caught:
        request(console, "bogus")
    assert type(caught.value) is MconsoleError
    silent = fake_console(lambda command: [])
    with pytest.raises(MconsoleError, match=r"no reply within 0\.2s"):
        request(silent, "version", timeout=0.2)
    assert not answers(silent, timeout=0.2)
    (tmp_path / "gone").mkdir()
    with pytest.raises(MconsoleError, match="cannot reach"):
        request(tmp_path / "gone" / "mconsole", "version")
    assert not answers(tmp_path / "nowhere" / "mconsole")
