"""The plugin's options: one group, every flag ``--ipv6-…`` with a matching ini key.

Precedence: a marker on a test > the command line > the ini file > the default.
Values are validated once, in ``pytest_configure``; a bad one raises
``pytest.UsageError`` naming the value and where it came from.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .model import KnobSetting
from .report import SCHEMA_ID, SCHEMA_VERSION
from .spec import PROBES, RunSpec, SpecError, check_image, parse_run_settings
from .stacks import STACKS

BACKENDS = ("engine", "oci")
INFLIGHT_DEFAULT = 1  # 4 is faster on Docker (README, Performance); not the default until Podman is understood
INFLIGHT_MAX = 64


@dataclass(frozen=True)
class Option:
    name: str  # ini key; the flag is --name with '_' -> '-'
    help: str
    kind: str = "string"  # string | list | path | seconds | hold | probe | memory | pids | cpus | inflight | bool
    default: Any = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS = (
    Option("ipv6_stacks", "only these stacks, comma-separated (" + ", ".join(STACKS) + ")", "list", None, "STACKS"),
    Option("ipv6_variants", "only these target variants, comma-separated", "list", None, "VARIANTS"),
    Option(
        "ipv6_settings",
        "only these knob settings, comma-separated labels: unset, empty, =VALUE (e.g. 'unset,=1')",
        "list",
        None,
        "LABELS",
    ),
    Option("ipv6_image", "image the ipv6_target fixture starts (overrides ipv6_build)", "string", None, "IMAGE"),
    Option(
        "ipv6_build", "build context (directory with a Dockerfile) for the ipv6_target fixture", "path", None, "DIR"
    ),
    Option(
        "ipv6_base_image",
        "base image passed as build arg BASE instead of bootstrapping one from Debian packages",
        "string",
        None,
        "IMAGE",
    ),
    Option("ipv6_markdown", "write the compatibility grid as Markdown to this file", "path", None, "PATH"),
    Option(
        "ipv6_json", f"write the results as JSON (schema {SCHEMA_ID} v{SCHEMA_VERSION}) to this file", "path", None,
        "PATH",
    ),
    Option(
        "ipv6_timeout",
        "seconds a target may take to listen before its verdict is 'timeout'",
        "seconds",
        30.0,
        "SECONDS",
    ),
    Option(
        "ipv6_settle",
        "seconds the set of listening sockets must stay unchanged before it is read and probed",
        "seconds",
        0.05,
        "SECONDS",
    ),
    Option(
        "ipv6_hold",
        "seconds a target must stay up after its listeners settled to be 'up' (0 disables the check)",
        "hold",
        1.0,
        "SECONDS",
    ),
    Option(
        "ipv6_probe",
        "how each listener is probed unless the target says: " + ", ".join(PROBES)
        + " (default: tcp, or http when the target names an http_path)",
        "probe",
        None,
        "PROBE",
    ),
    Option(
        "ipv6_memory",
        "memory limit of every target, without swap (e.g. 256m, 1g); a target over it is killed",
        "memory",
        "512m",
        "SIZE",
    ),
    Option("ipv6_pids", "most processes and threads a target may have", "pids", 512, "N"),
    Option("ipv6_cpus", "CPU time a target may use, in CPUs (e.g. 0.5, 2)", "cpus", 1.0, "N"),
    Option(
        "ipv6_inflight",
        f"matrix cells each pytest process keeps in flight: the next ones start while one holds (1 to "
        f"{INFLIGHT_MAX}; 1 runs one cell at a time; default {INFLIGHT_DEFAULT})",
        "inflight",
        INFLIGHT_DEFAULT,
        "N",
    ),
    Option("ipv6_keep_failed", "keep the containers of failed cells and print how to inspect them", "bool", False),
    Option(
        "ipv6_require_docker",
        "error instead of skip when a backend is unavailable: the Docker engine is unreachable, or User-mode "
        "Linux (for ipv6-boot-disabled) is not installed",
        "bool",
        False,
    ),
    Option(
        "ipv6_uml",
        "the User-mode Linux kernel that runs ipv6-boot-disabled cells (default: 'linux' on PATH, from "
        "apt-get install user-mode-linux)",
        "text",
        None,
        "PATH",
    ),
    Option(
        "ipv6_engines",
        "engine addresses, comma-separated (unix:///..., tcp://..., ssh://...): xdist worker gwN uses the N-th, "
        "round robin; without it, DOCKER_HOST or the default socket",
        "engines",
        None,
        "URLS",
    ),
    Option(
        "ipv6_ssh_config",
        "OpenSSH client config (ssh -F) for ssh:// engines: key, known hosts, port, jump host (default: "
        "~/.ssh/config)",
        "path",
        None,
        "FILE",
    ),
    Option("ipv6_cache_dir", "where downloaded packages and the probe are cached", "path", None, "DIR"),
    Option(
        "ipv6_fidelity",
        "what an emulation difference (ipv6-kernel-off and ipv6-boot-disabled verdicts differ) does: report "
        "(flag it in every report) or fail (also fail the run)",
        "fidelity",
        "report",
        "report|fail",
    ),
    Option(
        "ipv6_backend",
        "what starts container cells: engine (the Docker API, local or remote) or oci (crun or runc on a bundle "
        "exported once through the local engine: needs root; ipv6-boot-disabled stays on User-mode Linux)",
        "backend",
        "engine",
        "engine|oci",
    ),
    Option(
        "ipv6_record",
        "write each observed verdict into its matrix file as the cell's expectation (errors are never recorded)",
        "bool",
        False,
    ),
)


@dataclass(frozen=True)
class Settings:
    stacks: tuple[str, ...] | None = None
    variants: tuple[str, ...] | None = None
    settings: tuple[str, ...] | None = None
    image: str | None = None
    build: Path | None = None
    base_image: str | None = None
    markdown: Path | None = None
    json: Path | None = None
    timeout: float = 30.0
    settle: float = 0.05
    hold: float = 1.0
    probe: str | None = None
    memory: str = "512m"
    pids: int = 512
    cpus: float = 1.0
    inflight: int = INFLIGHT_DEFAULT
    keep_failed: bool = False
    require_docker: bool = False
    uml: str | None = None
    cache_dir: Path | None = None
    engines: tuple[str, ...] | None = None
    ssh_config: Path | None = None
    record: bool = False
    fidelity: str = "report"
    backend: str = "engine"
    sources: tuple[tuple[str, str], ...] = ()  # (field, where its value came from: the flag or the ini file)

    def source(self, name: str) -> str:
        """Where the value of field ``name`` came from (``--ipv6-json=PATH``, ``ini option ipv6_json ...``)."""
        return dict(self.sources).get(name, "--ipv6-" + name.replace("_", "-"))


def register(parser: pytest.Parser) -> None:
    group = parser.getgroup("ipv6compat", "IPv6 compatibility matrix (pytest-ipv6compat)")
    for opt in OPTIONS:
        if opt.kind == "bool":
            group.addoption(opt.flag, action="store_true", default=None, dest=opt.name, help=opt.help)
            parser.addini(opt.name, opt.help, type="bool", default=False)
        else:
            group.addoption(opt.flag, action="store", default=None, dest=opt.name, metavar=opt.metavar, help=opt.help)
            parser.addini(opt.name, opt.help, default=None)


def _convert(opt: Option, raw: Any, source: str, rootpath: Path) -> Any:
    if opt.kind == "bool":
        return bool(raw)
    text = str(raw).strip()
    if opt.kind == "list":
        items = tuple(part.strip() for part in text.split(",") if part.strip())
        if not items:
            raise pytest.UsageError(f"{source}: {raw!r} names nothing; give a comma-separated list")
        if opt.name == "ipv6_stacks":
            for item in items:
                if item not in STACKS:
                    raise pytest.UsageError(f"{source}: unknown stack {item!r} (known: {', '.join(STACKS)})")
        if opt.name == "ipv6_settings":
            for item in items:
                try:
                    KnobSetting.from_label(item)
                except ValueError as exc:
                    raise pytest.UsageError(f"{source}: {exc}") from None
        return items
    if opt.kind == "engines":
        urls = tuple(part.strip() for part in text.split(",") if part.strip())
        for url in urls:
            if not re.fullmatch(r"(unix|tcp|ssh|npipe|http|https)://\S+", url):
                raise pytest.UsageError(f"{source}: {url!r} is not an engine address (unix://PATH, tcp://HOST:PORT)")
        if not urls:
            raise pytest.UsageError(f"{source}: {raw!r} names no engine")
        return urls
    if opt.kind in ("memory", "pids", "cpus"):
        value: Any = text
        if opt.kind in ("pids", "cpus"):
            try:
                value = int(text) if opt.kind == "pids" else float(text)
            except ValueError:
                raise pytest.UsageError(f"{source}: {raw!r} is not a {'whole ' * (opt.kind == 'pids')}number") from None
        try:
            return parse_run_settings({opt.kind: value}, source)[opt.kind]
        except SpecError as exc:
            raise pytest.UsageError(str(exc)) from None
    if opt.kind == "inflight":
        if not re.fullmatch(r"[0-9]+", text) or not 1 <= int(text) <= INFLIGHT_MAX:
            raise pytest.UsageError(f"{source}: {raw!r} is not a whole number from 1 to {INFLIGHT_MAX}")
        return int(text)
    if opt.kind == "fidelity":
        if text not in ("report", "fail"):
            raise pytest.UsageError(f"{source}: {text!r} is not one of report, fail")
        return text
    if opt.kind == "backend":
        if text not in BACKENDS:
            raise pytest.UsageError(f"{source}: backend {text!r} is not one of {', '.join(BACKENDS)}")
        return text
    if opt.kind == "probe":
        if text not in PROBES:
            raise pytest.UsageError(f"{source}: probe {text!r} is not one of {', '.join(PROBES)}")
        return text
    if opt.kind in ("hold", "seconds"):  # a hold may be 0 (no check); a timeout or settle may not
        try:
            value = float(text)
        except ValueError:
            raise pytest.UsageError(f"{source}: {raw!r} is not a number of seconds") from None
        low, bound = (0.0, "at least 0") if opt.kind == "hold" else (math.nextafter(0.0, 1.0), "more than 0")
        if not math.isfinite(value) or value < low or value > 3600:
            raise pytest.UsageError(f"{source}: {raw!r} must be {bound} and at most 3600 seconds")
        return value
    if not text:
        raise pytest.UsageError(f"{source}: the value is empty")
    if opt.name in ("ipv6_image", "ipv6_base_image"):
        try:
            return check_image(text, source)
        except SpecError as exc:
            raise pytest.UsageError(str(exc)) from None
    if opt.kind == "path":
        path = Path(text).expanduser()
        path = path if path.is_absolute() else rootpath / path
        if opt.name == "ipv6_build" and not (path / "Dockerfile").is_file():
            what = "does not exist" if not path.exists() else "has no Dockerfile"
            raise pytest.UsageError(f"{source}: build context {str(path)!r} {what}")
        if opt.name in ("ipv6_markdown", "ipv6_json"):
            _check_writable_file(path, source)
        if opt.name == "ipv6_cache_dir":
            _check_directory(path, source)
        if opt.name == "ipv6_ssh_config" and not path.is_file():
            raise pytest.UsageError(f"{source}: {str(path)!r} is not a file")
        return path
    return text


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable_file(path: Path, source: str) -> None:
    """A report file must be writable now, not only after the whole run."""
    if path.is_dir():
        raise pytest.UsageError(f"{source}: {str(path)!r} is a directory; name a file")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise pytest.UsageError(f"{source}: {str(path)!r} is not writable")
        return
    parent = _nearest_existing(path.parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"{source}: cannot create {str(path)!r}: {str(parent)!r} is not a writable directory")
    try:  # permissions do not tell everything (a read-only mount, /proc): try it
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise pytest.UsageError(f"{source}: cannot create {str(path)!r}: {exc.strerror}") from None


def _check_directory(path: Path, source: str) -> None:
    if path.exists() and not path.is_dir():
        raise pytest.UsageError(f"{source}: {str(path)!r} is not a directory")
    parent = path if path.exists() else _nearest_existing(path.parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"{source}: {str(path)!r} is not a writable directory")


def load(config: pytest.Config) -> Settings:
    """Resolve every option (command line over ini) and validate it."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        cli = config.getoption(opt.name)
        if cli is not None:
            shown = cli if str(cli).isprintable() else repr(cli)  # a raw escape must not reach the terminal
            raw, source, base = cli, f"{opt.flag}={shown}" if opt.kind != "bool" else opt.flag, Path.cwd()
        else:
            try:
                ini = config.getini(opt.name)
            except (ValueError, pytest.UsageError) as exc:  # pytest's own parse of a bool ini value
                where = config.inipath or "the ini file"
                raise pytest.UsageError(f"ini option {opt.name} in {where}: {exc} (use true or false)") from None
            if ini is None or ini == "" or (opt.kind == "bool" and not ini):
                continue
            where = config.inipath or "the ini file"
            raw, source, base = ini, f"ini option {opt.name} = {ini!r} in {where}", config.rootpath
        values[opt.name.removeprefix("ipv6_")] = _convert(opt, raw, source, base)
        sources[opt.name.removeprefix("ipv6_")] = source
    if "settle" in values and values["settle"] >= values.get("timeout", 30.0):
        raise pytest.UsageError(
            f"--ipv6-settle={values['settle']:g} must be shorter than --ipv6-timeout={values.get('timeout', 30.0):g}"
        )
    if values.get("backend") == "oci":
        why = oci_problem(values.get("engines"), os.environ.get("DOCKER_HOST"))
        if why:
            raise pytest.UsageError(f"{sources['backend']}: the oci backend cannot run here: {why}")
    return Settings(**values, sources=tuple(sorted(sources.items())))


def oci_problem(engines: tuple[str, ...] | None, docker_host: str | None) -> str | None:
    """Why ``--ipv6-backend=oci`` cannot be used with these engines on this host (one clause), or None."""
    from .backends.oci import unavailable_reason

    remote = [u for u in (engines or ()) if not u.startswith("unix://")]
    if not engines and docker_host and not docker_host.startswith("unix://"):
        remote = [f"{docker_host} (from DOCKER_HOST)"]
    if remote:
        return (f"engine {remote[0]} is remote; the oci backend exports images through a local engine "
                "(use --ipv6-backend=engine)")
    return unavailable_reason(engine_local=True)


def run_base(settings: Settings) -> RunSpec:
    """The run settings every target starts from: defaults overridden by options."""
    base = RunSpec(
        settle=settings.settle, hold=settings.hold, timeout=settings.timeout, memory=settings.memory,
        pids=settings.pids, cpus=settings.cpus,
    )
    return base.updated({"probe": settings.probe}) if settings.probe else base
