"""Run configurations: dataclasses that are the one source of truth for CLI options and run JSON.

Serves every trainable post of *Scientific Spaces*; the GAN options follow "f-GAN: a production
workshop for GANs" (kexue.fm archive 6016), "RSGAN" (6110) and "A GAN with a single loss via
stop-gradient" (6387): the loss by name, the alternating or fused (single-loss) step, Adam with
per-player learning rates (the fused step's λ becomes lr_g, see `genshop.steps.fused_optimizer`).

A config field carries its help text (and choices) in `field(metadata=...)`; `add_config_arguments`
turns the fields into `--dashed-options` whose default is None, so `resolve_config` can apply, in
order, the dataclass defaults, the family's per-data-set recipe (`RECIPES` for GANs) and then only
the options the user typed. The resolved config is saved as `config.json` in the run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from genshop.errors import BadInputError, DataError

C = TypeVar("C", bound="RunConfig")


def option(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with CLI help text (and choices)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class RunConfig:
    """Options every family shares: data, schedule, bookkeeping."""

    data: str = option("ring8", "data set name (see genshop.data)")
    steps: int = option(5000, "number of training steps (the total, also when resuming)")
    batch_size: int = option(256, "global batch size (split across processes under torchrun)")
    seed: int = option(0, "seed of the training set, the initial weights and every draw")
    ema: float = option(0.0, "decay of an exponential moving average of the sampler (0 = off)")
    log_every: int = option(50, "steps between metrics.jsonl lines")
    sample_every: int = option(1000, "steps between sample snapshots (0 = only at the end)")
    checkpoint_every: int = option(1000, "steps between checkpoints (one is also written at "
                                          "the end)")
    out: str = option("runs/train", "run directory (config.json, checkpoint.pt, metrics.jsonl, "
                                     "samples/)")
    device: str = option("cpu", "torch device, e.g. cpu or cuda")
    threads: int = option(0, "CPU threads torch may use (0 = torch's default); the 2-D recipes "
                             "use 1, which suits their tiny nets on a shared CPU")
    lr_schedule: str = option("constant", "learning rates over the run: constant, or cosine "
                                          "or linear decay from the set rate to 0 at --steps",
                              ("constant", "cosine", "linear"))


@dataclass
class GanConfig(RunConfig):
    """A GAN: a loss of `genshop.losses`, a step of `genshop.steps`, nets of `genshop.nets`."""

    loss: str = option("nsgan", "GAN loss name (see genshop.losses, e.g. nsgan, rasgan, "
                                "fgan-kl)")
    step: str = option("alternating", "update: alternating D then G, or fused single-loss step",
                       ("alternating", "fused"))
    lr_g: float = option(1e-4, "generator learning rate (Adam)")
    lr_d: float = option(1e-4, "critic learning rate (Adam)")
    beta1: float = option(0.5, "Adam β1")
    beta2: float = option(0.999, "Adam β2")
    latent_dim: int = option(2, "dimension of the latent z ~ N(0, I)")
    width: int = option(128, "hidden units (MLP) or base channels (DCGAN)")
    depth: int = option(3, "hidden layers of the MLPs")
    activation: str = option("relu", "MLP activation", ("relu", "leaky_relu"))
    batch_norm: bool = option(False, "BatchNorm in the generator MLP / the DCGAN critic")
    spectral_norm: bool = option(False, "spectral norm on the DCGAN critic's layers")
    d_steps: int = option(1, "critic updates per generator update, each on a fresh real batch "
                              "(alternating step only; WGAN-GP is usually run with 5)")
    pack: int = option(1, "PacGAN packing: the critic judges this many samples concatenated "
                          "(2-D data; 1 = off; the batch must be a multiple)")
    r1: float = option(0.0, "weight γ of the R1 penalty (γ/2)·E‖∇ₓD(x)‖² on real data added to "
                            "the critic's loss (Mescheder et al. 2018; 0 = off)")
    r1_every: int = option(1, "apply the R1 penalty on every k-th step only, weighted k·γ "
                              "(lazy regularisation of StyleGAN2)")


BY_STEP = "by_step"  # recipe key: step kind -> overrides for runs with that step

# --- GAN recipes: data set -> overrides applied when the user did not set the option ----------
# (helper H4 tunes the ring8 / grid25 entries with the mode benchmark; keep this one block)
# The fused step updates both nets from one point (simultaneous): with lr_g = lr_d = 1e-3, 2 of 8
# ring runs of a sweep (hinge/nsgan/lsgan/rahinge, seeds 0-1) lost modes; a generator at half the
# critic's rate (two time-scales) found every mode in all 8 and kept every mode in every seed for
# 15 of 18 losses in the bench. On the grid it lowered the best losses' HQ share (sgan 93 -> 84 %),
# so grid25 keeps equal rates (README, "The 2-D mode benchmark").
FUSED_RING = {"lr_g": 5e-4}
RECIPES: dict[str, dict[str, Any]] = {
    # tuned with `genshop bench modes` (helper H4): ReLU MLPs 3×128, z ∈ ℝ², Adam 1e-3
    # (β 0.5, 0.999), batch 256, lazy R1 γ = 0.1 every 4 steps, EMA 0.999 of G; 1 thread.
    # Without R1 the grid loses 4 of 25 modes; packing (pack 2, 4) and --lr-schedule linear lowered
    # the HQ share at this budget; EMA 0.9995 lost modes. The ring needs 7k steps, the grid 9k.
    "ring8": {"latent_dim": 2, "width": 128, "depth": 3, "batch_size": 256, "lr_g": 1e-3,
              "lr_d": 1e-3, "r1": 0.1, "r1_every": 4, "ema": 0.999, "steps": 7000,
              "threads": 1, BY_STEP: {"fused": FUSED_RING}},
    "grid25": {"latent_dim": 2, "width": 128, "depth": 3, "batch_size": 256, "lr_g": 1e-3,
               "lr_d": 1e-3, "r1": 0.1, "r1_every": 4, "ema": 0.999, "steps": 9000,
               "threads": 1},
}
# --- end of GAN recipes -----------------------------------------------------------------------


def _field_types(cls: type) -> dict[str, type]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def add_config_arguments(parser: argparse.ArgumentParser, cls: type[RunConfig]) -> None:
    """One `--option` per field of `cls` (default None = "not set by the user")."""
    for f in dataclasses.fields(cls):
        kind = _field_types(cls)[f.name]
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=None, help=help_text,
                                choices=f.metadata.get("choices"))


def user_options(args: argparse.Namespace, cls: type[RunConfig]) -> dict[str, Any]:
    """The config options the user typed on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}


def resolve_config(cls: type[C], user: dict[str, Any],
                   recipes: dict[str, dict[str, Any]] | None = None) -> C:
    """Dataclass defaults, then the recipe of the chosen data set (and its `by_step` part for
    the chosen step, if any), then the user's options."""
    data = user.get("data", cls.data)
    recipe = dict((recipes or {}).get(data, {}))
    for_step = recipe.pop(BY_STEP, {}).get(user.get("step", getattr(cls, "step", None)), {})
    return from_dict(cls, {**recipe, **for_step, **user})


def from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build `cls` from a dict, rejecting unknown keys with the list of valid ones."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise BadInputError(f"unknown option(s) {unknown} for {cls.__name__}; valid: "
                            f"{', '.join(names)}")
    config = cls(**values)
    _check_types(config)
    return config


def _check_types(config: RunConfig) -> None:
    kinds = _field_types(type(config))
    for f in dataclasses.fields(config):
        name, kind, value = f.name, kinds[f.name], getattr(config, f.name)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            setattr(config, name, float(value))
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadInputError(f"option {name} must be {kind.__name__}, got {value!r}")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise BadInputError(f"option {name} must be one of {', '.join(choices)}, "
                                f"got {value!r}")


def to_json(config: RunConfig, family: str) -> str:
    """The config as JSON, with the family name that `load_config` needs to rebuild it."""
    return json.dumps({"family": family, **dataclasses.asdict(config)}, indent=2)


def save_config(config: RunConfig, family: str, run_dir: Path) -> Path:
    path = Path(run_dir) / "config.json"
    path.write_text(to_json(config, family) + "\n")
    return path


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


__all__ = ["RECIPES", "GanConfig", "RunConfig", "add_config_arguments", "from_dict",
           "read_config_json", "resolve_config", "save_config", "to_json", "user_options"]
