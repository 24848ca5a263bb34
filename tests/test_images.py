"""images.py against a real Docker engine: the base image, the probe, target images and errors.

Everything built here goes under a repository unique to this test session (so the cold
path really runs once per session, and xdist workers and other runs never share or delete
each other's images) and is removed at the end of the session.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import requests

from pytest_ipv6compat import images
from pytest_ipv6compat.images import ImageError

try:
    _ENGINE = docker.from_env()
    _ENGINE.ping()
except (docker.errors.DockerException, requests.RequestException, OSError) as _exc:
    pytest.skip(f"no Docker engine reachable (docker.from_env().ping() failed: {_exc})", allow_module_level=True)

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
CLOUD_PROXY = ROOT / "matrix" / "cloud-proxy"
PROBE_SOURCES = ROOT / "pytest_ipv6compat" / "probe"
LABELS = {"ipv6compat.purpose": "tests/test_images.py"}


def run_in(client: docker.DockerClient, image: str, cmd: list[str] | None, **kwargs: object) -> tuple[int, str]:
    """Run ``cmd`` in ``image`` without a network; return (exit code, stdout+stderr). Always removed."""
    container = client.containers.create(image, cmd, network_mode="none", labels=LABELS, **kwargs)
    try:
        container.start()
        code = int(container.wait(timeout=60)["StatusCode"])
        return code, container.logs().decode("utf-8", "replace")
    finally:
        container.remove(force=True)


@pytest.fixture(scope="session")
def client() -> docker.DockerClient:
    return _ENGINE


@pytest.fixture(scope="session")
def session_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def built(client: docker.DockerClient) -> Iterator[list[str]]:
    """Image references made by this session; removed (newest first) at its end."""
    refs: list[str] = []
    yield refs
    for ref in reversed(refs):
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(ref, force=True)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh cache, seeded with .debs already downloaded to the user cache (saves the network)."""
    cache = tmp_path_factory.mktemp("ipv6compat-cache")
    downloaded = images.default_cache_dir() / "debs"
    if downloaded.is_dir():
        (cache / "debs").mkdir()
        for deb in downloaded.glob("*.deb"):
            shutil.copy2(deb, cache / "debs" / deb.name)
    return cache


@pytest.fixture(scope="session")
def base_image(client: docker.DockerClient, cache_dir: Path, session_id: str, built: list[str]) -> str:
    """The base image, built cold exactly once per session."""
    repository = f"ipv6compat-test/base-{session_id}"
    ref = images.ensure_base_image(client, cache_dir, repository=repository)
    built.append(ref)
    return ref


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """A private copy of the cloud-proxy build context (modes kept)."""
    copy = tmp_path / "cloud-proxy"
    shutil.copytree(CLOUD_PROXY, copy)
    return copy


def test_base_image_runs_nginx_and_busybox(client: docker.DockerClient, base_image: str) -> None:
    code, out = run_in(client, base_image, ["/bin/sh", "-c", "nginx -V 2>&1; echo sh=$0; busybox true && echo bb=ok"])
    assert code == 0, out
    assert "nginx version: nginx/" in out
    assert "--with-http_ssl_module" in out
    assert "--with-http_v2_module" in out
    assert "sh=/bin/sh" in out
    assert "bb=ok" in out
    script = "ls -ld /tmp; id www-data; for a in nc awk timeout unshare; do $a --help 2>&1 | head -1; done"
    code, out = run_in(client, base_image, ["sh", "-c", script])
    assert code == 0, out
    assert out.startswith("drwxrwxrwt"), out
    assert "uid=33(www-data)" in out
    assert "applet not found" not in out


def test_base_image_is_labelled(client: docker.DockerClient, base_image: str) -> None:
    labels = client.images.get(base_image).labels
    assert labels[images.LABEL_RECIPE] == base_image.rsplit(":", 1)[1]
    packages = dict(item.split("=", 1) for item in labels[images.LABEL_PACKAGES].split())
    assert {"nginx", "busybox-static", "libc6"} <= set(packages)
    assert not set(packages) & images.EXCLUDED_PACKAGES
    assert all(packages.values())


def test_second_ensure_base_image_is_a_cache_hit_without_apt(
    client: docker.DockerClient, cache_dir: Path, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = client.images.get(base_image).id
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, apt-cache or dpkg-deb: the warm path needs none
    started = time.monotonic()
    ref = images.ensure_base_image(client, cache_dir, repository=base_image.rsplit(":", 1)[0])
    elapsed = time.monotonic() - started
    assert ref == base_image
    assert client.images.get(ref).id == before
    assert elapsed < 1.0, f"warm ensure_base_image took {elapsed:.2f}s"


def test_base_image_ref_names_the_built_image_without_building(
    base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, apt-cache or dpkg-deb, and no client is passed
    ref = images.base_image_ref()
    assert re.fullmatch(r"ipv6compat/base:[0-9a-f]{12}", ref), ref
    assert images.base_image_ref(packages=tuple(reversed(images.DEFAULT_PACKAGES))) == ref  # order is not part of it
    assert images.base_image_ref(packages=("busybox-static",)) != ref
    assert images.base_image_ref(repository="example/base") == "example/base:" + ref.split(":")[1]
    assert images.base_image_ref(repository=base_image.rsplit(":", 1)[0]) == base_image  # what ensure_base_image made


def test_probe_holds_busybox_and_the_probe_files(cache_dir: Path) -> None:
    probe = images.ensure_probe(cache_dir)
    assert probe.parent == cache_dir
    assert probe.name.startswith("probe-")
    assert os.access(probe / "busybox", os.X_OK)
    assert os.access(probe / "watch", os.X_OK)  # compiled from watch.c, static
    assert os.access(probe / "umlsetup", os.X_OK)  # compiled from uml_setup.c, static
    assert os.access(probe / "podsetup", os.X_OK)  # compiled from pod_setup.c (which includes uml_setup.c), static
    assert (probe / "shim.sh").read_bytes() == (PROBE_SOURCES / "shim.sh").read_bytes()
    assert os.access(probe / "reap", os.X_OK)  # compiled from reap.c: the oci backend's subreaper, run on the host
    assert os.access(probe / "ocistart", os.X_OK)  # compiled from oci_start.c: starts an oci cell, on the host
    assert os.access(probe / "ocienter", os.X_OK)  # compiled from oci_enter.c: starts the watcher in a cell, host side
    assert sorted(p.name for p in probe.iterdir()) == ["busybox", "oci_enter.c", "oci_start.c", "ocienter",
                                                       "ocistart", "pod_net.c", "pod_setup.c", "podsetup", "reap",
                                                       "reap.c", "shim.sh", "uml_setup.c", "umlsetup", "watch",
                                                       "watch.c"]
    started = time.monotonic()
    assert images.ensure_probe(cache_dir) == probe
    assert time.monotonic() - started < 0.5


def test_probe_works_in_an_image_without_any_tools(
    client: docker.DockerClient, cache_dir: Path, session_id: str, built: list[str]
) -> None:
    """An image holding one empty file: everything comes from the read-only probe mount."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("empty"), io.BytesIO(b""))
    ref = f"ipv6compat-test/empty-{session_id}:latest"
    client.api.import_image(src=buf.getvalue(), repository=ref.split(":")[0], tag="latest")
    built.append(ref)
    probe = images.ensure_probe(cache_dir)
    code, out = run_in(
        client,
        ref,
        ["/.ipv6compat/busybox", "sh", "-c", "cat /proc/net/tcp | head -1; touch /.ipv6compat/x"],
        volumes={str(probe): {"bind": "/.ipv6compat", "mode": "ro"}},
    )
    assert "local_address" in out
    assert "Read-only file system" in out
    assert code != 0


def test_target_image_is_cached_by_content(
    client: docker.DockerClient, cache_dir: Path, base_image: str, context: Path, built: list[str]
) -> None:
    def ensure(args: dict[str, str]) -> str:
        ref = images.ensure_target_image(
            client, context, base=base_image, name="images-test", build_args=args, cache_dir=cache_dir
        )
        built.append(ref)
        return ref

    first = ensure({"VARIANT": "adaptive"})
    assert first.startswith("ipv6compat/images-test:")
    first_id = client.images.get(first).id
    labels = client.images.get(first).labels
    assert labels["ipv6compat.base"] == base_image
    assert labels["ipv6compat.variant"] == "adaptive"

    started = time.monotonic()
    assert ensure({"VARIANT": "adaptive"}) == first
    assert time.monotonic() - started < 1.0
    assert client.images.get(first).id == first_id

    other_variant = ensure({"VARIANT": "unpatched"})
    assert other_variant != first

    with (context / "nginx.conf").open("a", encoding="utf-8") as fh:
        fh.write("# changed by test_images\n")
    changed = ensure({"VARIANT": "adaptive"})
    assert changed != first
    assert client.images.get(changed).id != first_id
    assert client.images.get(first).id == first_id  # the old one is still there, untouched

    # The built target keeps its contract: PL_DOMAIN_NAME is required.
    code, out = run_in(client, changed, None)
    assert code == 1
    assert "PL_DOMAIN_NAME is required" in out


def test_failed_build_names_the_image_and_shows_the_log(
    client: docker.DockerClient, cache_dir: Path, base_image: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY no-such-file /x\n", encoding="utf-8")
    with pytest.raises(ImageError) as info:
        images.ensure_target_image(client, tmp_path, base=base_image, name="images-test-broken", build_args={},
                                   cache_dir=cache_dir)
    message = str(info.value)
    assert message.startswith(f"building image 'images-test-broken' from {tmp_path} failed: ")
    assert "no-such-file" in message
    assert re.search(r"\n    Step \d+/\d+ : COPY no-such-file /x\n", message), message


def test_missing_context_is_named(client: docker.DockerClient, cache_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ImageError, match=f"^build context {missing} does not exist$"):
        images.ensure_target_image(client, missing, base="unused", name="x", build_args={}, cache_dir=cache_dir)


def test_context_without_dockerfile_is_named(client: docker.DockerClient, cache_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "nginx.conf").write_text("events {}\n", encoding="utf-8")
    with pytest.raises(ImageError, match=f"^build context {tmp_path} has no Dockerfile$"):
        images.ensure_target_image(client, tmp_path, base="unused", name="x", build_args={}, cache_dir=cache_dir)


def test_invalid_image_name_is_named(client: docker.DockerClient, context: Path) -> None:
    with pytest.raises(ImageError, match=r"^image name 'Cloud Proxy' is not valid"):
        images.ensure_target_image(client, context, base="unused", name="Cloud Proxy", build_args={})


def test_absent_user_base_image(client: docker.DockerClient) -> None:
    ref = "ipv6compat-test.invalid/absent:never"  # .invalid never resolves: the pull fails at once
    with pytest.raises(ImageError) as info:
        images.use_base_image(client, ref)
    message = str(info.value)
    assert message.startswith(f"base image {ref!r} is not available locally and could not be pulled: ")
    assert "\n" not in message


def test_present_user_base_image_is_used_as_is(client: docker.DockerClient, base_image: str) -> None:
    assert images.use_base_image(client, base_image) == base_image


def test_missing_apt_is_explained(
    client: docker.DockerClient, tmp_path: Path, session_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ImageError) as info:
        images.ensure_base_image(client, tmp_path / "cache", repository=f"ipv6compat-test/never-{session_id}")
    assert str(info.value) == (
        "cannot bootstrap the base image: apt-get not found; pass a base image you already have instead"
    )


def test_unknown_package_is_named(client: docker.DockerClient, tmp_path: Path, session_id: str) -> None:
    with pytest.raises(ImageError, match="ipv6compat-no-such-package"):
        images.ensure_base_image(
            client,
            tmp_path,
            packages=("busybox-static", "ipv6compat-no-such-package"),
            repository=f"ipv6compat-test/never-{session_id}",
        )


def test_default_cache_dir_is_read_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert images.default_cache_dir() == tmp_path / "pytest-ipv6compat"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert images.default_cache_dir() == tmp_path / "home" / ".cache" / "pytest-ipv6compat"
