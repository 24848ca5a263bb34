"""The pod address on the container stacks (probe/pod_setup.c), on Docker and on Podman.

Ground truth by paths independent of the plugin's shim: ``nsenter -t PID -n ip -j`` from the host for the
cell's interfaces, addresses and routes, and a plain ``--network none`` container made by docker-py, without
the probe, for what the target's identity and capabilities must stay (the engine's own, for the same user).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import docker
import groundtruth
import pytest
from engines import podman_service
from helpers import engine_alone, launch
from test_zoo import zoo_image  # noqa: F401 - the zoo image fixture, shared
from zoo_table import POD_STACKS, POD_TARGETS, ZooTarget

from pytest_ipv6compat import images, matrix
from pytest_ipv6compat.backends import UnknownUser
from pytest_ipv6compat.backends.docker_api import DockerBackend
from pytest_ipv6compat.matrix import parse_expectation
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.report import short_verdict
from pytest_ipv6compat.stacks import STACKS

pytestmark = pytest.mark.docker

CONTAINER_STACKS = ("dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off", "ipv6-only")
IDENTITY = ('echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; id; echo "HOME=$HOME"; '
            "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status")


@pytest.fixture(scope="module", params=["docker", "podman"])
def pod_engine(request: pytest.FixtureRequest, engine: DockerBackend, base_image: str) -> Iterator[DockerBackend]:
    if request.param == "docker":
        yield engine
        return
    with podman_service() as url:
        podman = DockerBackend.connect(images.ensure_probe(images.default_cache_dir()), url=url)
        try:
            podman.client.images.load(b"".join(engine.client.images.get(base_image).save(named=True)))
            yield podman
        finally:
            podman.remove_session()
            podman.close()


def _plain(client: docker.DockerClient, image: str, user: str | None, stack: str) -> str:
    """What the engine itself gives a target of ``user``: a container without the probe, on --network none."""
    return engine_alone(client, image, ["sh", "-c", IDENTITY], user=user or "", sysctls=STACKS[stack].sysctls())


@pytest.mark.parametrize("user", [None, "nobody", "1234", "1234:5678", "nobody:nogroup", "0:1234"])
@pytest.mark.parametrize("stack", ["dual-stack", "ipv6-only"])
def test_the_target_holds_what_the_engine_gives_it(pod_engine: DockerBackend, base_image: str, stack: str,
                                                   user: str | None) -> None:
    """uid, gids, HOME, every capability set, no_new_privs and seccomp mode: as the engine gives them without the
    pod address (CAP_NET_ADMIN, which the pod set-up needs, is gone from every set)."""
    # It stays up (listening on loopback): a target that exits at once can meet Podman 4.3's lost exit, which
    # is an error of its own (backends/docker_run.py), not what this test is about.
    command = ("sh", "-c", IDENTITY + "; exec httpd -f -p 127.0.0.1:8080")
    with pod_engine.run(launch(base_image, STACKS[stack], command=command, user=user)) as run:
        assert run.attestation().ok, run.attestation().describe()
        verdict = run.verdict()
    assert verdict.outcome is Outcome.UP, verdict
    seen, plain = verdict.logs.strip().splitlines(), _plain(pod_engine.client, base_image, user, stack).splitlines()
    if pod_engine.info()["engine"] == "Podman":
        # Podman adds a uid or gid the image lacks to the container's /etc/passwd or /etc/group when it starts
        # the container as that user; started as root, it does not: the ids are the same, id(1) names none.
        del seen[1], plain[1]
    assert seen == plain


def test_home_set_by_the_cell_is_kept(engine: DockerBackend, base_image: str) -> None:
    with engine.run(launch(base_image, STACKS["dual-stack"], env={"HOME": "/srv"}, user="nobody",
                           command=("sh", "-c", 'echo "HOME=$HOME"; exit 4'))) as run:
        verdict = run.verdict()
    assert verdict.logs.strip() == "HOME=/srv"


def test_a_user_the_image_lacks_is_the_engines_words(engine: DockerBackend, base_image: str) -> None:
    with engine.run(launch(base_image, STACKS["dual-stack"], user="nosuchuser", command=("true",))) as run, \
            pytest.raises(UnknownUser, match="unable to find user nosuchuser: no matching entries in passwd file"):
        run.attestation()


def _ns(pid: int, *argv: str) -> Any:
    done = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-j", *argv], capture_output=True, text=True,
                          timeout=30, check=True)
    return json.loads(done.stdout or "[]")


def _truth(pid: int) -> dict[str, Any]:
    """The namespace as ip(8) sees it from the host: interfaces, global addresses, default routes."""
    links = {link["ifname"]: link for link in _ns(pid, "link", "show")}
    addresses = sorted(
        f"{a['ifname']} {info['local']}/{info['prefixlen']}"
        for a in _ns(pid, "addr", "show") for info in a.get("addr_info", [])
        if info.get("scope") in ("global", "host") and not (a["ifname"] == "lo" and info["local"] == "::1")
    )
    return {
        "links": sorted(links),
        "up": sorted(name for name, link in links.items() if "UP" in link.get("flags", [])),
        "addresses": addresses,
        "default4": sorted(r.get("dev", "") for r in _ns(pid, "-4", "route", "show", "default")),
        "default6": sorted(r.get("dev", "") for r in _ns(pid, "-6", "route", "show", "default")),
        "routes4": len(_ns(pid, "-4", "route", "show", "table", "main")),
    }


WANT = {
    "dual-stack": (["10.69.0.2/24", "fd69:7076:3663::2/64"], ["pod0"], ["pod0"]),
    "ipv6-sysctl-off": (["10.69.0.2/24"], ["pod0"], []),
    "ipv6-kernel-off": (["10.69.0.2/24"], ["pod0"], []),
    "ipv6-only": (["fd69:7076:3663::2/64"], [], ["pod0"]),
}


@pytest.mark.parametrize("stack", CONTAINER_STACKS)
def test_each_stack_has_its_pod_address_as_seen_from_the_host(pod_engine: DockerBackend, base_image: str,
                                                              stack: str) -> None:
    """One veth pair (both ends in the cell's namespace: nothing reaches another), the stack's addresses on
    pod0, a default route per family it has, none for the other; POD_IP, POD_IPS and /etc/hosts agree."""
    addresses, default4, default6 = WANT[stack]
    show = ('echo "POD_IP=$POD_IP POD_IPS=$POD_IPS"; grep -F "$(hostname)" /etc/hosts; '
            "exec httpd -f -p 127.0.0.1:8080")
    with pod_engine.run(launch(base_image, STACKS[stack], command=("sh", "-c", show), hold=0.2)) as run:
        attestation = run.attestation()
        assert attestation.ok, attestation.describe()
        verdict = run.verdict()
        assert verdict.outcome is Outcome.UP, verdict
        pid = int(pod_engine.client.api.inspect_container(run.container_id)["State"]["Pid"])
        truth = _truth(pid)
    assert truth["links"] == ["lo", "pod0", "pod0p"]
    assert truth["up"] == ["lo", "pod0", "pod0p"]
    assert truth["addresses"] == sorted(["lo 127.0.0.1/8", *(f"pod0 {a}" for a in addresses)])
    assert (truth["default4"], truth["default6"]) == (default4, default6)
    assert truth["routes4"] == (2 if default4 else 0)  # the default and the subnet's; ipv6-only: no IPv4 route
    ips = [a.split("/")[0] for a in addresses]
    lines = verdict.logs.splitlines()
    assert lines[0] == f"POD_IP={ips[0]} POD_IPS={','.join(ips)}"
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(ips)


# --- reachability over the pod address: the watcher against a real client from the host ----------------------

POD_IPS = {"dual-stack": {4: "10.69.0.2", 6: "fd69:7076:3663::2"}, "ipv6-sysctl-off": {4: "10.69.0.2"},
           "ipv6-kernel-off": {4: "10.69.0.2"}, "ipv6-only": {6: "fd69:7076:3663::2"}}
SERVERS = {  # busybox httpd on one address: a wildcard of each family, loopback only, the pod address
    "any4": "exec httpd -f -p 0.0.0.0:8080",
    "any6": "exec httpd -f -p '[::]:8080'",
    "lo4": "exec httpd -f -p 127.0.0.1:8080",
    "pod-ip": 'case $POD_IP in *:*) exec httpd -f -p "[$POD_IP]:8080" ;; *) exec httpd -f -p "$POD_IP:8080" ;; esac',
}


# The tables as the target reads them itself (cat, not the shim), without the kernel's reference and use counts.
TABLES = ("t() { cut -c1-113,132- /proc/net/ipv6_route; cat /proc/net/if_inet6 /proc/net/route; }; "
          "t > /tmp/first; sleep 3; t > /tmp/later; cat /tmp/first; echo ---; cat /tmp/later")


@pytest.mark.parametrize("stack", ["dual-stack", "ipv6-only", "ipv6-sysctl-off"])
def test_the_target_starts_in_a_settled_namespace(engine: DockerBackend, base_image: str, stack: str) -> None:
    """The routes and addresses the target first sees are those it sees 3 s later: nothing the kernel finishes
    later (its own link-local address took 1-2 s of duplicate address detection and then added routes while the
    shim read them: CI once attested "inet6 default routes = pod0 pod0"). Docker only: the namespace is the
    kernel's, and Podman 4.3 under load loses the exit of a target that exits while the watcher runs."""
    with engine.run(launch(base_image, STACKS[stack], command=("sh", "-c", TABLES), timeout=60)) as run:
        attestation = run.attestation()
        assert attestation.ok, attestation.describe()
        verdict = run.verdict()
    assert (verdict.outcome, verdict.exit_code) == (Outcome.EXITED, 0), verdict
    first, _, later = verdict.logs.partition("---\n")
    assert first.strip()
    assert first.strip() == later.strip()
    assert ("fe800000000000000000000000000002" in first) == (stack != "ipv6-sysctl-off")  # pod0's link-local

@pytest.mark.parametrize("server", list(SERVERS))
@pytest.mark.parametrize("stack", CONTAINER_STACKS)
def test_answers_over_the_pod_address_as_a_peer_sees_it(engine: DockerBackend, base_image: str, stack: str,
                                                         server: str) -> None:
    """Each listener's probe over the pod address agrees with a real client's connection to that address from
    inside the namespace (nsenter), listener by listener; loopback-only listeners are told apart."""
    with engine.run(launch(base_image, STACKS[stack], command=("sh", "-c", SERVERS[server]), hold=0.2)) as run:
        assert run.attestation().ok
        verdict = run.verdict()
        if verdict.outcome is not Outcome.UP:
            assert (stack, server) == ("ipv6-kernel-off", "any6"), verdict  # no AF_INET6 there: httpd exits
            return
        pid = int(engine.client.api.inspect_container(run.container_id)["State"]["Pid"])
        listeners = groundtruth.listeners_of(pid)
        truth = groundtruth.pod_reach(pid, listeners, POD_IPS[stack])
    assert sorted(str(x) for x in verdict.listeners) == sorted(s.notation for s in listeners)
    seen = {str(x): verdict.pod_answered(x) for x in verdict.listeners}
    assert seen == truth, (verdict.pod_reach, truth)
    if server == "lo4":
        assert truth == {"127.0.0.1:8080": False}  # answers on loopback only: the grid marks it
        assert short_verdict(verdict) == "v4@127.0.0.1(lo)"
    if server == "any4":
        # up everywhere, but on ipv6-only no peer reaches it: there is no IPv4 pod address
        assert truth == {"0.0.0.0:8080": stack != "ipv6-only"}


# --- the zoo's pod targets (zoo_table.POD_TARGETS): the table, the plugin and a real client agree -------------

POD_CELLS = [pytest.param(t, s, id=f"{t.name}-{s}") for t in POD_TARGETS for s in POD_STACKS]


@pytest.mark.usefixtures("ground_truth_tools")
@pytest.mark.parametrize(("target", "stack"), POD_CELLS)
def test_the_pod_zoo_against_ground_truth(engine: DockerBackend, zoo_image: str, target: ZooTarget,  # noqa: F811
                                          stack: str) -> None:
    """Ground truth from the plugin's own container while it holds it: ``ss`` in the namespace for the listeners,
    a real client to the pod address for who reaches them (groundtruth.pod_reach), the engine's exit code."""
    want = parse_expectation(target.expectation(stack))
    run_spec = target.run_settings()
    with engine.run(launch(zoo_image, STACKS[stack], command=target.command, probe="http",
                           http_path=str(run_spec["http_path"]), timeout=target.timeout)) as run:
        assert run.attestation().ok
        verdict = run.verdict()
        state = engine.client.api.inspect_container(run.container_id)["State"]
        truth: dict[str, bool | None] = {}
        if state["Running"]:
            pid = int(state["Pid"])
            listeners = groundtruth.listeners_of(pid)
            truth = groundtruth.pod_reach(pid, listeners, POD_IPS[stack])
    assert verdict.outcome is want.outcome, (verdict, verdict.logs)
    assert matrix.judge(want, verdict).reasons == (), (verdict, verdict.pod_reach)
    if want.outcome is Outcome.EXITED:  # the engine's own word on the exit
        assert (state["Running"], state["ExitCode"]) == (False, want.exit_code)
        return
    assert sorted(truth) == sorted(str(x) for x in want.listeners)  # the table is true
    assert truth == {str(x): x in want.pod for x in want.listeners}
    assert {str(x): verdict.pod_answered(x) for x in verdict.listeners} == truth  # the plugin saw it


def test_a_read_only_root_keeps_the_engines_hosts_file(engine: DockerBackend, base_image: str) -> None:
    """read_only = true: the engine mounts /etc/hosts read-only too; the pod address is made and attested, POD_IP
    is set, and the host name stays as the engine wrote it (README)."""
    show = 'echo "POD_IP=$POD_IP"; grep -c -F "$(hostname)" /etc/hosts; exit 3'
    with engine.run(launch(base_image, STACKS["ipv6-only"], read_only=True, command=("sh", "-c", show))) as run:
        assert run.attestation().ok, run.attestation().describe()
        verdict = run.verdict()
    assert (verdict.outcome, verdict.exit_code) == (Outcome.EXITED, 3), verdict
    assert verdict.logs.splitlines() == ["POD_IP=fd69:7076:3663::2", "0"]
