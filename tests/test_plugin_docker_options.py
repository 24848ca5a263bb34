"""Options whose effect needs a real engine: keep-failed, image, base image."""

from __future__ import annotations

import re

import docker
import pytest
from helpers import copy_matrix

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("proxy_image")]


def test_keep_failed_keeps_only_failed_containers(pytester: pytest.Pytester, client: docker.DockerClient) -> None:
    table = "[expect.adaptive.dual-stack]\n"
    copy_matrix(pytester, (table + 'unset = "both"', table + 'unset = "v4"'))
    result = pytester.runpytest(
        "--ipv6-variants=adaptive", "--ipv6-stacks=dual-stack", "--ipv6-settings=unset,=1", "--ipv6-keep-failed"
    )
    # rw and read-only config cells: the flipped rw cell fails, the other three pass
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*kept containers of failed cells*", "ipv6compat-*: docker logs *; docker exec -it * sh; docker rm -f *"]
    )
    names = re.findall(r"^(\S+): docker logs ", result.stdout.str(), re.M)
    assert len(names) == 1
    try:
        kept = client.containers.get(names[0])
        assert kept.labels["ipv6compat.session"]
        assert kept.status == "running"  # the failed target, still up for inspection
    finally:
        client.containers.get(names[0]).remove(force=True)


def test_ipv6_image_option(pytester: pytest.Pytester, proxy_image: dict[str, str]) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ipv6_stack("ipv6-kernel-off")
        @pytest.mark.ipv6_env(PL_DOMAIN_NAME="proxy.ipv6compat.test")
        def test_unpatched_dies(ipv6_target):
            assert ipv6_target.verdict.outcome.value == "exited"
            assert "(97: Address family not supported by protocol)" in ipv6_target.verdict.error_line
        """
    )
    result = pytester.runpytest(f"--ipv6-image={proxy_image['unpatched']}")
    result.assert_outcomes(passed=1)


def test_absent_base_image_is_a_cell_error_naming_it(pytester: pytest.Pytester) -> None:
    text = copy_matrix(pytester).read_text()
    # A build context nobody built yet, so the base image is really needed.
    (pytester.path / "ctx").mkdir()
    (pytester.path / "ctx" / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nLABEL x=1\n")
    path = pytester.path / "cloud-proxy.ipv6.toml"
    path.write_text(re.sub(r'build = ".*"', 'build = "ctx"', text, count=1))
    result = pytester.runpytest(
        "--ipv6-base-image=registry.invalid/nope:1", "--ipv6-variants=unpatched", "--ipv6-stacks=dual-stack",
        "--ipv6-settings=unset",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*base image 'registry.invalid/nope:1' is not available locally and could not be pulled*"]
    )
    assert "Traceback" not in result.stdout.str()
