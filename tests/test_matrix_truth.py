"""The cloud-proxy matrix held to ground truth on the three Docker stacks.

Every cell of ``matrix/cloud-proxy.ipv6.toml`` on ``dual-stack``, ``ipv6-sysctl-off`` and
``ipv6-kernel-off`` (every variant, every knob setting the file states, and its read-only config
cells), read with the package's own parser, is started through ``ipv6_target_factory`` with the
matrix's own run settings and environment. While the plugin still holds the container, ground
truth is taken from it by a path independent of the plugin's shim (``groundtruth.facts``:
``docker inspect``, ``ss`` in its network namespace, and the host's Python as a real https client
on ``/healthz``). Then, as in the zoo's ``test_plugin_verdict``, three comparisons:

* the plugin's verdict against the matrix's expectation (the plugin's own judge),
* the plugin's verdict against ground truth (outcome, exit code, listeners with v6only or dual,
  per-family connect result, probe success and status),
* the matrix's expectation against ground truth (the zoo's reading of an expectation, not the
  plugin's): a matrix expectation must be what is true, not what makes the run green.

A disagreement is never fixed here by changing an expectation or the plugin: it is a strict
xfail in ``KNOWN_DISAGREEMENTS`` with the reason, so a fix shows up as an xpass that fails.
The ``ipv6-boot-disabled`` cells run under User-mode Linux: see ``test_uml_truth.py``.
"""

from __future__ import annotations

from typing import Any

import docker
import pytest
from groundtruth import Probe, facts
from helpers import MATRIX, cell_env
from zoo_compare import disagreements, plugin_text

from pytest_ipv6compat import TargetFactory
from pytest_ipv6compat.matrix import Matrix, load_matrix
from pytest_ipv6compat.model import Cell

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("ground_truth_tools")]

CLOUD_PROXY: Matrix = load_matrix(MATRIX)
DOCKER_STACKS = ("dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off")

# Cells where the plugin, the matrix or ground truth disagree, reported rather than bent to green:
# cell id -> why. Strict: when the disagreement goes away the xpass fails, and the entry goes.
KNOWN_DISAGREEMENTS: dict[str, str] = {}

CELLS = [
    pytest.param(cell, id=cell.id,
                 marks=[pytest.mark.xfail(reason=KNOWN_DISAGREEMENTS[cell.id], strict=True)]
                 if cell.id in KNOWN_DISAGREEMENTS else [])
    for cell in CLOUD_PROXY.cells
    if cell.stack in DOCKER_STACKS
]


def cell_run(matrix: Matrix, cell: Cell) -> dict[str, Any]:
    """The matrix's own run settings for the cell, as ``ipv6_target_factory.start`` takes them.

    The settings of ``[target]`` and ``[variant.NAME]`` as the package parsed them (tables back as
    tables), plus, for a read-only config cell, the config directory mounted read-only.
    """
    target = matrix.target
    run: dict[str, Any] = dict(target.run)
    run.update(dict(dict(target.variant_runs).get(cell.variant, ())))
    for key in ("tmpfs", "extra_hosts", "mounts"):
        if key in run:
            run[key] = dict(run[key])
    if cell.config_mode == "ro":
        config = target.config_for(cell.variant)
        assert config is not None
        run["mounts"] = {**run.get("mounts", {}), config[0]: str(config[1])}
    return run


def test_the_cells_are_the_matrix() -> None:
    """Every variant x Docker stack x knob setting the file states, and its read-only config cells."""
    target = CLOUD_PROXY.target
    rw = [c for c in CLOUD_PROXY.cells if c.stack in DOCKER_STACKS and c.config_mode == "rw"]
    assert len(rw) == len(target.variants) * len(DOCKER_STACKS) * len(target.settings)
    assert len(CELLS) == len([c for c in CLOUD_PROXY.cells if c.stack in DOCKER_STACKS]) > len(rw)


@pytest.mark.parametrize("cell", CELLS)
def test_matrix_cell_against_ground_truth(
    cell: Cell, proxy_image: dict[str, str], ipv6_target_factory: TargetFactory, client: docker.DockerClient,
    record_property: Any, request: pytest.FixtureRequest,
) -> None:
    run = cell_run(CLOUD_PROXY, cell)
    with ipv6_target_factory.start(proxy_image[cell.variant], stack=cell.stack, env=cell_env(CLOUD_PROXY, cell),
                                   **run) as started:
        probe = Probe(started.run.probe, started.run.http_path)
        container = client.containers.get(started.container)
        truth = facts(container, probe)  # the plugin's own container, while it still holds it
        logs = container.logs(tail=200).decode("utf-8", "replace")
    verdict = started.verdict
    record_property("plugin", plugin_text(verdict))
    record_property("ground truth", truth.render(probe))
    evidence = f"plugin: {started.describe()}\n{truth.describe(probe)}"
    request.node.add_report_section("call", "plugin and ground truth", evidence)
    if truth.has_v6_loopback is not None:  # the stack as the namespace shows it, not as the shim reports it
        assert truth.has_v6_loopback is (cell.stack == "dual-stack"), f"::1 on lo does not fit {cell.stack}"
    problems = disagreements(cell.expectation.source, verdict, truth, probe, logs, name="matrix")
    assert not problems, f"{cell.id} ({cell.where}):\n  " + "\n  ".join(problems) + f"\n{evidence}"
