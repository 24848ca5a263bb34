"""Every option: accepted values, and each bad value stopping the run with one clear line."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

BAD_CLI = [
    ("--ipv6-stacks=dual-stack,ipv6-off", "--ipv6-stacks=dual-stack,ipv6-off: unknown stack 'ipv6-off' (known: *)"),
    ("--ipv6-stacks=,", "--ipv6-stacks=,: ',' names nothing; give a comma-separated list"),
    ("--ipv6-variants=", "--ipv6-variants=: '' names nothing; give a comma-separated list"),
    ("--ipv6-settings=unset,1", "--ipv6-settings=unset,1: knob setting '1' must be 'unset', 'empty' or '=VALUE'"),
    ("--ipv6-timeout=soon", "--ipv6-timeout=soon: 'soon' is not a number of seconds"),
    ("--ipv6-timeout=0", "--ipv6-timeout=0: '0' must be more than 0 and at most 3600 seconds"),
    ("--ipv6-timeout=nan", "--ipv6-timeout=nan: 'nan' must be more than 0 and at most 3600 seconds"),
    ("--ipv6-settle=-1", "--ipv6-settle=-1: '-1' must be more than 0 and at most 3600 seconds"),
    ("--ipv6-build=nowhere", "--ipv6-build=nowhere: build context '*nowhere' does not exist"),
    ("--ipv6-markdown=.", "--ipv6-markdown=.: '*' is a directory; name a file"),
    ("--ipv6-json=/", "--ipv6-json=/: '/' is a directory; name a file"),
    ("--ipv6-image=", "--ipv6-image=: the value is empty"),
    ("--ipv6-base-image=", "--ipv6-base-image=: the value is empty"),
    ("--ipv6-cache-dir=", "--ipv6-cache-dir=: the value is empty"),
    ("--ipv6-ssh-config=no-such-config", "--ipv6-ssh-config=no-such-config: '*no-such-config' is not a file"),
]


@pytest.mark.parametrize(("arg", "message"), BAD_CLI, ids=[a for a, _ in BAD_CLI])
def test_bad_command_line_value(pytester: pytest.Pytester, arg: str, message: str) -> None:
    result = pytester.runpytest(arg)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_bad_ini_value_names_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nipv6_timeout = forever\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: ini option ipv6_timeout = 'forever' in *tox.ini: 'forever' is not a number of seconds"]
    )


def test_bad_ini_stack(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nipv6_stacks = dual-stack, kernel-off\n")
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(["ERROR: ini option ipv6_stacks = * unknown stack 'kernel-off' (known: *)"])


def test_settle_must_be_shorter_than_timeout(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--ipv6-timeout=1", "--ipv6-settle=2")
    result.stderr.fnmatch_lines(["ERROR: --ipv6-settle=2 must be shorter than --ipv6-timeout=1"])


def test_command_line_beats_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nipv6_timeout = forever\n")
    pytester.makepyfile("def test_ok(pytestconfig):\n    pass\n")
    result = pytester.runpytest("--ipv6-timeout=5")
    result.assert_outcomes(passed=1)


GOOD = [
    "--ipv6-stacks=dual-stack,ipv6-kernel-off",
    "--ipv6-variants=adaptive",
    "--ipv6-settings=unset,empty,=0",
    "--ipv6-image=some/image:tag",
    "--ipv6-base-image=debian:bookworm",
    "--ipv6-markdown=grid.md",
    "--ipv6-json=new/dir/grid.json",  # parent directories are created, as --junitxml does
    "--ipv6-timeout=2.5",
    "--ipv6-settle=0.05",
    "--ipv6-keep-failed",
    "--ipv6-require-docker",
    "--ipv6-cache-dir=cache",
]


@pytest.mark.parametrize("arg", GOOD)
def test_good_values_are_accepted(pytester: pytest.Pytester, arg: str) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest(arg)
    result.assert_outcomes(passed=1)


def test_every_option_has_an_ini_key_and_shared_help(pytester: pytest.Pytester) -> None:
    from pytest_ipv6compat.options import OPTIONS

    result = pytester.runpytest("--help")
    out = result.stdout.str()
    assert "IPv6 compatibility matrix (pytest-ipv6compat)" in out
    for opt in OPTIONS:
        assert opt.flag in out
        assert opt.name in out  # the ini key is listed too
        assert opt.flag.startswith("--ipv6-")


def test_the_json_option_names_the_schema_it_writes(pytester: pytest.Pytester) -> None:
    from pytest_ipv6compat.report import SCHEMA_ID, SCHEMA_VERSION

    result = pytester.runpytest("--help")
    assert f"(schema {SCHEMA_ID} v{SCHEMA_VERSION})" in " ".join(result.stdout.str().split())


def test_markers_are_registered_with_signatures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.ipv6_stack(*names): run this test once per named stack*",
            "@pytest.mark.ipv6_env(**env): environment variables for the ipv6_target fixture*",
            "@pytest.mark.ipv6_target(image=None, build=None, command=None, probe=None, http_path=None, *",
            "@pytest.mark.docker: the test needs a reachable Docker engine",
        ]
    )


def test_ipv6_stack_marker_parametrizes_and_selects(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ipv6_stack("dual-stack", "ipv6-kernel-off")
        def test_one(ipv6_stack):
            assert ipv6_stack in ("dual-stack", "ipv6-kernel-off")

        @pytest.mark.ipv6_stack()
        def test_all(ipv6_stack):
            pass

        def test_default(ipv6_stack):
            assert ipv6_stack == "dual-stack"
        """
    )
    result = pytester.runpytest("-v")
    result.stdout.fnmatch_lines(["*test_one[[]dual-stack[]] PASSED*", "*test_one[[]ipv6-kernel-off[]] PASSED*"])
    result.assert_outcomes(passed=7)  # 2 + every stack (4) + the default
    result = pytester.runpytest("-v", "--ipv6-stacks=ipv6-kernel-off")
    result.assert_outcomes(passed=3, deselected=4)


def test_unknown_stack_in_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ipv6_stack("dual")
        def test_one(ipv6_stack):
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["test_unknown_stack_in_marker.py::test_one: @pytest.mark.ipv6_stack names unknown "
                                 "stack 'dual' (known: dual-stack, *)"])  # fmt: skip
    assert "pluggy/_caller.py" not in result.stdout.str()  # one line, no traceback through the hook machinery
    assert "Traceback" not in result.stdout.str()


def test_ipv6_env_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.ipv6_env(A="module", B="module")

        @pytest.mark.ipv6_env(B="test", C=None)
        def test_env(ipv6_env):
            assert ipv6_env == {"A": "module", "B": "test", "C": None}

        @pytest.mark.ipv6_env("positional")
        def test_bad(ipv6_env):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ipv6_env takes keyword arguments only*"])


def test_ipv6_target_without_an_image_is_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_t(ipv6_target_image):\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ipv6_target has nothing to start: pass --ipv6-image or --ipv6-build*"])
    assert "Traceback" not in result.stdout.str()
