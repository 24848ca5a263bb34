"""``python -m pytest_ipv6compat prepare [MATRIX...]``: build every image a run needs.

Optional: a run builds what it lacks on first use. Preparing up front keeps
image building out of test timings and shows its cost on its own.

``python -m pytest_ipv6compat init --image IMAGE``: write a starting matrix file (see scaffold.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import docker.errors

from . import images, merge, scaffold
from .backends import EngineError, uml_cache
from .backends.docker_api import DockerBackend, engine_address
from .backends.docker_run import reason
from .backends.uml import UmlBackend, find_kernel
from .matrix import MatrixError, load_matrix
from .spec import SpecError, check_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_ipv6compat")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="build the probe, the base image and the images of matrix files")
    prep.add_argument("matrix", nargs="*", type=Path, help="matrix files (*.ipv6.toml)")
    prep.add_argument("--base-image", help="use this base image instead of bootstrapping one")
    prep.add_argument("--cache-dir", type=Path, default=None)
    prep.add_argument("--uml", default=None, help="the User-mode Linux kernel (default: 'linux' on PATH)")
    prep.add_argument("--prune", action="store_true",
                      help="then remove every cached root filesystem the given matrix files do not use, and old "
                           "probe builds")
    prep.add_argument("--ssh-config", type=Path, default=None,
                      help="OpenSSH client config (ssh -F) for an ssh:// DOCKER_HOST (default: ~/.ssh/config)")
    init = sub.add_parser("init", help="write a matrix file (*.ipv6.toml) for an image or a build context")
    scaffold.add_arguments(init)
    shards = sub.add_parser("merge", help="one grid from the JSON reports of sharded runs (--ipv6-json)")
    merge.add_arguments(shards)
    args = parser.parse_args(argv)
    if args.command == "merge":
        status, text = merge.run(args)
        print(text, file=sys.stderr if status == 2 else sys.stdout)
        return status
    if args.command == "init":
        status, line = scaffold.main(args)
        print(line, file=sys.stderr if status else sys.stdout)
        return status
    cache = args.cache_dir or images.default_cache_dir()
    engine: DockerBackend | None = None
    try:
        if args.uml is not None:  # named on purpose: a kernel that is not there is an error, not a skip
            find_kernel(args.uml, flag="--uml")
        if args.base_image is not None:
            check_image(args.base_image, "--base-image")
        matrices = [load_matrix(path) for path in args.matrix]
        exported: list[Path | None] = []  # the root filesystems used: what --prune keeps
        started = time.monotonic()
        probe = images.ensure_probe(cache)
        engine = DockerBackend.connect(probe, ssh_config=args.ssh_config)
        print(f"probe      {probe}  ({time.monotonic() - started:.2f}s)")
        started = time.monotonic()
        if args.base_image:
            base = images.use_base_image(engine.client, args.base_image)
        else:
            base = images.ensure_base_image(engine.client, cache)
        print(f"base       {base}  ({time.monotonic() - started:.2f}s)")
        for matrix in matrices:
            target = matrix.target
            uml = _uml(engine, cache, args.uml) if "ipv6-boot-disabled" in {c.stack for c in matrix.cells} else None
            for variant, image in target.images:
                engine.image_config(image)  # present, and for this engine's architecture
                print(f"image      {image}  ({target.name} {variant}: present)")
                exported.append(_export(uml, image))
            if target.build is None:
                continue
            for variant in target.variants:
                started = time.monotonic()
                ref = images.ensure_target_image(
                    engine.client,
                    target.build,
                    base=base,
                    name=f"{target.name}-{variant}",
                    build_args={target.variant_arg: variant},
                    cache_dir=cache,
                )
                print(f"target     {ref}  ({time.monotonic() - started:.2f}s)")
                exported.append(_export(uml, ref))
        if args.prune:
            print(f"pruned     {uml_cache.prune(cache, {p for p in exported if p}, probe).describe()}  ({cache})")
    except (MatrixError, images.ImageError, EngineError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (docker.errors.DockerException, OSError) as exc:  # an engine call no step above expected to fail
        print(f"error: the Docker engine at {engine_address()} failed: {reason(exc)}", file=sys.stderr)
        return 2
    finally:
        if engine is not None:
            engine.close()  # an ssh:// engine's connection
    return 0


def _uml(engine: DockerBackend, cache: Path, kernel: str | None) -> UmlBackend | None:
    """The User-mode Linux backend, or None (said once) where it is not installed and ``--uml`` names none."""
    try:
        return UmlBackend(engine, find_kernel(kernel, flag="--uml"), cache, engine.probe_dir)
    except EngineError as exc:
        if kernel is not None:  # --uml named it: not usable is an error
            raise
        print(f"uml        skipped: {exc}")
        return None


def _export(uml: UmlBackend | None, image: str) -> Path | None:
    """The image's root filesystem for ipv6-boot-disabled cells, exported once and cached."""
    if uml is not None:
        started = time.monotonic()
        rootfs = uml.prepare(image)
        print(f"rootfs     {rootfs}  ({time.monotonic() - started:.2f}s)")
        return rootfs
    return None


if __name__ == "__main__":
    sys.exit(main())
