"""`genshop couplet 晚风摇树树还挺 [-n 5] [--reverse]`: answer a couplet line (shipped model).

The robot of "a couplet robot from CNN + sequence labelling" (kexue.fm archive 6270): the gated
CNN tagger gives log p(yᵢ | x) at every position, `genshop.couplet.decode` picks the n best
answers under the couplet rules. `--reverse` answers a second line (下联 → 上联); `--run RUN_DIR`
answers with the best net of a `genshop train couplet` run instead of the shipped one.

`genshop couplet eval RUN_DIR` (or `eval --pretrained`) scores a model's best answers to the
held-out pairs (`genshop.couplet.bot.evaluate`: character accuracy, BLEU, rule violations, tone
and repetition agreement) and prints them beside its answers to the post's probe lines.
`genshop couplet export RUN_DIR --to FOLDER` packs a run's best net as `load_bot` reads it (the
shipped model is `--to src/genshop/assets/couplet`), with its recipe (the training command, steps,
time) and its validation and test scores in every direction it answers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genshop.config import read_config_json
from genshop.errors import BadInputError

NAME = "couplet"
HELP = ("answer a couplet line (上联 → 下联); `couplet eval RUN_DIR|--pretrained` scores a model, "
        "`couplet export RUN_DIR --to FOLDER` packs one")
PROBES = ("晚风摇树树还挺", "今天天气不错", "鱼跃此时海", "只有香如故", "科学空间")
RULES = ("length", "position", "repetition", "tone")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("words", nargs="*", metavar="LINE",
                   help="the line to answer, e.g. 晚风摇树树还挺; or `eval RUN_DIR`")
    p.add_argument("-n", type=int, default=1, help="number of ranked answers, 1 to 20 "
                                                   "(default: 1)")
    p.add_argument("--reverse", action="store_true",
                   help="the line is a second line (下联): answer a first line")
    p.add_argument("--run", type=Path, default=None,
                   help="answer with the best net of this `genshop train couplet` run folder")
    p.add_argument("--pretrained", action="store_true",
                   help="eval: score the shipped model")
    p.add_argument("--data", default="poetry",
                   help="eval: the pairs to score on, a corpus name or a folder of in.txt / "
                        "out.txt (default: poetry)")
    p.add_argument("--split", default="test", choices=("valid", "test"),
                   help="eval: which held-out split (default: test)")
    p.add_argument("--limit", type=int, default=0,
                   help="eval: score only the first N pairs (default: all)")
    p.add_argument("--json", type=Path, default=None, help="eval: also write the scores here")
    p.add_argument("--to", type=Path, default=None, help="export: the folder to write")


def run(args: argparse.Namespace) -> int:
    if args.words[:1] == ["eval"]:
        return _eval(args)
    if args.words[:1] == ["export"]:
        return _export(args)
    if not args.words:
        raise BadInputError("give the line to answer, e.g. `genshop couplet 晚风摇树树还挺`")
    if args.pretrained:
        raise BadInputError("--pretrained goes with `genshop couplet eval`")
    bot = _bot(args.run)
    reply = bot.answer(" ".join(args.words), n=args.n, reverse=args.reverse)
    print(reply.second)
    if args.n > 1:
        for k, c in enumerate(reply.alternatives, 1):
            failed = [r for r in RULES if not c.checks.get(r, True)]
            note = f"  (breaks: {', '.join(failed)})" if failed else ""
            print(f"{k:>3}. {c.text}  score {c.score:.2f}{note}")
    return 0


def _bot(run_dir: Path | None):
    from genshop.couplet.bot import load_pretrained, load_run_bot

    return load_pretrained() if run_dir is None else load_run_bot(run_dir)


def _eval(args: argparse.Namespace) -> int:
    from genshop.couplet.bot import evaluate
    from genshop.families.couplet import load_pairs

    targets = args.words[1:]
    if args.pretrained == bool(targets) or len(targets) > 1:
        raise BadInputError("eval needs one model: `genshop couplet eval RUN_DIR` or "
                            "`genshop couplet eval --pretrained`")
    if args.limit < 0:
        raise BadInputError(f"--limit must be 0 (all) or more, got {args.limit}")
    bot = _bot(None if args.pretrained else Path(targets[0]))
    pairs = load_pairs(args.data)[args.split]
    pairs = pairs[:args.limit] if args.limit else pairs
    if not pairs:
        raise BadInputError(f"--data {args.data} has no {args.split} pairs to score")
    scores = evaluate(bot, pairs, reverse=args.reverse)
    print(f"{len(pairs)} {args.split} pairs of {args.data}"
          f"{' (reverse: 下联 → 上联)' if args.reverse else ''}")
    for k, v in scores.items():
        print(f"  {k:<22} {v:.4f}")
    print("probe lines of the post:")
    for reply in bot.answer_many(list(PROBES), n=1, reverse=args.reverse):
        print(f"  {reply.first} → {reply.second}")
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "data": args.data,
                                         "reverse": args.reverse, **scores}, indent=2) + "\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    from genshop.couplet.bot import evaluate, load_run_bot
    from genshop.families.couplet import load_pairs, source

    if len(args.words) != 2 or args.to is None:
        raise BadInputError("export needs a run and a folder: `genshop couplet export RUN_DIR "
                            "--to FOLDER`")
    run_dir = Path(args.words[1])
    bot = load_run_bot(run_dir)
    saved = read_config_json(run_dir)
    splits = load_pairs(source(saved))
    ways = {"forward": [False], "reverse": [True], "both": [False, True]}[bot.direction]
    scores = {split: {("reverse" if r else "forward"): evaluate(bot, splits[split], reverse=r)
                      for r in ways} for split in ("valid", "test") if splits[split]}
    recipe = {"command": train_command(saved), "config": saved,
              "train_seconds": _train_seconds(run_dir), "corpus": _corpus_version(source(saved))}
    metrics = {split: by_way[ways_name(bot.direction)] for split, by_way in scores.items()}
    folder = bot.save(args.to, {"recipe": recipe, "metrics": metrics, "scores": scores,
                                "probes": _probes(bot)})
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    shown = ", ".join(f"{split} char accuracy {m['char_accuracy']:.4f}"
                      for split, m in metrics.items())
    print(f"wrote {folder} ({size / 2**20:.2f} MB): {shown}")
    return 0


def ways_name(direction: str) -> str:
    """The direction whose scores stand for a model's (`forward` for a two-way one)."""
    return "reverse" if direction == "reverse" else "forward"


def train_command(saved: dict) -> str:
    """The `genshop train couplet` line that reproduces a saved config (non-default options)."""
    from genshop.config import flag
    from genshop.families.couplet import CoupletConfig

    defaults = CoupletConfig()
    parts = ["genshop train couplet"]
    for k, v in saved.items():
        if k in ("family", "out") or getattr(defaults, k, v) == v:
            continue
        parts.append(f"{flag(k)} {v}")
    return " ".join([*parts, "--out RUN_DIR"])


def _train_seconds(run_dir: Path) -> float | None:
    """Steps over the rate of the last metrics line (the run's own time, if never resumed)."""
    from genshop.runs import read_metrics

    rows = read_metrics(run_dir)
    return rows[-1]["step"] / rows[-1]["it_per_s"] if rows else None


def _corpus_version(data: str) -> str:
    """The cache name of a mined corpus (it carries the package and mining-rules versions)."""
    from genshop.couplet.data import cache_file

    return cache_file().name if data == "poetry" else data


def _probes(bot) -> dict[str, dict[str, str]]:
    out = {"forward": {r.first: r.second for r in bot.answer_many(list(PROBES))}}
    if bot.direction == "both":
        out["reverse"] = {r.first: r.second for r in bot.answer_many(list(PROBES), reverse=True)}
    return out
