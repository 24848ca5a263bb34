"""Ground truth inside the User-mode Linux kernel, for the ``ipv6-boot-disabled`` cells.

Each ``ipv6-boot-disabled`` cell of the cloud-proxy matrix (every variant and knob setting the
file states, with its run settings and environment, read with the package's parser) and
``tests/data/if-inet6-nginx`` run under the plugin's User-mode Linux backend. While the kernel
still runs, facts are taken from the kernel itself over its management console
(``mconsole.py``): the kernel reads its own ``/proc`` on request, with no process of the guest
involved, so neither the plugin's init, nor its shim, nor its watcher has a say.

* ``up`` (the kernel still runs the target): ``/proc/cmdline`` has ``ipv6.disable=1``;
  ``/proc/net/tcp6``, ``/proc/net/udp6``, ``/proc/net/if_inet6`` and ``/proc/sys/net/ipv6`` are
  absent while ``/proc/net/tcp``, ``/proc/net/udp`` and ``/proc/sys/net/ipv4`` are there; and the
  listener table at the end of the hold, ``/proc/net/tcp`` (state 0A) and ``/proc/net/udp``, must
  be the plugin's listeners and the matrix's.
* ``exited``: the kernel halts once its init has seen the target end, so its console stops
  answering; one that still answered would still be running the target.

The listener table is not read over the console: Debian's 6.1 kernel cannot (its mconsole ``proc``
reads a file with ``kernel_read``, which refuses files without a ``read_iter`` operation, and every
``/proc/net`` file has none there: ``Read of file failed``). It comes from init instead, in the
backend's test mode (``UmlBackend(tables=True)``): when the hold is over, before the watcher's
``ready`` goes out, init reads ``/proc/net/{tcp,udp,tcp6,udp6}`` with shell builtins (no code shared
with the watcher, which reads sock_diag) and sends the rows raw on its tagged channel; they are
parsed here with ``groundtruth.parse_proc_net``. Whether a listener answers is not checked: a client
inside the kernel cannot be reached from the host, whose only link to it is the console.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from groundtruth import SsListener, parse_proc_net
from helpers import MATRIX, cell_env
from mconsole import MconsoleError, ProcAbsent, ProcUnreadable, answers, proc
from zoo_compare import parse_expectation

from pytest_ipv6compat import matrix
from pytest_ipv6compat.backends import Launch
from pytest_ipv6compat.backends.uml import UmlBackend
from pytest_ipv6compat.keys import STATE_KEY
from pytest_ipv6compat.matrix import load_matrix
from pytest_ipv6compat.model import Outcome, Verdict
from pytest_ipv6compat.options import run_base
from pytest_ipv6compat.spec import RunSpec
from pytest_ipv6compat.stacks import STACKS

pytestmark = pytest.mark.docker

BOOT = "ipv6-boot-disabled"
CLOUD_PROXY = load_matrix(MATRIX)
PRESENT = ("net/tcp", "net/udp", "sys/net/ipv4")  # opened by the kernel, whether or not it can read them
ABSENT = ("net/tcp6", "net/udp6", "net/if_inet6", "sys/net/ipv6")  # what ipv6.disable=1 leaves out
HALT_WITHIN_S = 10.0


@dataclass(frozen=True)
class Case:
    """One run: a variant of the matrix (``variant``) or the if-inet6 target (``variant`` None)."""

    id: str
    variant: str | None
    expectation: str
    env: Mapping[str, str | None] = field(default_factory=dict)
    run: Mapping[str, Any] = field(default_factory=dict)  # for the if-inet6 target: beyond the plugin's defaults

    def spec(self, base: RunSpec) -> RunSpec:
        """The run settings: the matrix's own for a variant, as the plugin's cells take them."""
        if self.variant is not None:
            return CLOUD_PROXY.target.run_for(self.variant, base)
        return base.updated(self.run)


CASES = [
    Case(f"cloud-proxy-{cell.id}", cell.variant, cell.expectation.source, cell_env(CLOUD_PROXY, cell))
    for cell in CLOUD_PROXY.cells
    if cell.stack == BOOT and cell.config_mode == "rw"
] + [Case("if-inet6-nginx", None, "up 0.0.0.0:80", run={"probe": "http"})]




def stack_problems(console: Path) -> list[str]:
    """Where the kernel's own /proc contradicts a kernel booted with ipv6.disable=1."""
    problems = []
    cmdline = proc(console, "cmdline")
    if "ipv6.disable=1" not in cmdline.split():
        problems.append(f"/proc/cmdline has no ipv6.disable=1: {cmdline.strip()!r}")
    for name in (*PRESENT, *ABSENT):
        try:
            proc(console, name)
            there = True
        except ProcUnreadable:
            there = True  # opened, then not read: it is there
        except ProcAbsent:
            there = False
        if there != (name in PRESENT):
            problems.append(f"/proc/{name} is {'there' if there else 'absent'}; want "
                            f"{'there' if name in PRESENT else 'absent'} on a kernel booted with ipv6.disable=1")
    return problems


def kernel_listeners(tables: list[tuple[str, dict[str, str | None]]]) -> tuple[SsListener, ...]:
    """The kernel's listener table at the end of the hold (IPv4 only: it has no IPv6), as init read it."""
    final = [files for dump, files in tables if dump == "ready"]
    assert len(final) == 1, f"one dump of the tables at the end of the hold, not {len(final)}"
    tcp, udp = final[0].get("tcp"), final[0].get("udp")
    assert tcp is not None, "/proc/net/tcp absent at the end of the hold"
    assert udp is not None, "/proc/net/udp absent at the end of the hold"
    assert final[0].get("tcp6", "") is None, "/proc/net/tcp6 there on a kernel booted with ipv6.disable=1"
    return parse_proc_net(tcp, "tcp", source="/proc/net/tcp") + parse_proc_net(udp, "udp", source="/proc/net/udp")


def _halts(console: Path) -> bool:
    end = time.monotonic() + HALT_WITHIN_S
    while answers(console, timeout=0.5):
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


def _plugin_listeners(verdict: Verdict) -> set[str]:
    return {str(listener) for listener in verdict.listeners}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_uml_cell_against_the_kernel(
    case: Case, uml_tables: UmlBackend, proxy_image: dict[str, str], if_inet6_image: str, record_property: Any,
    request: pytest.FixtureRequest,
) -> None:
    image = if_inet6_image if case.variant is None else proxy_image[case.variant]
    spec = case.spec(run_base(request.config.stash[STATE_KEY].settings))
    env = {k: v for k, v in case.env.items() if v is not None}
    with uml_tables.run(Launch(image, STACKS[BOOT], env=env, run=spec)) as run:
        attestation = run.attestation()
        verdict = run.verdict()
        plugin = _plugin_listeners(verdict)
        record_property("plugin", " ".join([str(verdict.outcome), *sorted(plugin)]))
        request.node.add_report_section("call", "plugin", f"{attestation.describe()}\nverdict: {verdict.outcome} "
                                        f"{' '.join(sorted(plugin))} (exit code {verdict.exit_code})\n{verdict.logs}")
        judged = matrix.judge(matrix.parse_expectation(case.expectation), verdict)
        problems = [f"plugin vs expectation ({case.expectation}): {reason}" for reason in judged.reasons]
        problems += [f"plugin's attestation: {problem}" for problem in attestation.problems]
        if verdict.outcome is Outcome.UP:
            try:
                problems += [f"the kernel's /proc: {p}" for p in stack_problems(run.mconsole)]
            except MconsoleError as exc:
                problems.append(f"the kernel's console: {exc}")
        elif not _halts(run.mconsole):
            problems.append(f"plugin says {verdict.outcome}, but the kernel still answers on its console "
                            f"{HALT_WITHIN_S:g}s later: its init has not seen the target end")
        assert not problems, f"{case.id}:\n  " + "\n  ".join(problems)
        if verdict.outcome is not Outcome.UP:
            return
        table = kernel_listeners(run.tables())
    kernel = {s.notation for s in table}
    record_property("kernel", " ".join(sorted(kernel)))
    expected = parse_expectation(case.expectation, source=case.id).listeners
    problems = []
    if plugin != kernel:
        problems.append(f"plugin vs kernel: plugin says {sorted(plugin)}, /proc/net {sorted(kernel)}")
    if {token.removesuffix("/silent") for token in expected} != kernel:
        problems.append(f"expectation vs kernel: {case.expectation!r}, /proc/net {sorted(kernel)}")
    assert not problems, f"{case.id}:\n  " + "\n  ".join(problems)
