"""A testcontainers DockerContainer definition qualified by the plugin (the ``testcontainers`` extra).

The definitions are made with the real testcontainers package and never started by it.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import docker
import pytest
from testcontainers.core.container import DockerContainer

from pytest_ipv6compat import TargetFactory, images, listener_set
from pytest_ipv6compat.interop import container_target
from pytest_ipv6compat.spec import SpecError
from pytest_ipv6compat.stacks import STACKS

HTTPD = Path(__file__).resolve().parent / "data" / "busybox-httpd"
HTTPD_CMD = "sh -c 'test -f /conf/index.html && exec busybox httpd -f -p 0.0.0.0:8080 -h /conf'"


def test_a_definition_becomes_image_env_and_run_settings() -> None:
    definition = (
        DockerContainer("example/httpd:1.0", command=HTTPD_CMD, env={"A": "1"})
        .with_env("HTTPD_IPV6", "0")
        .with_volume_mapping("/srv/conf", "/conf")
        .with_tmpfs_mount("/scratch", "1m")
        .with_kwargs(user="65534", extra_hosts={"db.ipv6compat.test": "127.0.0.1"}, mem_limit="256m")
    )
    image, env, run = container_target(definition)
    assert image == "example/httpd:1.0"
    assert env == {"A": "1", "HTTPD_IPV6": "0"}
    assert run == {
        "command": ["sh", "-c", "test -f /conf/index.html && exec busybox httpd -f -p 0.0.0.0:8080 -h /conf"],
        "mounts": {"/conf": "/srv/conf"},
        "tmpfs": {"/scratch": "size=1m"},
        "user": "65534",
        "extra_hosts": {"db.ipv6compat.test": "127.0.0.1"},
        "memory": "256m",
    }


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (DockerContainer("svc:1").with_kwargs(privileged=True),
         "DockerContainer('svc:1'): keyword argument(s) a cell cannot honour: privileged (honoured: user, *"),
        (DockerContainer("svc:1").with_network_aliases("db"),
         "DockerContainer('svc:1'): has a network; every cell runs with --network none, so leave it out"),
        (object(), "DockerContainer(None): not a testcontainers DockerContainer definition (no image)"),
    ],
)
def test_what_a_cell_cannot_honour_is_one_line(definition: object, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        container_target(definition)
    assert fnmatch.fnmatch(str(caught.value), message), str(caught.value)


@pytest.mark.docker
@pytest.mark.parametrize("stack", list(STACKS))
def test_a_definition_is_qualified_on_every_stack(
    stack: str,
    ipv6_target_factory: TargetFactory,
    client: docker.DockerClient,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The user's own definition, with its command and volume, started by the plugin on each stack."""
    image = images.ensure_target_image(client, HTTPD, base=base_image, name="busybox-httpd", build_args={})
    conf = tmp_path_factory.mktemp("conf")
    (conf / "index.html").write_text("ok\n")
    definition = DockerContainer(image, command=HTTPD_CMD).with_volume_mapping(str(conf), "/conf")
    with ipv6_target_factory.start_container(definition, stack=stack, probe="http") as started:
        assert started.up, started.describe()
        assert started.listeners == listener_set("0.0.0.0:8080")
        assert started.answered("0.0.0.0:8080") is True
