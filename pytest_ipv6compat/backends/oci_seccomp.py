"""The stack's seccomp profile compiled to BPF once per session, for crun's ``run.oci.seccomp_bpf_data``.

crun 1.8 as Debian builds it (without libgcrypt: no seccomp cache) compiles a container's OCI ``seccomp``
section with libseccomp on every ``crun run`` (~11 ms of the cell's start on these 2 cores, measured with
strace). Given the annotation ``run.oci.seccomp_bpf_data`` (base64 of the program that
``seccomp(SECCOMP_SET_MODE_FILTER)`` loads), it loads that program instead and compiles nothing. This module
compiles the section here, through ctypes on the same ``libseccomp.so.2`` that crun links, the way crun 1.8.1's
``libcrun_generate_seccomp`` (src/libcrun/seccomp.c) does: ``seccomp_init`` with the default action (its
``defaultErrnoRet``, else EPERM), each listed architecture added (an architecture already there is not an
error), then per rule its action (``errnoRet``, else EPERM), a rule whose action is the default one skipped, a
name libseccomp does not know skipped (crun warns), a rule without ``args`` added with none, one whose
arguments name each index at most once added with all of them, otherwise one rule per argument; no filter
attribute is set; then ``seccomp_export_bpf``. ``tests/test_oci_seccomp.py`` compares the result byte for byte
with crun's own compilation (``/run/crun/ID/seccomp.bpf`` of a cell started without the annotation).

The OCI ``seccomp`` section stays in ``config.json`` as it is: it documents the profile, and runc (which ignores
the annotation) compiles it. Pure but for the library: no engine, no runtime.
"""

from __future__ import annotations

import base64
import ctypes
import functools
import json
import os
import re
import subprocess
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["ANNOTATION", "LIBRARY", "SeccompError", "annotation", "compile_bpf", "linked_alike"]

ANNOTATION = "run.oci.seccomp_bpf_data"
LIBRARY = "libseccomp.so.2"
EPERM = 1
_NR_SCMP_ERROR = -1
_EEXIST = 17
# libseccomp's action values (seccomp.h): the errno or trace value goes in the low 16 bits.
_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000, "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000, "SCMP_ACT_NOTIFY": 0x7FC00000,
}  # fmt: skip
_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
              "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}


class SeccompError(Exception):
    """The profile cannot be compiled here (no library, or libseccomp refused it): one line, the reason."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _library(name: str) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise SeccompError(f"{name} cannot be loaded ({exc})") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.restype = None
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_add.restype = ctypes.c_int
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    lib.seccomp_version.argtypes = []
    return lib


def _loaded_file(library: str) -> str:
    """The file this process mapped for ``library`` (loaded first), as the kernel names it."""
    _library(library)
    stem = library.split(".so")[0]
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            path = fields[5].strip() if len(fields) == 6 else ""
            if os.path.basename(path).startswith(f"{stem}.so"):
                return os.path.realpath(path)
    raise SeccompError(f"{library} is loaded but not found in /proc/self/maps")


@functools.lru_cache(maxsize=4)
def linked_alike(runtime: str, library: str = LIBRARY) -> None:
    """Check that ``runtime`` (crun's path) links the very file of ``library`` this process loads: a program
    compiled here is then crun's own (a static crun, or one linking another copy, may know other syscall names).
    :class:`SeccompError` saying why not."""
    loaded = _loaded_file(library)
    try:
        done = subprocess.run(["ldd", runtime], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SeccompError(f"cannot tell which {library} {runtime} links (ldd: {exc})") from None
    found = re.search(rf"^\s*{re.escape(library)} => (\S+)", done.stdout, re.M)
    if found is None:
        said = (done.stdout + done.stderr).strip()
        if done.returncode == 0 or "not a dynamic executable" in said:
            raise SeccompError(f"{runtime} does not link {library} (a static build compiles with its own copy)")
        last = said.splitlines()[-1] if said else f"exit status {done.returncode}"
        raise SeccompError(f"cannot tell which {library} {runtime} links (ldd: {last})")
    linked = os.path.realpath(found[1])
    if linked != loaded:
        raise SeccompError(f"{runtime} links {linked}, this process loads {loaded}")


def library_version(library: str = LIBRARY) -> str:
    """libseccomp's version as the loaded library reports it (``2.5.4``); :class:`SeccompError` if none loads."""
    v = _library(library).seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def _action(name: object, errno: int, where: str) -> int:
    if not isinstance(name, str) or name not in _ACTIONS:
        raise SeccompError(f"unknown seccomp action {name!r} in {where}")
    value = _ACTIONS[name]
    return value | (errno & 0xFFFF) if name in _WITH_ERRNO else value


def _errno(section: Mapping[str, Any], key: str, action: object, where: str) -> int:
    if key not in section:
        return EPERM
    if not isinstance(action, str) or action not in _ACTIONS:
        raise SeccompError(f"unknown seccomp action {action!r} in {where}")
    if action not in _WITH_ERRNO:
        raise SeccompError(f"{key} given for action {action!r} in {where}")
    return int(section[key])


def _check(ret: int, what: str) -> None:
    if ret < 0:
        raise SeccompError(f"libseccomp: {what}: {os.strerror(-ret)}")


def compile_bpf(profile: Mapping[str, Any], library: str = LIBRARY) -> bytes:
    """The BPF program crun 1.8.1 makes of the OCI ``seccomp`` section ``profile`` (see the module's text)."""
    lib = _library(library)
    default_name = profile.get("defaultAction")
    default = _action(default_name, _errno(profile, "defaultErrnoRet", default_name, "defaultAction"),
                      "defaultAction")
    with _lock:  # one filter at a time: libseccomp's state is per context, but keep its use simple
        ctx = lib.seccomp_init(default)
        if not ctx:
            raise SeccompError("libseccomp: seccomp_init failed")
        try:
            for arch in profile.get("architectures") or []:
                token = lib.seccomp_arch_resolve_name(str(arch).removeprefix("SCMP_ARCH_").lower().encode())
                if token == 0:
                    raise SeccompError(f"seccomp: unknown architecture {arch!r}")
                ret = lib.seccomp_arch_add(ctx, token)
                if ret != -_EEXIST:
                    _check(ret, f"seccomp_arch_add {arch}")
            for number, rule in enumerate(profile.get("syscalls") or []):
                where = f"syscalls[{number}]"
                action = _action(rule.get("action"), _errno(rule, "errnoRet", rule.get("action"), where), where)
                if action == default:
                    continue
                _add_rule(lib, ctx, action, rule, where)
            fd = os.memfd_create("ipv6compat-seccomp", os.MFD_CLOEXEC)
            try:
                _check(lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
                size = os.lseek(fd, 0, os.SEEK_END)
                return os.pread(fd, size, 0)
            finally:
                os.close(fd)
        finally:
            lib.seccomp_release(ctx)


def _add_rule(lib: ctypes.CDLL, ctx: int, action: int, rule: Mapping[str, Any], where: str) -> None:
    args = rule.get("args")
    cmps: list[_ArgCmp] = []
    if args is not None:
        for arg in list(args)[:6]:
            index = int(arg.get("index", 0))
            if not 0 <= index < 6:
                raise SeccompError(f"invalid seccomp argument index {index} in {where}")
            op = _OPERATORS.get(arg.get("op"))
            if op is None:
                raise SeccompError(f"unknown seccomp operator {arg.get('op')!r} in {where}")
            cmps.append(_ArgCmp(index, op, int(arg.get("value", 0)), int(arg.get("valueTwo", 0))))
    # crun: an index named twice makes one rule per argument (a syscall's arguments are ANDed within a rule)
    indexes = [c.arg for c in cmps]
    groups = [cmps] if len(set(indexes)) == len(indexes) else [[c] for c in cmps]
    for name in rule.get("names") or []:
        syscall = lib.seccomp_syscall_resolve_name(str(name).encode())
        if syscall == _NR_SCMP_ERROR:
            continue  # crun: "unknown seccomp syscall ignored"
        for group in groups:
            array = (_ArgCmp * max(len(group), 1))(*group)
            _check(lib.seccomp_rule_add_array(ctx, action, syscall, len(group), array),
                   f"seccomp_rule_add {name} ({where})")


@functools.lru_cache(maxsize=16)
def _encoded(profile_json: str, library: str) -> str:
    return base64.b64encode(compile_bpf(json.loads(profile_json), library)).decode("ascii")


def annotation(profile: Mapping[str, Any], library: str = LIBRARY) -> str:
    """``run.oci.seccomp_bpf_data`` for ``profile``: compiled once per distinct profile (and library) in this
    process. :class:`SeccompError` (its reason) if it cannot be compiled here."""
    return _encoded(json.dumps(profile, sort_keys=True, separators=(",", ":")), library)
