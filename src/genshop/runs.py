"""The run directory and the `Run` it holds: `load_run(RUN_DIR).sample(n)`.

Serves every trained generator of the *Scientific Spaces* posts (GANs of kexue.fm archives 6016,
6110, 6387; flows of 6377). A run directory holds `config.json` (the resolved config, naming
its family), `checkpoint.pt`, `metrics.jsonl` (one JSON line per logged step) and `samples/`
(snapshot pictures); `genshop report` adds `index.html`. A run is rebuilt from its config and
checkpoint; the EMA weights are used when the run kept them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genshop import checkpoint
from genshop.config import RunConfig, from_dict, read_config_json
from genshop.errors import BadInputError, DataError
from genshop.families import Family, get_family, inference

CONFIG = "config.json"
LOCK = ".lock"  # held (flock) by the process training into the folder
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SAMPLES = "samples"
EVAL = "eval.json"  # the scores `genshop eval` writes (`genshop.metrics.evaluate_run`)
PAGE = "index.html"  # the run's page (`genshop report`)


@dataclass
class Run:
    """A trained run: its config, family, step, data set and the net it delivers (the family's
    model, its EMA copy when the run kept one; eval mode); `interrupted` when `genshop.train`
    returned early on Ctrl-C (resume to finish it)."""

    run_dir: Path
    config: RunConfig
    family: Family
    net: nn.Module
    step: int
    interrupted: bool = False
    dataset: Any = None

    @property
    def has_sampler(self) -> bool:
        """True for a run of a generative family; a supervised run (a classifier) has none."""
        return self.family.has_sampler()

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> Tensor:
        """n float32 samples on the CPU: N×d for points, N×C×H×W in [0, 1] for images; a
        BadInputError for a run without a sampler."""
        if not self.has_sampler:
            raise BadInputError(f"{self.run_dir} is a {self.family.name} run, which has no "
                                "sampler (a supervised model, not a generator); score it with "
                                f"`genshop eval {self.run_dir}`")
        if n < 0:
            raise BadInputError(f"cannot draw {n} samples; ask for n >= 0")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return self.family.sample(self.net, n, generator).float().cpu()

    def test_scores(self) -> dict[str, float]:
        """The family's scores of the delivered net on the held-out split (a supervised run's
        accuracy; {} for a family without)."""
        with inference(self.net):
            return self.family.test_scores(self.net)


@contextlib.contextmanager
def owned(run_dir: str | Path) -> Iterator[None]:
    """Hold the run directory for one process: an exclusive `flock` on `run_dir/.lock` for as
    long as the block runs. A second process fails at once with a BadInputError naming the
    owner; the kernel drops the lock when its process ends, however it ends (kill -9 too), so a
    lock file left behind is never stale. The new owner removes the temporary files of atomic
    writes (`.NAME.*.tmp`) that a killed owner left."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock_or_refuse(fd, run_dir)
        for stale in run_dir.glob(".*.tmp"):  # half-written files of a killed owner
            stale.unlink(missing_ok=True)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def check_unowned(run_dir: str | Path) -> None:
    """Raise the BadInputError of `owned` if another process holds `run_dir` now."""
    path = Path(run_dir) / LOCK
    if path.is_file():
        fd = os.open(path, os.O_RDONLY)
        try:
            _lock_or_refuse(fd, Path(run_dir))
        finally:
            os.close(fd)


def _lock_or_refuse(fd: int, run_dir: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        raise BadInputError(f"another process (pid {owner}) is training into {run_dir}; "
                            "wait for it or choose another --out") from None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of `metrics.jsonl` (none when it is missing); a torn or corrupt line (a run
    killed while writing it) is skipped."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def load_state(run_dir: str | Path) -> dict[str, Any]:
    """The checkpoint of `run_dir`, verified (`checkpoint.load`) and holding a step count and
    model weights: the one reader of a run's checkpoint, for resuming and for sampling."""
    path = Path(run_dir) / CHECKPOINT
    state = checkpoint.load(path)
    step = state.get("step")
    if (type(step) is not int or step < 0 or not isinstance(state.get("models"), dict)):
        raise DataError(f"checkpoint {path} holds no step count or no model weights; it is not "
                        "the checkpoint of a genshop run: delete it and retrain")
    return state


@contextlib.contextmanager
def fitting(run_dir: str | Path) -> Iterator[None]:
    """Turn a checkpoint whose content does not fit the run's config (another width, a missing
    net or optimiser, a value of the wrong kind) into one DataError."""
    try:
        yield
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise DataError(f"checkpoint in {run_dir} does not fit its config.json "
                        f"({type(err).__name__}: {first})") from None


def load_run(run_dir: str | Path, device: str = "cpu") -> Run:
    """Rebuild a run from `run_dir`; a missing or corrupt run directory raises DataError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist; train one with "
                        "`genshop train ... --out DIR`")
    saved = read_config_json(run_dir)
    family_cls = get_family(saved.pop("family", "gan"))
    try:
        config = from_dict(family_cls.config_class, {**saved, "device": device})
    except BadInputError as err:
        raise DataError(f"{run_dir}/config.json does not match this genshop: {err}") from None
    state = load_state(run_dir)
    dataset = family_cls.dataset(config)
    family = family_cls(config, dataset, torch.device(device))
    with fitting(run_dir):
        for name, module in family.modules().items():
            module.load_state_dict(state["models"][name])
        net = family.model()
        if state.get("ema") is not None:
            net.load_state_dict(state["ema"])
    bad = sum(int((~t.isfinite()).sum()) for t in net.state_dict().values()
              if t.is_floating_point())
    if bad:
        raise DataError(f"the sampler in {run_dir} holds {bad} NaN or infinite weights; the run "
                        "diverged: retrain it with lower learning rates")
    return Run(run_dir, config, family, net.eval(), int(state["step"]), dataset=dataset)
