"""A root target cannot reach the next ipv6-boot-disabled cell.

The first cell, root with the capabilities Docker gives a container, leaves all it can: a daemon
forked into the background and a listener (busybox ``httpd`` daemonizes), files in /tmp and
/dev/shm. It also tries what a container refuses, and is refused as in a container
(tests/test_uml_parity.py): a network sysctl, a global sysctl, a line in the kernel log through a
``/dev/kmsg`` it makes. The next cell looks for each with the same check; the kernel's own listener
tables, read by init (the tables mode: a path that shares nothing with the watcher), are the ground
truth for listeners. Each kernel serves one cell (README, "One kernel per cell"): this is what any
change to that must still pass.
"""

from __future__ import annotations

import re
import time

import pytest
from groundtruth import SsListener, parse_proc_net
from helpers import launch

from pytest_ipv6compat.backends.uml import UmlBackend
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.stacks import STACKS

pytestmark = pytest.mark.docker
BOOT = STACKS["ipv6-boot-disabled"]
PORT = 7777
# The same look in both cells: what the first left is counted; a busybox sh script of the base image.
CHECK = (
    'f=0; for p in /tmp/ipv6compat-left /dev/shm/ipv6compat-left; do [ -e "$p" ] && f=$((f + 1)); done; '
    'echo "left: files=$f port_start=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)'
    ' overcommit=$(cat /proc/sys/vm/overcommit_memory)'
    ' log=$(dmesg | grep -c ipv6compat-left-in-the-log)'
    ' daemons=$(ps | grep -c "[s]leep 301")'
    f' listening=$(netstat -ltn | grep -c ":{PORT} ")"'
)
LEAVE = (
    "echo left >/tmp/ipv6compat-left && echo left >/dev/shm/ipv6compat-left && "
    "{ echo 777 >/proc/sys/net/ipv4/ip_unprivileged_port_start; "  # each refused as in a container
    "echo 1 >/proc/sys/vm/overcommit_memory; "
    "mknod /tmp/kmsg c 1 11 && echo ipv6compat-left-in-the-log >/tmp/kmsg; } 2>/dev/null; "
    "{ setsid sleep $((300 + 1)) & } && "  # its arguments, not the script's text, read sleep 301
    f"{CHECK}; httpd -p {PORT} -h /tmp && exec sleep 60"
)
LEFT = re.compile(r"^left: (.*)$", re.M)


def _listeners(tables: list[tuple[str, dict[str, str | None]]]) -> set[SsListener]:
    """Every TCP listener in every dump of the kernel's tables."""
    found: set[SsListener] = set()
    for _, files in tables:
        tcp = files.get("tcp")
        assert tcp is not None, "/proc/net/tcp absent from a dump"
        found |= set(parse_proc_net(tcp, "tcp", source="/proc/net/tcp"))
    return found


def _left(logs: str) -> str:
    """What the check counted, from a cell's output."""
    found = LEFT.search(logs)
    assert found, f"no check line in the cell's output:\n{logs[-2000:]}"
    return found[1]


def test_what_a_root_target_leaves_the_next_cell_does_not_see(uml_tables: UmlBackend, base_image: str) -> None:
    with uml_tables.run(launch(base_image, BOOT, command=("sh", "-c", LEAVE), probe="none", hold=0.2,
                               timeout=60)) as first:
        verdict = first.verdict()
        end = time.monotonic() + 10
        while not LEFT.search(first.logs()) and time.monotonic() < end:
            time.sleep(0.05)  # the console's thread has the line or is about to: it came before the listener
        seen_first = _left(first.logs())
        tables_first = first.tables()
        key_first, tag_first = first._channel.key, first._tag
    assert verdict.outcome is Outcome.UP, verdict.logs
    # The control: in its own cell, everything it left is there, by the same check and by the kernel's tables;
    # what a container refuses, it could not leave.
    assert seen_first == "files=2 port_start=0 overcommit=0 log=0 daemons=1 listening=0", seen_first
    assert SsListener("tcp", "0.0.0.0", PORT) in _listeners(tables_first)
    with uml_tables.run(launch(base_image, BOOT, command=("sh", "-c", f"{CHECK}; exit 5"), timeout=60)) as second:
        verdict = second.verdict()
        tables_second = second.tables()
        key_second, tag_second = second._channel.key, second._tag
    assert verdict.outcome is Outcome.EXITED, verdict.logs
    assert verdict.exit_code == 5
    # The engine's values (uml_rootfs.SYSCTLS) and the kernel's default: nothing of the first cell's.
    assert _left(verdict.logs) == "files=0 port_start=0 overcommit=0 log=0 daemons=0 listening=0"
    assert tables_second, "no dump of the kernel's tables in the second cell"
    assert not {x for x in _listeners(tables_second) if x.port == PORT}
    # Its seal and tag are its own: nothing the first cell held opens or tags the second's records.
    assert key_second != key_first
    assert tag_second != tag_first
