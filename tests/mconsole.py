"""A client of User-mode Linux's management console (mconsole), for ground truth inside the kernel.

A kernel built with ``CONFIG_MCONSOLE`` and started with ``uml_dir=DIR umid=NAME`` answers on a
UNIX datagram socket, ``DIR/NAME/mconsole``. The protocol, in the host's byte order:

* a request is one datagram: ``u32 magic`` (0xcafebabe), ``u32 version`` (2), ``u32 length``,
  then the command text (at most 511 bytes; the kernel puts a NUL after it), padded to 512 bytes.
  It must come from a socket bound to an address, which is where the kernel replies;
* a reply is one datagram: ``u32 err``, ``u32 more``, ``u32 length``, then ``length`` bytes of
  text, the last of them a NUL. Replies of one request follow while ``more`` is set; only the
  first may carry an error.

``proc FILE`` answers with one ``"\\n"`` and then the kernel's ``/proc/FILE``, read by the kernel
itself: no process of the guest takes part, so it is independent of the plugin's init, shim and
watcher. The kernel says ``Failed to open file`` when it cannot open it (an absent file) and
``Read of file failed`` when it opened it and could not read it.

Standard library only, and nothing from pytest_ipv6compat.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import tempfile
from pathlib import Path

MAGIC = 0xCAFEBABE
VERSION = 2
MAX_DATA = 512
_HEADER = struct.Struct("=III")  # request: magic, version, length; reply: err, more, length
OPEN_FAILED = "Failed to open file"
READ_FAILED = "Read of file failed"


class MconsoleError(Exception):
    """The console did not answer, or answered with an error; the message says which and to what."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"mconsole {command!r}: {message}")
        self.command = command
        self.message = message


class ProcAbsent(MconsoleError):
    """``proc FILE``: the kernel could not open ``/proc/FILE`` (it does not exist there)."""


class ProcUnreadable(MconsoleError):
    """``proc FILE``: the kernel opened ``/proc/FILE`` but could not read it."""


def pack_request(command: str) -> bytes:
    """One request datagram for ``command``."""
    data = command.encode()
    if len(data) >= MAX_DATA:
        raise ValueError(f"mconsole command of {len(data)} bytes: at most {MAX_DATA - 1}")
    return _HEADER.pack(MAGIC, VERSION, len(data)) + data.ljust(MAX_DATA, b"\0")


def unpack_reply(datagram: bytes) -> tuple[int, bool, str]:
    """(err, more, text) of one reply datagram; the text without its closing NUL."""
    if len(datagram) < _HEADER.size:
        raise ValueError(f"mconsole reply of {len(datagram)} bytes is shorter than its header")
    err, more, length = _HEADER.unpack_from(datagram)
    data = datagram[_HEADER.size:_HEADER.size + length]
    if len(data) != length:
        raise ValueError(f"mconsole reply says {length} bytes of text but carries {len(data)}")
    return err, bool(more), data.removesuffix(b"\0").decode("utf-8", "replace")


def request(console: Path, command: str, *, timeout: float = 5.0) -> str:
    """Send ``command`` to the console at ``console``; the text of all its replies, or :class:`MconsoleError`.

    The console's path can be longer than a UNIX socket address may be, so it is reached through
    an ``O_PATH`` descriptor of its directory (``/proc/self/fd/N/mconsole``).
    """
    directory = os.open(console.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        with tempfile.TemporaryDirectory(prefix="mconsole-") as here, \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(os.path.join(here, "c"))  # the kernel replies to this address
            sock.settimeout(timeout)
            try:
                sock.sendto(pack_request(command), f"/proc/self/fd/{directory}/{console.name}")
            except OSError as exc:
                raise MconsoleError(command, f"cannot reach {console}: {exc.strerror}") from None
            parts: list[str] = []
            while True:
                try:
                    datagram = sock.recv(_HEADER.size + MAX_DATA)
                except TimeoutError:
                    raise MconsoleError(command, f"no reply within {timeout:g}s") from None
                err, more, text = unpack_reply(datagram)
                if err:
                    raise MconsoleError(command, text)
                parts.append(text)
                if not more:
                    return "".join(parts)
    finally:
        os.close(directory)


def proc(console: Path, name: str, *, timeout: float = 5.0) -> str:
    """The kernel's ``/proc/NAME``.

    :class:`ProcAbsent` when the kernel cannot open it, :class:`ProcUnreadable` when it cannot read it.
    """
    command = f"proc {name}"
    try:
        text = request(console, command, timeout=timeout)
    except MconsoleError as exc:
        kind = {OPEN_FAILED: ProcAbsent, READ_FAILED: ProcUnreadable}.get(exc.message)
        if kind is None:
            raise
        raise kind(command, exc.message) from None
    return text.removeprefix("\n")  # the kernel starts the file on a line of its own


def answers(console: Path, *, timeout: float = 1.0) -> bool:
    """Does a kernel answer on ``console`` (``version``)?"""
    with contextlib.suppress(MconsoleError, OSError):
        request(console, "version", timeout=timeout)
        return True
    return False
