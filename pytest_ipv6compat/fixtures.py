"""Fixtures for tests written by hand.

Two tiers, as in pytest-httpserver: a session-scoped factory that can start any
image on any stack, and a per-test ``ipv6_target`` that is already started and
observed. Override the small fixtures (``ipv6_target_image``, ``ipv6_stack``,
``ipv6_env``) to change what ``ipv6_target`` starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import images
from .backends import Backend, EngineError, Launch, StackUnsupported, UnknownUser
from .interop import container_target
from .keys import STATE_KEY
from .listeners import format_listeners, parse_listener
from .model import Attestation, Listener, Outcome, Verdict
from .options import run_base
from .outcomes import fail, unavailable, unsupported
from .report import describe_reach
from .spec import RunSpec, SpecError, check_image, check_run, parse_run_settings
from .stacks import get_stack
from .state import SessionState, Unavailable

_TARGET_MARKER_KEYS = ("image", "build")


@dataclass(frozen=True)
class StartedTarget:
    """A target that was started on a stack and observed; its container is gone or going."""

    image: str
    stack: str
    env: Mapping[str, str]
    attestation: Attestation
    verdict: Verdict
    run: RunSpec
    container: str  # the engine's id of the container, which runs until the ``with`` block ends

    @property
    def up(self) -> bool:
        return self.verdict.outcome is Outcome.UP

    @property
    def listeners(self) -> frozenset[Listener]:
        return self.verdict.listeners

    @property
    def logs(self) -> str:
        return self.verdict.logs

    def answered(self, listener: Listener | str) -> bool | None:
        """Did this listener answer over loopback of its family? None if it was not seen."""
        if isinstance(listener, str):
            listener = parse_listener(listener)
        return self.verdict.answered(listener)

    def describe(self) -> str:
        v = self.verdict
        lines = [
            f"{self.image} on {self.stack}: {v.outcome}"
            + (f" with code {v.exit_code}" if v.exit_code is not None else "")
        ]
        lines.append(f"listeners: {format_listeners(v.listeners)}")
        lines += [f"  {line}" for line in describe_reach(v)]
        if v.listened:
            lines.append(f"had listened on: {format_listeners(v.listened)}")
        lines += [text for text in (v.change_text(), v.unsteady_text()) if text]
        if v.error_line:
            lines.append(f"error line: {v.error_line}")
        return "\n".join(lines)


class TargetFactory:
    """Starts targets on stacks. Session-scoped: the engine and images are reused."""

    def __init__(self, state: SessionState) -> None:
        self._state = state

    def _engine(self, stack: str = "dual-stack") -> Backend:
        try:
            return self._state.backend(get_stack(stack))
        except ValueError as exc:
            fail(str(exc))
        except Unavailable as exc:
            unavailable(exc, require_docker=self._state.settings.require_docker)

    def build(self, context: Path | str, *, name: str | None = None, build_args: Mapping[str, str] = {}) -> str:
        """Build (or reuse, by content) an image from ``context``, ``FROM ${BASE}`` the base image."""
        self._engine()
        context = Path(context)
        try:
            return self._state.built_image(context, name or context.name, dict(build_args))
        except (images.ImageError, EngineError) as exc:
            fail(str(exc))

    @contextlib.contextmanager
    def start(
        self,
        image: str,
        *,
        stack: str = "dual-stack",
        env: Mapping[str, str | None] | None = None,
        **run: Any,
    ) -> Iterator[StartedTarget]:
        """Start ``image`` on ``stack``, wait for its verdict, yield it, then remove the container.

        ``run`` takes the run settings of a matrix target: ``probe``, ``http_path``,
        ``http_status``, ``settle``, ``hold``, ``timeout``, ``read_only``, ``tmpfs``,
        ``extra_hosts``, ``mounts``, ``user``, ``command``. The container still runs
        inside the ``with`` block (an ``up`` target is still listening there).
        """
        try:
            given = {k: v for k, v in run.items() if v is not None}
            settings = parse_run_settings(given, "ipv6_target_factory.start()")
        except SpecError as exc:
            fail(str(exc))
        with self._start(image, stack, env, settings, "ipv6_target_factory.start()") as target:
            yield target

    @contextlib.contextmanager
    def start_container(self, container: Any, *, stack: str = "dual-stack", **run: Any) -> Iterator[StartedTarget]:
        """Start a testcontainers ``DockerContainer`` definition (not started) on ``stack``, as :meth:`start` does.

        Its image, env, command, volumes, tmpfs mounts and the keyword arguments a cell can honour
        (``user``, ``read_only``, ``extra_hosts``, ``mem_limit``, ``pids_limit``, ``tmpfs``) are used;
        ``run`` adds or overrides run settings (``probe``, ``hold`` ...). See :mod:`.interop`.
        """
        try:
            image, env, settings = container_target(container)
            where = f"ipv6_target_factory.start_container(DockerContainer({image!r}))"
            given = parse_run_settings({**settings, **{k: v for k, v in run.items() if v is not None}}, where)
        except SpecError as exc:
            fail(str(exc))
        with self._start(image, stack, env, given, where) as target:
            yield target

    @contextlib.contextmanager
    def _start(
        self, image: str, stack: str, env: Mapping[str, str | None] | None, settings: Mapping[str, Any], where: str
    ) -> Iterator[StartedTarget]:
        """:meth:`start` with run settings already validated where they were written (a marker, a call)."""
        try:
            check_image(image, where)  # before the engine: a bad reference is an error with or without one
        except SpecError as exc:
            fail(str(exc))
        engine = self._engine(stack)
        try:
            stack_obj = get_stack(stack)
            spec = run_base(self._state.settings).updated(settings)
            check_run(spec, where)
        except (ValueError, SpecError) as exc:
            fail(str(exc))
        clean = {k: v for k, v in (env or {}).items() if v is not None}
        for key, value in clean.items():
            if not key or "=" in key or "\0" in key or "\0" in str(value):
                fail(f"environment variable {key!r}={value!r}: names may not be empty or hold '=' or NUL")
        launch = Launch(image, stack_obj, env=clean, run=spec)
        try:
            with engine.run(launch) as running:
                attestation = running.attestation()
                if not attestation.ok:
                    fail(f"stack {stack} could not be attested:\n{attestation.describe()}")
                verdict = running.verdict()
                yield StartedTarget(image, stack, clean, attestation, verdict, spec, running.container_id)
        except UnknownUser as exc:
            fail(exc.line(where))
        except StackUnsupported as exc:
            unsupported(exc, require_docker=self._state.settings.require_docker)
        except EngineError as exc:
            fail(str(exc))


@pytest.fixture(scope="session")
def ipv6_target_factory(pytestconfig: pytest.Config) -> TargetFactory:
    """Session-scoped factory: ``with ipv6_target_factory.start(image, stack=...) as t: ...``."""
    return TargetFactory(pytestconfig.stash[STATE_KEY])


@pytest.fixture
def ipv6_stack() -> str:
    """The stack ``ipv6_target`` starts on; ``@pytest.mark.ipv6_stack(...)`` parametrizes it."""
    return "dual-stack"


@pytest.fixture
def ipv6_env(request: pytest.FixtureRequest) -> dict[str, str | None]:
    """Environment for ``ipv6_target``, from ``@pytest.mark.ipv6_env(NAME="value")``."""
    env: dict[str, str | None] = {}
    for marker in reversed(list(request.node.iter_markers("ipv6_env"))):
        if marker.args:
            fail(f"{request.node.nodeid}: ipv6_env takes keyword arguments only")
        env.update(marker.kwargs)
    return env


def _target_marker(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``ipv6_target`` marker's arguments, validated: unknown ones are a usage error naming them."""
    marker = request.node.get_closest_marker("ipv6_target")
    if marker is None:
        return {}
    if marker.args:
        fail(f"{request.node.nodeid}: ipv6_target takes keyword arguments only, got {marker.args!r}")
    where = f"{request.node.nodeid}: marker ipv6_target"
    run = {k: v for k, v in marker.kwargs.items() if k not in _TARGET_MARKER_KEYS and v is not None}
    try:
        settings = parse_run_settings(run, where, base=request.path.parent)
        check_run(run_base(request.config.stash[STATE_KEY].settings).updated(settings), where)
    except SpecError as exc:
        fail(str(exc))
    return {**{k: marker.kwargs[k] for k in _TARGET_MARKER_KEYS if k in marker.kwargs}, **settings}


@pytest.fixture
def ipv6_target_image(request: pytest.FixtureRequest, ipv6_target_factory: TargetFactory) -> str:
    """The image ``ipv6_target`` starts: marker ``ipv6_target(image=|build=)`` > --ipv6-image > --ipv6-build."""
    kwargs = _target_marker(request)
    settings = request.config.stash[STATE_KEY].settings
    if kwargs.get("image"):
        return str(kwargs["image"])
    if kwargs.get("build"):
        build = Path(str(kwargs["build"]))
        if not build.is_absolute():
            build = request.path.parent / build
        return ipv6_target_factory.build(build)
    if settings.image:
        return settings.image
    if settings.build:
        return ipv6_target_factory.build(settings.build)
    fail(
        f"{request.node.nodeid}: ipv6_target has nothing to start: pass --ipv6-image or --ipv6-build, "
        "use @pytest.mark.ipv6_target(image=...), or override the ipv6_target_image fixture"
    )


@pytest.fixture
def ipv6_target(
    request: pytest.FixtureRequest,
    ipv6_target_factory: TargetFactory,
    ipv6_target_image: str,
    ipv6_stack: str,
    ipv6_env: dict[str, str | None],
) -> Iterator[StartedTarget]:
    """The target, started on ``ipv6_stack`` with ``ipv6_env`` and observed; removed after the test."""
    # The marker's settings were validated where they were written (naming the test and the marker);
    # parsing them again as arguments of start() would reject the forms the marker accepts.
    settings = {k: v for k, v in _target_marker(request).items() if k not in _TARGET_MARKER_KEYS}
    where = f"{request.node.nodeid}: marker ipv6_target"
    with ipv6_target_factory._start(ipv6_target_image, ipv6_stack, ipv6_env, settings, where) as target:
        request.node.add_report_section("call", "ipv6 target", target.describe())
        yield target
