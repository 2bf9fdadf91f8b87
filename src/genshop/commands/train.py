"""`genshop train FAMILY ...`: train a model family with the one engine (`genshop.engine`).

Options come from the family's config dataclass; the family's recipe for the chosen data set
fills the options the user did not set (`genshop.configure`). `--dry-run` prints the resolved
config JSON; `--resume` continues the run in `--out` exactly where its checkpoint left it. The
run's page (`index.html`) is drawn at the end, also when training stops early. Runs
data-parallel under `torchrun --nproc_per_node N -m genshop train ...`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from genshop.config import (
    add_config_arguments,
    from_dict,
    read_config_json,
    resolve_config,
    to_json,
    user_options,
)
from genshop.data import PAIRS, is_user_path
from genshop.engine import check, train
from genshop.errors import BadInputError
from genshop.families import family_names, get_family
from genshop.metrics import classifier
from genshop.report import write_run_page
from genshop.runs import CONFIG

NAME = "train"
HELP = "train a model (one sub-command per family, e.g. `genshop train gan`)"

# Options that may change when resuming; any other option must match the saved run.
CLASSIFIER_HELP = ("the reference digit classifier of the image metrics (a small CNN on the "
                   "8,000-digit train split; its features give FID, KID, precision, recall)")
RESUMABLE = {"steps", "log_every", "sample_every", "checkpoint_every", "device", "threads", "out"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="family", metavar="FAMILY", required=True,
                           parser_class=type(p))
    for name in family_names():
        cls = get_family(name)
        fp = sub.add_parser(name, help=cls.description, description=cls.description)
        add_config_arguments(fp, cls.config_class, cls.recipes)
        fp.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint")
        fp.add_argument("--dry-run", action="store_true",
                        help="print the resolved config as JSON and exit")
        fp.add_argument("--quiet", action="store_true", help="no progress bar")
    cp = sub.add_parser("classifier", help=CLASSIFIER_HELP, description=CLASSIFIER_HELP)
    cp.add_argument("--out", type=Path, default=classifier.ASSET_DIR,
                    help="folder for the weights and recipe.json (default: the shipped ones)")
    cp.add_argument("--seed", type=int, default=classifier.SEED, help="seed (default: %(default)s)")
    cp.add_argument("--epochs", type=int, default=classifier.EPOCHS,
                    help="epochs over the 8,000 train digits (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    if args.family == "classifier":
        return _train_classifier(args)
    cls = get_family(args.family)
    user = _absolute_data_path(user_options(args, cls.config_class))
    config = _resumed(cls, user) if args.resume else resolve_config(cls.config_class, user,
                                                                    cls.recipes)
    if args.dry_run:
        cls.check(config, cls.dataset(config))
    elif check(config, resume=args.resume) == config.steps:  # every check before any work
        print(f"the run in {config.out} is already at step {config.steps}; give a larger "
              "--steps to continue it")
        return 0
    for note in notes(config, cls.dataset(config)):
        print(f"genshop: note: {note}", file=sys.stderr)
    if args.dry_run:
        print(to_json(config, cls.name))
        return 0
    main_process = os.environ.get("RANK", "0") == "0"
    try:
        result = train(config, resume=args.resume, progress=not args.quiet)
    finally:  # the page shows what there is, also after a divergence or a crash
        if main_process and (Path(config.out) / CONFIG).is_file():
            page = write_run_page(Path(config.out))
    status = "interrupted; resume with --resume" if result.interrupted else "done"
    if main_process:
        print(f"{status}: step {result.step} in {result.run_dir.resolve()}\n"
              f"report: {page.resolve()}")
    return 130 if result.interrupted else 0


def _train_classifier(args: argparse.Namespace) -> int:
    """The reference digit classifier of the image metrics (`genshop.metrics.classifier`)."""
    if args.epochs < 1 or args.seed < 0:
        raise BadInputError(f"--epochs must be >= 1 and --seed >= 0, got {args.epochs} and "
                            f"{args.seed}")
    if args.out.exists() and not args.out.is_dir():
        raise BadInputError(f"--out {args.out} is a file; name a folder for the weights")
    recipe = classifier.build(args.out, args.seed, args.epochs, log=lambda e, loss: print(
        f"epoch {e:2d}  loss {loss:.4f}", file=sys.stderr))
    print(f"test accuracy {recipe['test_accuracy']:.4f} on {recipe['test_digits']} digits; "
          f"{recipe['train_seconds']:.0f} s; weights in {args.out}")
    return 0


def notes(config, dataset) -> list[str]:
    """What the user should know before a run starts, though it can run.

    - The EMA still remembers the initial weights at the last step: θ_ema after T steps gives
      them the share d^T (the average starts at them); above 1 % the averaged sampler is visibly
      worse than the trained one.
    - A points file with fewer rows than a batch: batches are drawn with replacement, so each
      repeats rows.
    """
    out = []
    share = config.ema ** config.steps if config.ema > 0 else 0.0
    if share > 0.01:
        out.append(f"with --ema {config.ema} the initial weights still make up {share:.0%} of "
                   f"the averaged sampler after {config.steps} steps; use more steps or --ema 0")
    if is_user_path(config.data) and dataset.kind != PAIRS:
        rows = dataset.training_set().shape[0]
        if rows < config.batch_size:
            out.append(f"--data {config.data} has {rows} examples, fewer than --batch-size "
                       f"{config.batch_size}: each batch draws them with replacement")
    return out


def _resumed(cls, user: dict):
    if "out" not in user:
        raise BadInputError("--resume needs --out RUN_DIR naming the run to continue")
    saved = read_config_json(Path(user["out"]))
    family = saved.pop("family", None)
    if family != cls.name:
        raise BadInputError(f"{user['out']} holds a {family} run, not a {cls.name} run; resume "
                            f"it with `genshop train {family} --resume --out {user['out']}`")
    clashes = sorted(k for k, v in user.items() if k not in RESUMABLE and saved.get(k) != v)
    if clashes:
        raise BadInputError(f"option(s) {', '.join(clashes)} differ from the saved run; when "
                            f"resuming only {', '.join(sorted(RESUMABLE))} may change")
    scheduled = saved.get("lr_schedule", "constant") != "constant"
    if scheduled and user.get("steps", saved["steps"]) != saved["steps"]:
        raise BadInputError(f"the {saved['lr_schedule']} learning-rate schedule spans the run's "
                            f"{saved['steps']} steps; resume with the same --steps, or train "
                            "a new run")
    return from_dict(cls.config_class, {**saved, **user})


def _absolute_data_path(user: dict) -> dict:
    """A points file, IDX file or image folder is saved (and compared on --resume) by its
    absolute path, so the run loads from any directory."""
    if is_user_path(user.get("data", "")):
        return {**user, "data": str(Path(user["data"]).resolve())}
    return user

