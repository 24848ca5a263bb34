"""Images without a registry: a base assembled from Debian packages, the probe, and targets.

The package work (dependency closure, .deb download and checks, rootfs assembly) is in
``debian.py``; this module decides what to build, caches it and talks to Docker.

Everything is cached by content. The warm path of each ``ensure_*`` function costs one
``images.get`` (or one directory check) and never runs apt. Cold work happens under
``cache_dir/build.lock`` and re-checks the cache inside the lock, so pytest-xdist
workers build each thing once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import docker
import docker.errors
import filelock

from . import debian

__all__ = [
    "BASE_REPOSITORY", "DEFAULT_PACKAGES", "EXCLUDED_PACKAGES", "ImageError", "base_image_ref", "default_cache_dir",
    "ensure_base_image", "ensure_probe", "ensure_target_image", "use_base_image",
]

log = logging.getLogger(__name__)

#: Bump when the way the base image is assembled changes; part of every cache key.
RECIPE_VERSION = "1"
BASE_REPOSITORY = "ipv6compat/base"
#: Roots of the base image. Their Depends/Pre-Depends closure (resolved with
#: ``apt-cache depends --recurse`` on a cold build) minus EXCLUDED_PACKAGES is unpacked.
DEFAULT_PACKAGES: tuple[str, ...] = ("nginx", "busybox-static")
#: Dependencies that neither the nginx binary nor busybox needs at run time (config,
#: maintainer-script and tooling packages). Their own dependencies are not followed.
EXCLUDED_PACKAGES: frozenset[str] = frozenset({
    "nginx-common", "iproute2", "debconf", "cdebconf", "dpkg", "perl-base", "perl", "install-info", "tar",
    "adduser", "passwd", "init-system-helpers", "lsb-base", "base-files", "libcap2-bin", "sensible-utils",
})
#: busybox applets linked into /bin of the base image.
APPLETS: tuple[str, ...] = (
    "sh", "ash", "sed", "grep", "cat", "nc", "sleep", "mkdir", "rm", "ls", "echo", "printf", "tr", "cut", "head",
    "tail", "env", "id", "awk", "wc", "test", "[", "kill", "timeout", "unshare", "mount", "telnet", "wget", "true",
    "false", "cp", "mv", "chmod", "touch", "ps", "netstat", "readlink", "dirname", "basename", "sort", "uniq", "tee",
    "xargs", "hostname", "sysctl", "find", "stat",
)
LABEL_RECIPE = "ipv6compat.recipe"
LABEL_PACKAGES = "ipv6compat.packages"
LABEL_CONTEXT = "ipv6compat.context"
_NAME_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_LOCK_TIMEOUT_S = 900.0
_LOG_TAIL = 15


class ImageError(Exception):
    """An image, the probe or a build context could not be provided; the message says why."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pytest-ipv6compat``, else ``~/.cache/pytest-ipv6compat``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pytest-ipv6compat"


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def _recipe_key(packages: Sequence[str]) -> str:
    return _digest({"recipe": RECIPE_VERSION, "packages": sorted(packages), "excluded": sorted(EXCLUDED_PACKAGES),
                    "applets": APPLETS, "passwd": debian.PASSWD, "group": debian.GROUP, "dirs": debian.DIRS,
                    "arch": debian.dpkg_arch(), "dist": debian.distribution()})


@contextmanager
def _package_errors() -> Iterator[None]:
    """Report a failure of the Debian package work as an :class:`ImageError`, message unchanged."""
    try:
        yield
    except debian.DebianError as exc:
        raise ImageError(str(exc)) from exc


@contextmanager
def _build_lock(cache_dir: Path) -> Iterator[None]:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"cannot create cache directory {cache_dir}: {exc.strerror}") from exc
    lock = filelock.FileLock(str(cache_dir / "build.lock"), timeout=_LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise ImageError(f"gave up after {_LOCK_TIMEOUT_S:.0f}s waiting for {lock.lock_file}: "
                         "another build holds it") from exc
    except OSError as exc:
        raise ImageError(f"cannot lock {lock.lock_file}: {exc.strerror}") from exc
    try:
        yield
    finally:
        lock.release()


def _image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:
        raise ImageError(f"cannot inspect image {ref!r}: {_first_line(exc)}") from exc
    return True


def _first_line(exc: BaseException | str) -> str:
    text = exc if isinstance(exc, str) else str(getattr(exc, "explanation", None) or exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _tail(lines: Iterable[str], n: int = _LOG_TAIL) -> str:
    """The last ``n`` non-blank lines, each on its own indented line."""
    kept = [line.rstrip() for line in lines if line.strip()][-n:]
    return "".join(f"\n    {line}" for line in kept)


def base_image_ref(*, packages: Sequence[str] = DEFAULT_PACKAGES, repository: str = BASE_REPOSITORY) -> str:
    """The ``<repository>:<recipe key>`` tag :func:`ensure_base_image` returns; builds nothing, runs no apt.

    The key hashes the recipe (``packages``, exclusions, applets, extras, RECIPE_VERSION), the dpkg
    architecture and the host distribution.
    """
    return f"{repository}:{_recipe_key(packages)}"


def ensure_base_image(client: docker.DockerClient, cache_dir: Path, *,
                      packages: Sequence[str] = DEFAULT_PACKAGES,
                      repository: str = BASE_REPOSITORY) -> str:
    """Return :func:`base_image_ref`, assembling that image from .debs if it is absent.

    Resolved package versions go into LABEL_PACKAGES.
    """
    ref = base_image_ref(packages=packages, repository=repository)
    if _image_exists(client, ref):
        return ref
    with _build_lock(cache_dir), _package_errors():
        if not _image_exists(client, ref):
            _build_base(client, cache_dir, packages, ref)
    return ref


def _build_base(client: docker.DockerClient, cache_dir: Path, packages: Sequence[str], ref: str) -> None:
    started = time.monotonic()
    debian.require_tools("bootstrap the base image", "pass a base image you already have instead")
    debs = debian.fetch_debs(debian.resolve_closure(packages, EXCLUDED_PACKAGES), cache_dir / "debs")
    versions = " ".join(f"{n}={v}" for n, (v, _) in sorted(debs.items()))
    repository, key = ref.rsplit(":", 1)
    staging = f"{key}-incomplete-{os.getpid()}"
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".base-") as tmp:
        debian.assemble_rootfs(debs, Path(tmp, "rootfs"), APPLETS)
        debian.write_tar(Path(tmp, "rootfs"), Path(tmp, "rootfs.tar"))
        # One LABEL line per label: Podman merges several pairs on one line into a single label.
        changes = [f"LABEL {LABEL_RECIPE}={json.dumps(key)}", f"LABEL {LABEL_PACKAGES}={json.dumps(versions)}",
                   'CMD ["/bin/sh"]', "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        try:
            answer = client.api.import_image(src=str(Path(tmp, "rootfs.tar")), repository=repository, tag=staging,
                                             changes=changes)
            # Podman ignores the tag of an import (it tags :latest): tag the image by the id it reports.
            client.api.tag(_imported_id(answer, ref), repository, tag=staging)
        except (docker.errors.DockerException, OSError) as exc:
            raise ImageError(f"docker import of base image {ref} failed: {_first_line(exc)}") from exc
    staged = f"{repository}:{staging}"
    try:  # publish the real tag only once the image is proven to work
        _smoke_test(client, staged, ref)
        client.api.tag(staged, repository, tag=key)
    finally:
        with suppress(docker.errors.APIError):
            client.api.remove_image(staged, noprune=True)
    log.info("built base image %s (%s) in %.1fs", ref, versions, time.monotonic() - started)


def _imported_id(answer: object, ref: str) -> str:
    """The image id in an import's answer: Docker's JSON stream or Podman's, whichever the engine sent."""
    found: list[str] = re.findall(r"(?:sha256:)?([0-9a-f]{64})", str(answer))
    if not found:
        raise ImageError(f"docker import of base image {ref}: the engine's answer names no image id: "
                         f"{str(answer)[:200]}")
    return found[-1]


def _smoke_test(client: docker.DockerClient, image: str, ref: str) -> None:
    try:
        container = client.containers.create(
            image, ["/bin/sh", "-c", "nginx -V 2>&1 && busybox --list"], network_mode="none",
            labels={"ipv6compat.purpose": "base-image-smoke-test"},
        )
    except (docker.errors.DockerException, OSError) as exc:
        raise ImageError(f"cannot smoke-test base image {ref}: the engine could not create it: "
                         f"{_first_line(exc)}") from None
    try:
        container.start()
        code = int(container.wait(timeout=60).get("StatusCode", -1))
        if code < 0:  # Podman 4.3's wait can answer -1 for a container that had already exited: ask its state
            container.reload()
            code = int(container.attrs.get("State", {}).get("ExitCode", code))
        output = container.logs().decode("utf-8", "replace")
    except (docker.errors.DockerException, OSError) as exc:
        raise ImageError(f"cannot smoke-test base image {ref}: the engine could not run it: "
                         f"{_first_line(exc)}") from None
    finally:
        with suppress(docker.errors.DockerException, OSError):
            container.remove(force=True)
    if code != 0 or "nginx version" not in output:
        raise ImageError(f"base image {ref} is broken: 'nginx -V' exited {code}{_tail(output.splitlines())}")
    missing = sorted(set(APPLETS) - set(output.split()))
    if missing:
        log.warning("busybox in %s lacks applets: %s", ref, " ".join(missing))


def use_base_image(client: docker.DockerClient, ref: str) -> str:
    """Return the user-named base ``ref`` once it is present locally (one pull is tried)."""
    try:
        client.images.get(ref)
        return ref
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise ImageError(f"base image {ref!r} cannot be used: {_first_line(exc)}") from exc
    try:
        client.images.pull(ref)
    except docker.errors.DockerException as exc:
        raise ImageError(f"base image {ref!r} is not available locally and could not be pulled: "
                         f"{_first_line(exc)}") from exc
    return ref


# Of the package's probe/ directory. The C sources are compiled, static, to the programs beside them:
# watch.c to watch (observes every cell), uml_setup.c to umlsetup (sets up a User-mode Linux cell), pod_setup.c
# (which includes uml_setup.c for its user lookup) to podsetup (a container cell's pod address); both include
# pod_net.c (the pod interface over rtnetlink), through uml_setup.c. Two run on the host, not in a cell, for the
# oci backend: oci_start.c to ocistart, which starts a cell's container (backends/oci.py), oci_enter.c to ocienter,
# which starts the watcher in a crun cell's container as `crun exec` would, and reap.c to reap, a child subreaper
# under which the watcher's `runc exec` runs (backends/oci_run.py).
_PROBE_FILES = ("shim.sh", "watch.c", "uml_setup.c", "pod_setup.c", "pod_net.c", "reap.c", "oci_start.c",
                "oci_enter.c")
_PROGRAMS = (
    ("watch.c", "watch", ("-lssl", "-lcrypto")), ("uml_setup.c", "umlsetup", ()), ("pod_setup.c", "podsetup", ()),
    ("reap.c", "reap", ()), ("oci_start.c", "ocistart", ()), ("oci_enter.c", "ocienter", ()),
)


def _probe_sources() -> list[tuple[str, bytes, int]]:
    """The probe's source files: (name, bytes, mode)."""
    root = Path(__file__).parent / "probe"
    return [
        (name, (root / name).read_bytes(), stat.S_IMODE((root / name).stat().st_mode)) for name in _PROBE_FILES
    ]


def ensure_probe(cache_dir: Path) -> Path:
    """Return ``cache_dir/probe-<key>/``: a static ``busybox``, ``shim.sh`` and the static programs.

    The plugin mounts it read-only (at ``/.ipv6compat``) into any target container.
    ``watch`` is compiled here from ``probe/watch.c`` (static, with OpenSSL for the
    https probe), so the probe needs nothing from the target image; ``umlsetup`` likewise.
    """
    sources = _probe_sources()
    files = [(name, hashlib.sha256(data).hexdigest(), mode & 0o111) for name, data, mode in sources]
    key = _digest({"recipe": RECIPE_VERSION, "arch": debian.dpkg_arch(), "dist": debian.distribution(),
                   "files": files})
    dest = cache_dir / f"probe-{key}"
    if (dest / "watch").is_file():
        return dest
    with _build_lock(cache_dir), _package_errors():
        if not (dest / "watch").is_file():
            _build_probe(cache_dir, dest, sources)
    return dest


def _compile(source: Path, out: Path, libs: tuple[str, ...]) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ImageError(f"cannot build the probe's program {out.name}: no C compiler on PATH "
                         "(apt-get install gcc libc6-dev libssl-dev)")
    argv = [compiler, "-static", "-O2", "-o", str(out), str(source), *libs]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "error" in line] or done.stderr.splitlines()
        raise ImageError(f"cannot build the probe's program {out.name} with {compiler} (needs static libc and OpenSSL: "
                         f"apt-get install libc6-dev libssl-dev): {errors[-1] if errors else 'no output'}")


def _build_probe(cache_dir: Path, dest: Path, sources: list[tuple[str, bytes, int]]) -> None:
    debian.require_tools("build the probe", "it needs the busybox-static Debian package once; "
                         "run on a machine with apt and keep the cache directory")
    version, deb = debian.fetch_debs(["busybox-static"], cache_dir / "debs")["busybox-static"]
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".probe-"))
    try:
        debian.extract(deb, tmp / "deb")
        if not (tmp / "deb/bin/busybox").is_file():
            raise ImageError(f"{deb} has no /bin/busybox")
        shutil.copyfile(tmp / "deb/bin/busybox", tmp / "busybox")
        os.chmod(tmp / "busybox", 0o755)
        shutil.rmtree(tmp / "deb")
        for rel, data, mode in sources:
            (tmp / rel).write_bytes(data)
            os.chmod(tmp / rel, mode | 0o444)
        for source, program, libs in _PROGRAMS:
            _compile(tmp / source, tmp / program, libs)
            # The watcher setgid: exec'd, it is not dumpable from its first instruction (see watch.c);
            # the group is given where it is shipped (probe.report.WATCH_GROUP).
            os.chmod(tmp / program, 0o2755 if program == "watch" else 0o755)
        os.chmod(tmp, 0o755)
        if dest.exists():  # a leftover without the watcher: replace it
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("probe ready at %s (busybox-static %s)", dest, version)


def _context_digest(context: Path, extra: Mapping[str, object]) -> str:
    """Hash of ``extra`` and every file of ``context``: relative path, exec bit, bytes."""
    digest = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for dirpath, dirnames, filenames in os.walk(context):
        dirnames.sort()
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(filenames + links):
            path = Path(dirpath, name)
            rel = path.relative_to(context).as_posix()
            try:
                if path.is_symlink():
                    digest.update(f"L {rel} {os.readlink(path)}\0".encode())
                elif not path.is_file():  # a named pipe would block the read for ever; a socket cannot be read
                    raise ImageError(f"build context {context} holds {rel}, which is not a regular file "
                                     "(a named pipe, socket or device); move it out of the context")
                else:
                    digest.update(f"F {rel} {int(os.access(path, os.X_OK))}\0".encode())
                    digest.update(hashlib.sha256(path.read_bytes()).digest())
            except OSError as exc:
                raise ImageError(f"cannot read {path} in build context {context}: {exc.strerror}") from exc
    return digest.hexdigest()[:12]


def _check_context(context: Path) -> None:
    if not context.exists():
        raise ImageError(f"build context {context} does not exist")
    if not context.is_dir():
        raise ImageError(f"build context {context} is not a directory")
    if not os.access(context, os.R_OK | os.X_OK):
        raise ImageError(f"build context {context} is not readable")
    if not (context / "Dockerfile").is_file():
        raise ImageError(f"build context {context} has no Dockerfile")


def ensure_target_image(client: docker.DockerClient, context: Path, *, base: str, name: str,
                        build_args: Mapping[str, str], cache_dir: Path | None = None) -> str:
    """Return ``ipv6compat/<name>:<hash12>``, building ``context`` (``FROM ${BASE}``) if absent."""
    if not _NAME_RE.fullmatch(name):
        raise ImageError(f"image name {name!r} is not valid: use lowercase letters, digits and single '.', '_' "
                         "or '-' between them")
    context = Path(context)
    _check_context(context)
    args = {"BASE": base, **build_args}
    ref = f"ipv6compat/{name}:{_context_digest(context, {'name': name, 'args': args})}"
    if _image_exists(client, ref):
        return ref
    with _build_lock(cache_dir if cache_dir is not None else default_cache_dir()):
        if not _image_exists(client, ref):
            use_base_image(client, base)
            _build_target(client, context, ref, name, args)
    return ref


def _build_target(client: docker.DockerClient, context: Path, ref: str, name: str, args: dict[str, str]) -> None:
    started = time.monotonic()
    labels = {LABEL_CONTEXT: ref.rsplit(":", 1)[1], "ipv6compat.name": name, "ipv6compat.base": args["BASE"]}
    failed = f"building image {name!r} from {context} failed"
    try:
        client.images.build(path=str(context), tag=ref, buildargs=args, network_mode="none", rm=True, forcerm=True,
                            pull=False, labels=labels)
    except docker.errors.BuildError as exc:
        text = "".join(str(c.get("stream") or c.get("error") or "") for c in exc.build_log if isinstance(c, dict))
        raise ImageError(f"{failed}: {_first_line(exc.msg)}{_tail(text.splitlines())}") from exc
    except docker.errors.APIError as exc:
        raise ImageError(f"{failed}: {_first_line(exc)}") from exc
    log.info("built %s from %s in %.1fs", ref, context, time.monotonic() - started)
