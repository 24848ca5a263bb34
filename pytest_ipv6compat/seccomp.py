"""Build the default-deny seccomp profile used for the ``ipv6-kernel-off`` stack.

Pure data and a builder: no Docker. The profile denies every system call
(``EPERM``) except an allowlist a normal service needs (libc, nginx, busybox),
keeps the protections Docker's default profile gives an unprivileged container
(no namespaces, mounts, keyrings, tracing, BPF, module loading, clock setting,
io_uring ...), and can additionally make ``socket(AF_INET6, ...)`` fail the way a
kernel booted with ``ipv6.disable=1`` does (``EAFNOSUPPORT``, 97).

Pass the result of :func:`profile_json` to Docker as
``security_opt=[f"seccomp={profile_json(inet6_errno=97)}"]``.

Limits, by design:

* 32-bit x86 (i386) programs create sockets through ``socketcall(2)``, whose
  address family sits in user memory where seccomp cannot look, and libseccomp
  refuses the AF_INET6 rules for that architecture. So when ``inet6_errno`` is
  set the i386 sub-architecture is left out (i386 programs cannot run under
  that profile) and ``socketcall`` is not allowed. x86_64, x32, aarch64
  and arm programs are filtered normally.
* Docker 20.10 ignores ``defaultErrnoRet``; denial is ``EPERM`` either way.
* The ``clone`` flag check assumes flags in argument 0, which holds on every
  listed architecture (not on s390, which is not listed).
* Syscall names unknown to an architecture are ignored by the runtime, so one
  list serves x86_64 and aarch64 (``open`` exists on one, ``openat`` on both).
"""

from __future__ import annotations

import json

__all__ = [
    "AF_INET6",
    "ALLOWED_PERSONALITIES",
    "ALLOWED_SYSCALLS",
    "ARCH_MAP",
    "CLONE_NAMESPACE_FLAGS",
    "DENIED_SYSCALLS",
    "EAFNOSUPPORT",
    "ENOSYS",
    "EPERM",
    "build_profile",
    "profile_json",
]

EPERM = 1
ENOSYS = 38
EAFNOSUPPORT = 97
AF_INET6 = 10

# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NAMESPACE_FLAGS = 0x7E020000

# personality(2) personas a normal program asks for: PER_LINUX (0), PER_LINUX32
# (0x8), UNAME26 (0x20000), UNAME26|PER_LINUX32, and 0xffffffff (query only).
ALLOWED_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

ARCH_MAP: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    ("SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
)

# Allowed unconditionally. ``socket``, ``socketcall``, ``clone``, ``clone3`` and
# ``personality`` are absent on purpose: build_profile adds rules for them.
ALLOWED_SYSCALLS: tuple[str, ...] = (
    # --- files and descriptors
    "access", "faccessat", "faccessat2",
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
    "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
    "setxattr", "lsetxattr", "fsetxattr",
    "removexattr", "lremovexattr", "fremovexattr",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
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
    # --- sockets (``socket`` itself is added by build_profile)
    "socketpair", "bind", "listen", "accept", "accept4", "connect", "shutdown",
    "getsockname", "getpeername", "getsockopt", "setsockopt",
    "send", "sendto", "sendmsg", "sendmmsg",
    "recv", "recvfrom", "recvmsg", "recvmmsg", "recvmmsg_time64",
    # --- signals
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigpending", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "sigaction", "sigprocmask", "sigreturn", "sigsuspend", "sigpending", "signal",
    "sigaltstack", "kill", "tkill", "tgkill", "pause", "alarm", "restart_syscall",
    "pidfd_open", "pidfd_send_signal",
    # --- time (reading and sleeping only; setting the clock stays denied)
    "time", "gettimeofday", "times",
    "clock_gettime", "clock_gettime64", "clock_getres", "clock_getres_time64",
    "clock_nanosleep", "clock_nanosleep_time64", "nanosleep",
    "getitimer", "setitimer",
    "timer_create", "timer_delete", "timer_getoverrun",
    "timer_settime", "timer_settime64", "timer_gettime", "timer_gettime64",
    # --- memory
    "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise",
    "mincore", "msync", "membarrier", "get_mempolicy",
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
    "futex", "futex_time64", "futex_waitv",
    "arch_prctl", "set_thread_area", "get_thread_area", "set_tls", "cacheflush",
    "prctl", "seccomp",
    "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp",
    "getsid", "setsid",
    "sched_yield", "sched_getaffinity", "sched_setaffinity",
    "sched_getparam", "sched_setparam", "sched_getscheduler", "sched_setscheduler",
    "sched_getattr", "sched_setattr",
    "sched_get_priority_max", "sched_get_priority_min",
    "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "getpriority", "setpriority", "nice", "ioprio_get", "ioprio_set",
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
    # clocks
    "settimeofday", "stime", "clock_settime", "clock_settime64",
    "clock_adjtime", "clock_adjtime64", "adjtimex",
    # memory policy and userspace faults
    "userfaultfd", "move_pages", "mbind", "set_mempolicy",
    "set_mempolicy_home_node", "migrate_pages",
    # file handles bypass path permission checks
    "open_by_handle_at", "name_to_handle_at",
    # io_uring
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip

# Where libseccomp turns ``socket`` rules into ``socketcall`` rules, which cannot
# see the address family: combining the AF_INET6 rules there fails ("file exists").
_SOCKETCALL_ARCHES = frozenset({"SCMP_ARCH_X86"})

_ALLOW = "SCMP_ACT_ALLOW"
_ERRNO = "SCMP_ACT_ERRNO"


def build_profile(*, inet6_errno: int | None = None) -> dict[str, object]:
    """Return a Docker seccomp profile (as JSON-ready data) that denies by default.

    With ``inet6_errno`` set (97 to imitate a kernel without IPv6),
    ``socket(AF_INET6, ...)`` fails with that errno and every other family is
    allowed; otherwise ``socket`` is allowed for every family.
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
        *_socket_rules(inet6_errno),
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
        "archMap": _arch_map(inet6_errno),
        "syscalls": rules,
    }


def profile_json(*, inet6_errno: int | None = None) -> str:
    """The profile as compact JSON with sorted keys: same input, same bytes."""
    return json.dumps(build_profile(inet6_errno=inet6_errno), sort_keys=True, separators=(",", ":"))


def _arch_map(inet6_errno: int | None) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = []
    for arch, subs in ARCH_MAP:
        if inet6_errno is not None:
            subs = tuple(sub for sub in subs if sub not in _SOCKETCALL_ARCHES)
        entries.append({"architecture": arch, "subArchitectures": list(subs)})
    return entries


def _socket_rules(inet6_errno: int | None) -> list[dict[str, object]]:
    if inet6_errno is None:
        return [{"names": ["socket", "socketcall"], "action": _ALLOW}]
    return [
        {
            "names": ["socket"],
            "action": _ALLOW,
            "args": [_arg(0, "SCMP_CMP_NE", AF_INET6)],
            "comment": "every address family but AF_INET6",
        },
        {
            "names": ["socket"],
            "action": _ERRNO,
            "errnoRet": inet6_errno,
            "args": [_arg(0, "SCMP_CMP_EQ", AF_INET6)],
            "comment": "AF_INET6 fails as on a kernel without IPv6",
        },
    ]


def _personality_rule(value: int) -> dict[str, object]:
    return {"names": ["personality"], "action": _ALLOW, "args": [_arg(0, "SCMP_CMP_EQ", value)]}


def _arg(index: int, op: str, value: int, value_two: int = 0) -> dict[str, object]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}
