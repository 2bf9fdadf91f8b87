"""The couplet family: the tagger of "a couplet robot from CNN + sequence labelling" (kexue.fm
archive 6270) trained by the one engine.

Data (`PairData`): the pairs of `genshop.couplet.data.load_corpus`
(`--data poetry`) or of a folder in the common in.txt / out.txt format (`--data-dir DIR`; DIR
holds in.txt and out.txt, or train/, valid/ and test/ folders of them; without valid/, 2,000
pairs or a tenth of train, seed 0, are held out), as ids of a `Vocab` built on
the training lines with `--min-count`. As training data (`PairExamples`) the first lines are the
examples x and the second lines their targets y. Each step draws a batch the post's way, from
the engine's generator (so a resumed run draws the same batches): a length L with probability
proportional to the number of training pairs of that length, then `batch_size` pairs of length
L with replacement; no padding is needed in training.

Step: Adam (the post's Keras defaults: lr 1e-3, β = (0.9, 0.999), ε = 1e-7) on

    L = −(1/|I|) Σ_{(b,i) ∈ I} log p(y_{b,i} | x_b)      (I: every position of the batch),

a mean of per-position terms, so the engine's averaged data-parallel gradient is exact.
`--direction reverse` trains 下联 → 上联 on the same pairs swapped; `both` trains one net for the
two directions (alternate rows of each batch swapped, a learned direction vector; genshop's).

Evaluation at every logged step: the validation loss and character accuracy of the post's
greedy answer (per position the most probable character other than PAD, UNK and the input's
own character), the fraction of validation characters it gets right; `genshop eval` reports the
same two scores on the test split. The best accuracy so far is kept: the run folder gets
`best.safetensors` (float32 weights of the evaluated net), `best.json` (its step, scores and net
shape) and `vocab.json`, which
`genshop.couplet.bot.load_run_bot` reads.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from genshop.atomic import write_atomic, write_text_atomic
from genshop.config import AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, Range, RunConfig, option
from genshop.couplet.data import Pair, load_corpus, read_pair_files
from genshop.couplet.model import (
    MAX_CHARS,
    CoupletNet,
    CoupletNetConfig,
    pad_rows,
    pair_loss,
    post_greedy,
)
from genshop.couplet.vocab import Vocab
from genshop.data import Batch, Examples
from genshop.errors import BadInputError, DataError
from genshop.families import Family, StepInput, adam, register

SPLITS = ("train", "valid", "test")
VALID_SIZE = 2000  # pairs held out of a folder without valid/ (Yan et al.'s size)
EVAL_CHUNK = 256  # validation lines per forward pass
ARCHS = ("post", "dilated", "transformer")
DIRECTIONS = ("forward", "reverse", "both")
BEST_WEIGHTS, BEST_INFO, VOCAB = "best.safetensors", "best.json", "vocab.json"


@dataclass
class CoupletConfig(RunConfig):
    """The post's tagger and sampler; `arch dilated` widens the context to the whole line."""

    data: str = option("poetry", "couplet corpus of genshop.couplet.data (poetry), or a folder "
                                 "as for --data-dir")
    data_dir: str = option("", "train on your own pairs instead: a folder holding in.txt and "
                               "out.txt (one couplet a line, characters separated by spaces), "
                               "or train/, valid/ and test/ folders of them")
    steps: int = option(30000, "number of training steps (the total, also when resuming)",
                        valid=AT_LEAST_1)
    batch_size: int = option(64, "pairs per step, all of one length", valid=AT_LEAST_1)
    log_every: int = option(500, "steps between metrics.jsonl lines (each with the validation "
                                 "loss and character accuracy)", valid=AT_LEAST_1)
    sample_every: int = option(0, "unused: couplet runs draw no pictures", valid=AT_LEAST_0)
    checkpoint_every: int = option(2000, "steps between checkpoints (one is also written at "
                                         "the end)", valid=AT_LEAST_1)
    lr: float = option(1e-3, "Adam learning rate (the post: Keras default 1e-3)", valid=POSITIVE)
    arch: str = option("post", "post: 6 gated residual blocks of dilation 1 (receptive field "
                               "13); dilated: dilations 1, 2, 4, 8, 8, 8 (the whole line); "
                               "transformer: pre-norm encoder layers (the whole line)", ARCHS)
    dim: int = option(128, "embedding size = block width", valid=AT_LEAST_1)
    blocks: int = option(6, "gated residual Conv1D blocks (transformer: encoder layers)",
                         valid=Range(1, 64))
    heads: int = option(4, "attention heads of the transformer arch (dim must be a multiple)",
                        valid=Range(1, 64))
    dropout: float = option(0.25, "dropout after the embedding", valid=FRACTION)
    min_count: int = option(2, "characters seen fewer times in the training lines are unknown",
                            valid=AT_LEAST_1)
    direction: str = option("forward", "forward: 上联 → 下联; reverse: 下联 → 上联 (the same "
                                       "pairs swapped); both: one net for the two", DIRECTIONS)


def source(config: CoupletConfig | dict) -> str:
    """Where a run's pairs come from: `--data-dir` if given, else `--data`."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    return get("data_dir", "") or get("data")


def net_config(config: CoupletConfig, vocab_size: int) -> CoupletNetConfig:
    """The tagger's shape for a run's options."""
    shape = {"dim": config.dim, "blocks": config.blocks, "dropout": config.dropout,
             "directions": 2 if config.direction == "both" else 1}
    if config.arch == "dilated":
        return CoupletNetConfig.dilated(vocab_size, **shape)
    if config.arch == "transformer":
        return CoupletNetConfig.transformer(vocab_size, heads=config.heads, **shape)
    return CoupletNetConfig(vocab_size, **shape)


@dataclass
class PairExamples(Examples):
    """Training pairs: x (N, L_max) first lines, y (N, L_max) second lines, PAD beyond each
    row's length, grouped by length in ascending order (module docstring)."""

    lengths: tuple[int, ...] = ()  # the line lengths, ascending
    counts: tuple[int, ...] = ()  # pairs of each length

    def draw(self, n: int, generator: torch.Generator) -> Tensor:
        """A length ∝ its number of pairs, then n pairs of that length with replacement."""
        sizes = torch.tensor(self.counts, dtype=torch.float64)
        b = int(torch.multinomial(sizes, 1, generator=generator))
        return sum(self.counts[:b]) + torch.randint(self.counts[b], (n,), generator=generator)

    def rows(self, index: Tensor) -> Batch:
        """The rows, cut to their longest line (a training batch has one length)."""
        batch = super().rows(index)
        width = int((batch.x != Vocab.PAD).sum(1).max()) if len(batch) else 0
        return Batch(batch.x[:, :width], batch.y[:, :width], batch.index)


@dataclass(eq=False)
class PairData:
    """Couplet pairs as a data set (see the module docstring)."""

    name: str
    vocab: Vocab
    train: PairExamples
    splits: dict[str, list[Pair]] = field(repr=False)
    kind: str = "couplets"
    shape: tuple[int, ...] = (2,)

    @classmethod
    def from_splits(cls, name: str, splits: dict[str, list[Pair]],
                    min_count: int = 2) -> PairData:
        train = [p for p in splits["train"] if 0 < len(p[0]) == len(p[1]) <= MAX_CHARS]
        if not train:
            raise DataError(f"couplet data {name} has no training pair of 1 to {MAX_CHARS} "
                            "characters a line")
        vocab = Vocab.build((line for p in train for line in p), min_count=min_count)
        by_length = sorted(train, key=lambda p: len(p[0]))  # stable: train order in a length
        lengths = sorted({len(a) for a, _ in train})
        counts = tuple(sum(len(a) == n for a, _ in train) for n in lengths)
        examples = PairExamples(pad_rows([vocab.encode(a) for a, _ in by_length]),
                                pad_rows([vocab.encode(b) for _, b in by_length]),
                                tuple(lengths), counts)
        return cls(name, vocab, examples, {**splits, "train": train})

    def training_data(self, seed: int = 0, size: int | None = None) -> PairExamples:
        """The training pairs; a corpus fixes them, so `seed` does not matter."""
        return self.train

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """A training batch (n, 2, L) of first and second lines, as the engine draws one."""
        batch = self.train.batch(n, generator)
        return torch.stack([batch.x, batch.y], dim=1)

    def encoded(self, split: str) -> Tensor:
        """The pairs of `split` as (N, 2, L) ids padded with PAD to the longest line."""
        pairs = [p for p in self.splits[split] if 0 < len(p[0]) == len(p[1]) <= MAX_CHARS]
        firsts = pad_rows([self.vocab.encode(a) for a, _ in pairs])
        seconds = pad_rows([self.vocab.encode(b) for _, b in pairs])
        return torch.stack([firsts, seconds], dim=1)


def load_pairs(data: str) -> dict[str, list[Pair]]:
    """{"train", "valid", "test"} pairs of a corpus name or of a folder (module docstring)."""
    path = Path(data)
    if not path.is_dir():
        if "/" in data or data.startswith("."):
            raise DataError(f"--data {data}: no such folder; give a folder with in.txt and "
                            "out.txt or a corpus name such as poetry")
        return load_corpus(data)
    found = {s: path / s for s in SPLITS if (path / s / "in.txt").is_file()}
    if "train" not in found:
        return _hold_out({"train": read_pair_files(path)})
    return _hold_out({s: read_pair_files(p) for s, p in found.items()})


def _hold_out(splits: dict[str, list[Pair]]) -> dict[str, list[Pair]]:
    """Add a validation split (VALID_SIZE pairs, at most a tenth, seed 0) and an empty test
    split where a folder has none."""
    if "valid" not in splits:
        train = list(splits["train"])
        random.Random(0).shuffle(train)
        k = min(VALID_SIZE, len(train) // 10)
        splits = {**splits, "train": train[k:], "valid": train[:k]}
    return {"test": [], **splits}


def pair_data(data: str, min_count: int = 2) -> PairData:
    """The `PairData` of `--data`."""
    return PairData.from_splits(data, load_pairs(data), min_count)


def _oriented(batch: Tensor, direction: str) -> tuple[Tensor, Tensor | None]:
    """(input, answer) rows of a (B, 2, L) batch for `direction`, and the per-row reverse flags
    of a two-direction net (odd rows reversed) or None."""
    if direction == "forward":
        return batch, None
    if direction == "reverse":
        return batch.flip(1), None
    rev = torch.arange(len(batch), device=batch.device) % 2 == 1
    return torch.where(rev[:, None, None], batch.flip(1), batch), rev


@register
class CoupletFamily(Family):
    name = "couplet"
    description = ("couplet tagger of kexue.fm 6270: gated residual CNN, one softmax per "
                   "position (上联 → 下联)")
    config_class = CoupletConfig

    @classmethod
    def dataset(cls, config: CoupletConfig) -> PairData:
        if config.data_dir and not Path(config.data_dir).is_dir():
            raise DataError(f"--data-dir {config.data_dir}: no such folder; give the folder "
                            "that holds in.txt and out.txt")
        return pair_data(source(config), config.min_count)

    @classmethod
    def check(cls, config: CoupletConfig, dataset: Any) -> None:
        if not isinstance(dataset, PairData):
            raise BadInputError(f"the couplet family trains on couplet pairs, not "
                                f"{getattr(dataset, 'kind', '?')} data")
        if not dataset.splits["valid"]:
            raise DataError(f"couplet data {dataset.name} has no validation pairs; give a "
                            "valid/ folder or at least 10 training pairs")
        if config.arch == "transformer" and config.dim % config.heads:
            raise BadInputError(f"--dim {config.dim} must be a multiple of --heads "
                                f"{config.heads} for --arch transformer")

    def __init__(self, config: CoupletConfig, dataset: PairData, device: torch.device):
        self.check(config, dataset)
        self.config, self.data = config, dataset
        self.net = CoupletNet(net_config(config, len(dataset.vocab))).to(device)
        self.opt = adam(self.net.parameters(), lr=config.lr, eps=1e-7)
        self.valid = dataset.encoded("valid").to(device)
        self.steps, self.best = 0, {"score": -1.0, "step": 0}

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def train_step(self, inp: StepInput) -> dict[str, float]:
        batch, rev = _oriented(torch.stack([inp.x, inp.y], dim=1), self.config.direction)
        loss = pair_loss(self.net, batch, rev)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.steps += 1
        return {"loss": loss.item()}

    def evaluate(self, net: nn.Module) -> dict[str, float]:
        """Validation loss and greedy character accuracy (both directions of a `both` net);
        a better accuracy than any before is written to the run folder."""
        if self.config.direction == "both":
            scores = {**_scores(net, self.valid, "forward"),
                      **{f"{k}_reverse": v for k, v in
                         _scores(net, self.valid, "reverse").items()}}
            score = (scores["valid_char_accuracy"] + scores["valid_char_accuracy_reverse"]) / 2
        else:
            scores = _scores(net, self.valid, self.config.direction)
            score = scores["valid_char_accuracy"]
        if score > self.best["score"]:
            self.best = {"score": score, "step": self.steps}
            self._save_best(net, scores)
        return scores

    def _save_best(self, net: nn.Module, scores: dict[str, float]) -> None:
        run_dir = Path(self.config.out)
        run_dir.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
        data = safetensors_bytes(weights)
        write_atomic(run_dir / BEST_WEIGHTS, lambda f: f.write(data))
        write_text_atomic(run_dir / VOCAB, self.data.vocab.to_json())
        info = {"step": self.steps, **scores, "direction": self.config.direction,
                "net": net.config.to_dict(), "data": source(self.config)}
        write_text_atomic(run_dir / BEST_INFO, json.dumps(info, indent=2) + "\n")

    def extra_state(self) -> dict[str, Any]:
        return {"steps": self.steps, "best": dict(self.best)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.steps = int(state.get("steps", 0))
        self.best = dict(state.get("best", self.best))

    def model(self) -> nn.Module:
        return self.net

    def test_scores(self, net: nn.Module) -> dict[str, float]:
        """Loss and greedy character accuracy on the test split, in the run's direction (both
        directions for a `both` net); none for a folder without test pairs."""
        test = self.data.encoded("test").to(self.valid.device)
        if not len(test):
            return {}
        if self.config.direction != "both":
            return _scores(net, test, self.config.direction, "test")
        return {**_scores(net, test, "forward", "test"),
                **{f"{k}_reverse": v for k, v in _scores(net, test, "reverse", "test").items()}}


@torch.no_grad()
def _scores(net: nn.Module, pairs: Tensor, direction: str,
            split: str = "valid") -> dict[str, float]:
    """Mean per-position loss and greedy character accuracy on (N, 2, L) `pairs` of `split` in
    one direction."""
    batch = pairs.flip(1) if direction == "reverse" else pairs
    two_way = getattr(net, "direction", None) is not None
    loss_sum, right, total = 0.0, 0, 0
    for chunk in batch.split(EVAL_CHUNK):
        ids, target = chunk[:, 0], chunk[:, 1]
        rev = torch.full((len(ids),), direction == "reverse", device=ids.device) \
            if two_way else None
        logits = net(ids, rev)
        real = ids != 0
        loss_sum += nn.functional.cross_entropy(logits[real], target[real], reduction="sum").item()
        right += int((post_greedy(logits, ids) == target)[real].sum())
        total += int(real.sum())
    return {f"{split}_loss": loss_sum / total, f"{split}_char_accuracy": right / total}
