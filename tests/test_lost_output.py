"""A followed log that loses the container's lines does not lose its attestation.

Podman's followed logs can end without the last lines of a container that exits as the stream
attaches, though its log has them (podman#10675, #18501): seen once here as a spurious error on a
read-only config cell, whose target exits within milliseconds. The plugin reads the shim's attestation
from the followed log, and reads the whole log when the followed one ends without it.

The engine is the real one; only its answer to the followed-log request is replaced, by a link in
front of its socket (tests/engines.py), with the empty stream such an engine gives. Every cell must
still get the verdict the matrix states: those that exit at once, and those that stay up (whose log
is read until the shim has written its attestation).
"""

from __future__ import annotations

import pytest
from engines import FOLLOWED_LOGS, engine_link
from helpers import copy_matrix

pytestmark = pytest.mark.docker

DEFAULT = "unix:///var/run/docker.sock"
SUBSET = ("--ipv6-variants=unpatched,adaptive", "--ipv6-settings=unset,=1", "--ipv6-require-docker",
          "--ipv6-stacks=dual-stack,ipv6-kernel-off")
CELLS = 12  # 2 variants x 2 stacks x 2 settings, and 4 with the config mounted read-only


def test_cells_are_attested_when_the_followed_log_loses_their_lines(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_matrix(pytester)
    with engine_link(DEFAULT, mute=FOLLOWED_LOGS) as link:
        monkeypatch.setenv("DOCKER_HOST", link.url)
        result = pytester.runpytest(*SUBSET, "-n", "2", "-rA")
    result.assert_outcomes(passed=CELLS)
    assert link.muted >= CELLS, f"{link.muted} followed logs were cut for {CELLS} cells: the fault was not injected"
    result.stdout.fnmatch_lines(["*PASSED*ipv6-kernel-off*unset*"])  # exited cells among them
