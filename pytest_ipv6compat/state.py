"""Per-process session state: the engine connection and built images, made lazily.

Nothing here touches Docker until a cell or fixture needs it, so a run that
selects no container tests never needs an engine.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
from requests.utils import get_environ_proxies

from . import images
from .backends import Backend, EngineError
from .backends.docker_api import DockerBackend
from .backends.docker_run import FAULTS, reason
from .backends.oci import OciBackend, find_runtime, unavailable_reason
from .backends.uml import UmlBackend, find_kernel
from .options import Settings
from .provenance import Provenance, of_info, redact
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


F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """One thread at a time makes or changes what the session shares (its engine, images, backends): cells
    started ahead (--ipv6-inflight) run in threads beside a test's fixture."""

    @functools.wraps(method)
    def locked(self: SessionState, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


def read_environment_once(client: docker.DockerClient) -> None:
    """Have the engine's HTTP session read the environment (proxy variables, CA bundle) now, not at every call.

    requests reads ``os.environ`` at each call, and pytest sets and removes ``PYTEST_CURRENT_TEST`` there
    as every test phase begins and ends: a call from a cell started ahead (a thread, --ipv6-inflight) that
    meets the change mid-read fails with ``KeyError: 'PYTEST_CURRENT_TEST'``. What the environment says
    is kept as it is now, so a proxy or CA bundle it names still applies.
    """
    session = client.api
    base = str(session.base_url)
    session.proxies.update({k: v for k, v in get_environ_proxies(base).items() if k not in session.proxies})
    if session.verify is True:
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False


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
    _oci: OciBackend | None = None
    _oci_error: str | None = None
    _base: str | None = None
    _images: dict[tuple[str, str], str] = field(default_factory=dict)
    dead: dict[str, str] = field(default_factory=dict)  # engines of --ipv6-engines that did not answer: why
    failover: str | None = None  # set when this process's own engine did not answer and another one runs its cells
    using: str | None = None  # the address (of --ipv6-engines) of the engine connected now; None for DOCKER_HOST
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def cache_dir(self) -> Path:
        return self.settings.cache_dir or images.default_cache_dir()

    @_locked
    def engine(self) -> DockerBackend:
        """Connect once; raise :class:`Unavailable` (every time) if that failed.

        With several engines (--ipv6-engines), an engine that does not answer is passed over for
        the next one that does, in the order given from this process's own (:attr:`failover`
        says so, and each cell's provenance records it).
        """
        if self._engine is None and self._engine_error is None:
            try:
                check_cache(self.cache_dir)
                probe = images.ensure_probe(self.cache_dir)
                self._engine = self._connect(probe)
                self.swept = self._engine.sweep()
            except (EngineError, images.ImageError) as exc:
                self._engine_error = Unavailable(str(exc))
            except Unavailable as exc:
                self._engine_error = exc
        if self._engine is None:
            error = self._engine_error
            raise Unavailable(str(error or "Docker engine unavailable"), error=error is not None and error.error)
        return self._engine

    def _connect(self, probe: Path) -> DockerBackend:
        """The first engine that answers, from this process's own on (only its own without --ipv6-engines)."""
        timeout = max(60.0, self.settings.timeout + 10)
        first: EngineError | None = None
        for url in self.engine_urls():
            if url in self.dead:
                continue
            try:
                engine = DockerBackend.connect(probe, api_timeout=timeout, url=url, ssh_config=self.settings.ssh_config)
            except EngineError as exc:
                if url is None:
                    raise
                self.dead[url] = str(exc).split(" is unreachable: ", 1)[-1]  # the address is said once, below
                first = first or exc
                continue
            read_environment_once(engine.client)
            self.using = url
            if url != self.engine_url:
                own = self.engine_url or "?"
                self.failover = f"{redact(own)} did not answer ({self.dead.get(own, '?')})"
            return engine
        others = [redact(u) for u in self.dead if u != self.engine_url]
        raise EngineError(f"{first or 'no engine answered'}"
                          + (f"; no other engine answered either ({', '.join(others)})" if others else ""))

    def engine_urls(self) -> list[str | None]:
        """The engines this process may use, in order: its own (:attr:`engine_url`), then the ones after it."""
        engines = self.settings.engines
        if not engines:
            return [None]
        start = engines.index(self.engine_url) if self.engine_url in engines else 0
        return list(dict.fromkeys(engines[start:] + engines[:start]))

    @_locked
    def fail_over(self) -> bool:
        """After a cell's engine error: when the engine no longer answers and another engine of
        --ipv6-engines might, forget this one (its images, its User-mode Linux exports) and return True:
        the next :meth:`engine` connects to the next engine that answers. False otherwise (the error stands)."""
        engine = self._engine
        if engine is None or len(self.settings.engines or ()) < 2 or engine.answers():
            return False
        if self.using is not None:
            self.dead[self.using] = f"it stopped answering during the run ({engine.gone or 'no answer to a ping'})"
        engine.close()  # an ssh:// engine's connection, by its pid
        self._engine, self._engine_error, self._uml, self._uml_error, self._base = None, None, None, None, None
        self._images.clear()
        return any(u not in self.dead for u in self.engine_urls())

    def other_engine(self, url: str) -> dict[str, str]:
        """``info()`` of an engine of --ipv6-engines this process does not use (for the header); connected
        for this call only. :class:`EngineError` if it cannot be reached."""
        if url in self.dead:
            raise EngineError(f"Docker engine at {redact(url)} is unreachable: {self.dead[url]}")
        engine = DockerBackend.connect(images.ensure_probe(self.cache_dir), url=url,
                                       ssh_config=self.settings.ssh_config)
        try:
            return engine.info()
        finally:
            engine.client.close()
            engine.close()  # an ssh:// engine's connection, by its pid

    def provenance(self, backend: Backend) -> Provenance:
        """What runs a cell on ``backend``: its ``info()`` as a cell records it (empty if it cannot say)."""
        try:
            return of_info(backend.info(), failover=self.failover)
        except EngineError:
            return ()

    def backend(self, stack: Stack) -> Backend:
        """Where cells of ``stack`` run: the one place that decides (raises :class:`Unavailable`)."""
        engine = self.engine()
        if stack.backend == "docker":
            return self.oci() if self.settings.backend == "oci" else engine
        return self.uml()

    @_locked
    def oci(self) -> OciBackend:
        """The OCI runtime backend (--ipv6-backend=oci; it exports images through the local engine)."""
        engine = self.engine()
        if self._oci is None and self._oci_error is None:
            why = unavailable_reason(engine_local=engine._local())
            runtime = find_runtime()
            if why is None and runtime is not None:
                self._oci = OciBackend(engine, self.cache_dir, engine.probe_dir, runtime)
                self._oci.sweep()
            else:
                self._oci_error = f"{self.settings.source('backend')}: the oci backend cannot run here: {why}"
        if self._oci is None:
            raise Unavailable(self._oci_error or "the oci backend is unavailable", error=True)
        return self._oci

    @_locked
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

    @_locked
    def base_image(self) -> str:
        if self._base is None:
            with self._engine_faults("the base image"):
                if self.settings.base_image:
                    self._base = images.use_base_image(self.client, self.settings.base_image)
                else:
                    self._base = images.ensure_base_image(self.client, self.cache_dir)
        return self._base

    @_locked
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
        """Engine facts for reports (addresses without credentials); empty when no engine was reached."""
        try:
            info = self.engine().info()
        except (Unavailable, EngineError):
            return {}
        return {key: redact(value) if key in ("address", "url") else value for key, value in info.items()}

    def close(self) -> None:
        if self._oci is not None:
            self._oci.remove_session(keep=self.kept)
        if self._engine is not None:
            try:
                self._engine.remove_session(keep=self.kept)
            finally:
                self._engine.close()  # an ssh:// engine's connection, by its pid
