"""Hand-written tests with the fixtures and markers, against a second nginx image."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_ipv6compat import StartedTarget, TargetFactory, listener_set

PLAIN = Path(__file__).resolve().parent / "data" / "plain-nginx"
pytestmark = pytest.mark.docker


@pytest.fixture
def ipv6_target_image(ipv6_target_factory: TargetFactory) -> str:
    # Overriding the small named fixture changes what ipv6_target starts.
    return ipv6_target_factory.build(PLAIN, name="plain-nginx")


@pytest.mark.ipv6_stack
def test_plain_nginx_on_every_stack(ipv6_target: StartedTarget, ipv6_stack: str) -> None:
    assert ipv6_target.stack == ipv6_stack
    assert ipv6_target.attestation.ok
    if ipv6_stack in ("ipv6-kernel-off", "ipv6-boot-disabled"):  # the emulation and a real kernel agree here
        assert not ipv6_target.up
        assert ipv6_target.verdict.exit_code == 1
        assert ipv6_target.verdict.error_line is not None
        assert (
            "socket() [::]:8080 failed (97: Address family not supported by protocol)" in ipv6_target.verdict.error_line
        )
        return
    assert ipv6_target.up, ipv6_target.describe()
    assert ipv6_target.listeners == listener_set("0.0.0.0:8080", "[::]:8080")
    assert ipv6_target.answered("0.0.0.0:8080") is True
    # Without ::1 (disable_ipv6=1) the [::] listener exists but nobody can reach it.
    assert ipv6_target.answered("[::]:8080") is (ipv6_stack == "dual-stack")


def test_factory_starts_with_env_and_command(ipv6_target_factory: TargetFactory, ipv6_target_image: str) -> None:
    # A command that never listens: a timeout verdict, with its logs.
    with ipv6_target_factory.start(
        ipv6_target_image,
        stack="ipv6-sysctl-off",
        env={"GREETING": "hi", "UNSET": None},
        command=("sh", "-c", 'echo "greeting=$GREETING unset=${UNSET-none}"; exec sleep 30'),
        timeout=1.5,
    ) as target:
        assert target.verdict.outcome.value == "timeout"
        assert "greeting=hi unset=none" in target.logs
        assert target.env == {"GREETING": "hi"}


@pytest.mark.usefixtures("proxy_image")
def test_markers_with_the_cloud_proxy(pytester: pytest.Pytester, proxy_image: dict[str, str]) -> None:
    pytester.makepyfile(
        f"""
        import pytest
        from pytest_ipv6compat import listener_set

        @pytest.mark.ipv6_target(image={proxy_image["adaptive"]!r}, probe="https", http_path="/healthz")
        @pytest.mark.ipv6_stack("dual-stack", "ipv6-kernel-off")
        @pytest.mark.ipv6_env(PL_DOMAIN_NAME="proxy.ipv6compat.test", PL_IPV6_DISABLE="yes")
        def test_ipv4_only(ipv6_target):
            assert ipv6_target.listeners == listener_set("0.0.0.0:56000")
            assert ipv6_target.answered("0.0.0.0:56000")

        @pytest.mark.ipv6_target(image={proxy_image["adaptive"]!r})
        @pytest.mark.ipv6_env(PL_IPV6_DISABLE="1")
        def test_missing_domain(ipv6_target):
            assert ipv6_target.verdict.exit_code == 1
            assert "PL_DOMAIN_NAME is required" in ipv6_target.logs
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=3)


def test_wrong_listener_expectation_shows_a_readable_diff(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_ipv6compat import listener_set

        @pytest.mark.ipv6_stack("dual-stack")
        def test_v4_only(ipv6_target):
            assert ipv6_target.listeners == listener_set("0.0.0.0:8080", "127.0.0.1:9090")
        """
    )
    result = pytester.runpytest(f"--ipv6-build={PLAIN}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*listener sets differ",
            "*seen:     0.0.0.0:8080, [[]::[]]:8080",
            "*expected: 0.0.0.0:8080, 127.0.0.1:9090",
            "*missing:  127.0.0.1:9090",
            "*extra:    [[]::[]]:8080",
        ]
    )


def test_a_matrix_of_your_own_images(pytester: pytest.Pytester, ipv6_target_image: str) -> None:
    """Nothing is specific to the cloud proxy: a matrix over a user's prebuilt image."""
    pytester.makefile(
        ".ipv6.toml",
        plain=f"""
        [target]
        name = "plain"
        images = {{ stock = "{ipv6_target_image}" }}
        variants = ["stock"]
        knob = "PLAIN_IPV6"
        settings = ["unset", "=off"]

        [outcomes]
        dual = "up 0.0.0.0:8080 [::]:8080"

        [expect.stock.dual-stack]
        unset = "dual"
        "=off" = "dual"   # the stock image ignores the knob

        [expect.stock.ipv6-sysctl-off]
        unset = "up 0.0.0.0:8080 [::]:8080/silent"
        "=off" = "up 0.0.0.0:8080 [::]:8080/silent"

        [expect.stock.ipv6-kernel-off]
        unset = "exited 1 'socket() [::]:8080 failed (97'"
        "=off" = "exited 1 'socket() [::]:8080 failed (97'"
        """,
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*plain.ipv6.toml::plain[[]stock-ipv6-kernel-off-PLAIN_IPV6=off[]] PASSED*"])


def test_the_marker_takes_every_run_setting_in_its_table_form(
    pytester: pytest.Pytester, ipv6_target_image: str
) -> None:
    """extra_hosts, mounts and tmpfs given as tables on the marker reach the container as on a matrix file."""
    (pytester.path / "conf").mkdir()
    (pytester.path / "conf" / "index.html").write_text("ok\n")
    check = (
        "grep -q '127.0.0.1[[:space:]]*db.ipv6compat.test' /etc/hosts && test -f /conf/index.html"
        " && touch /scratch/written && exec busybox httpd -f -p 0.0.0.0:8080 -h /conf"
    )
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.ipv6_target(
            image={ipv6_target_image!r},
            command=["sh", "-c", {check!r}],
            extra_hosts={{"db.ipv6compat.test": "127.0.0.1"}},
            mounts={{"/conf": "conf"}},
            tmpfs={{"/scratch": "size=1m"}},
            probe="tcp",
        )
        def test_settings_arrive(ipv6_target):
            assert ipv6_target.up, ipv6_target.describe()

        @pytest.mark.ipv6_target(image={ipv6_target_image!r}, tmpfs={{"/scratch": 7}})
        def test_a_bad_setting_names_the_marker(ipv6_target):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*test_a_bad_setting_names_the_marker: marker ipv6_target: tmpfs options for '/scratch' must be a string,*"]
    )
    assert "ipv6_target_factory.start()" not in result.stdout.str()


def test_read_only_config_per_variant(pytester: pytest.Pytester, ipv6_target_image: str) -> None:
    """Each variant's read-only config cells mount its own config_source at its own config_dir."""
    for name in ("conf-a", "conf-b"):
        (pytester.path / name).mkdir()
        (pytester.path / name / "marker").write_text(name)
    serve = "exec busybox httpd -f -p 0.0.0.0:8080 -h /"
    pytester.makefile(
        ".ipv6.toml",
        svc=f"""
        [target]
        name = "svc"
        images = {{ a = "{ipv6_target_image}", b = "{ipv6_target_image}" }}
        variants = ["a", "b"]
        stacks = ["dual-stack"]
        probe = "tcp"
        config_dir = "/etc/svc/conf.d"
        config_source = "conf-a"

        [variant.a]
        command = ["sh", "-c", "grep -qx conf-a /etc/svc/conf.d/marker || exit 3; {serve}"]

        [variant.b]
        config_dir = "/etc/svc/conf"
        config_source = "conf-b"
        command = ["sh", "-c", "grep -qx conf-b /etc/svc/conf/marker || exit 3; {serve}"]

        [expect.a]
        dual-stack = "exited 3"
        [expect.b]
        dual-stack = "exited 3"
        [expect_config_ro.a]
        dual-stack = "up 0.0.0.0:8080"
        [expect_config_ro.b]
        dual-stack = "up 0.0.0.0:8080"
        """,
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
