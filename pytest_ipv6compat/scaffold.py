"""``python -m pytest_ipv6compat init``: write a starting matrix file for an image or a build context.

Every cell of the written file says ``"timeout"``, a placeholder that loads;
``pytest FILE --ipv6-record`` replaces each with the verdict observed. The file
is validated with :func:`~.matrix.load_matrix` before it appears, and an
existing file is never overwritten. No Docker is needed.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from .matrix import PLACEHOLDER, MatrixError, write_matrix
from .model import PLAIN_NAME, KnobSetting
from .spec import SpecError, check_image
from .stacks import DEFAULT_STACKS, STACKS

__all__ = ["DEFAULT_SETTINGS", "PROBES", "InitError", "Scaffold", "add_arguments", "main", "render", "write"]

DEFAULT_SETTINGS = ("unset", "empty", "=1", "=true", "=false", "=0", "=maybe")
PROBES = ("tcp", "http", "https", "none")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


class InitError(Exception):
    """A bad ``init`` argument, or a file that cannot be written; the message is one line."""


@dataclass(frozen=True)
class Scaffold:
    """What ``init`` writes: one target and a placeholder expectation per cell."""

    name: str
    variants: tuple[str, ...]
    stacks: tuple[str, ...]
    knob: str | None = None
    settings: tuple[str, ...] = ()
    images: tuple[tuple[str, str], ...] = ()  # (variant, image); empty when built
    build: str | None = None  # build context, relative to the matrix file
    port: int | None = None
    probe: str | None = None
    http_path: str | None = None  # None: no path is requested unless the probe is http or https


def _str(value: str) -> str:
    return tomlkit.item(value).as_string()


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _str(key)


def _list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_str(v) for v in values) + "]"


def _line(text: str, comment: str) -> str:
    return f"{text:<40} # {comment}"


def render(s: Scaffold, *, filename: str) -> str:
    """The matrix file's text: commented hints, and ``"timeout"`` in every cell."""
    port = str(s.port) if s.port else "PORT"
    out = [
        f"# IPv6 compatibility matrix for {s.name}, written by `python -m pytest_ipv6compat init`.",
        f'# Every cell says "{PLACEHOLDER}", a placeholder. Record what the target really does with',
        f"#     pytest {filename} --ipv6-record",
        '# then review the diff, and check it with a plain run. Format: README.md, "Matrix files".',
        "",
        "[target]",
        f"name = {_str(s.name)}",
    ]
    if s.build is not None:
        out += [
            _line(f"build = {_str(s.build)}", "build context, relative to this file; FROM ${BASE}"),
            _line('variant_arg = "VARIANT"', "build arg that selects the variant"),
        ]
    out.append(f"variants = {_list(s.variants)}")
    if s.knob is not None:
        out += [
            _line(f"knob = {_str(s.knob)}", "the environment variable being qualified"),
            f"settings = {_list(s.settings)}",
        ]
    out.append(_line(f"stacks = {_list(s.stacks)}", f"default: {', '.join(DEFAULT_STACKS)}"))
    if s.probe is not None:
        out.append(_line(f"probe = {_str(s.probe)}", " | ".join(PROBES)))
    else:
        out.append(_line('# probe = "http"', "tcp | http | https | none; default tcp, or http when http_path is set"))
    # A path is requested only where the user asked for HTTP: an active http_path would make
    # the probe http, and a service that answers 404 on "/" would be recorded as silent.
    path = s.http_path or "/"
    path_line = f"http_path = {_str(path)}"
    active = s.http_path is not None or s.probe in ("http", "https")
    out.append(_line(path_line if active else "# " + path_line, "requested from each listener over loopback"))
    out += [
        _line('# http_status = ["2xx", "3xx"]', "statuses that count as answering (see README)"),
        _line("# hold = 1.0", "seconds the target must stay up after its listeners settle"),
        _line("# settle = 0.05", "seconds the listener set must be unchanged before it is read"),
        _line('# env = { NAME = "value" }', "environment of every cell"),
        _line('# command = ["prog", "arg"]', "instead of the image's CMD"),
    ]
    if s.images:
        out += ["", "[target.images]", *(f"{_key(v)} = {_str(image)}" for v, image in s.images)]
    out += [
        "",
        "[outcomes]",
        "# Named expectations: a cell may give a name instead of the text. --ipv6-record writes",
        f"# a name where the observed verdict is exactly its text. What a service on port {port} might show:",
        _line(f'# both = "up 0.0.0.0:{port} [::]:{port}"', "two sockets, one per family"),
        _line(f'# dual = "up *:{port}"', "one [::] socket serving IPv4 too (IPV6_V6ONLY off)"),
        _line(f'# v4 = "up 0.0.0.0:{port}"', "IPv4 only"),
        _line(f'# v6-silent = "up 0.0.0.0:{port} [::]:{port}/silent"', "[::] bound but unreachable (no ::1)"),
        _line(f'# peer = "up *:{port}/pod"', "answers over the pod address too, as a peer reaches it"),
        _line("# no-ipv6 = \"exited 1 'Address family not supported'\"", "socket(AF_INET6) fails: errno 97"),
    ]
    for variant in s.variants:
        if s.knob is None:
            out += ["", f"[expect.{_key(variant)}]"]
            out += [f"{_key(stack)} = {_str(PLACEHOLDER)}" for stack in s.stacks]
            continue
        for stack in s.stacks:
            out += ["", f"[expect.{_key(variant)}.{_key(stack)}]"]
            out += [f"{_key(label)} = {_str(PLACEHOLDER)}" for label in s.settings]
    return "\n".join(out) + "\n"


def write(s: Scaffold, path: Path) -> Path:
    """Render ``s`` to ``path``, validate it with ``load_matrix``, and never overwrite a file."""
    if path.exists() or path.is_symlink():
        raise InitError(f"{path} already exists; not overwriting it (remove it or name another file with -o)")
    if not path.parent.is_dir():
        raise InitError(f"{path}: directory {path.parent} does not exist")
    text = render(s, filename=os.path.relpath(path))
    try:
        write_matrix(path, text, overwrite=False)
    except MatrixError as exc:
        raise InitError(f"the matrix written for {path} does not load, so it was not written: {exc}") from None
    except FileExistsError:
        raise InitError(f"{path} already exists; not overwriting it") from None
    return path


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", metavar="IMAGE", help="the image to qualify (one variant, named 'default')")
    what.add_argument("--build", metavar="DIR", type=Path, help="a build context (Dockerfile built FROM ${BASE})")
    what.add_argument(
        "--variant", metavar="NAME=IMAGE", action="append", help="one variant per image; repeat for several"
    )
    parser.add_argument("--variants", metavar="A,B", help="with --build: the VARIANT build-arg values")
    parser.add_argument("--name", help="the target's name (default: from the image or directory)")
    parser.add_argument("--knob", metavar="NAME", help="environment variable to qualify (default: none, stacks only)")
    parser.add_argument(
        "--settings",
        metavar="LABELS",
        help=f"knob settings, comma-separated (default: {','.join(DEFAULT_SETTINGS)})",
    )
    parser.add_argument("--stacks", metavar="STACKS", help=f"comma-separated (default: {','.join(DEFAULT_STACKS)}; "
                        "also ipv6-boot-disabled, ipv6-only)")
    parser.add_argument("--port", type=int, help="the port the service listens on (used in the hints)")
    parser.add_argument("--probe", choices=PROBES, help="how each listener is checked (default: left to the plugin)")
    parser.add_argument(
        "--http-path", help="path requested by the http/https probe (default: none; / with --probe http or https)"
    )
    parser.add_argument("-o", "--output", type=Path, help="the file to write (default: NAME.ipv6.toml)")


def _csv(text: str, what: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in text.split(",") if part.strip())
    if not items:
        raise InitError(f"{what}={text!r} names nothing; give a comma-separated list")
    dupes = sorted({x for x in items if items.count(x) > 1})
    if dupes:
        raise InitError(f"{what}={text!r} lists {', '.join(dupes)} twice")
    return items


def _plain_name(text: str, what: str) -> str:
    if not PLAIN_NAME.match(text):
        raise InitError(f"{what}: {text!r} is not a plain name (letters, digits, '_', '.', '-')")
    return text


def _image(image: str, what: str) -> str:
    try:
        return check_image(image, what)
    except SpecError as exc:
        raise InitError(str(exc)) from None


def _name_from_image(image: str) -> str:
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def _guess_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).lstrip("_.-")
    if not name:
        raise InitError(f"cannot make a target name from {text!r}; give --name")
    return name


def scaffold_from_args(args: argparse.Namespace, cwd: Path) -> tuple[Scaffold, Path]:
    images: tuple[tuple[str, str], ...] = ()
    build: Path | None = None
    if args.variants is not None and args.build is None:
        raise InitError("--variants goes with --build (with images, use --variant NAME=IMAGE)")
    if args.image is not None:
        if not args.image.strip():
            raise InitError("--image is empty")
        images = (("default", _image(args.image.strip(), f"--image {args.image!r}")),)
        guess = _name_from_image(args.image)
    elif args.build is not None:
        build = (cwd / args.build).resolve()
        if not (build / "Dockerfile").is_file():
            what = "does not exist" if not build.exists() else "has no Dockerfile"
            raise InitError(f"--build {args.build}: build context {str(build)!r} {what}")
        guess = build.name
    else:
        pairs: list[tuple[str, str]] = []
        for spec in args.variant:
            name, sep, image = spec.partition("=")
            if not sep or not image.strip():
                raise InitError(f"--variant {spec!r} must be NAME=IMAGE")
            what = f"--variant {spec!r}"
            pairs.append((_plain_name(name.strip(), what), _image(image.strip(), what)))
        names = [v for v, _ in pairs]
        dupes = sorted({v for v in names if names.count(v) > 1})
        if dupes:
            raise InitError(f"--variant names {', '.join(dupes)} twice")
        images = tuple(pairs)
        guess = _name_from_image(pairs[0][1])
    name = _plain_name(args.name, f"--name {args.name!r}") if args.name else _guess_name(guess)
    if build is not None:
        variants = _csv(args.variants, "--variants") if args.variants else ("default",)
        for v in variants:
            _plain_name(v, f"--variants {args.variants!r}")
    else:
        variants = tuple(v for v, _ in images)
    stacks = _csv(args.stacks, "--stacks") if args.stacks else DEFAULT_STACKS  # ipv6-boot-disabled: opt in
    for stack in stacks:
        if stack not in STACKS:
            raise InitError(f"--stacks {args.stacks!r}: unknown stack {stack!r} (known: {', '.join(STACKS)})")
    knob: str | None = args.knob
    settings: tuple[str, ...] = ()
    if knob is not None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", knob):
            raise InitError(f"--knob {knob!r} is not a valid environment variable name")
        settings = _csv(args.settings, "--settings") if args.settings else DEFAULT_SETTINGS
        for label in settings:
            try:
                KnobSetting.from_label(label)
            except ValueError as exc:
                raise InitError(f"--settings {args.settings!r}: {exc}") from None
    elif args.settings is not None:
        raise InitError("--settings needs --knob NAME (the variable the settings are values of)")
    if args.port is not None and not 0 < args.port < 65536:
        raise InitError(f"--port {args.port} is not a port number (1-65535)")
    if args.http_path is not None and not re.fullmatch(r"/[!-~]*", args.http_path):
        raise InitError(f"--http-path {args.http_path!r} is not an absolute URL path")
    if args.output is not None and not str(args.output).isprintable():
        raise InitError(f"-o {str(args.output)!r}: the file name holds a control character (a line break, an "
                        "escape); name the file with printable characters")
    output: Path = args.output if args.output is not None else Path(f"{name}.ipv6.toml")
    output = output if output.is_absolute() else cwd / output
    if output.is_dir():
        output = output / f"{name}.ipv6.toml"
    if not output.name.endswith(".ipv6.toml"):
        raise InitError(f"-o {args.output}: a matrix file must be named *.ipv6.toml to be collected")
    rel_build = None if build is None else os.path.relpath(build, output.parent.resolve())
    return (
        Scaffold(
            name=name,
            variants=variants,
            stacks=stacks,
            knob=knob,
            settings=settings,
            images=images,
            build=rel_build,
            port=args.port,
            probe=args.probe,
            http_path=args.http_path,
        ),
        output,
    )


def main(args: argparse.Namespace) -> tuple[int, str]:
    """Run ``init``; return (exit status, the one line to print)."""
    try:
        scaffold, output = scaffold_from_args(args, Path.cwd())
        path = write(scaffold, output)
    except InitError as exc:
        return 2, f"error: {exc}"
    cells = len(scaffold.variants) * len(scaffold.stacks) * max(1, len(scaffold.settings))
    shown = os.path.relpath(path)
    return 0, f"wrote {shown}: {cells} cells, each a placeholder; next: pytest {shown} --ipv6-record"
