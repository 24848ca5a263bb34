"""The oci backend's pure parts: the bundle's config.json, users, hosts files, and selecting the backend."""

from __future__ import annotations

import pytest

from pytest_ipv6compat.backends import UnknownUser
from pytest_ipv6compat.backends.oci_bundle import (
    CAPABILITIES,
    ExecUser,
    config,
    hosts_text,
    oci_seccomp,
    resolv_text,
    resolve_user,
    tmpfs_options,
)
from pytest_ipv6compat.options import oci_problem
from pytest_ipv6compat.spec import RunSpec
from pytest_ipv6compat.stacks import STACKS

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n" \
         "www:x:33:33:www:/var/www:/bin/false\n"
GROUP = "root:x:0:\nwww:x:33:\nadm:x:4:www,other\nnogroup:x:65534:\n"


def test_users_resolve_as_the_engine_resolves_them() -> None:
    assert resolve_user("", "img", PASSWD, GROUP) == ExecUser(0, 0, (), "/root")
    assert resolve_user("www", "img", PASSWD, GROUP) == ExecUser(33, 33, (4,), "/var/www")
    assert resolve_user("65534", "img", PASSWD, GROUP) == ExecUser(65534, 65534, (), "/nonexistent")
    assert resolve_user("1234:5", "img", PASSWD, GROUP) == ExecUser(1234, 5, (), "/")
    assert resolve_user("www:nogroup", "img", PASSWD, GROUP).gid == 65534


@pytest.mark.parametrize(("user", "kind", "name"), [("ghost", "user", "ghost"), ("www:ghosts", "group", "ghosts")])
def test_a_user_the_image_lacks_is_the_engines_error(user: str, kind: str, name: str) -> None:
    with pytest.raises(UnknownUser) as caught:
        resolve_user(user, "img", PASSWD, GROUP)
    assert (caught.value.kind, caught.value.name) == (kind, name)
    assert UnknownUser.find(user, "img", str(caught.value)) is not None  # the words the engines use


def test_hosts_and_resolv_conf_as_docker_writes_them_for_network_none() -> None:
    hosts = hosts_text([("upstream.test", "127.0.0.1")])
    assert hosts.splitlines()[:2] == ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    assert hosts.splitlines()[-1] == "127.0.0.1\tupstream.test"
    assert resolv_text("nameserver 10.0.0.2\nsearch x\n") == "nameserver 10.0.0.2\nsearch x\n"
    assert resolv_text("nameserver 127.0.0.53\n") == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def test_tmpfs_options_merge_over_dockers_defaults() -> None:
    assert tmpfs_options("") == ["noexec", "nosuid", "nodev"]
    assert tmpfs_options("exec,size=1m") == ["nosuid", "nodev", "exec", "size=1m"]


def test_the_seccomp_profile_has_the_af_inet6_rule_only_on_kernel_off() -> None:
    def inet6_rules(stack: str) -> list[object]:
        return [r for r in oci_seccomp(STACKS[stack], "x86_64")["syscalls"] if r.get("errnoRet") == 97]

    assert inet6_rules("dual-stack") == []
    assert inet6_rules("ipv6-sysctl-off") == []
    (rule,) = inet6_rules("ipv6-kernel-off")
    assert rule["names"] == ["socket", "socketpair"]
    assert rule["args"][0]["value"] == 0xFFFF_FFFF
    assert rule["args"][0]["valueTwo"] == 10
    profile = oci_seccomp(STACKS["dual-stack"], "x86_64")
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["architectures"][0] == "SCMP_ARCH_X86_64"
    assert "SCMP_ARCH_X86" in profile["architectures"]


def test_the_bundle_is_a_network_none_container() -> None:
    run = RunSpec(read_only=True, tmpfs=(("/run", "size=1m"),), mounts=(("/etc/proxy", "/host/proxy"),), pids=64,
                  cpus=0.5)
    cfg = config(stack=STACKS["ipv6-sysctl-off"], run=run, argv=["/x"], env={"A": "1"}, user=ExecUser(1, 2, (3,)),
                 workdir="/w", hostname="h", files={"/etc/hosts": "/cell/hosts"}, probe="/probe", cgroup="/c")
    linux = cfg["linux"]
    assert [n["type"] for n in linux["namespaces"]] == ["pid", "network", "ipc", "uts", "mount", "cgroup"]
    assert linux["sysctl"]["net.ipv6.conf.all.disable_ipv6"] == "1"
    assert linux["sysctl"]["net.ipv4.ip_unprivileged_port_start"] == "0"
    assert linux["resources"]["pids"] == {"limit": 64}
    assert linux["resources"]["cpu"] == {"quota": 50_000, "period": 100_000}
    assert cfg["process"]["capabilities"]["bounding"] == list(CAPABILITIES)
    assert len(CAPABILITIES) == 14
    assert "inheritable" not in cfg["process"]["capabilities"]
    assert cfg["process"]["noNewPrivileges"] is False  # the watcher is setgid
    assert cfg["process"]["user"] == {"uid": 1, "gid": 2, "additionalGids": [3]}
    assert cfg["root"] == {"path": "rootfs", "readonly": True}
    mounts = {m["destination"]: m for m in cfg["mounts"]}
    assert "ro" in mounts["/.ipv6compat"]["options"]
    assert mounts["/.ipv6compat"]["source"] == "/probe"
    assert "ro" in mounts["/etc/proxy"]["options"]
    assert "ro" in mounts["/sys"]["options"]
    assert mounts["/run"]["type"] == "tmpfs"
    assert "size=1m" in mounts["/run"]["options"]


def test_the_pod_set_ups_capability_is_added_only_when_asked() -> None:
    """pod_entry's cap_add (NET_ADMIN, which podsetup drops) joins the initial sets as the engine's cap_add does."""
    cfg = config(stack=STACKS["ipv6-only"], run=RunSpec(), argv=["/x"], env={}, user=ExecUser(0, 0), workdir="/",
                 hostname="h", files={}, probe="/probe", cgroup="/c", cap_add=["NET_ADMIN"])
    for kind in ("bounding", "effective", "permitted"):
        assert cfg["process"]["capabilities"][kind] == [*CAPABILITIES, "CAP_NET_ADMIN"]
    assert "inheritable" not in cfg["process"]["capabilities"]


@pytest.mark.parametrize(("engines", "docker_host", "named"), [
    (("ssh://user@host",), None, "ssh://user@host"),
    (("unix:///var/run/docker.sock", "tcp://10.0.0.1:2375"), None, "tcp://10.0.0.1:2375"),
    (None, "tcp://10.0.0.1:2375", "tcp://10.0.0.1:2375 (from DOCKER_HOST)"),
])
def test_oci_with_a_remote_engine_is_one_line_naming_it(
    engines: tuple[str, ...] | None, docker_host: str | None, named: str
) -> None:
    why = oci_problem(engines, docker_host)
    assert why is not None
    assert named in why
    assert "--ipv6-backend=engine" in why


def test_a_bad_backend_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--ipv6-backend=podman")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ipv6-backend=podman: backend 'podman' is not one of engine, oci"])
