"""A new user's first five minutes, as README tells them: init, one recording run, one plain run (pytester + Docker).

Three services a user is likely to bring, none of them the reference proxy: an HTTP service
that answers 404 on /, a TLS service, and a UDP service. No file is edited by hand; the
third command passes. The images are small builds on the zoo image (tests/zoo).
"""

from __future__ import annotations

import sys

import docker
import pytest
from test_zoo import zoo_image  # noqa: F401 (the fixture, used by name)

from pytest_ipv6compat import images

pytestmark = pytest.mark.docker

SERVICES = {
    # name: (CMD, port)
    "http404": ('["busybox", "httpd", "-f", "-p", "8080", "-h", "/etc/zoo/tls"]', 8080),  # no index: 404 on /
    "tls": ('["nginx", "-c", "/etc/zoo/nginx-tls.conf"]', 8443),
    "udp": ('["/usr/local/bin/zoosrv", "udp4=0.0.0.0:5353"]', 5353),
}


@pytest.fixture(scope="module")
def service_images(
    client: docker.DockerClient, zoo_image: str, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
) -> dict[str, str]:
    built = {}
    for name, (cmd, _) in SERVICES.items():
        context = tmp_path_factory.mktemp(f"first-use-{name}")
        (context / "Dockerfile").write_text(f"ARG BASE\nFROM ${{BASE}}\nCMD {cmd}\n")
        built[name] = images.ensure_target_image(client, context, base=zoo_image, name=f"first-use-{name}",
                                                 build_args={})  # fmt: skip
    return built


@pytest.mark.parametrize("name", list(SERVICES))
def test_init_record_check_with_no_hand_edits(pytester: pytest.Pytester, service_images: dict[str, str],
                                              name: str) -> None:  # fmt: skip
    port = SERVICES[name][1]
    made = pytester.run(sys.executable, "-m", "pytest_ipv6compat", "init", "--image", service_images[name],
                        "--name", name, "--port", str(port))  # fmt: skip
    assert made.ret == 0, made.stderr.str()
    path = pytester.path / f"{name}.ipv6.toml"
    recorded = pytester.runpytest_subprocess("--ipv6-record", "-p", "no:cacheprovider")
    assert recorded.ret == pytest.ExitCode.TESTS_FAILED  # every placeholder changed: the recording run says so
    recorded.stdout.fnmatch_lines([f"{name}.ipv6.toml: 3 cells recorded, 3 changed"])
    text = path.read_text()
    expectations = text.split("[expect.default]", 1)[1]
    assert "/silent" not in expectations, expectations  # every listener answered its probe
    assert "warning: no listener answered" not in recorded.stdout.str()
    assert f":{port}" in expectations
    checked = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    checked.assert_outcomes(passed=3)


def test_a_tls_port_recorded_with_an_http_probe_gets_a_warning_naming_https(
    pytester: pytest.Pytester, service_images: dict[str, str]
) -> None:
    made = pytester.run(sys.executable, "-m", "pytest_ipv6compat", "init", "--image", service_images["tls"],
                        "--name", "tls", "--port", "8443", "--probe", "http", "--stacks", "dual-stack")  # fmt: skip
    assert made.ret == 0, made.stderr.str()
    recorded = pytester.runpytest_subprocess("--ipv6-record", "-p", "no:cacheprovider")
    recorded.stdout.fnmatch_lines(["tls.ipv6.toml: warning: no listener answered its probe in any cell *"
                                   "probe = \"https\"*"])  # fmt: skip
    assert "/silent" in (pytester.path / "tls.ipv6.toml").read_text().split("[expect.default]", 1)[1]
