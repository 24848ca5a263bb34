"""The watcher's output is read whole, even what arrives with the exec's response headers.

A server on a UNIX socket answers the exec start request the way an engine does (``101 UPGRADED``,
then multiplexed frames), writing the headers and the first frames in one ``send``: what a loaded
machine gives when the plugin reads the headers late. No engine: this is about reading the HTTP
stream, which is the plugin's own code.
"""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import docker

from pytest_ipv6compat.backends.docker_run import exec_output
from pytest_ipv6compat.backends.logtext import lines

HEADERS = (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
           b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")


def frame(data: bytes, stream: int = 1) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def serve_once(path: Path, first: bytes, rest: bytes) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        with conn, server:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            head, _, body = request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(4096)
            conn.sendall(first)  # the headers and the first frames in one write
            conn.sendall(rest)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def test_frames_that_came_with_the_headers_are_not_lost(tmp_path: Path) -> None:
    sock = tmp_path / "engine.sock"
    records = [b"0 aaaa start exec\n", b"1 bbbb alive\n", b"2 cccc listener tcp inet 0.0.0.0 80 -\n"]
    server = serve_once(sock, HEADERS + frame(records[0]) + frame(records[1], stream=2), frame(records[2]))
    api = docker.APIClient(base_url=f"unix://{sock}", version="1.41", timeout=10)
    try:
        stream = exec_output(api, "0123")
        got = list(lines(stream))
        stream.close()
    finally:
        api.close()
    server.join(5)
    assert got == [r.decode().rstrip("\n") for r in records]
