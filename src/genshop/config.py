"""Run configurations: dataclasses that are the one source of truth for CLI options and run JSON.

Infrastructure for every trainable post of *Scientific Spaces*. `RunConfig` holds the options all
families share; each family declares its own subclass and per-data-set recipes next to its code
(`genshop.families.gan.GanConfig` and `RECIPES`, `genshop.families.flow.FlowConfig`).

A config field carries its help text and valid values (choices or a `Range`) in
`field(metadata=...)`, checked whenever a config is built (`from_dict`); `add_config_arguments`
turns the fields into `--dashed-options` whose default is None, so `resolve_config` can apply, in
order, the dataclass defaults, the family's recipe for the chosen data set and then only the
options the user typed. The resolved config is saved as `config.json` in the run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from genshop.atomic import write_text_atomic
from genshop.errors import BadInputError, DataError
from genshop.schedules import SCHEDULES

C = TypeVar("C", bound="RunConfig")


@dataclass(frozen=True)
class Range:
    """The valid values of a number option: `low` ≤ x (or < x when `open_low`), x ≤ `high` (or
    < x when `open_high`); None leaves a side unbounded. Floats must also be finite."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, x: float) -> bool:
        if self.low is not None and (x <= self.low if self.open_low else x < self.low):
            return False
        return self.high is None or (x < self.high if self.open_high else x <= self.high)

    def __str__(self) -> str:
        sides = []
        if self.low is not None:
            sides.append(f"{'>' if self.open_low else '>='} {_number(self.low)}")
        if self.high is not None:
            sides.append(f"{'<' if self.open_high else '<='} {_number(self.high)}")
        return " and ".join(sides) or "any number"


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


POSITIVE = Range(0, open_low=True)
AT_LEAST_0 = Range(0)
AT_LEAST_1 = Range(1)
FRACTION = Range(0, 1, open_high=True)  # [0, 1)
SEED = Range(0, 2**63 - 1)
MAX_PATH = 1024  # characters of a run directory's path


def option(default: Any, help: str, choices: tuple[str, ...] | None = None, *,
           valid: Range | None = None) -> Any:
    """A dataclass field with CLI help text and its valid values (choices or a range)."""
    return field(default=default, metadata={"help": help, "choices": choices, "range": valid})


@dataclass
class RunConfig:
    """Options every family shares: data, schedule, bookkeeping."""

    data: str = option("ring8", "data set name (see genshop.data), a .npy file of "
                                "points, an IDX images file or a folder of PNG/JPEG images")
    steps: int = option(5000, "number of training steps (the total, also when resuming)",
                        valid=AT_LEAST_1)
    batch_size: int = option(256, "global batch size (split across processes under torchrun)",
                             valid=AT_LEAST_1)
    seed: int = option(0, "seed of the training set, the initial weights and every draw",
                       valid=SEED)
    ema: float = option(0.0, "decay d in [0, 1) of an exponential moving average of the "
                             "sampler (0 = off)", valid=FRACTION)
    log_every: int = option(50, "steps between metrics.jsonl lines", valid=AT_LEAST_1)
    sample_every: int = option(1000, "steps between sample snapshots (0 = only at the end)",
                               valid=AT_LEAST_0)
    checkpoint_every: int = option(1000, "steps between checkpoints (one is also written at "
                                          "the end)", valid=AT_LEAST_1)
    out: str = option("runs/train", "run directory (config.json, checkpoint.pt, metrics.jsonl, "
                                     "samples/)")
    device: str = option("cpu", "torch device, e.g. cpu or cuda")
    threads: int = option(1, "CPU threads torch may use (0 = torch's default, one per core); "
                             "1 is fastest for genshop's small nets, most of all on a busy "
                             "machine (benchmarks/threads.py)", valid=Range(0, 256))
    lr_schedule: str = option("constant", "learning rates over the run: constant, cosine or "
                                          "linear decay from the set rate to 0 at --steps, or "
                                          "one-cycle (up to the set rate, then down; "
                                          "genshop.schedules)", SCHEDULES)
    init_from: str = option("", "start from the trained run in this folder (its modules of the "
                                "same names; see genshop.families); empty: from scratch")

    def __post_init__(self) -> None:
        _check_types(self)


def _field_types(cls: type) -> dict[str, type]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def add_config_arguments(parser: argparse.ArgumentParser, cls: type[RunConfig],
                         recipes: dict[str, dict[str, Any]] | None = None) -> None:
    """One `--option` per field of `cls` (default None = "not set by the user"); the help shows
    the default and each recipe that replaces it (`recipes`: label → overrides, e.g.
    "ring8 --update fused" → {"lr_g": 5e-4})."""
    for f in dataclasses.fields(cls):
        kind = _field_types(cls)[f.name]
        help_text = f"{f.metadata.get('help', '')} (default: {_default_text(f, recipes or {})})"
        if kind is bool:
            parser.add_argument(flag(f.name), dest=f.name,
                                action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(flag(f.name), dest=f.name, type=kind, default=None,
                                help=help_text, choices=f.metadata.get("choices"))


def _default_text(f: dataclasses.Field, recipes: dict[str, dict[str, Any]]) -> str:
    """"5000; ring8 recipe 7000, grid25 recipe 9000": the default, then every recipe that sets
    another value."""
    overrides = [f"{label} recipe {recipe[f.name]}" for label, recipe in recipes.items()
                 if f.name in recipe and recipe[f.name] != f.default]
    return "; ".join([str(f.default), ", ".join(overrides)] if overrides else [str(f.default)])


def user_options(args: argparse.Namespace, cls: type[RunConfig]) -> dict[str, Any]:
    """The config options the user typed on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}


def resolve_config(cls: type[C], user: dict[str, Any],
                   recipe: dict[str, Any] | None = None) -> C:
    """Dataclass defaults, then `recipe` (the family's overrides for the chosen data set and
    options, `genshop.families.Family.recipe`), then the user's options."""
    return from_dict(cls, {**(recipe or {}), **user})


def from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build `cls` from a dict, rejecting unknown keys with the list of valid ones."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise BadInputError(f"unknown option(s) {unknown} for {cls.__name__}; valid: "
                            f"{', '.join(names)}")
    return cls(**values)


def flag(name: str) -> str:
    """The command-line spelling of a config field: lr_g -> --lr-g."""
    return "--" + name.replace("_", "-")


def _check_types(config: RunConfig) -> None:
    """Every field has its type and lies in its choices or range, else a BadInputError that
    names the option (both spellings), the value and what is valid."""
    kinds = _field_types(type(config))
    for f in dataclasses.fields(config):
        name, kind, value = f.name, kinds[f.name], getattr(config, f.name)
        where = f"option {name} ({flag(name)})"
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            setattr(config, name, value)
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadInputError(f"{where} must be {kind.__name__}, got {value!r}")
        choices, valid = f.metadata.get("choices"), f.metadata.get("range")
        if choices and value not in choices:
            raise BadInputError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise BadInputError(f"{where} must be a finite number, got {value!r}")
        if valid is not None and value not in valid:
            raise BadInputError(f"{where} must be {valid}, got {value!r}")
    if not config.out or len(config.out) > MAX_PATH:
        raise BadInputError(f"option out (--out) must be a path of 1 to {MAX_PATH} characters, "
                            f"got {len(config.out)}")


def to_json(config: RunConfig, family: str) -> str:
    """The config as JSON, with the family name that `load_config` needs to rebuild it."""
    return json.dumps({"family": family, **dataclasses.asdict(config)}, indent=2)


def save_config(config: RunConfig, family: str, run_dir: Path) -> Path:
    return write_text_atomic(Path(run_dir) / "config.json", to_json(config, family) + "\n")


def read_config_json(run_dir: Path) -> dict[str, Any]:
    """The raw saved config of a run directory (with its "family" key)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise DataError(f"{run_dir} is not a genshop run directory: {path.name} is missing; "
                        "train one with `genshop train ... --out DIR`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is corrupt ({err}); retrain or restore the file") from None


__all__ = ["AT_LEAST_0", "AT_LEAST_1", "FRACTION", "POSITIVE", "Range", "RunConfig",
           "add_config_arguments", "flag", "from_dict", "read_config_json", "resolve_config",
           "save_config", "to_json", "user_options"]
