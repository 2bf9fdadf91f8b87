"""Held-out metrics and baselines for the couplet robot (kexue.fm archives/6270, "a couplet robot
from CNN + sequence labelling"; the post reports no metric).

For N (first line f, reference r, answer a) triples, with C(f) the Chinese positions of f:

* char_accuracy = Σ #{i ∈ C(f): a_i = r_i} / Σ |C(f)|   (micro average over characters);
* bleu: sacrebleu corpus BLEU-4 (exp smoothing) on character tokens. genshop writes each line
  with a space between every two characters and passes tokenize="none", so every character —
  Chinese or punctuation — is one token by construction, not by sacrebleu's table of Chinese
  ranges ("zh" splits those and runs the 13a rules on the rest); on all-Chinese lines this
  equals tokenize="zh" and tokenize="char" (tested). On 5- and 7-character lines 4-grams rarely
  match, so bleu2 (n-grams up to 2, same tokens) is reported beside it;
* violations = Σ over answers of the failed rules among length, position, repetition
  (`decode.rule_checks`; 0 for `decode.decode` by construction);
* tone_last = share of answers whose last Chinese character can take the tone class opposite
  to f's (`decode.tones_opposite`: a character of both classes opposes any);
* tone_positions = mean over answers of #{i ∈ C(f): a_i, f_i opposite} / |C(f)|;
* repetition_agreement = share of answers with the repetition pattern of f.
Tone classes are classical by default, like the rule checks (`decode.CLASSICAL_DEFAULT`).

Baselines for scale: the most frequent second-line character per (length, position), decoded
under the same rules; and nearest-neighbour retrieval of a training pair by first-line
similarity (position matches + shared character bigrams).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
from sacrebleu.metrics import BLEU

from genshop.couplet.decode import (
    CLASSICAL_DEFAULT,
    chinese_positions,
    decode,
    rule_checks,
    tones_opposite,
)
from genshop.couplet.vocab import Vocab
from genshop.errors import BadInputError

HARD_RULES = ("length", "position", "repetition")


def _check_lines(firsts: Sequence[str], references: Sequence[str],
                 answers: Sequence[str]) -> None:
    lengths = {len(firsts), len(references), len(answers)}
    if len(lengths) != 1 or not firsts:
        raise BadInputError(f"firsts, references and answers must be equally long, non-empty "
                            f"lists; got {len(firsts)}, {len(references)}, {len(answers)}")
    for line in (*firsts, *references, *answers):
        if not isinstance(line, str):
            raise BadInputError(f"every line must be a string, got {line!r}")


def char_tokens(line: str) -> str:
    """`line` with a space between every two characters (its whitespace dropped)."""
    return " ".join(ch for ch in line if not ch.isspace())


def corpus_bleu(references: Sequence[str], answers: Sequence[str], max_order: int = 4) -> float:
    """sacrebleu corpus BLEU (0–100, n-grams up to `max_order`) of the answers against one
    reference each, character tokens."""
    hyps = [char_tokens(a) for a in answers]
    refs = [[char_tokens(r) for r in references]]
    bleu = BLEU(tokenize="none", max_ngram_order=max_order)
    return float(bleu.corpus_score(hyps, refs).score)


def _position_opposition(first: str, answer: str, classical: bool) -> float:
    positions = chinese_positions(first)
    hits = sum(i < len(answer) and tones_opposite(first[i], answer[i], classical)
               for i in positions)
    return hits / len(positions) if positions else 0.0


def evaluate_answers(firsts: Sequence[str], references: Sequence[str], answers: Sequence[str],
                     classical: bool = CLASSICAL_DEFAULT) -> dict[str, float]:
    """char_accuracy, bleu, bleu2, violations, tone_last, tone_positions, repetition_agreement
    and n for answers to `firsts` (see the module docstring)."""
    _check_lines(firsts, references, answers)
    checks = [rule_checks(f, a, classical) for f, a in zip(firsts, answers, strict=True)]
    hits = total = 0
    for f, r, a in zip(firsts, references, answers, strict=True):
        positions = chinese_positions(f)
        total += len(positions)
        hits += sum(i < min(len(a), len(r)) and a[i] == r[i] for i in positions)
    n = len(firsts)
    return {
        "char_accuracy": hits / total if total else 0.0,
        "bleu": corpus_bleu(references, answers),
        "bleu2": corpus_bleu(references, answers, max_order=2),
        "violations": float(sum(not c[rule] for c in checks for rule in HARD_RULES)),
        "tone_last": sum(c["tone"] for c in checks) / n,
        "tone_positions": float(np.mean([_position_opposition(f, a, classical)
                                         for f, a in zip(firsts, answers, strict=True)])),
        "repetition_agreement": sum(c["repetition"] for c in checks) / n,
        "n": float(n),
    }


def most_frequent_baseline(train_pairs: Sequence[tuple[str, str]], **opts) -> Callable[[str], str]:
    """An answerer from second-line character counts per (length L, position i):
    log p_i(t) = log((count_{L,i}(t) + 1) / (N_L + V)), decoded with `decode.decode(**opts)` so
    it obeys the same rules; a length never seen in training uses the counts over all
    positions."""
    vocab = Vocab.build((s for _, s in train_pairs), min_count=1)
    counts: dict[int, np.ndarray] = {}
    overall = np.zeros(len(vocab))
    for _, second in train_pairs:
        ids = vocab.encode(second)
        table = counts.setdefault(len(ids), np.zeros((len(ids), len(vocab))))
        table[np.arange(len(ids)), ids] += 1
        np.add.at(overall, ids, 1)

    def answer(first: str) -> str:
        table = counts.get(len(first))
        if table is None:
            table = np.broadcast_to(overall, (len(first), len(vocab)))
        log_probs = np.log((table + 1) / (table.sum(axis=1, keepdims=True) + len(vocab)))
        return decode(first, log_probs, vocab, **opts)[0].text

    return answer


def _bigrams(line: str) -> set[str]:
    return {line[i:i + 2] for i in range(len(line) - 1)}


class _LengthBucket:
    """The training pairs of one first-line length: code points and a bigram index."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self.seconds = [s for _, s in pairs]
        self.codes = np.array([[ord(ch) for ch in f] for f, _ in pairs], dtype=np.int64)
        postings: dict[str, list[int]] = defaultdict(list)
        for k, (f, _) in enumerate(pairs):
            for bigram in _bigrams(f):
                postings[bigram].append(k)
        self.postings = {b: np.array(ks, dtype=np.int64) for b, ks in postings.items()}

    def nearest(self, first: str) -> str:
        """The second line of the pair maximising position matches + shared bigrams (the
        earliest pair on ties)."""
        width = min(len(first), self.codes.shape[1])
        query = np.array([ord(ch) for ch in first[:width]], dtype=np.int64)
        score = (self.codes[:, :width] == query).sum(axis=1)
        for bigram in _bigrams(first):
            if bigram in self.postings:
                score[self.postings[bigram]] += 1
        return self.seconds[int(np.argmax(score))]


def nearest_neighbour_baseline(train_pairs: Sequence[tuple[str, str]]) -> Callable[[str], str]:
    """An answerer that retrieves the training pair whose first line is most similar to the
    query (position-by-position matches + shared character bigrams) among pairs of the same
    length, and returns its second line; an unseen length uses the nearest length and cycles or
    cuts the retrieved line to the query's length."""
    by_length: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for first, second in train_pairs:
        if len(first) == len(second) and first:
            by_length[len(first)].append((first, second))
    if not by_length:
        raise BadInputError("the nearest-neighbour baseline needs at least one training pair "
                            "of two equally long lines")
    buckets = {length: _LengthBucket(pairs) for length, pairs in sorted(by_length.items())}

    def answer(first: str) -> str:
        length = min(buckets, key=lambda k: (abs(k - len(first)), -k))
        second = buckets[length].nearest(first)
        return (second * -(-len(first) // len(second)))[:len(first)]

    return answer

