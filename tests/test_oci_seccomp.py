"""The seccomp program the oci backend compiles once per session (backends/oci_seccomp.py) is crun's own.

Ground truth is crun's compilation: a cell started without ``run.oci.seccomp_bpf_data`` has crun compile the
OCI ``seccomp`` section and store the program in its state directory (``RUNDIR/ID/seccomp.bpf``, which ``crun
exec`` reads back); that file, read while the cell runs, must equal the plugin's program byte for byte, for each
distinct profile (dual-stack's, and ipv6-kernel-off's with the AF_INET6 rule). With the annotation, a raw-syscall
probe (tests/data/seccomp/probe.c) inside the cell gets the same answers as with crun's own compilation: errno 97
for AF_INET6 on kernel-off, EPERM for the syscalls the profile blocks. The pure tests need no runtime.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import launch
from test_seccomp import BUILDS, _build, _results
from test_zoo import zoo_image  # noqa: F401 - the fixture

from pytest_ipv6compat import images
from pytest_ipv6compat.backends import oci_seccomp
from pytest_ipv6compat.backends.docker_api import DockerBackend as Engine
from pytest_ipv6compat.backends.oci import OciBackend, Runtime, find_runtime
from pytest_ipv6compat.backends.oci_bundle import oci_seccomp as section
from pytest_ipv6compat.backends.oci_seccomp import SeccompError, annotation, compile_bpf
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.stacks import get_stack

PROFILES = ("dual-stack", "ipv6-kernel-off")  # the two distinct profiles (inet6_errno None and 97)


def _loadable() -> bool:
    try:
        oci_seccomp.library_version()
    except SeccompError:
        return False
    return True


needs_libseccomp = pytest.mark.skipif(not _loadable(), reason="libseccomp.so.2 cannot be loaded here")


# ------------------------------------------------------------------ pure (the library, no runtime)


@needs_libseccomp
def test_each_profile_compiles_to_a_whole_program_the_same_every_time() -> None:
    programs = {name: compile_bpf(section(get_stack(name))) for name in PROFILES}
    for name, program in programs.items():
        assert len(program) % 8 == 0, name  # struct sock_filter: 8 bytes each
        assert len(program) > 8 * 100, name
        assert compile_bpf(section(get_stack(name))) == program
    assert programs["dual-stack"] != programs["ipv6-kernel-off"]
    # the annotation is base64 of exactly that program, once per profile
    assert base64.b64decode(annotation(section(get_stack("ipv6-kernel-off")))) == programs["ipv6-kernel-off"]


@needs_libseccomp
def test_a_rule_with_the_default_action_changes_nothing_and_an_unknown_name_is_skipped() -> None:
    base = section(get_stack("dual-stack"))
    extra = dict(base, syscalls=[*base["syscalls"], {"names": ["reboot"], "action": "SCMP_ACT_ERRNO"},
                                 {"names": ["no_such_syscall_here"], "action": "SCMP_ACT_ALLOW"}])
    assert compile_bpf(extra) == compile_bpf(base)


@pytest.mark.parametrize(("change", "words"), [
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "unknown seccomp action 'SCMP_ACT_MAYBE' in defaultAction"),
    ({"architectures": ["SCMP_ARCH_PDP11"]}, "unknown architecture 'SCMP_ARCH_PDP11'"),
    ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 5}]},
     "errnoRet given for action 'SCMP_ACT_ALLOW' in syscalls[0]"),
    ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "op": "SCMP_CMP_XX"}]}]},
     "unknown seccomp operator 'SCMP_CMP_XX' in syscalls[0]"),
])
@needs_libseccomp
def test_a_profile_libseccomp_cannot_take_is_one_line(change: dict[str, object], words: str) -> None:
    with pytest.raises(SeccompError, match=re.escape(words)):
        compile_bpf(dict(section(get_stack("dual-stack")), **change))


def test_no_library_is_a_reason_and_the_cell_goes_without_the_annotation(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SeccompError, match=r"^libseccomp-missing\.so\.9 cannot be loaded \("):
        compile_bpf(section(get_stack("dual-stack")), library="libseccomp-missing.so.9")

    def missing(profile: object, library: str = "") -> str:
        raise SeccompError("libseccomp.so.2 cannot be loaded (gone)")

    monkeypatch.setattr("pytest_ipv6compat.backends.oci.annotation", missing)
    monkeypatch.setattr("pytest_ipv6compat.backends.oci.linked_alike", lambda runtime: None)
    crun = OciBackend(None, Path("/nonexistent"), Path("/nonexistent"), Runtime("crun", "/usr/bin/crun", "1.8.1"))
    with caplog.at_level(logging.WARNING):
        assert crun._seccomp_annotation(section(get_stack("dual-stack"))) is None
        assert crun._seccomp_annotation(section(get_stack("dual-stack"))) is None
    said = [r.getMessage() for r in caplog.records]
    assert said == ["oci: crun compiles the seccomp profile at every cell's start: libseccomp.so.2 cannot be "
                    "loaded (gone)"]  # once, with the reason


@needs_libseccomp
def test_runc_and_a_backend_told_not_to_get_no_annotation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pytest_ipv6compat.backends.oci.linked_alike", lambda runtime: None)  # crun need not be here
    profile = section(get_stack("dual-stack"))
    runc = OciBackend(None, Path("/nonexistent"), Path("/nonexistent"), Runtime("runc", "/usr/sbin/runc", "1.1.5"))
    assert runc._seccomp_annotation(profile) is None  # runc ignores it and compiles the section itself
    crun = OciBackend(None, Path("/nonexistent"), Path("/nonexistent"), Runtime("crun", "/usr/bin/crun", "1.8.1"))
    assert crun._seccomp_annotation(profile) == annotation(profile)
    crun.precompile_seccomp = False
    assert crun._seccomp_annotation(profile) is None


@needs_libseccomp
def test_a_crun_linking_another_libseccomp_or_none_compiles_for_itself(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The program is crun's own only when crun links the very file this process loads (ldd, /proc/self/maps)."""
    linking = shutil.which("crun") or shutil.which("runc") or shutil.which("runc", path="/usr/sbin")
    if linking is not None:
        oci_seccomp.linked_alike.cache_clear()
        oci_seccomp.linked_alike(linking)  # the same file: no error
        monkeypatch.setattr(oci_seccomp, "_loaded_file", lambda library: "/elsewhere/libseccomp.so.2.9.9")
        oci_seccomp.linked_alike.cache_clear()
        with pytest.raises(SeccompError, match=rf"^{re.escape(linking)} links /\S+, this process loads "
                                               r"/elsewhere/libseccomp\.so\.2\.9\.9$"):
            oci_seccomp.linked_alike(linking)
        monkeypatch.undo()
        oci_seccomp.linked_alike.cache_clear()
    true = shutil.which("true")
    assert true is not None
    with pytest.raises(SeccompError, match=r"does not link libseccomp\.so\.2 \(a static build compiles with its own"):
        oci_seccomp.linked_alike(true)
    with pytest.raises(SeccompError, match=r"^cannot tell which libseccomp\.so\.2 /nonexistent/crun links \(ldd: "):
        oci_seccomp.linked_alike("/nonexistent/crun")
    crun = OciBackend(None, Path("/nonexistent"), Path("/nonexistent"), Runtime("crun", true, "1.8.1"))
    with caplog.at_level(logging.WARNING):
        assert crun._seccomp_annotation(section(get_stack("dual-stack"))) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"oci: crun compiles the seccomp profile at every cell's start: {true} does not link libseccomp.so.2 "
        "(a static build compiles with its own copy)"]


# ------------------------------------------------------------------ against crun (root, the engine for the image)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the oci backend needs root")


@pytest.fixture(scope="module")
def crun(engine: Engine) -> Iterator[OciBackend]:
    runtime = find_runtime()
    if runtime is None or runtime.name != "crun":
        pytest.skip("crun is not installed")
    backend = OciBackend(engine, images.default_cache_dir(), engine.probe_dir, runtime)
    yield backend
    backend.remove_session()


def _rundir(runtime: str) -> Path:
    """crun's state directory as ``crun --version`` names it (``rundir: /run/crun``)."""
    out = subprocess.run([runtime, "--version"], capture_output=True, text=True, check=True).stdout
    return Path(next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("rundir:")),
                     "/run/crun"))


@contextlib.contextmanager
def _precompiled(backend: OciBackend, on: bool) -> Iterator[None]:
    before = backend.precompile_seccomp
    backend.precompile_seccomp = on
    try:
        yield
    finally:
        backend.precompile_seccomp = before


def _stored_program(backend: OciBackend, image: str, stack: str) -> bytes:
    """The program in crun's state directory while a (sleeping) cell of ``stack`` runs."""
    with backend.run(launch(image, get_stack(stack), command=("sleep", "30"), probe="none")) as run:
        assert run.attestation().ok, run.attestation().problems
        return (_rundir(backend.runtime.path) / run.container_id / "seccomp.bpf").read_bytes()


@pytest.mark.docker
@needs_root
@needs_libseccomp
@pytest.mark.parametrize("stack", PROFILES)
def test_the_plugins_program_is_cruns_own_compilation_byte_for_byte(
    stack: str, zoo_image: str, crun: OciBackend,  # noqa: F811
) -> None:
    ours = compile_bpf(section(get_stack(stack)))
    with _precompiled(crun, False):
        cruns = _stored_program(crun, zoo_image, stack)
    assert len(cruns) == len(ours), f"crun compiled {len(cruns) // 8} instructions, the plugin {len(ours) // 8}"
    assert cruns == ours
    with _precompiled(crun, True):  # and given the annotation, crun loads exactly that program
        assert _stored_program(crun, zoo_image, stack) == ours


@pytest.fixture(scope="module")
def probe_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/test_seccomp.py's glibc probe, built the same way (skipped with the reason when it cannot be)."""
    tmp = tmp_path_factory.mktemp("seccomp-probe")
    _build(tmp, "glibc", BUILDS["glibc"])
    return tmp / "glibc"


def _checks(backend: OciBackend, image: str, stack: str, probe: Path) -> dict[str, str]:
    cell = launch(image, get_stack(stack), command=("/seccomp-probe", "checks"), probe="none",
                  mounts=(("/seccomp-probe", str(probe)),))
    with backend.run(cell) as run:
        verdict = run.verdict()
    assert verdict.outcome is Outcome.EXITED, verdict.logs
    assert verdict.exit_code == 0, verdict.logs
    found = _results(verdict.logs)
    assert len(found) >= 20, verdict.logs
    return found


@pytest.mark.docker
@needs_root
@needs_libseccomp
@pytest.mark.parametrize("stack", PROFILES)
def test_with_the_annotation_the_target_meets_the_same_filter(
    stack: str, zoo_image: str, crun: OciBackend, probe_binary: Path,  # noqa: F811
) -> None:
    with _precompiled(crun, False):
        compiled_by_crun = _checks(crun, zoo_image, stack, probe_binary)
    with _precompiled(crun, True):
        precompiled = _checks(crun, zoo_image, stack, probe_binary)
    assert precompiled == compiled_by_crun
    # and what the profile says, so that neither can be a filter that lets everything through
    blocked = {"keyctl": "errno 1", "unshare-newuser": "errno 1", "socket-alg": "errno 1",
               "io_uring_setup": "errno 1", "clone3": "errno 38", "socket-inet": "ok"}
    if stack == "ipv6-kernel-off":
        blocked |= {"socket-inet6": "errno 97", "socket-inet6-bit32": "errno 97", "socketpair-inet6": "errno 97"}
    else:
        blocked |= {"socket-inet6": "ok"}
    assert {name: precompiled.get(name) for name in blocked} == blocked

