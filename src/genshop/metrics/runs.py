"""Scoring a trained run: `evaluate_run(RUN_DIR)`, what `genshop eval RUN_DIR` writes.

Serves every trained model of the *Scientific Spaces* posts. A run with an image sampler (the
GANs of "f-GAN: a production workshop for GANs", kexue.fm 6016, "RSGAN", 6110, and "A GAN with a
single loss via stop-gradient", 6387; later GLO/IMLE/GLANN of 6394 and the VAE of 6181) is scored
on `n` samples of `genshop.load_run(RUN_DIR).sample(n, seed)` by `genshop.metrics.score_images`
(FID, KID, precision / recall, density / coverage, digit classes; for Stacked MNIST modes of
1,000, KL and Vendi) on the reference classifier's features. A run of a supervised family (the
reference digit classifier) reports `Run.test_scores()`, its scores on the data set's held-out
split. Either way `eval.json` (`genshop.runs.EVAL`) gets {"run_dir", "step", "scores",
"protocol"}, written atomically; a run with neither (a 2-D GAN: `genshop bench modes` scores
those) is a one-line BadInputError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genshop.atomic import write_json_atomic
from genshop.errors import BadInputError
from genshop.metrics.images import score_images
from genshop.runs import EVAL, Run, load_run

EVAL_SAMPLES = 10_000
EVAL_SEED = 0
SCORABLE = ((1, 28, 28), (3, 28, 28))  # what the reference classifier scores
TEST_SPLIT = "test"  # the held-out split a supervised family's `test_scores` uses


def check_image_run(run: Run) -> None:
    """A BadInputError unless `run` samples images the reference classifier can score."""
    dataset = run.dataset
    if dataset.kind != "images":
        raise BadInputError(f"{run.run_dir} is a run on {run.config.data} ({dataset.kind}), "
                            "not on images; genshop eval scores image runs (mnist, "
                            "stacked-mnist, IDX files, image folders) and supervised runs, "
                            "`genshop bench modes` scores 2-D runs")
    if tuple(dataset.shape) not in SCORABLE:
        raise BadInputError(f"{run.run_dir} samples {'×'.join(map(str, dataset.shape))} images; "
                            "the reference classifier scores 1×28×28 digits and 3×28×28 "
                            "Stacked MNIST only")


def image_record(run: Run, n: int, seed: int) -> dict[str, Any]:
    """score_images of n samples (latent seed `seed`); the protocol is score_images' plus the
    sample seed."""
    check_image_run(run)
    scores = score_images(run.sample(n, seed=seed))
    return {"scores": scores, "protocol": {**scores.pop("protocol"), "sample_seed": seed}}


def supervised_record(run: Run) -> dict[str, Any]:
    """The run's scores on the held-out split; a BadInputError for a family without any."""
    scores = run.test_scores()
    if not scores:
        raise BadInputError(f"{run.run_dir} is a {run.family.name} run with neither an image "
                            "sampler nor held-out scores; genshop eval scores image runs and "
                            "supervised runs")
    return {"scores": scores, "protocol": {"split": TEST_SPLIT, "data": run.config.data}}


def protocol_note(protocol: dict[str, Any]) -> str:
    """An eval.json protocol in words (the note under the scores on a run's page)."""
    p = protocol
    if "split" in p:
        ema = f", EMA {p['ema']}" if p.get("ema") else ""
        return f"the {p['split']} split of {p['data']}, net at step {p['step']}{ema}"
    return (f"{p['n_samples']:,} samples (seed {p['sample_seed']}) at step {p['step']} against "
            f"{p['n_reference']:,} images of {p['reference']}; features of {p['extractor']} "
            f"(sha256 {p['extractor_sha256'][:12]}…); {p['note']}")


def evaluate_run(run_dir: Path | str, n: int = EVAL_SAMPLES,
                 seed: int = EVAL_SEED) -> dict[str, Any]:
    """Score the run in `run_dir` (the module docstring); write {"run_dir", "step", "scores",
    "protocol"} to `run_dir/eval.json` and return it. The protocol also holds the step and the
    EMA decay of the scored net (0: the trained net itself); `n` and `seed` are the image
    protocol's sample count and latent seed (a supervised run ignores them)."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    part = image_record(run, n, seed) if run.has_sampler else supervised_record(run)
    protocol = {**part["protocol"], "step": run.step, "ema": getattr(run.config, "ema", 0.0)}
    record = {"run_dir": str(run_dir), "step": run.step, "scores": part["scores"],
              "protocol": protocol}
    write_json_atomic(run_dir / EVAL, record)
    return record


__all__ = ["EVAL_SAMPLES", "EVAL_SEED", "SCORABLE", "check_image_run", "evaluate_run",
           "protocol_note"]
