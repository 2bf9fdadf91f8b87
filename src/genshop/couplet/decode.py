"""Constrained decoding of the couplet tagger (kexue.fm archives/6270, "a couplet robot from CNN +
sequence labelling").

The post decodes by an independent argmax per position i of the model's log-probabilities
log p_i(t), with two masks: never <unk>, never the first line's own character first[i]. genshop
keeps those masks and adds the rules couplet writers expect, as one exact optimisation:

* only the Chinese positions of the first line are answered; every other character
  (punctuation, digits, Latin, spaces) is copied to the same position;
* candidates are the vocabulary's Chinese characters (never PAD or UNK), never first[i] at i;
* repetition is mirrored: the Chinese positions are grouped by equal character, G_1..G_m (晚风摇树
  树还挺: {3, 4} is one group); each group g gets ONE character t_g and distinct groups get
  distinct characters. Its score is s_g(t) = Σ_{i∈G_g} log p_i(t) + w·[g holds the last Chinese
  position and t can take a tone class opposite to the first line's last character] (the tone
  preference, weight w = `tone_weight`, classes from `tones.tone_classes`). The answer maximises
  Σ_g s_g(t_g) over injective t: a maximum-weight assignment of groups to characters, solved by
  `scipy.optimize.linear_sum_assignment`;
* the n best answers come from Murty's partition of the assignment space (each popped
  assignment a splits the rest of its subspace into "rows before r keep a, row r bans a[r]"),
  so they are exactly the n best distinct assignments, best first. Deterministic: no
  randomness anywhere, so the same input gives the same list (equal totals come out in a fixed
  order).

Exact top-K pruning. Each group keeps its K = m + n − 1 best characters (by s_g, ties by id) and
the assignment runs over the union of these lists. Order assignments by (score, number of groups
outside their own list). If a's group g uses t outside its list, at most m − 1 list entries are
taken by the other groups, so ≥ n entries u are free; each a[g ← u] scores ≥ a (s_g(u) ≥ s_g(t)),
is distinct, and has one group fewer outside — so a ranks n + 1 or worse. The n best therefore lie
inside the lists, and the pruned problem has exactly the full problem's n best scores.
`log_prob` is Σ of log p_i over the Chinese positions only (copied characters are the same in
every answer); `score` adds the tone bonus.

Rule checks default to classical (Pingshui) tones: the corpus is Tang and Song regulated verse
written to the Pingshui rules, where an entering-tone character (白, 十, 国) is 仄 though Mandarin
reads it level — 露从今夜白 / 月是故乡明 opposes 仄/平 classically, 平/平 in modern tones. Two
characters are opposite when some reading of each makes them so: a character the Pingshui table
lists under both classes (看, 长) opposes any. The last characters of the 1,000 held-out
reference pairs (chinese-poetry test split) oppose in 95.7% classically, in 77.9% in modern tones.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from genshop.couplet.tones import PING, ZE, is_chinese, tone_classes
from genshop.couplet.vocab import Vocab
from genshop.errors import BadInputError

CLASSICAL_DEFAULT = True
TONE_WEIGHT = 1.0
CLASS_BITS = {PING: 1, ZE: 2}


@dataclass(frozen=True)
class Candidate:
    """One answer: `text` (as long as the first line), the model's `log_prob` of its Chinese
    characters, the ranking `score` (log_prob + tone bonus) and the `rule_checks` results."""

    text: str
    log_prob: float
    score: float
    checks: dict[str, bool]


def chinese_positions(text: str) -> list[int]:
    """The positions of `text` that hold a Chinese character."""
    return [i for i, ch in enumerate(text) if is_chinese(ch)]


def _pattern(text: str, positions: list[int]) -> tuple[int, ...]:
    """Each position's index of first occurrence of its character: equal patterns ⇔ equal
    repetition structure."""
    first_seen: dict[str, int] = {}
    return tuple(first_seen.setdefault(text[i], k) for k, i in enumerate(positions))


def _last_chinese(text: str) -> str | None:
    positions = chinese_positions(text)
    return text[positions[-1]] if positions else None


def tones_opposite(a: str | None, b: str | None, classical: bool = CLASSICAL_DEFAULT) -> bool:
    """True when `a` and `b` are Chinese characters with readings of opposite tone classes
    (`tones.tone_classes`)."""
    if a is None or b is None:
        return False
    return _opposite(_class_code(a, classical), _class_code(b, classical))


def _class_code(ch: str, classical: bool) -> int:
    """The tone classes of `ch` as bits: 1 ping, 2 ze, 3 both, 0 none."""
    return sum(CLASS_BITS[c] for c in tone_classes(ch, classical))


def _opposite(a: int | np.ndarray, b: int) -> bool | np.ndarray:
    """Class codes that allow opposite readings: both known and not the same single class."""
    return (a != 0) & (b != 0) & ((a != b) | (a == 3))


def rule_checks(first: str, second: str, classical: bool = CLASSICAL_DEFAULT) -> dict[str, bool]:
    """The couplet rules, each True when `second` obeys it as an answer to `first`:
    length — the same number of characters; position — a Chinese character different from
    first[i] wherever first[i] is Chinese, the same character everywhere else (punctuation);
    repetition — over the Chinese positions, second[i] == second[j] ⇔ first[i] == first[j];
    tone — the last Chinese characters have opposite tone classes (classical by default, see
    the module docstring)."""
    same_length = len(first) == len(second)
    positions = chinese_positions(first)
    position = same_length and all(
        (is_chinese(b) and b != a) if is_chinese(a) else b == a
        for a, b in zip(first, second, strict=False))
    repetition = same_length and _pattern(first, positions) == _pattern(second, positions)
    tone = tones_opposite(_last_chinese(first), _last_chinese(second), classical)
    return {"length": same_length, "position": position, "repetition": repetition,
            "tone": tone}


@lru_cache(maxsize=8)
def _vocab_table(tokens: tuple[str, ...],
                 classical: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids of the Chinese-character tokens, each token's column among them or -1, their tone
    class codes)."""
    ids = [i for i, t in enumerate(tokens)
           if i not in (Vocab.PAD, Vocab.UNK) and is_chinese(t)]
    column = np.full(len(tokens), -1, dtype=np.int64)
    column[ids] = np.arange(len(ids))
    tones = [_class_code(tokens[i], classical) for i in ids]
    return np.asarray(ids, dtype=np.int64), column, np.asarray(tones, dtype=np.int64)


def _as_matrix(first: str, log_probs: object, vocab: Vocab) -> np.ndarray:
    if not isinstance(first, str) or not first:
        raise BadInputError(f"the first line must be a non-empty string, got {first!r}")
    if isinstance(log_probs, torch.Tensor):  # cast by numpy below: torch's wakes its threads
        t = log_probs.detach().cpu()
        log_probs = (t if t.dtype in (torch.float32, torch.float64) else t.float()).numpy()
    try:
        scores = np.asarray(log_probs, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInputError("log_probs must be a numeric (L, V) tensor") from None
    if scores.shape != (len(first), len(vocab)):
        raise BadInputError(f"log_probs has shape {tuple(scores.shape)}; decoding {first!r} "
                            f"needs ({len(first)}, {len(vocab)}) = (line length, vocabulary)")
    if np.isnan(scores).any() or np.isposinf(scores).any():
        raise BadInputError("log_probs holds NaN or +inf; pass the model's log-softmax")
    return scores


def _check_options(n: object, tone_weight: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BadInputError(f"n must be an integer >= 1, got {n!r}")
    if not isinstance(tone_weight, int | float) or not math.isfinite(tone_weight) \
            or tone_weight < 0:
        raise BadInputError(f"tone_weight must be a finite number >= 0, got {tone_weight!r}")


def _groups(first: str) -> list[list[int]]:
    """The Chinese positions of `first` grouped by character, in order of first occurrence."""
    groups: dict[str, list[int]] = {}
    for i in chinese_positions(first):
        groups.setdefault(first[i], []).append(i)
    return list(groups.values())


def _group_scores(first: str, scores: np.ndarray, vocab: Vocab, groups: list[list[int]],
                  classical: bool, tone_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token ids (A,), log-prob sums s_g (m, A), tone bonus (m, A)); forbidden entries -inf."""
    ids, column, tones = _vocab_table(tuple(vocab.tokens), classical)
    allowed = scores[:, ids]
    logp = np.stack([allowed[g].sum(axis=0) for g in groups])
    for row, g in enumerate(groups):
        own = column[vocab.id(first[g[0]])]
        if own >= 0:
            logp[row, own] = -np.inf
    bonus = np.zeros_like(logp)
    last = max(chinese_positions(first))
    if tone_weight > 0:
        row = next(r for r, g in enumerate(groups) if last in g)
        bonus[row] = tone_weight * _opposite(tones, _class_code(first[last], classical))
    return ids, logp, bonus


def _top_k(row: np.ndarray, k: int) -> np.ndarray:
    """The ids of the k largest finite entries of `row`, ties at the boundary by smallest id."""
    finite = np.isfinite(row).sum()
    if finite <= k:
        return np.flatnonzero(np.isfinite(row))
    threshold = -np.partition(-row, k - 1)[k - 1]
    above = np.flatnonzero(row > threshold)
    return np.concatenate([above, np.flatnonzero(row == threshold)[:k - len(above)]])


def _candidate_columns(weights: np.ndarray, k: int) -> np.ndarray:
    """The union of each row's k best finite columns, sorted."""
    return np.unique(np.concatenate([_top_k(row, k) for row in weights]))


def _solve(weights: np.ndarray, fixed: tuple[tuple[int, int], ...],
           banned: frozenset[tuple[int, int]]) -> tuple[int, ...] | None:
    """The best assignment of rows to distinct columns with the `fixed` (row, column) pairs kept
    and the `banned` ones excluded; None when none is feasible."""
    m, c = weights.shape
    fixed_rows = dict(fixed)
    rows = [r for r in range(m) if r not in fixed_rows]
    free = np.ones(c, dtype=bool)
    free[list(fixed_rows.values())] = False
    cols = np.flatnonzero(free)
    sub = weights[np.ix_(rows, cols)]
    row_at = {r: k for k, r in enumerate(rows)}
    for r, col in banned:
        if r in row_at and free[col]:
            sub[row_at[r], np.searchsorted(cols, col)] = -np.inf
    try:
        rr, cc = linear_sum_assignment(-sub)
    except ValueError:  # scipy: "cost matrix is infeasible"
        return None
    if len(rr) < len(rows) or not np.isfinite(sub[rr, cc]).all():
        return None
    assignment = dict(fixed_rows)
    assignment.update({rows[i]: int(cols[j]) for i, j in zip(rr, cc, strict=True)})
    return tuple(assignment[r] for r in range(m))


def _total(weights: np.ndarray, assignment: tuple[int, ...]) -> float:
    return math.fsum(weights[r, col] for r, col in enumerate(assignment))


def k_best_assignments(weights: np.ndarray, n: int) -> list[tuple[float, tuple[int, ...]]]:
    """The n best assignments of the rows of `weights` (m, C) to distinct columns, maximising
    Σ_r weights[r, a_r] (-inf = forbidden), as (total, a) best first; fewer when fewer exist.
    Murty's method: exact; deterministic, also in the order of equal totals."""
    best = _solve(weights, (), frozenset())
    heap = [] if best is None else [(-_total(weights, best), best, (), frozenset())]
    found: list[tuple[float, tuple[int, ...]]] = []
    while heap and len(found) < n:
        neg_total, a, fixed, banned = heapq.heappop(heap)
        found.append((-neg_total, a))
        fixed_rows = dict(fixed)
        for r in (r for r in range(len(a)) if r not in fixed_rows):
            child = _solve(weights, fixed, banned | {(r, a[r])})
            if child is not None:
                heapq.heappush(heap, (-_total(weights, child), child, fixed, banned | {(r, a[r])}))
            fixed = (*fixed, (r, a[r]))
    return found


def decode(first: str, log_probs: torch.Tensor, vocab: Vocab, n: int = 1, *,
           tone_weight: float = TONE_WEIGHT,
           classical: bool = CLASSICAL_DEFAULT) -> list[Candidate]:
    """The n best answers to `first` under the couplet rules (module docstring), best first.

    log_probs: (len(first), len(vocab)) per-position log-softmax of the model. Punctuation and
    other non-Chinese characters are copied; each Chinese position gets a Chinese vocabulary
    character other than first[i]; repeated characters of `first` map to one repeated answer
    character, distinct ones to distinct characters; `tone_weight` nats reward a last character
    that can take the tone class opposite to the first line's. Fewer than n only when fewer
    valid answers exist."""
    scores = _as_matrix(first, log_probs, vocab)
    _check_options(n, tone_weight)
    groups = _groups(first)
    if not groups:
        raise BadInputError(f"{first!r} has no Chinese character to answer")
    ids, logp, bonus = _group_scores(first, scores, vocab, groups, classical, tone_weight)
    columns = _candidate_columns(logp + bonus, len(groups) + n - 1)
    found = k_best_assignments((logp + bonus)[:, columns], n)
    if not found:
        raise BadInputError(f"the vocabulary has too few allowed characters to answer {first!r} "
                            "with distinct characters")
    logp = logp[:, columns]
    return [_candidate(first, groups, ids[columns][list(a)], _total(logp, a), score, classical,
                       vocab) for score, a in found]


def _candidate(first: str, groups: list[list[int]], tokens: np.ndarray, log_prob: float,
               score: float, classical: bool, vocab: Vocab) -> Candidate:
    chars = list(first)
    for g, token in zip(groups, tokens, strict=True):
        for i in g:
            chars[i] = vocab.tokens[int(token)]
    text = "".join(chars)
    return Candidate(text, log_prob, score, rule_checks(first, text, classical))
