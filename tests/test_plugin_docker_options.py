"""Options whose effect needs a real engine: keep-failed, image, base image."""

from __future__ import annotations

import re
import subprocess

import docker
import pytest
from helpers import copy_matrix

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("proxy_image")]


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_keep_failed_keeps_only_failed_containers(
    pytester: pytest.Pytester, client: docker.DockerClient, workers: tuple[str, ...]
) -> None:
    """Under xdist the worker keeps the run and the controller lists it."""
    table = "[expect.adaptive.dual-stack]\n"
    copy_matrix(pytester, (table + 'unset = "both"', table + 'unset = "v4"'))
    result = pytester.runpytest(
        "--ipv6-variants=adaptive", "--ipv6-stacks=dual-stack", "--ipv6-settings=unset,=1", "--ipv6-keep-failed",
        *workers,
    )
    # rw and read-only config cells: the flipped rw cell fails, the other three pass
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*kept runs of failed cells (--ipv6-keep-failed)*",
            "ipv6compat-kept-*: docker logs * 2>&1 | grep -v '^@@ipv6compat '; "
            "docker exec -i * /.ipv6compat/busybox sh; docker rm -f *",
        ]
    )
    kept_lines = re.findall(r"^(ipv6compat-kept-\S+): (.*)$", result.stdout.str(), re.M)
    assert len(kept_lines) == 1
    name, commands = kept_lines[0]
    session = client.containers.get(name).labels["ipv6compat.session"]
    try:
        kept = client.containers.get(name)
        assert session
        assert kept.status == "running"  # the failed target, still up for inspection
        logs, shell, remove = run_printed(commands)  # from a plain shell, no terminal
        assert "nginx/" in logs  # the target's own output ...
        assert "@@ipv6compat" not in logs  # ... without the plugin's lines
        assert shell == ""  # an interactive shell that read an empty stdin
        assert remove.strip() == name
        assert not client.containers.list(all=True, filters={"name": name})
    finally:
        for left in client.containers.list(all=True, filters={"name": name}):
            left.remove(force=True)
        for volume in client.volumes.list(filters={"label": f"ipv6compat.session={session}"}):
            volume.remove()  # the kept run's probe volume, which its session had to leave


def run_printed(commands: str) -> list[str]:
    """Run each printed command as a user would paste it, without a terminal; each must succeed."""
    outputs = []
    for command in commands.split("; "):
        done = subprocess.run(["sh", "-c", command], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, f"{command!r}: exit {done.returncode}: {done.stderr}"
        outputs.append(done.stdout)
    return outputs


def test_keep_failed_on_the_real_kernel_keeps_its_console(pytester: pytest.Pytester) -> None:
    """An ipv6-boot-disabled cell has no container to keep: its console log is, and the commands printed work."""
    table = "[expect.unpatched.ipv6-boot-disabled]\n"
    copy_matrix(pytester, (table + 'unset = "no-af-inet6"', table + 'unset = "v4"'))
    result = pytester.runpytest(
        "--ipv6-variants=unpatched", "--ipv6-stacks=ipv6-boot-disabled", "--ipv6-settings=unset",
        "--ipv6-keep-failed", "--ipv6-require-docker",
    )  # fmt: skip
    result.assert_outcomes(failed=1)
    kept_lines = re.findall(r"^(ipv6compat-uml-\S+): (.*)$", result.stdout.str(), re.M)
    assert len(kept_lines) == 1, result.stdout.str()
    assert "docker" not in kept_lines[0][1]
    console, rootfs, remove = run_printed(kept_lines[0][1])
    assert "(97: Address family not supported by protocol)" in console
    assert "@@ipv6compat" not in console
    assert ".cpio" in rootfs
    assert remove == ""


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
