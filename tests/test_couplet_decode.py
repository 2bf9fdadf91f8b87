"""genshop.couplet.tones and .decode (kexue.fm 6270): tone classes, rule checks, and the
constrained n-best decoding against brute force over every string of a tiny vocabulary."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from genshop.couplet.decode import (
    Candidate,
    decode,
    k_best_assignments,
    rule_checks,
    tones_opposite,
)
from genshop.couplet.tones import is_chinese, pinyin, tone_class, tone_classes
from genshop.couplet.vocab import Vocab
from genshop.errors import BadInputError

CHARS = "天风树花雨山水月"        # 8 answer characters
VOCAB = Vocab(["<pad>", "<unk>", *CHARS, "，", "a"])


def vocab_of(chars: str) -> Vocab:
    return Vocab(["<pad>", "<unk>", *chars])


def random_log_probs(length: int, vocab: Vocab, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(length, len(vocab), generator=g, dtype=torch.float64).log_softmax(-1)


def brute_force(first: str, log_probs: torch.Tensor, vocab: Vocab, n: int,
                tone_weight: float) -> list[tuple[str, float]]:
    """The n best strings by enumerating every assignment of a Chinese vocabulary character to
    every Chinese position and filtering by the rules, position by position (no groups)."""
    lp = log_probs.numpy()
    allowed = [i for i, t in enumerate(vocab.tokens) if i > 1 and is_chinese(t)]
    free = [i for i, ch in enumerate(first) if is_chinese(ch)]
    grid = np.array(list(itertools.product(allowed, repeat=len(free))))
    ok = np.ones(len(grid), dtype=bool)
    for j, p in enumerate(free):
        ok &= grid[:, j] != vocab.id(first[p])
        for k, q in enumerate(free[:j]):
            ok &= (grid[:, j] == grid[:, k]) == (first[p] == first[q])
    last = tone_classes(first[free[-1]], classical=True)
    bonus = {i: tone_weight * any(a != b for a in last
                                  for b in tone_classes(vocab.tokens[i], classical=True))
             for i in allowed}
    score = lp[free, grid].sum(axis=1) + np.array([bonus[i] for i in grid[:, -1]])
    best = [k for k in np.argsort(-score, kind="stable") if ok[k]][:n]
    answers = []
    for k in best:
        chars = list(first)
        for j, p in enumerate(free):
            chars[p] = vocab.tokens[grid[k, j]]
        answers.append(("".join(chars), float(score[k])))
    return answers


# --- tones ------------------------------------------------------------------------------------

def test_entering_tone_characters_are_ze_classically_but_not_in_mandarin():
    assert [tone_class(c, classical=True) for c in "十白月国國"] == ["ze"] * 5
    assert [tone_class(c) for c in "十白月国"] == ["ping", "ping", "ze", "ping"]


def test_modern_and_classical_classes_of_plain_characters():
    assert [tone_class(c) for c in "天晚风还挺红"] == ["ping", "ze", "ping", "ping", "ze", "ping"]
    assert [tone_class(c, classical=True) for c in "天晚风挺红"] == [
        "ping", "ze", "ping", "ze", "ping"]
    # listed under both classes (看) or not listed (她, a later character): the modern class
    assert tone_class("看", classical=True) == tone_class("看") == "ze"
    assert tone_class("她", classical=True) == tone_class("她") == "ping"


def test_characters_listed_under_both_classes():
    both = frozenset({"ping", "ze"})
    assert tone_classes("长", classical=True) == tone_classes("看", classical=True) == both
    assert tone_classes("长") == {"ze"}                      # pypinyin's zhǎng
    assert tone_classes("白", classical=True) == {"ze"} and tone_classes("白") == {"ping"}
    # 先 (also 去声 霰) names its own rhyme 下平一先, which the package's list leaves out
    assert tone_classes("先", classical=True) == both
    assert tones_opposite("看", "月") and not tones_opposite("看", "月", classical=False)
    assert tones_opposite("看", "看") and not tones_opposite("白", "月")
    assert not tones_opposite("天", "，") and not tones_opposite("天", None)


def test_non_chinese_characters_have_no_tone_and_no_pinyin():
    for ch in "，。a1 ":
        assert tone_class(ch) is None and tone_class(ch, classical=True) is None
        assert tone_classes(ch, classical=True) == frozenset()
        assert pinyin(ch) == ""
    assert pinyin("晚") == "wǎn" and pinyin("风") == "fēng"


@pytest.mark.parametrize("bad", ["", "天风", 3, None])
def test_tone_class_wants_one_character(bad):
    with pytest.raises(BadInputError):
        tone_class(bad)


# --- rule checks ------------------------------------------------------------------------------

def test_rule_checks_on_real_couplets():
    assert rule_checks("晚风摇树树还挺", "晨露润花花更红") == dict.fromkeys(
        ["length", "position", "repetition", "tone"], True)
    # Du Fu: 白 is entering tone (仄) classically, level in Mandarin, like 明
    assert rule_checks("露从今夜白", "月是故乡明")["tone"] is True
    assert rule_checks("露从今夜白", "月是故乡明", classical=False)["tone"] is False


@pytest.mark.parametrize("second, failed", [
    ("晨露润花草更红", {"repetition"}),           # 树树 -> 花草: repeat not mirrored
    ("晨露花花花更红", {"repetition"}),           # 摇 ≠ 树 but 花 = 花
    ("晚露润花花更红", {"position"}),             # 晚 at position 0 again
    ("晨露润花花更好", {"tone"}),                 # 挺 仄, 好 仄
    ("晨露润花花好", {"length", "position", "repetition", "tone"}),
])
def test_rule_checks_catch_each_failure(second, failed):
    checks = rule_checks("晚风摇树树还挺", second)
    assert {k for k, ok in checks.items() if not ok} == failed


def test_punctuation_must_be_copied():
    assert rule_checks("风来，雨去", "云散，花开")["position"] is True
    assert rule_checks("风来，雨去", "云散。花开")["position"] is False
    assert rule_checks("风来，雨去", "云散花花开")["position"] is False


# --- decoding: hand-built matrices ------------------------------------------------------------

def hand_matrix(vocab: Vocab, first: str, entries: dict[tuple[int, str], float]) -> torch.Tensor:
    lp = torch.full((len(first), len(vocab)), -20.0, dtype=torch.float64)
    for (i, ch), value in entries.items():
        lp[i, vocab.id(ch)] = value
    return lp


def test_repeated_characters_are_mirrored_by_the_assignment_not_the_argmax():
    vocab = vocab_of("晚风摇树还挺夜雨敲花叶更香")
    first = "晚风摇树树还挺"
    lp = hand_matrix(vocab, first, {
        (0, "夜"): -0.1, (1, "雨"): -0.1, (2, "敲"): -0.1, (5, "更"): -0.1, (6, "香"): -0.1,
        (3, "花"): -0.1, (3, "叶"): -3.0,      # group {3, 4}: 花 -1.1, 叶 -3.2
        (4, "叶"): -0.2, (4, "花"): -1.0,      # alone, position 4 would take 叶
        (0, "晚"): 0.0, (6, "挺"): 0.0,        # the input's own characters: forbidden
    })
    best = decode(first, lp, vocab, tone_weight=0.0)[0]
    assert best.text == "夜雨敲花花更香"
    assert best.log_prob == pytest.approx(-0.1 * 5 - 1.1)
    assert best.checks == dict.fromkeys(["length", "position", "repetition", "tone"], True)


def test_distinct_characters_stay_distinct():
    vocab = vocab_of("晚风雨夜露")
    lp = hand_matrix(vocab, "晚风", {(0, "雨"): -0.1, (0, "夜"): -1.0,
                                     (1, "雨"): -0.2, (1, "露"): -2.0})
    assert [c.text for c in decode("晚风", lp, vocab, n=2, tone_weight=0.0)] == ["夜雨", "雨露"]


def test_tone_bonus_flips_the_last_character_only_when_large_enough():
    vocab = vocab_of("天风花月")
    lp = hand_matrix(vocab, "天风", {(0, "月"): -0.1, (1, "花"): -0.1, (1, "月"): -1.0,
                                     (0, "花"): -3.0})
    # 风 is 平: 花 (平) keeps the tone, 月 (仄) opposes it. 月花 -0.2; 花月 -4.0 + bonus
    assert decode("天风", lp, vocab, tone_weight=0.5)[0].text == "月花"
    flipped = decode("天风", lp, vocab, tone_weight=4.0)[0]
    assert flipped.text == "花月"
    assert flipped.log_prob == pytest.approx(-4.0) and flipped.score == pytest.approx(0.0)
    assert flipped.checks["tone"] is True


def test_punctuation_is_copied_and_never_chosen():
    first = "天，风a"
    lp = random_log_probs(len(first), VOCAB, seed=3)
    lp[:, VOCAB.id("，")] = 5.0                # the model loves the comma everywhere
    for cand in decode(first, lp, VOCAB, n=4):
        assert cand.text[1] == "，" and cand.text[3] == "a"
        assert all(is_chinese(cand.text[i]) for i in (0, 2))
        assert cand.checks["position"] and cand.checks["length"]


def test_never_pad_unk_or_the_same_character():
    first = "天风树树"
    lp = random_log_probs(len(first), VOCAB, seed=4)
    lp[:, [VOCAB.PAD, VOCAB.UNK]] = 10.0
    lp[torch.arange(4), torch.tensor(VOCAB.encode(first))] = 10.0
    for cand in decode(first, lp, VOCAB, n=10):
        assert all(cand.text[i] != first[i] for i in range(4))
        assert "<" not in cand.text and "□" not in cand.text
        assert cand.checks["repetition"] and cand.text[2] == cand.text[3]


# --- decoding against brute force -------------------------------------------------------------

@pytest.mark.parametrize("first, vocab, n, seed", [
    ("天风树树月", VOCAB, 8, 0),               # K = 4 + 8 - 1 = 11 > 8: no pruning
    ("山水山水", VOCAB, 5, 1),                 # two groups, K = 6 < 8: pruning active
    ("天风，月", VOCAB, 6, 2),
    ("雨天天天", VOCAB, 3, 5),
    ("天风树花", vocab_of("天风树花雨山水月云日星江河湖"), 6, 6),  # 14 chars, K = 9
    ("天风树看", vocab_of("天风树看长好月花"), 6, 8),   # 看 长: both classes classically
])
def test_n_best_equals_brute_force(first, vocab, n, seed):
    lp = random_log_probs(len(first), vocab, seed)
    for weight in (0.0, 0.7):
        got = decode(first, lp, vocab, n=n, tone_weight=weight)
        want = brute_force(first, lp, vocab, n, weight)
        assert [c.text for c in got] == [t for t, _ in want]
        np.testing.assert_allclose([c.score for c in got], [s for _, s in want], rtol=1e-12)
        assert len({c.text for c in got}) == n
        assert all(a.score >= b.score for a, b in itertools.pairwise(got))


def test_k_best_assignments_match_all_permutations():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((3, 5))
    w[0, 1] = w[2, 4] = -np.inf
    totals = sorted((sum(w[r, c] for r, c in enumerate(p)), p)
                    for p in itertools.permutations(range(5), 3))[::-1]
    finite = [(t, p) for t, p in totals if math.isfinite(t)]
    got = k_best_assignments(w, 100)
    assert len(got) == len(finite) == 60 - 12 - 12 + 3
    assert [a for _, a in got] == [p for _, p in finite]
    np.testing.assert_allclose([t for t, _ in got], [t for t, _ in finite], rtol=1e-12)


def test_fewer_answers_when_fewer_exist():
    vocab = vocab_of("天风雨")
    got = decode("天", random_log_probs(1, vocab, 0), vocab, n=5)
    assert sorted(c.text for c in got) == ["雨", "风"]


def test_deterministic_even_with_ties():
    lp = torch.zeros(5, len(VOCAB))
    runs = [[(c.text, c.score) for c in decode("天风树树月", lp, VOCAB, n=6)] for _ in range(2)]
    assert runs[0] == runs[1]
    assert len({t for t, _ in runs[0]}) == 6


def test_candidate_fields():
    cand = decode("天风", random_log_probs(2, VOCAB, 9), VOCAB)[0]
    assert isinstance(cand, Candidate) and len(cand.text) == 2
    assert set(cand.checks) == {"length", "position", "repetition", "tone"}


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("first, lp, kwargs", [
    ("天风", torch.zeros(3, len(VOCAB)), {}),                 # wrong length
    ("天风", torch.zeros(2, len(VOCAB) + 1), {}),             # wrong vocabulary size
    ("天风", torch.zeros(1, 2, len(VOCAB)), {}),              # 3-D
    ("天风", torch.full((2, len(VOCAB)), float("nan")), {}),
    ("", torch.zeros(0, len(VOCAB)), {}),
    ("，，", torch.zeros(2, len(VOCAB)), {}),                 # nothing Chinese to answer
    ("天风", torch.zeros(2, len(VOCAB)), {"n": 0}),
    ("天风", torch.zeros(2, len(VOCAB)), {"n": True}),
    ("天风", torch.zeros(2, len(VOCAB)), {"tone_weight": -1.0}),
    ("天风", torch.zeros(2, len(VOCAB)), {"tone_weight": float("inf")}),
])
def test_bad_input_raises(first, lp, kwargs):
    with pytest.raises(BadInputError):
        decode(first, lp, VOCAB, **kwargs)


def test_too_small_vocabulary_raises():
    vocab = vocab_of("雨")                    # two distinct characters need two answers
    with pytest.raises(BadInputError, match="too few"):
        decode("天风", torch.zeros(2, len(vocab)), vocab)
