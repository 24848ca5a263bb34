"""Bad input the engine would refuse only when a cell starts, names that break ids, terminals and
Markdown, two files with one target name, and report files and commands that did not name their
flag: each is one line naming where it came from (file and table, option, marker or flag) and the
value, without a traceback (issue 17, section 4). Pure and pytester runs, except the unknown user,
which only a real engine (and a real kernel) can find in an image.
"""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from engines import podman_service
from test_bad_input import assert_no_traceback, one_line, write
from test_engines import _leftovers
from test_merge import ALL3, _merge, _shards

from pytest_ipv6compat.__main__ import main
from pytest_ipv6compat.backends import UnknownUser
from pytest_ipv6compat.backends.docker_api import PROBE_MOUNT
from pytest_ipv6compat.backends.uml_rootfs import PROBE_DIR
from pytest_ipv6compat.spec import PROBE_MOUNT as RESERVED
from pytest_ipv6compat.spec import SpecError, parse_run_settings

ENV = ('env = { SVC_NAME = "svc" }', 'env = { SVC_NAME = "svc" }\n')  # the line after which settings go
ESC = "\\u001b]0;pwned\\u0007\\u001b[2J"  # as TOML writes it: set the window title, clear the screen


@pytest.fixture
def here(pytester: pytest.Pytester, real_cache_dir: Path) -> pytest.Pytester:
    """A pytester directory using the real cache (as in test_bad_input.py)."""
    pytester.makeini(f"[pytest]\nipv6_cache_dir = {real_cache_dir}\n")
    return pytester


def _after_env(text: str) -> tuple[str, str]:
    return ENV[0], ENV[1] + text


def _collect_error(here: pytest.Pytester) -> str:
    """The one line of the collection error of svc.ipv6.toml, checked to be one and traceback-free."""
    result = here.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    line = one_line(result, "ERROR collecting svc.ipv6.toml")
    assert_no_traceback(result)
    assert "\x1b" not in result.stdout.str() + result.stderr.str(), "a raw escape reached the terminal"
    return line


# --- run settings the engine refuses only at cell start: caught where they are written ---------------

SETTINGS = [
    pytest.param('mounts = { "/.ipv6compat" = "." }',
                 "[[]target[]]: mounts: '/.ipv6compat' is the probe's own mount point; mount on another path",
                 id="mount-on-probe"),
    pytest.param('tmpfs = ["/.ipv6compat"]',
                 "[[]target[]]: tmpfs: '/.ipv6compat' is the probe's own mount point; mount on another path",
                 id="tmpfs-on-probe"),
    pytest.param('tmpfs = ["/.ipv6compat/x"]',
                 "[[]target[]]: tmpfs: '/.ipv6compat/x' is the probe's own mount point; mount on another path",
                 id="tmpfs-under-probe"),
    pytest.param('tmpfs = { "/" = "size=1m" }',
                 "[[]target[]]: tmpfs: '/' is a path the engine itself mounts; mount on another path",
                 id="tmpfs-on-root"),
    pytest.param('mounts = { "/" = "." }',
                 "[[]target[]]: mounts: '/' is a path the engine itself mounts; mount on another path",
                 id="mount-on-root"),
    pytest.param('tmpfs = ["/run/../"]',
                 "[[]target[]]: tmpfs: '/run/../' is a path the engine itself mounts; mount on another path",
                 id="tmpfs-on-root-spelt-otherwise"),
    pytest.param('tmpfs = ["/proc/x"]',
                 "[[]target[]]: tmpfs: '/proc/x' is a path the engine itself mounts; mount on another path",
                 id="tmpfs-under-proc"),
    pytest.param('tmpfs = ["/etc/hosts"]',
                 "[[]target[]]: tmpfs: '/etc/hosts' is a path the engine itself mounts; mount on another path",
                 id="tmpfs-on-etc-hosts"),
    pytest.param('tmpfs = { "/scratch" = "size=banana" }',
                 "[[]target[]]: tmpfs /scratch = 'size=banana': size = 'banana' is not a size in bytes with k, m or g, "
                 "or a percentage of memory", id="tmpfs-size-banana"),
    pytest.param('tmpfs = { "/scratch" = "mode=999" }',
                 "[[]target[]]: tmpfs /scratch = 'mode=999': mode = '999' is not octal permissions such as 1777",
                 id="tmpfs-mode-999"),
    pytest.param('tmpfs = { "/scratch" = "size=1m,banana" }',
                 "[[]target[]]: tmpfs /scratch = 'size=1m,banana': 'banana' is not a tmpfs option "
                 "(known: gid, mode, *)",
                 id="tmpfs-unknown-option"),
    pytest.param('tmpfs = { "/scratch" = "sync" }',
                 "[[]target[]]: tmpfs /scratch = 'sync': 'sync' is not a tmpfs option (known: *)",
                 id="tmpfs-flag-not-every-backend-takes"),
    pytest.param('tmpfs = ["/my dir"]',
                 "[[]target[]]: tmpfs: '/my dir' holds white space, which not every backend can mount on",
                 id="tmpfs-path-with-space"),
    pytest.param('tmpfs = ["/data"]\nmounts = { "/data" = "." }',
                 "[[]target[]]: mounts /data is also in tmpfs: a path takes one mount",
                 id="tmpfs-and-mount-on-one-path"),
    pytest.param('config_dir = "/.ipv6compat"\nconfig_source = "."',
                 "[[]target[]]: config_dir: '/.ipv6compat' is the probe's own mount point; mount on another path",
                 id="config-dir-on-probe"),
    pytest.param('config_dir = "/data"\nconfig_source = "."\ntmpfs = ["/data"]',
                 "[[]target[]]: config_dir /data is also in tmpfs: a path takes one mount", id="config-dir-and-tmpfs"),
    pytest.param('extra_hosts = { "db.test" = "999.999.999.999" }',
                 "[[]target[]]: extra_hosts: db.test = '999.999.999.999' is not an IP address", id="extra-host-999"),
    pytest.param('extra_hosts = { "db.test" = "fe80::1%eth0" }',
                 "[[]target[]]: extra_hosts: db.test = 'fe80::1%eth0' is not an IP address", id="extra-host-zone"),
    pytest.param('memory = "99999999999g"',
                 "[[]target[]]: memory = '99999999999g' is more than an engine can hold (at most 8589934591g)",
                 id="memory-beyond-int64"),
    pytest.param('user = "99999999999"',
                 "[[]target[]]: user = '99999999999': 99999999999 is not a uid or gid (0 to 2147483647)",
                 id="uid-too-big"),
    pytest.param('user = "app:staff:x"',
                 "[[]target[]]: user = 'app:staff:x' is not NAME, UID, NAME:GROUP or UID:GID", id="user-syntax"),
    pytest.param('user = "app\\u001b[2J"',
                 "[[]target[]]: user = 'app\\x1b[[]2J' is not NAME, UID, NAME:GROUP or UID:GID", id="user-escape"),
    pytest.param('tmpfs = ["/data"]\n\n[variant.a]\nmounts = { "/data" = "." }',
                 "[[]variant.a[]]: mounts /data is also in tmpfs: a path takes one mount", id="variant-mount-on-tmpfs"),
    pytest.param('\n[variant.a]\ntmpfs = { "/" = "" }',
                 "[[]variant.a[]]: tmpfs: '/' is a path the engine itself mounts; mount on another path",
                 id="variant-tmpfs-on-root"),
]


@pytest.mark.parametrize(("setting", "message"), SETTINGS)
def test_a_run_setting_the_engine_refuses_is_one_collection_error(
    here: pytest.Pytester, setting: str, message: str
) -> None:
    path = write(here, _after_env(setting))
    line = _collect_error(here)
    assert fnmatch.fnmatch(line, f"{path}: {message}"), line


def test_a_setting_that_passes_still_loads(here: pytest.Pytester) -> None:
    """The control: the forms the engines take pass, so the errors above are the values' doing."""
    write(here, _after_env('tmpfs = { "/scratch" = "size=1m,mode=1777,uid=1,gid=2,nr_inodes=1k,noexec", '
                           '"/half" = "size=50%" }\nmounts = { "/data" = "." }\n'
                           'extra_hosts = { "db.test" = "::1", "up.test" = "127.0.0.1" }\n'
                           'memory = "8589934591g"\nuser = "app:staff"\nconfig_dir = "/etc/app"\nconfig_source = "."'))
    result = here.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["svc.ipv6.toml::svc[[]a-dual-stack-SVC_V6-unset[]]"])


@pytest.mark.docker
def test_tmpfs_flags_that_name_the_kernels_default_mount_on_every_backend(
    here: pytest.Pytester, base_image: str
) -> None:
    """What the validation accepts, Docker and the real kernel (User-mode Linux) both mount: the flags
    that name a default are left out for the kernel's init, which would hand them to tmpfs as data."""
    write(
        here,
        ('settings = ["unset", "=1"]', 'settings = ["unset"]'),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack", "ipv6-boot-disabled"]'),
        ('unset = "up 0.0.0.0:80 [::]:80"', 'unset = "exited 0"'),
        ('"=1" = "up 0.0.0.0:80"\n', '\n[expect.a.ipv6-boot-disabled]\nunset = "exited 0"\n'),
        _after_env('command = ["/bin/busybox", "sh", "-c", "touch /scratch/x"]\nhold = 0\n'
                   'tmpfs = { "/scratch" = "size=1m,exec,suid,dev,async,atime,diratime,nomand,noatime,rw" }'),
        image=base_image,
    )
    result = here.runpytest("-p", "no:cacheprovider", "--ipv6-require-docker")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("image", ["My/Image:1", "my/image:bad tag", "svc:1:2", "svc@sha256:abc"])
def test_an_image_reference_no_engine_takes_is_one_collection_error(here: pytest.Pytester, image: str) -> None:
    """Docker refused these only at cell start ('invalid reference format'), naming neither file nor table."""
    path = write(here, image=image)
    assert _collect_error(here) == (
        f"{path}: [target.images]: a: {image!r} is not an image reference (NAME[:TAG][@DIGEST], the name lowercase)"
    )


def test_an_image_reference_no_engine_takes_names_the_option_or_the_marker(here: pytest.Pytester) -> None:
    write(here)
    result = here.runpytest("--ipv6-image=My/Image:1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --ipv6-image=My/Image:1: 'My/Image:1' is not an image reference *"])
    assert_no_traceback(result)
    (here.path / "svc.ipv6.toml").unlink()
    here.makepyfile(
        """
        import pytest

        @pytest.mark.ipv6_target(image="My/Image:1")
        def test_it(ipv6_target):
            pass
        """
    )
    result = here.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*::test_it: marker ipv6_target: 'My/Image:1' is not an image reference *"])
    assert_no_traceback(result)


def test_the_reserved_mount_point_is_the_probes_on_every_backend() -> None:
    assert RESERVED == PROBE_MOUNT == PROBE_DIR


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tmpfs": {"/": ""}}, "where: tmpfs: '/' is a path the engine itself mounts; mount on another path"),
        ({"tmpfs": {"/a": "", "/a/": ""}}, "where: tmpfs names one path twice: '/a', '/a/'"),
        ({"tmpfs": {"/a": "size="}}, "where: tmpfs /a = 'size=': size = '' is not a size in bytes *"),
        ({"tmpfs": {"/a": "uid=nobody"}}, "where: tmpfs /a = 'uid=nobody': uid = 'nobody' is not a numeric uid"),
        ({"tmpfs": {"/a": "gid=4294967296"}}, "where: tmpfs /a = 'gid=4294967296': gid = 4294967296 is more *"),
        ({"tmpfs": {"/a": "size=1.5m"}}, "where: tmpfs /a = 'size=1.5m': size = '1.5m' is not a size *"),
        ({"tmpfs": {"/a": "tmpcopyup"}}, "where: tmpfs /a = 'tmpcopyup': 'tmpcopyup' is not a tmpfs option *"),
        ({"extra_hosts": {"h": "1.2.3"}}, "where: extra_hosts: h = '1.2.3' is not an IP address"),
        ({"extra_hosts": {"h": "010.0.0.1"}}, "where: extra_hosts: h = '010.0.0.1' is not an IP address"),
        ({"user": "0:2147483648"}, "where: user = '0:2147483648': 2147483648 is not a uid or gid *"),
        ({"memory": "9007199254740992k"}, "where: memory = '9007199254740992k' is more than an engine can hold *"),
    ],
)
def test_run_setting_messages(settings: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_run_settings(settings, "where")
    assert fnmatch.fnmatch(str(caught.value), message), str(caught.value)


def test_run_settings_the_engines_take_are_kept(tmp_path: Path) -> None:
    out = parse_run_settings(
        {"tmpfs": {"/run/": "size=64m,mode=1777", "/dev/shm": ""}, "extra_hosts": {"a": "::ffff:127.0.0.1"},
         "user": "65534:65534", "memory": "6m", "mounts": {"/etc/app": str(tmp_path)}},
        "where",
    )
    assert out["tmpfs"] == (("/dev/shm", ""), ("/run", "size=64m,mode=1777"))  # normalised as the engine does
    assert out["mounts"] == (("/etc/app", str(tmp_path)),)
    assert out["user"] == "65534:65534"


def test_a_bad_run_setting_on_the_marker_names_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ipv6_target(image="ipv6compat/absent:nope", tmpfs={"/.ipv6compat": "size=1m"})
        def test_it(ipv6_target):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*test_a_bad_run_setting_on_the_marker_names_the_marker.py::test_it: marker ipv6_target: "
        "tmpfs: '/.ipv6compat' is the probe's own mount point; mount on another path"
    ])
    assert_no_traceback(result)


def test_a_memory_option_beyond_the_engines_names_the_option(here: pytest.Pytester) -> None:
    write(here)
    result = here.runpytest("--ipv6-memory=99999999999g")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --ipv6-memory=99999999999g: memory = '99999999999g' is more than an engine can hold "
        "(at most 8589934591g)"
    ])
    assert_no_traceback(result)


# --- names that become ids, grid rows and Markdown cells --------------------------------------------

NAMES = [
    pytest.param(('variants = ["a"]', 'variants = ["a\\nb"]'),
                 "[[]target.variants[]]: 'a\\nb' is not a plain name (letters, digits, '_', '.', '-', starting with a "
                 "letter or digit): it becomes part of test ids, the grid and Markdown", id="variant-newline"),
    pytest.param(('variants = ["a"]', f'variants = ["a{ESC}"]'),
                 "[[]target.variants[]]: 'a\\x1b]0;pwned\\x07\\x1b[[]2J' is not a plain name *", id="variant-escape"),
    pytest.param(('variants = ["a"]', 'variants = ["a|b"]'),
                 "[[]target.variants[]]: 'a|b' is not a plain name *", id="variant-pipe"),
    pytest.param(('name = "svc"', 'name = "s\\nvc"'),
                 "[[]target.name[]]: 's\\nvc' is not a plain name", id="target-name-newline"),
    pytest.param(('settings = ["unset", "=1"]', f'settings = ["unset", "={ESC}"]'),
                 "[[]target.settings[]]: knob setting '=\\x1b]0;pwned\\x07\\x1b[[]2J' holds a control or format "
                 "character (a line break, an escape code): test ids, terminals and Markdown do not carry it",
                 id="setting-escape"),
    pytest.param(('settings = ["unset", "=1"]', 'settings = ["unset", "=a\\u202eb"]'),
                 "[[]target.settings[]]: knob setting '=a\\u202eb' holds a control or format character *",
                 id="setting-bidi-override"),
    pytest.param(('[expect.a.dual-stack]', f'[outcomes]\n"v{ESC}" = "timeout"\n\n[expect.a.dual-stack]'),
                 "[[]outcomes[]]: 'v\\x1b]0;pwned\\x07\\x1b[[]2J' is not a plain name *", id="outcome-escape"),
    pytest.param(('[expect.a.dual-stack]', f'[expect."a{ESC}".dual-stack]'),
                 "[[]expect.'a\\x1b]0;pwned\\x07\\x1b[[]2J'[]]: unknown variant 'a\\x1b]0;pwned\\x07\\x1b[[]2J' "
                 "(declared: a)", id="expect-key-escape"),
    pytest.param(('stacks = ["dual-stack"]', f'stacks = ["dual-stack{ESC}"]'),
                 "[[]target.stacks[]]: unknown stack 'dual-stack\\x1b]0;pwned\\x07\\x1b[[]2J' (known: *)",
                 id="stack-escape"),
]


@pytest.mark.parametrize(("replacement", "message"), NAMES)
def test_a_name_ids_terminals_or_markdown_cannot_carry_is_one_collection_error(
    here: pytest.Pytester, replacement: tuple[str, str], message: str
) -> None:
    path = write(here, replacement)
    line = _collect_error(here)
    assert fnmatch.fnmatch(line, f"{path}: {message}"), line


def test_a_settings_filter_with_an_escape_names_the_option(here: pytest.Pytester) -> None:
    write(here)
    result = here.runpytest("--ipv6-settings==\x1b[2J")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --ipv6-settings='=\\x1b[[]2J': knob setting '=\\x1b[[]2J' holds a control or format character *"]
    )
    assert "\x1b" not in result.stdout.str() + result.stderr.str()


def test_init_settings_with_an_escape_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    status = main(["init", "--image", "svc:1", "--knob", "SVC_V6", "--settings", "unset,=\x1b[2J"])
    err = capsys.readouterr().err
    assert status == 2
    assert err == ("error: --settings 'unset,=\\x1b[2J': knob setting '=\\x1b[2J' holds a control or format "
                   "character (a line break, an escape code): test ids, terminals and Markdown do not carry it\n")
    assert list(tmp_path.iterdir()) == []


# --- two matrix files, one target name -----------------------------------------------------------------


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["plain", "xdist"])
def test_two_files_with_one_target_name_are_one_collection_error_naming_both(
    here: pytest.Pytester, xdist: tuple[str, ...]
) -> None:
    first = write(here)
    second = here.path / "zz-svc.ipv6.toml"  # collected after svc.ipv6.toml
    second.write_text(first.read_text())
    result = here.runpytest("-p", "no:cacheprovider", *xdist)
    # xdist reports a worker's collection error as an error and runs the other file's cells (here errors or
    # skips, as the image is absent): not OK either way
    if xdist:
        assert result.ret != pytest.ExitCode.OK
    else:
        assert result.ret == pytest.ExitCode.INTERRUPTED
    text = result.stdout.str()
    expected = (f"{second}: [target.name]: 'svc' is also the target name in {first}; give each matrix file its "
                "own target name (test ids and reports name cells by it)")
    if xdist:  # each worker collects and reports it: the same line
        assert expected in text, text
    else:
        assert one_line(result, "ERROR collecting zz-svc.ipv6.toml") == expected
    assert "two results" not in text
    assert_no_traceback(result)


# --- report files and commands -------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["option", "ini"])
def test_a_report_file_that_takes_no_data_names_the_option_and_the_file(
    here: pytest.Pytester, real_cache_dir: Path, source: str
) -> None:
    here.makepyfile("def test_ok():\n    pass\n")
    if source == "ini":
        ini = here.makeini(f"[pytest]\nipv6_cache_dir = {real_cache_dir}\nipv6_json = /dev/full\n")
        where = f"ini option ipv6_json = '/dev/full' in {ini}"
        result = here.runpytest("-p", "no:cacheprovider")
    else:
        where = "--ipv6-json=/dev/full"
        result = here.runpytest("-p", "no:cacheprovider", "--ipv6-json=/dev/full")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = [line for line in result.stdout.lines if "cannot write" in line]
    assert lines == [f"ipv6compat: {where}: cannot write '/dev/full': No space left on device"]
    assert_no_traceback(result)


def test_merge_json_to_a_file_that_takes_no_data_names_the_flag(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    done = _merge(*paths, "--json", "/dev/full")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "error: --json '/dev/full': cannot write it: No space left on device\n"


def test_init_output_with_a_newline_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    status = main(["init", "--image", "svc:1", "-o", "a\nb.ipv6.toml"])
    err = capsys.readouterr().err
    assert status == 2
    assert err == ("error: -o 'a\\nb.ipv6.toml': the file name holds a control character (a line break, an escape); "
                   "name the file with printable characters\n")
    assert list(tmp_path.iterdir()) == []


def test_prepare_with_a_uml_kernel_that_is_not_there_names_its_flag_and_fails() -> None:
    done = subprocess.run([sys.executable, "-m", "pytest_ipv6compat", "prepare", "--uml", "/nonexistent"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr == (
        "error: User-mode Linux kernel not found (--uml=/nonexistent): apt-get install user-mode-linux\n"
    )
    assert done.stdout == ""


# --- a user the image lacks: known only when the cell starts ---------------------------------------


def test_an_unknown_user_is_recognised_in_each_backends_words() -> None:
    docker_words = "unable to find user nosuch: no matching entries in passwd file"
    found = UnknownUser.find("nosuch", "img:1", docker_words)
    assert found is not None
    assert found.line("f.ipv6.toml: [target]") == (
        "f.ipv6.toml: [target]: user = 'nosuch': image 'img:1' has no user 'nosuch' in its /etc/passwd "
        f"(the engine: {docker_words})"
    )
    group = UnknownUser.find("0:staff", "img:1", "Error: unable to find group staff: no matching entries in group file")
    assert group is not None
    assert (group.kind, group.name) == ("group", "staff")
    assert UnknownUser.find(None, "img:1", docker_words) is None  # the image's own USER: not the cell's setting
    assert UnknownUser.find("nosuch", "img:1", "no space left on device") is None


@pytest.mark.docker
def test_a_user_the_image_lacks_is_one_line_naming_the_table_the_user_and_the_image(
    here: pytest.Pytester, base_image: str
) -> None:
    """On Docker and on the real kernel (User-mode Linux): the same line, from where the matrix set it."""
    path = write(
        here,
        ('settings = ["unset", "=1"]', 'settings = ["unset"]'),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack", "ipv6-boot-disabled"]'),
        ('"=1" = "up 0.0.0.0:80"\n', '\n[expect.a.ipv6-boot-disabled]\nunset = "timeout"\n'),
        _after_env('user = "nosuchuser"'),
        image=base_image,
    )
    result = here.runpytest("-p", "no:cacheprovider", "--ipv6-require-docker")
    result.assert_outcomes(errors=2)
    for cell in ("svc[[]a-dual-stack-SVC_V6-unset[]]", "svc[[]a-ipv6-boot-disabled-SVC_V6-unset[]]"):
        line = one_line(result, f"ERROR at setup of {cell}*")
        assert line.startswith(
            f"{path}: [target]: user = 'nosuchuser': image '{base_image}' has no user 'nosuchuser' in its "
            "/etc/passwd (the engine: unable to find user nosuchuser: no matching entries in passwd"
        ), line
    assert_no_traceback(result)


@pytest.mark.docker
def test_a_user_the_image_lacks_set_in_a_variant_table_names_that_table(
    here: pytest.Pytester, base_image: str
) -> None:
    path = write(here, ('settings = ["unset", "=1"]', 'settings = ["unset"]'), ('"=1" = "up 0.0.0.0:80"\n', ""),
                 _after_env('\n[variant.a]\nuser = "0:nosuchgroup"'), image=base_image)
    result = here.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    assert one_line(result, "ERROR at setup of svc[[]a-dual-stack-SVC_V6-unset[]]*") == (
        f"{path}: [variant.a]: user = '0:nosuchgroup': image '{base_image}' has no group 'nosuchgroup' in its "
        "/etc/group (the engine: unable to find group nosuchgroup: no matching entries in group file)"
    )
    assert_no_traceback(result)


@pytest.mark.docker
def test_a_user_the_image_lacks_on_podman_is_the_same_line(
    here: pytest.Pytester, base_image: str, client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with podman_service() as url:
        podman = docker.DockerClient(base_url=url, timeout=120)
        try:
            podman.images.load(b"".join(client.images.get(base_image).save(named=True)))
        finally:
            podman.close()
        path = write(here, ('settings = ["unset", "=1"]', 'settings = ["unset"]'), ('"=1" = "up 0.0.0.0:80"\n', ""),
                     _after_env('user = "nosuchuser"'), image=base_image)
        monkeypatch.setenv("DOCKER_HOST", url)
        result = here.runpytest("-p", "no:cacheprovider", "--ipv6-require-docker")
        result.stdout.fnmatch_lines([f"ipv6compat: Podman * at {url} (from DOCKER_HOST)*"])
        result.assert_outcomes(errors=1)
        assert one_line(result, "ERROR at setup of svc[[]a-dual-stack-SVC_V6-unset[]]*") == (
            f"{path}: [target]: user = 'nosuchuser': image '{base_image}' has no user 'nosuchuser' in its "
            "/etc/passwd (the engine: unable to find user nosuchuser: no matching entries in passwd file)"
        )
        assert_no_traceback(result)
        assert _leftovers(url) == ([], [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["init", "--image", "My/Image:1"],
         "error: --image 'My/Image:1': 'My/Image:1' is not an image reference (NAME[:TAG][@DIGEST], the name "
         "lowercase)\n"),
        (["init", "--variant", "a=svc:bad tag"],
         "error: --variant 'a=svc:bad tag': 'svc:bad tag' is not an image reference (NAME[:TAG][@DIGEST], the "
         "name lowercase)\n"),
        (["prepare", "--base-image", "My/Base"],
         "error: --base-image: 'My/Base' is not an image reference (NAME[:TAG][@DIGEST], the name lowercase)\n"),
    ],
)
def test_a_command_names_the_flag_of_an_image_reference_no_engine_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert capsys.readouterr().err == message
    assert list(tmp_path.iterdir()) == []
