"""Atomic file writes: after a crash or an error a reader finds the old file or the new one,
never a part of one.

Checkpoints, cached data and a run's config are written this way. The bytes go to a temporary
file in the target's folder (the same file system, so the rename is atomic), are flushed and
fsync'ed, the file gets its final mode (`mkstemp` creates it 0600; a run's files are 0644),
`os.replace` puts it over the target, and the folder is fsync'ed so that the rename itself
survives a power cut. On any error, the exception included, the temporary file is removed and
the old file is left as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def write_atomic(path: Path | str, write: Callable[[BinaryIO], None], mode: int = 0o644) -> Path:
    """Call `write(f)` on a binary file that becomes `path` only once it is complete.

    The folder of `path` must exist. Returns `path` as a Path.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def write_text_atomic(path: Path | str, text: str, mode: int = 0o644) -> Path:
    """`text` as UTF-8 into `path`, atomically."""
    data = text.encode("utf-8")
    return write_atomic(path, lambda f: f.write(data), mode)


def write_json_atomic(path: Path | str, obj: Any, mode: int = 0o644) -> Path:
    """`obj` as indented JSON (and a final newline) into `path`, atomically. The object is
    encoded before the file is opened, so an object JSON cannot hold leaves no trace."""
    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n", mode)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
