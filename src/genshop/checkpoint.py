"""Atomic checkpoints and RNG-state capture, so a resumed run equals an uninterrupted one.

Infrastructure for the trainable posts of *Scientific Spaces* (kexue.fm archives 6016, 6110,
6387, 6377). A checkpoint is a dict of tensors and plain Python values, written atomically
(`genshop.atomic`: a crash leaves the previous checkpoint intact) and read back with
`torch.load(weights_only=True)`, which never runs code from the file. Each checkpoint carries
the sha256 of its content (every tensor's bytes, dtype and shape and every plain value, in order)
under the key "digest"; `load` recomputes it, so flipped bytes inside tensor data, which the
file format itself does not notice, are refused instead of resumed from.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genshop.atomic import write_atomic
from genshop.errors import DataError

DIGEST = "digest"


def save_atomic(obj: dict[str, Any], path: Path) -> Path:
    """torch.save `obj` and its digest to `path` atomically, mode 0644 like the run's other
    files."""
    payload = {k: v for k, v in obj.items() if k != DIGEST}
    return write_atomic(path, lambda f: torch.save({**payload, DIGEST: digest(payload)}, f))


def digest(obj: Any) -> str:
    """sha256 of a nested structure of dicts, lists, tuples, tensors and plain values."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"tensor {t.dtype} {tuple(obj.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"dict {len(obj)};".encode())
        for key in sorted(obj, key=repr):
            h.update(f"{key!r}:".encode())
            _feed(h, obj[key])
    elif isinstance(obj, list | tuple):
        h.update(f"{type(obj).__name__} {len(obj)};".encode())
        for item in obj:
            _feed(h, item)
    else:
        h.update(f"{obj!r};".encode())


def load(path: Path) -> dict[str, Any]:
    """A checkpoint read with weights_only=True and checked against its digest; a missing,
    unreadable or altered file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no checkpoint at {path}; train first (genshop train ... --out DIR)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"checkpoint {path} is corrupt or not a genshop checkpoint "
                        f"({type(err).__name__}); delete it and retrain") from None
    if not isinstance(state, dict) or DIGEST not in state:
        raise DataError(f"checkpoint {path} is not a genshop checkpoint (no digest); delete it "
                        "and retrain")
    if digest({k: v for k, v in state.items() if k != DIGEST}) != state[DIGEST]:
        raise DataError(f"checkpoint {path} is damaged: its content does not match its digest; "
                        "delete it and retrain (or restore a copy)")
    return state


def rng_states(engine_generator: torch.Generator) -> dict[str, Any]:
    """Every RNG a step may use: torch CPU (and CUDA), NumPy, Python `random`, the engine's."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "python": random.getstate(),
        "engine": engine_generator.get_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any], engine_generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    engine_generator.set_state(states["engine"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
