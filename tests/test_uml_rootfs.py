"""The pure parts of the User-mode Linux root filesystem: module load order, links, 32-bit programs."""

from __future__ import annotations

import itertools
import shutil
import struct
from pathlib import Path

import pytest

from pytest_ipv6compat.backends import EngineError
from pytest_ipv6compat.backends.oci_bundle import DEVICES as ENGINE_DEVICES
from pytest_ipv6compat.backends.oci_bundle import MASKED, READ_ONLY
from pytest_ipv6compat.backends.uml import _program
from pytest_ipv6compat.backends.uml_rootfs import (
    built_in,
    confine_lines,
    device_program,
    load_order,
    modules_dir,
    resolve,
    slim,
    sysctl_lines,
)

DEP = """\
kernel/net/ipv4/udp_diag.ko: kernel/net/ipv6/ipv6.ko kernel/lib/crc-ccitt.ko
kernel/net/ipv6/ipv6.ko: kernel/lib/crc-ccitt.ko
kernel/lib/crc-ccitt.ko:
kernel/net/ipv4/raw_diag.ko: kernel/net/ipv6/ipv6.ko kernel/lib/crc-ccitt.ko
"""


def test_modules_load_in_dependency_order_once(tmp_path: Path) -> None:
    (tmp_path / "modules.dep").write_text(DEP)
    assert load_order(tmp_path, ("ipv6", "udp_diag")) == [
        "kernel/lib/crc-ccitt.ko", "kernel/net/ipv6/ipv6.ko", "kernel/net/ipv4/udp_diag.ko"]
    assert load_order(tmp_path, ("udp_diag",)) == load_order(tmp_path, ("ipv6", "udp_diag"))


def test_a_built_in_module_is_not_loaded_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "modules.dep").write_text(DEP)
    (tmp_path / "modules.builtin").write_text("kernel/net/ipv4/inet_diag.ko\nkernel/net/ipv4/tcp_diag.ko\n")
    assert load_order(tmp_path, ("tcp_diag", "ipv6")) == ["kernel/lib/crc-ccitt.ko", "kernel/net/ipv6/ipv6.ko"]
    with pytest.raises(EngineError, match=r"modules.dep has no module sctp_diag"):
        load_order(tmp_path, ("sctp_diag",))


def test_what_the_kernels_configuration_builds_in_is_not_loaded(tmp_path: Path) -> None:
    """Debian's 7.2 kernel builds IPv6 in (CONFIG_IPV6=y): no ipv6.ko, nothing in modules.builtin, nothing to load.
    Only the configuration's ``=y`` counts: ``=m`` and a symbol not set leave a missing module an error."""
    (tmp_path / "modules.dep").write_text("kernel/net/ipv4/udp_diag.ko:\nkernel/drivers/net/veth.ko:\n")
    config = "CONFIG_IPV6=y\nCONFIG_INET_UDP_DIAG=m\n# CONFIG_VETH is not set\nCONFIG_IPV6_SIT=y\n"
    assert built_in(config) == {"ipv6"}
    assert load_order(tmp_path, config_builtin=built_in(config)) == ["kernel/net/ipv4/udp_diag.ko",
                                                                     "kernel/drivers/net/veth.ko"]
    with pytest.raises(EngineError, match=r"modules.dep has no module ipv6"):
        load_order(tmp_path, config_builtin=built_in("CONFIG_IPV6=m\n"))


def test_the_modules_are_the_kernels_own_release_beside_it(tmp_path: Path) -> None:
    """A kernel unpacked from Debian's package elsewhere keeps its modules in the package's layout beside it; of
    several releases, the kernel's own (``linux --version``)."""
    usr = tmp_path / "usr"
    (usr / "bin").mkdir(parents=True)
    (usr / "bin" / "linux.uml").write_text("")
    (usr / "bin" / "linux").symlink_to("linux.uml")
    for release in ("7.2.7", "7.10.1"):
        (usr / "lib/uml/modules" / release).mkdir(parents=True)
        (usr / "lib/uml/modules" / release / "modules.dep").write_text("")
    assert modules_dir(usr / "bin" / "linux", "7.2.7") == usr / "lib/uml/modules/7.2.7"
    assert modules_dir(usr / "bin" / "linux", "7.10.1") == usr / "lib/uml/modules/7.10.1"


def test_the_installed_kernel_needs_udp_diag_and_veth_loaded() -> None:
    modules = sorted(Path("/usr/lib/uml/modules").glob("*"))
    if not modules:
        pytest.skip("user-mode-linux is not installed (apt-get install user-mode-linux)")
    order = [Path(rel).name for rel in load_order(modules[-1])]
    builtin = (modules[-1] / "modules.builtin").read_text()
    # Debian's 6.1 kernel: inet_diag and tcp_diag built in, udp_diag a module the watcher needs loaded, veth one
    # the pod address needs (umlsetup makes pod0 with it)
    assert "tcp_diag.ko" in builtin
    assert order[-3:] == ["ipv6.ko", "udp_diag.ko", "veth.ko"] if "udp_diag.ko" not in builtin else "ipv6.ko" in order


def test_links_are_followed_as_the_image_has_them() -> None:
    links = {"/bin": "usr/bin", "/usr/bin/prog": "../lib/prog/prog32", "/loop": "/loop"}
    assert resolve("/bin/prog", links) == "/usr/lib/prog/prog32"
    assert resolve("/usr/bin/./sh", links) == "/usr/bin/sh"
    assert resolve("/loop", links) is None


@pytest.mark.parametrize(
    ("command", "path", "found"),
    [
        ("prog32", "/usr/local/bin:/usr/bin", "/usr/local/bin/prog32"),
        ("/opt/x/prog32", "/usr/bin", "/opt/x/prog32"),
        ("./prog32", "/usr/bin", "/work/prog32"),
        ("prog64", "/usr/local/bin", None),
    ],
)
def test_the_cells_program_is_found_as_its_path_finds_it(command: str, path: str, found: str | None) -> None:
    elf32 = frozenset({"/usr/local/bin/prog32", "/opt/x/prog32", "/work/prog32"})
    words = {"EXEC": ["/work", "", "nonce", "--", command, "arg"], "ENV": [f"PATH={path}"]}
    assert _program(words, elf32) == found


def test_sysctls_are_written_as_proc_sys_paths() -> None:
    assert sysctl_lines() == ("/proc/sys/net/ipv4/ip_unprivileged_port_start 0\n"
                              "/proc/sys/net/ipv4/ping_group_range 0 2147483647\n")


def _sections(data: bytes) -> dict[str, tuple[int, bytes]]:
    """An ELF64 file's sections: name -> (flags, contents)."""
    import struct

    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = headers[shstrndx]
    found = {}
    for name, kind, flags, _, offset, size, *_ in headers:
        end = data.index(b"\0", names[4] + name)
        contents = b"" if kind == 8 else data[offset:offset + size]  # SHT_NOBITS: nothing in the file
        found[data[names[4] + name:end].decode()] = (flags, contents)
    return found


def test_a_module_in_the_archive_loads_what_the_kernels_file_loads() -> None:
    """``slim`` drops what the kernel never loads from a module (debug sections), nothing else: every
    section the loader puts in memory (SHF_ALLOC) and ``.modinfo`` are byte for byte the installed file's."""
    modules = sorted(Path("/usr/lib/uml/modules").glob("*"))
    if not modules:
        pytest.skip("user-mode-linux is not installed (apt-get install user-mode-linux)")
    if shutil.which("strip") is None:
        pytest.skip("no strip (binutils): archives keep the files as they are")
    installed = modules[-1] / "kernel" / "net" / "ipv6" / "ipv6.ko"
    before, after = _sections(installed.read_bytes()), _sections(slim(installed, "--strip-debug"))
    assert any(name.startswith(".debug_") for name in before)
    assert not any(".debug_" in name for name in after)
    alloc = {name for name, (flags, _) in before.items() if flags & 0x2}
    assert alloc
    assert alloc <= set(after)
    for name in alloc | {".modinfo", "__versions"} & set(before):
        assert after[name] == before[name], name
    assert len(installed.read_bytes()) - sum(len(c) for _, c in after.values()) > 1_000_000  # the point of it


def test_a_file_strip_cannot_read_is_kept_as_it_is(tmp_path: Path) -> None:
    script = tmp_path / "shim.sh"
    script.write_text("#!/bin/sh\necho not an ELF file\n")
    assert slim(script, "--strip-all") == script.read_bytes()


def _run_device_program(program: bytes, kind: int, major: int, minor: int, access: int) -> int:
    """The cgroup device program, interpreted: only the instructions uml_rootfs.device_program emits."""
    ctx = [access << 16 | kind, major, minor]
    regs = [0] * 11
    insns = [struct.unpack("<BBhi", program[i:i + 8]) for i in range(0, len(program), 8)]
    pc = 0
    while True:
        code, r, off, imm = insns[pc]
        dst, src = r & 0xF, r >> 4
        pc += 1
        if code == 0x61:  # ldx w
            regs[dst] = ctx[off // 4]
        elif code == 0xBF:  # mov x
            regs[dst] = regs[src]
        elif code == 0x57:  # and k
            regs[dst] &= imm & 0xFFFFFFFFFFFFFFFF
        elif code == 0x77:  # rsh k
            regs[dst] >>= imm
        elif code == 0xB7:  # mov k
            regs[dst] = imm
        elif code == 0x55:  # jne k
            pc += off if regs[dst] != imm else 0
        elif code == 0x05:  # ja
            pc += off
        elif code == 0x95:  # exit
            return regs[0]
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")


def test_the_device_program_allows_what_the_engines_device_list_allows() -> None:
    """Every (type, major, minor, access) over the majors and minors the list names and some it does not: allowed
    exactly when a rule of that type, matching major and minor (None: any), grants every access asked for."""
    rules = ENGINE_DEVICES
    program = device_program()
    kinds, accesses = {"b": 1, "c": 2}, {"m": 1, "r": 2, "w": 4}
    majors = {m for _, m, _, _ in rules if m is not None} | {7, 11}
    minors = {n for _, _, n, _ in rules if n is not None} | {0, 11, 201}
    for (kind, k), major, minor, asked in itertools.product(kinds.items(), majors, minors, range(1, 8)):
        want = any(t == kind and m in (None, major) and n in (None, minor)
                   and asked & ~sum(accesses[a] for a in granted) == 0 for t, m, n, granted in rules)
        assert _run_device_program(program, k, major, minor, asked) == int(want), (kind, major, minor, asked)
    # the cases that matter: any node may be made; /dev/null opened; /dev/kmsg (1:11) and a block device not
    assert _run_device_program(program, 2, 1, 11, 1) == 1
    assert _run_device_program(program, 2, 1, 3, 6) == 1
    assert _run_device_program(program, 2, 1, 11, 4) == 0
    assert _run_device_program(program, 1, 7, 0, 2) == 0


def test_the_guest_gets_the_engines_read_only_and_masked_paths() -> None:
    lines = confine_lines().splitlines()
    assert [line.split(" ", 1)[1] for line in lines if line.startswith("ro ")] == list(READ_ONLY)
    assert [line.split(" ", 1)[1] for line in lines if line.startswith("mask ")] == list(MASKED)
    assert "ro /proc/sys" in lines
