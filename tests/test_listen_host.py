"""The listen-host reference matrix (matrix/listen-host.ipv6.toml): its expectations hold on every stack, and
what it says about the pod address is what a real client from inside the namespace sees."""

from __future__ import annotations

from pathlib import Path

import docker
import groundtruth
import pytest
from helpers import launch

from pytest_ipv6compat import images
from pytest_ipv6compat.backends.docker_api import DockerBackend
from pytest_ipv6compat.matrix import load_matrix
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.stacks import POD_ADDRESSES, STACKS

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "matrix" / "listen-host.ipv6.toml"
CONTEXT = ROOT / "matrix" / "cloud-proxy"
pytestmark = [pytest.mark.docker]


def _copy(dest: Path) -> Path:
    text = MATRIX.read_text(encoding="utf-8").replace('build = "cloud-proxy"', f'build = "{CONTEXT}"')
    path = dest / MATRIX.name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_matrix_holds_on_every_stack(pytester: pytest.Pytester) -> None:
    """2 variants x 5 stacks (ipv6-only and the real kernel included) x 3 settings, each as its table says."""
    _copy(pytester.path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--ipv6-require-docker")
    result.assert_outcomes(passed=30)


@pytest.fixture(scope="module")
def variants(client: docker.DockerClient, base_image: str) -> dict[str, str]:
    return {
        v: str(images.ensure_target_image(client, CONTEXT, base=base_image, name=f"listen-host-{v}",
                                          build_args={"VARIANT": v}))
        for v in ("listen-host-unpatched", "listen-host-fixed")
    }


@pytest.mark.usefixtures("ground_truth_tools")
@pytest.mark.parametrize("variant", ["listen-host-unpatched", "listen-host-fixed"])
@pytest.mark.parametrize("stack", ["dual-stack", "ipv6-sysctl-off", "ipv6-only"])
def test_a_real_client_over_the_pod_address_agrees(engine: DockerBackend, variants: dict[str, str], variant: str,
                                                    stack: str, tmp_path: Path) -> None:
    """The knob unset: the table's /pod per listener is what a real client to the pod address gets."""
    matrix = load_matrix(_copy(tmp_path))
    (cell,) = [c for c in matrix.cells if (c.variant, c.stack, c.setting.label) == (variant, stack, "unset")]
    want = cell.expectation
    env = {"PL_DOMAIN_NAME": "proxy.ipv6compat.test"}
    with engine.run(launch(variants[variant], STACKS[stack], env=env, probe="https", http_path="/healthz",
                           hold=0.5)) as run:
        verdict = run.verdict()
        assert verdict.outcome is Outcome.UP, verdict
        pid = int(engine.client.api.inspect_container(run.container_id)["State"]["Pid"])
        listeners = groundtruth.listeners_of(pid)
        pod = {4 if f == "inet" else 6: POD_ADDRESSES[f][0] for f in STACKS[stack].pod}
        truth = groundtruth.pod_reach(pid, listeners, pod)
    assert truth == {str(x): x in want.pod for x in want.listeners}
    assert {str(x): verdict.pod_answered(x) for x in verdict.listeners} == truth

