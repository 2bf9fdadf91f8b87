"""The couplet robot a person talks to, after "a couplet robot from CNN + sequence labelling"
(kexue.fm archive 6270): `load_pretrained().reply("晚风摇树树还挺")` gives the best second line,
`.answer(line, n=5)` the ranked alternatives with their scores and rule checks.

A `CoupletBot` holds a trained `CoupletNet` and its `Vocab`. One reply is one forward pass,
log p(yᵢ | x) for every position i of the line (an `answer_many` batch pads every line to the
longest with PAD, which the net masks, so a line's answer does not depend on its neighbours),
then `genshop.couplet.decode.decode`: the post's two rules (never UNK, never the input's own
character at i) plus punctuation copied in place, the repetition pattern mirrored and the
opposite tone preferred at the end, giving the n best distinct answers.

The shipped model lives in `genshop/assets/couplet/`: `couplet.safetensors` (the net's weights in
half precision, read back as float32), `vocab.json` and `couplet.json` (net shape, direction,
training recipe and held-out metrics). A bot of direction "both" answers a first line
(上联 → 下联) and, with `reverse=True`, a second line (下联 → 上联).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from genshop.atomic import write_atomic, write_text_atomic
from genshop.couplet.decode import Candidate, decode
from genshop.couplet.model import MAX_CHARS, CoupletNet, CoupletNetConfig, pad_rows
from genshop.couplet.tones import is_chinese
from genshop.couplet.vocab import Vocab
from genshop.errors import BadInputError, DataError

MAX_ALTERNATIVES = 20
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "couplet"
WEIGHTS, VOCAB, INFO = "couplet.safetensors", "vocab.json", "couplet.json"
DIRECTIONS = ("forward", "reverse", "both")
EXAMPLE = "晚风摇树树还挺"


def check_line(text: object) -> str:
    """`text` stripped of surrounding whitespace, if it is a line the bot can answer: a str of
    1 to 64 characters with at least one Chinese character; else a BadInputError saying why."""
    if not isinstance(text, str):
        raise BadInputError(f"a couplet line must be text, got {type(text).__name__}")
    line = text.strip()
    if not line:
        raise BadInputError(f"the line is empty; type the first line of a couplet, e.g. {EXAMPLE}")
    if len(line) > MAX_CHARS:
        raise BadInputError(f"the line has {len(line)} characters; a couplet line here has at "
                            f"most {MAX_CHARS}")
    if not any(is_chinese(ch) for ch in line):
        raise BadInputError(f"the line has no Chinese character; type a line in Chinese, e.g. "
                            f"{EXAMPLE}")
    return line


@dataclass(frozen=True)
class Reply:
    """An answer to `first`: the best line `second` and the ranked `alternatives`
    (`alternatives[0].text == second`)."""

    first: str
    second: str
    alternatives: list[Candidate] = field(default_factory=list)


class CoupletBot:
    """A trained tagger and its vocabulary (see the module docstring)."""

    def __init__(self, net: CoupletNet, vocab: Vocab, direction: str = "forward",
                 info: dict[str, Any] | None = None):
        if direction not in DIRECTIONS:
            raise BadInputError(f"direction must be one of {', '.join(DIRECTIONS)}")
        if (direction == "both") != (net.config.directions == 2):
            raise DataError(f"a {direction} bot needs a net of "
                            f"{2 if direction == 'both' else 1} direction(s)")
        if net.config.vocab_size != len(vocab):
            raise DataError(f"the net answers over {net.config.vocab_size} tokens but the "
                            f"vocabulary holds {len(vocab)}; they come from different runs")
        self.net, self.vocab, self.direction = net.eval(), vocab, direction
        self.info = dict(info or {})

    def reply(self, first: str, reverse: bool = False) -> str:
        """The best answer to one line: the second line (a first line with `reverse`)."""
        return self.answer(first, 1, reverse).second

    def answer(self, first: str, n: int = 5, reverse: bool = False) -> Reply:
        """The n best answers to one line (the second line; a first line with `reverse`), with
        their scores and rule checks."""
        return self.answer_many([first], n, reverse)[0]

    def answer_many(self, firsts: Sequence[str], n: int = 5, reverse: bool = False) -> list[Reply]:
        """`answer` for every line, with one batched forward pass for all of them."""
        if isinstance(firsts, str) or not isinstance(firsts, Sequence):
            raise BadInputError("answer_many takes a list of lines")
        _check_n(n)
        lines = [check_line(f) for f in firsts]
        replies = []
        for line, log_probs in zip(lines, self.log_probs(lines, reverse), strict=True):
            found = decode(line, log_probs, self.vocab, n)
            replies.append(Reply(line, found[0].text, found))
        return replies

    @torch.inference_mode()
    def log_probs(self, lines: Sequence[str], reverse: bool = False) -> list[torch.Tensor]:
        """Each line's per-position log-softmax (len(line), V), from one forward pass."""
        if not lines:
            return []
        rev = self._reverse_flags(len(lines), reverse)
        ids = pad_rows([self.vocab.encode(line) for line in lines])
        out = self.net.log_probs(ids, rev)
        return [out[i, :len(line)] for i, line in enumerate(lines)]

    def _reverse_flags(self, count: int, reverse: bool) -> torch.Tensor | None:
        if not isinstance(reverse, bool):
            raise BadInputError(f"reverse must be true or false, got {reverse!r}")
        if self.direction == "both":
            return torch.full((count,), reverse)
        if reverse != (self.direction == "reverse"):
            wanted = "second line (reverse)" if reverse else "first line"
            raise BadInputError(f"this model answers only a {self.direction} line pair, not a "
                                f"{wanted}; use a model trained with --direction both")
        return None

    def save(self, folder: Path | str, info: dict[str, Any] | None = None) -> Path:
        """Write the bot as `load_bot` reads it: half-precision weights, vocabulary, info."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        weights = save({k: v.detach().half().contiguous()
                        for k, v in self.net.state_dict().items()})
        write_atomic(folder / WEIGHTS, lambda f: f.write(weights))
        write_text_atomic(folder / VOCAB, self.vocab.to_json())
        meta = {**self.info, **(info or {}), "direction": self.direction,
                "net": self.net.config.to_dict()}
        write_text_atomic(folder / INFO, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        return folder


def _check_n(n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_ALTERNATIVES:
        raise BadInputError(f"the number of answers must be a whole number from 1 to "
                            f"{MAX_ALTERNATIVES}, got {n!r}")


def _net(net_info: dict[str, Any], weights: dict[str, torch.Tensor]) -> CoupletNet:
    try:
        config = CoupletNetConfig(**{**net_info, "dilations": tuple(net_info["dilations"])})
        net = CoupletNet(config)
        net.load_state_dict({k: v.float() for k, v in weights.items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"the couplet weights do not fit their net description "
                        f"({type(err).__name__}: {str(err).splitlines()[0]})") from None
    return net


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{path} is missing; reinstall genshop or train a model with "
                        "`genshop train couplet`")
    return path


def _read(path: Path) -> str:
    return _need(path).read_text(encoding="utf-8")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(_need(path))
    except (OSError, ValueError, SafetensorError) as err:
        raise DataError(f"{path} is not a readable safetensors file ({err}); reinstall genshop "
                        "or retrain") from None


def load_bot(folder: Path | str) -> CoupletBot:
    """A bot from a folder `CoupletBot.save` wrote (weights, vocab.json, couplet.json)."""
    folder = Path(folder)
    info = json.loads(_read(folder / INFO))
    vocab = Vocab.from_json(_read(folder / VOCAB))
    net = _net(info["net"], _weights(folder / WEIGHTS))
    return CoupletBot(net, vocab, info.get("direction", "forward"), info)


def load_pretrained() -> CoupletBot:
    """The model shipped in `genshop/assets/couplet/` (no download)."""
    return load_bot(ASSETS)


def load_run_bot(run_dir: Path | str) -> CoupletBot:
    """The best net (by validation character accuracy) of a `genshop train couplet` run."""
    run_dir = Path(run_dir)
    info = json.loads(_read(run_dir / "best.json"))
    vocab = Vocab.from_json(_read(run_dir / "vocab.json"))
    net = _net(info["net"], _weights(run_dir / "best.safetensors"))
    return CoupletBot(net, vocab, info.get("direction", "forward"), {"best": info})


TINY_CHARS = ("晚风摇树还挺晨露润花更红夜雨敲香今天气不错昨日人情无明鱼跃此时海鸟鸣何山水"
              "只有如故月若新科学空间文大中春秋云")


def tiny_bot(seed: int = 0) -> CoupletBot:
    """An untrained small bot for tests: random weights (fixed by `seed`), a vocabulary of
    the post's probe characters and a few more, one net for both directions."""
    vocab = Vocab.build(TINY_CHARS, min_count=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = CoupletNet(CoupletNetConfig(len(vocab), dim=16, blocks=2, directions=2))
    return CoupletBot(net, vocab, "both", {"tiny": True, "seed": seed})


def evaluate(bot: CoupletBot, pairs: Sequence[tuple[str, str]], reverse: bool = False,
             batch: int = 256) -> dict[str, float]:
    """`genshop.couplet.metrics.evaluate_answers` of the bot's best answers to `pairs`
    (first lines, or second lines with `reverse`), the lines answered `batch` at a time."""
    from genshop.couplet.metrics import evaluate_answers

    asked = [b if reverse else a for a, b in pairs]
    wanted = [a if reverse else b for a, b in pairs]
    answers = [r.second for k in range(0, len(asked), batch)
               for r in bot.answer_many(asked[k:k + batch], n=1, reverse=reverse)]
    return evaluate_answers(asked, wanted, answers)
