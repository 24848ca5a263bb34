"""Per-process session state: the engine connection and built images, made lazily.

Nothing here touches Docker until a cell or fixture needs it, so a run that
selects no container tests never needs an engine.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker

from . import images
from .backends import Backend, EngineError
from .backends.docker_api import DockerBackend
from .backends.docker_run import FAULTS, reason
from .backends.uml import UmlBackend, find_kernel
from .options import Settings
from .stacks import Stack


class Unavailable(Exception):
    """The engine cannot be reached; the cell is skipped (or errors if Docker is required).

    ``error``: the plugin itself cannot work here (its cache cannot be written), so the
    cell is an error whatever --ipv6-require-docker says.
    """

    def __init__(self, message: str, *, error: bool = False) -> None:
        super().__init__(message)
        self.error = error


def check_cache(cache_dir: Path) -> None:
    """Write (and remove) a small file in the cache: a full or read-only cache is an error, not a skip."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=".write-check-") as probe:
            probe.write(b"\0" * 65536)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise Unavailable(f"the cache directory {cache_dir} cannot be written: {exc.strerror} "
                          "(free space there, or point --ipv6-cache-dir elsewhere)", error=True) from None


@dataclass
class SessionState:
    settings: Settings
    worker: str | None = None  # the xdist worker id (gw0, gw1 ...), None in the controller or a plain run
    kept: dict[str, list[str]] = field(default_factory=dict)  # failed cells' runs left for inspection: commands
    swept: list[str] = field(default_factory=list)
    _engine: DockerBackend | None = None
    _engine_error: Unavailable | None = None
    _uml: UmlBackend | None = None
    _uml_error: str | None = None
    _base: str | None = None
    _images: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def cache_dir(self) -> Path:
        return self.settings.cache_dir or images.default_cache_dir()

    def engine(self) -> DockerBackend:
        """Connect once; raise :class:`Unavailable` (every time) if that failed."""
        if self._engine is None and self._engine_error is None:
            try:
                check_cache(self.cache_dir)
                probe = images.ensure_probe(self.cache_dir)
                self._engine = DockerBackend.connect(
                    probe, api_timeout=max(60.0, self.settings.timeout + 10), url=self.engine_url,
                    ssh_config=self.settings.ssh_config,
                )
                self.swept = self._engine.sweep()
            except (EngineError, images.ImageError) as exc:
                self._engine_error = Unavailable(str(exc))
            except Unavailable as exc:
                self._engine_error = exc
        if self._engine is None:
            error = self._engine_error
            raise Unavailable(str(error or "Docker engine unavailable"), error=error is not None and error.error)
        return self._engine

    def backend(self, stack: Stack) -> Backend:
        """Where cells of ``stack`` run: the one place that decides (raises :class:`Unavailable`)."""
        engine = self.engine()
        if stack.backend == "docker":
            return engine
        return self.uml()

    def uml(self) -> UmlBackend:
        """The User-mode Linux backend (it exports images through the engine); :class:`Unavailable` if absent."""
        engine = self.engine()
        if self._uml is None and self._uml_error is None:
            try:
                kernel = find_kernel(self.settings.uml)
                self._uml = UmlBackend(engine, kernel, self.cache_dir, engine.probe_dir)
                self._uml.sweep()
            except EngineError as exc:
                self._uml_error = str(exc)
        if self._uml is None:
            raise Unavailable(self._uml_error or "User-mode Linux unavailable")
        return self._uml

    @property
    def engine_url(self) -> str | None:
        """The engine of this process from --ipv6-engines: xdist worker gwN takes the N-th, round robin."""
        engines = self.settings.engines
        if not engines:
            return None
        index = int(self.worker[2:]) if self.worker and self.worker[2:].isdigit() else 0
        return engines[index % len(engines)]

    @property
    def client(self) -> docker.DockerClient:
        return self.engine().client

    def base_image(self) -> str:
        if self._base is None:
            with self._engine_faults("the base image"):
                if self.settings.base_image:
                    self._base = images.use_base_image(self.client, self.settings.base_image)
                else:
                    self._base = images.ensure_base_image(self.client, self.cache_dir)
        return self._base

    def built_image(self, context: Path, name: str, build_args: dict[str, str]) -> str:
        key = (str(context), name + repr(sorted(build_args.items())))
        if key not in self._images:
            base = self.base_image()
            with self._engine_faults(f"image {name!r}"):
                self._images[key] = images.ensure_target_image(
                    self.client,
                    context,
                    base=base,
                    name=name,
                    build_args=build_args,
                    cache_dir=self.cache_dir,
                )
        return self._images[key]

    @contextlib.contextmanager
    def _engine_faults(self, what: str) -> Iterator[None]:
        """An engine that stops answering while an image is looked up or built: one line (why, when its SSH
        connection was lost), an :class:`EngineError`, never a traceback."""
        try:
            yield
        except FAULTS as exc:
            engine = self._engine
            why = engine.link_down() if engine is not None else None
            raise EngineError(why or f"the Docker engine failed while preparing {what}: {reason(exc)}") from None

    @property
    def base_ref(self) -> str | None:
        return self._base

    def engine_info(self) -> dict[str, str]:
        """Engine facts for reports; empty when no engine was reached."""
        try:
            return self.engine().info()
        except (Unavailable, EngineError):
            return {}

    def close(self) -> None:
        if self._engine is not None:
            try:
                self._engine.remove_session(keep=self.kept)
            finally:
                self._engine.close()  # an ssh:// engine's connection, by its pid
