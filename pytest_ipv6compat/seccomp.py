"""Build the default-deny seccomp profile used for the ``ipv6-kernel-off`` stack.

Pure data and a builder: no Docker. The profile follows Docker's current
default profile for an unprivileged container (an allowlist; everything else
fails with ``EPERM``), differs from it only where :data:`DIFFERENCES` says
why, and can additionally make ``socket(AF_INET6, ...)`` and
``socketpair(AF_INET6, ...)`` fail the way a kernel booted with
``ipv6.disable=1`` does (``EAFNOSUPPORT``, 97).

Pass the result of :func:`profile_json` to Docker as
``security_opt=[f"seccomp={profile_json(inet6_errno=97)}"]``.

How the address-family rules are built, and why:

* The kernel reads the family as a 32-bit ``int``, but seccomp compares all 64
  bits of the register. The AF_INET6 rule therefore masks the argument to its
  low 32 bits, so ``socket(0x1_0000000A, ...)`` also fails with 97.
* The allow rules are aligned blocks of families (a masked comparison on all
  64 bits, so upper bits never match them) that leave out AF_INET6, AF_ALG and
  AF_VSOCK. No two rules for one call ever match the same value, so the
  result never depends on how a runtime's libseccomp orders rules. A family
  of 64 or more, or one with upper bits set (other than AF_INET6), fails with
  ``EPERM`` instead of the kernel's ``EAFNOSUPPORT``: Linux has no such family.
* ``socketcall(2)`` (32-bit x86's multiplexer) hides the family in user
  memory where seccomp cannot look, so it fails with ``ENOSYS``, as in
  Docker's current default. Its rule must come before the ``socket`` rules:
  libseccomp derives ``socketcall`` rules from them, and with the AF_INET6
  rule those clash ("file exists") unless ``socketcall`` is already decided.
  32-bit x86 programs therefore run, and reach ``socket`` only through the
  direct system call (Linux 4.3+). Debian 12's i386 glibc (measured) and, by
  their sources, i386 musl and Go use ``socketcall``: such a program gets
  ENOSYS ("Function not implemented") from every ``socket()``, whatever the
  family, so a 32-bit x86 server cannot start on this stack.

Other limits:

* Docker 20.10 ignores ``defaultErrnoRet``; denial is ``EPERM`` either way.
* The ``clone`` flag check assumes flags in argument 0, which holds on every
  listed architecture (not on s390, which is not listed).
* Syscall names unknown to an architecture, or to the runtime's libseccomp,
  are ignored by the runtime, so one list serves x86_64, i386 and aarch64.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = [
    "AF_ALG",
    "AF_INET6",
    "AF_VSOCK",
    "ALLOWED_PERSONALITIES",
    "ALLOWED_SYSCALLS",
    "ARCH_MAP",
    "CLONE_NAMESPACE_FLAGS",
    "DENIED_FAMILIES",
    "DENIED_SYSCALLS",
    "DIFFERENCES",
    "EAFNOSUPPORT",
    "ENOSYS",
    "EPERM",
    "FAMILY_LIMIT",
    "Difference",
    "build_profile",
    "family_blocks",
    "profile_json",
]

EPERM = 1
ENOSYS = 38
EAFNOSUPPORT = 97
AF_INET6 = 10
AF_ALG = 38  # the kernel crypto API (CVE-2026-31431); denied by current Docker
AF_VSOCK = 40  # host-guest sockets; denied by current Docker
DENIED_FAMILIES = (AF_ALG, AF_VSOCK)
FAMILY_LIMIT = 64  # families from here up do not exist (AF_MAX is 46 in Linux 6.x)
LOW_32_BITS = 0xFFFF_FFFF
ALL_64_BITS = 0xFFFF_FFFF_FFFF_FFFF

# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NAMESPACE_FLAGS = 0x7E020000

# personality(2) personas a normal program asks for: PER_LINUX (0), PER_LINUX32
# (0x8), UNAME26 (0x20000), UNAME26|PER_LINUX32, and 0xffffffff (query only).
ALLOWED_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# The runtime always adds the host's native architecture; these add the
# compatibility ABIs a 64-bit host runs (i386 and x32 on x86_64, arm on aarch64).
ARCH_MAP: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    ("SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
)

# Allowed unconditionally. ``socket``, ``socketpair``, ``socketcall``, ``clone``,
# ``clone3`` and ``personality`` are absent on purpose: build_profile adds rules for them.
ALLOWED_SYSCALLS: tuple[str, ...] = (
    # --- files and descriptors
    "access", "faccessat", "faccessat2", "name_to_handle_at",
    "open", "openat", "openat2", "creat", "close", "close_range",
    "read", "readv", "pread64", "preadv", "preadv2",
    "write", "writev", "pwrite64", "pwritev", "pwritev2",
    "lseek", "_llseek",
    "dup", "dup2", "dup3", "fcntl", "fcntl64", "ioctl", "flock",
    "pipe", "pipe2",
    "stat", "stat64", "lstat", "lstat64", "fstat", "fstat64",
    "newfstatat", "fstatat64", "statx",
    "statfs", "statfs64", "fstatfs", "fstatfs64",
    "getdents", "getdents64",
    "readlink", "readlinkat",
    "getcwd", "chdir", "fchdir", "chroot", "umask",
    "mkdir", "mkdirat", "rmdir", "mknod", "mknodat",
    "link", "linkat", "symlink", "symlinkat",
    "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "chmod", "fchmod", "fchmodat", "fchmodat2",
    "chown", "fchown", "fchownat", "lchown", "chown32", "fchown32", "lchown32",
    "truncate", "truncate64", "ftruncate", "ftruncate64",
    "fallocate", "fadvise64", "fadvise64_64", "arm_fadvise64_64", "readahead",
    "fsync", "fdatasync", "sync", "syncfs",
    "sync_file_range", "sync_file_range2", "arm_sync_file_range",
    "utime", "utimes", "futimesat", "utimensat", "utimensat_time64",
    "getxattr", "lgetxattr", "fgetxattr", "getxattrat",
    "listxattr", "llistxattr", "flistxattr", "listxattrat",
    "setxattr", "lsetxattr", "fsetxattr", "setxattrat",
    "removexattr", "lremovexattr", "fremovexattr", "removexattrat",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark",
    "statmount", "listmount", "cachestat",
    # --- zero-copy and in-kernel copies (nginx sendfile on)
    "sendfile", "sendfile64", "splice", "tee", "vmsplice", "copy_file_range",
    # --- waiting for events
    "select", "_newselect", "pselect6", "pselect6_time64",
    "poll", "ppoll", "ppoll_time64",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
    "epoll_wait", "epoll_wait_old", "epoll_pwait", "epoll_pwait2",
    "eventfd", "eventfd2", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_settime", "timerfd_settime64",
    "timerfd_gettime", "timerfd_gettime64",
    # --- legacy POSIX AIO (nginx "aio on"); io_uring stays denied
    "io_setup", "io_destroy", "io_submit", "io_cancel",
    "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    # --- sockets (``socket`` and ``socketpair`` are added by build_profile)
    "bind", "listen", "accept", "accept4", "connect", "shutdown",
    "getsockname", "getpeername", "getsockopt", "setsockopt",
    "send", "sendto", "sendmsg", "sendmmsg",
    "recv", "recvfrom", "recvmsg", "recvmmsg", "recvmmsg_time64",
    # --- signals
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigpending", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "sigprocmask", "sigreturn",
    "sigaltstack", "kill", "tkill", "tgkill", "pause", "alarm", "restart_syscall",
    "pidfd_open", "pidfd_send_signal",
    # --- time (reading and sleeping; adjtimex reads the clock state, setting it needs CAP_SYS_TIME)
    "time", "gettimeofday", "times", "adjtimex", "clock_adjtime", "clock_adjtime64",
    "clock_gettime", "clock_gettime64", "clock_getres", "clock_getres_time64",
    "clock_nanosleep", "clock_nanosleep_time64", "nanosleep",
    "getitimer", "setitimer",
    "timer_create", "timer_delete", "timer_getoverrun",
    "timer_settime", "timer_settime64", "timer_gettime", "timer_gettime64",
    # --- memory
    "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise",
    "mincore", "msync", "membarrier", "remap_file_pages",
    "map_shadow_stack", "mseal", "memfd_secret", "process_mrelease",
    "mlock", "mlock2", "munlock", "mlockall", "munlockall",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "memfd_create",
    # --- System V and POSIX IPC (namespaced per container)
    "shmget", "shmat", "shmdt", "shmctl",
    "semget", "semop", "semtimedop", "semtimedop_time64", "semctl",
    "msgget", "msgsnd", "msgrcv", "msgctl", "ipc",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedsend_time64",
    "mq_timedreceive", "mq_timedreceive_time64", "mq_notify", "mq_getsetattr",
    # --- processes and threads (``clone`` and ``clone3`` are added by build_profile)
    "fork", "vfork", "execve", "execveat",
    "exit", "exit_group", "wait4", "waitid", "waitpid",
    "set_tid_address", "set_robust_list", "get_robust_list", "rseq",
    "futex", "futex_time64", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue",
    "arch_prctl", "set_thread_area", "get_thread_area", "modify_ldt",
    "set_tls", "cacheflush", "breakpoint", "riscv_hwprobe", "uretprobe",
    "prctl", "seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
    "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp",
    "getsid", "setsid",
    "sched_yield", "sched_getaffinity", "sched_setaffinity",
    "sched_getparam", "sched_setparam", "sched_getscheduler", "sched_setscheduler",
    "sched_getattr", "sched_setattr",
    "sched_get_priority_max", "sched_get_priority_min",
    "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "getpriority", "setpriority", "ioprio_get", "ioprio_set",
    "getrlimit", "setrlimit", "ugetrlimit", "prlimit64", "getrusage",
    "getcpu", "sysinfo", "uname", "getrandom",
    # --- credentials (nginx drops to its worker user)
    "getuid", "geteuid", "getgid", "getegid",
    "getuid32", "geteuid32", "getgid32", "getegid32",
    "getresuid", "getresgid", "getresuid32", "getresgid32",
    "setuid", "setgid", "setuid32", "setgid32",
    "setreuid", "setregid", "setreuid32", "setregid32",
    "setresuid", "setresgid", "setresuid32", "setresgid32",
    "setfsuid", "setfsgid", "setfsuid32", "setfsgid32",
    "getgroups", "setgroups", "getgroups32", "setgroups32",
    "capget", "capset",
)  # fmt: skip

# Never allowed, whatever the arguments: what Docker's default profile keeps from
# unprivileged containers. Listed so tests can check the allowlist against it.
DENIED_SYSCALLS: tuple[str, ...] = (
    # namespaces and mounts
    "unshare", "setns", "mount", "umount", "umount2", "pivot_root",
    "mount_setattr", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick",
    # kernel keyrings
    "keyctl", "add_key", "request_key",
    # tracing and other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "perf_event_open", "bpf", "lookup_dcookie", "fanotify_init", "syslog",
    # kernel, modules and machine state
    "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "create_module", "get_kernel_syms", "query_module",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    "sethostname", "setdomainname", "iopl", "ioperm", "vm86", "vm86old",
    "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl",
    # setting clocks
    "settimeofday", "stime", "clock_settime", "clock_settime64",
    # memory policy and userspace faults
    "userfaultfd", "move_pages", "mbind", "set_mempolicy", "get_mempolicy",
    "set_mempolicy_home_node", "migrate_pages",
    # opening a file handle bypasses path permission checks
    "open_by_handle_at",
    # io_uring
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip


@dataclass(frozen=True)
class Difference:
    """Where the ``ipv6-kernel-off`` profile differs from Docker's current default, and why."""

    names: tuple[str, ...]
    ours: str
    docker: str
    reason: str


# Docker's current default, as an unprivileged container with the default
# capabilities sees it: moby/profiles seccomp/default.json plus moby/moby#52494
# (AF_ALG denied, socketcall ENOSYS). tests/test_seccomp.py holds that
# reference as data and fails on any difference not listed here.
DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        ("socket",),
        "AF_INET6 (low 32 bits = 10, any upper bits): errno 97; AF_ALG, AF_VSOCK, families >= 64"
        " and families with upper bits set: EPERM; every other family allowed",
        "AF_ALG and AF_VSOCK: EPERM, compared on all 64 bits; every other value allowed",
        "the stack itself: AF_INET6 fails as on a kernel booted with ipv6.disable=1, also when raw"
        " system calls set upper bits, which the kernel ignores (a 64-bit comparison would let"
        " 0x1_0000000A through, and 0x1_00000026 past the AF_ALG rule)",
    ),
    Difference(
        ("socketpair",),
        "the same family rules as socket",
        "allowed for every family",
        "a kernel without IPv6 fails socketpair(AF_INET6) with 97 before the family is asked;"
        " AF_UNIX, the family servers pair, stays allowed (IP, ALG and VSOCK cannot pair anyway)",
    ),
    Difference(
        ("add_key", "keyctl", "request_key"),
        "EPERM",
        "allowed",
        "kept from Docker 20.10's default (measured: EPERM), which the dual-stack cells on that"
        " engine get too; servers do not use kernel keyrings",
    ),
    Difference(
        ("process_vm_readv", "process_vm_writev", "ptrace"),
        "EPERM",
        "allowed (kernel 4.8 or later)",
        "kept denied as the project's baseline (issue 11); servers do not trace processes. A target"
        " that does (a debugger, a crash reporter attaching to its own child) fails with EPERM on"
        " this stack only, as the README states",
    ),
)

_ALLOW = "SCMP_ACT_ALLOW"
_ERRNO = "SCMP_ACT_ERRNO"


def build_profile(*, inet6_errno: int | None = None) -> dict[str, object]:
    """Return a Docker seccomp profile (as JSON-ready data) that denies by default.

    With ``inet6_errno`` set (97 to imitate a kernel without IPv6),
    ``socket(AF_INET6, ...)`` and ``socketpair(AF_INET6, ...)`` fail with that
    errno; otherwise AF_INET6 is allowed like any other family. AF_ALG and
    AF_VSOCK are denied either way.
    """
    if inet6_errno is not None and (
        isinstance(inet6_errno, bool) or not isinstance(inet6_errno, int) or not 1 <= inet6_errno <= 4095
    ):
        raise ValueError(f"inet6_errno must be an errno between 1 and 4095, got {inet6_errno!r}")
    overlap = sorted(set(ALLOWED_SYSCALLS) & set(DENIED_SYSCALLS))
    if overlap:  # a guard on the module's own data
        raise RuntimeError(f"syscalls both allowed and denied: {', '.join(overlap)}")

    rules: list[dict[str, object]] = [
        {"names": list(ALLOWED_SYSCALLS), "action": _ALLOW},
        {
            "names": ["socketcall"],
            "action": _ERRNO,
            "errnoRet": ENOSYS,
            "comment": "the family is out of reach in memory; must precede the socket rules",
        },
        *_family_rules(inet6_errno),
        {
            "names": ["clone"],
            "action": _ALLOW,
            "args": [_arg(0, "SCMP_CMP_MASKED_EQ", CLONE_NAMESPACE_FLAGS, 0)],
            "comment": "clone only without namespace flags",
        },
        {
            "names": ["clone3"],
            "action": _ERRNO,
            "errnoRet": ENOSYS,
            "comment": "flags are out of reach in memory: ENOSYS makes libc fall back to clone",
        },
        *(_personality_rule(value) for value in ALLOWED_PERSONALITIES),
    ]
    return {
        "defaultAction": _ERRNO,
        "defaultErrnoRet": EPERM,
        "archMap": [{"architecture": arch, "subArchitectures": list(subs)} for arch, subs in ARCH_MAP],
        "syscalls": rules,
    }


def profile_json(*, inet6_errno: int | None = None) -> str:
    """The profile as compact JSON with sorted keys: same input, same bytes."""
    return json.dumps(build_profile(inet6_errno=inet6_errno), sort_keys=True, separators=(",", ":"))


def family_blocks(excluded: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Aligned (start, size) blocks that cover families 0 to FAMILY_LIMIT - 1 but ``excluded``."""
    blocks: list[tuple[int, int]] = []

    def cover(start: int, size: int) -> None:
        if not any(start <= family < start + size for family in excluded):
            blocks.append((start, size))
        elif size > 1:
            cover(start, size // 2)
            cover(start + size // 2, size // 2)

    cover(0, FAMILY_LIMIT)
    return tuple(blocks)


def _family_rules(inet6_errno: int | None) -> list[dict[str, object]]:
    names = ["socket", "socketpair"]
    excluded = DENIED_FAMILIES if inet6_errno is None else (AF_INET6, *DENIED_FAMILIES)
    rules: list[dict[str, object]] = []
    if inet6_errno is not None:
        rules.append(
            {
                "names": names,
                "action": _ERRNO,
                "errnoRet": inet6_errno,
                "args": [_arg(0, "SCMP_CMP_MASKED_EQ", LOW_32_BITS, AF_INET6)],
                "comment": "AF_INET6 in the low 32 bits fails as on a kernel without IPv6",
            }
        )
    for start, size in family_blocks(excluded):
        # (family & mask) == start: the family is in [start, start + size) and no upper bit is set
        mask = ALL_64_BITS & ~(size - 1)
        rules.append({"names": names, "action": _ALLOW, "args": [_arg(0, "SCMP_CMP_MASKED_EQ", mask, start)]})
    return rules


def _personality_rule(value: int) -> dict[str, object]:
    return {"names": ["personality"], "action": _ALLOW, "args": [_arg(0, "SCMP_CMP_EQ", value)]}


def _arg(index: int, op: str, value: int, value_two: int = 0) -> dict[str, object]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}
