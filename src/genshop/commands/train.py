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
from genshop.data import is_user_path
from genshop.engine import check, train
from genshop.errors import BadInputError
from genshop.families import family_names, get_family
from genshop.report import write_run_page
from genshop.runs import CONFIG

NAME = "train"
HELP = "train a model (one sub-command per family, e.g. `genshop train gan`)"

# Options that may change when resuming; any other option must match the saved run.
RESUMABLE = {"steps", "log_every", "sample_every", "checkpoint_every", "device", "threads", "out"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="family", metavar="FAMILY", required=True,
                           parser_class=type(p))
    for name in family_names():
        cls = get_family(name)
        fp = sub.add_parser(name, help=cls.description, description=cls.description)
        add_config_arguments(fp, cls.config_class, cls.recipe_labels())
        fp.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint")
        fp.add_argument("--dry-run", action="store_true",
                        help="print the resolved config as JSON and exit")
        fp.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    cls = get_family(args.family)
    user = _absolute_paths(user_options(args, cls.config_class))
    config = _resumed(cls, user) if args.resume else resolve_config(cls.config_class, user,
                                                                    cls.recipe(user))
    dataset = cls.dataset(config)  # built once for the checks, the notes and the run
    if args.dry_run:
        cls.check(config, dataset)
    elif check(config, resume=args.resume, dataset=dataset) == config.steps:  # before any work
        print(f"the run in {config.out} is already at step {config.steps}; give a larger "
              "--steps to continue it")
        return 0
    for note in notes(config, dataset):
        print(f"genshop: note: {note}", file=sys.stderr)
    if args.dry_run:
        print(to_json(config, cls.name))
        return 0
    main_process = os.environ.get("RANK", "0") == "0"
    try:
        result = train(config, resume=args.resume, progress=not args.quiet, dataset=dataset)
    finally:  # the page shows what there is, also after a divergence or a crash
        if main_process and (Path(config.out) / CONFIG).is_file():
            page = write_run_page(Path(config.out))
    status = "interrupted; resume with --resume" if result.interrupted else "done"
    if main_process:
        print(f"{status}: step {result.step} in {result.run_dir.resolve()}\n"
              f"report: {page.resolve()}")
    return 130 if result.interrupted else 0


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
    if is_user_path(config.data):
        rows = len(dataset.training_data())
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


def _absolute_paths(user: dict) -> dict:
    """A points file, IDX file or image folder, and a parent run, are saved (and compared on
    --resume) by their absolute paths, so the run loads from any directory."""
    if is_user_path(user.get("data", "")):
        user = {**user, "data": str(Path(user["data"]).resolve())}
    if user.get("init_from"):
        user = {**user, "init_from": str(Path(user["init_from"]).resolve())}
    return user

