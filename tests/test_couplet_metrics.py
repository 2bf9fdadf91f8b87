"""genshop.couplet.metrics (kexue.fm 6270): held-out metrics against hand-counted values, BLEU
against the BLEU formula with hand-counted n-gram matches, and the two baselines."""

from __future__ import annotations

import math

import pytest
import sacrebleu
import torch

from genshop.couplet.decode import decode
from genshop.couplet.metrics import (
    corpus_bleu,
    evaluate_answers,
    most_frequent_baseline,
    nearest_neighbour_baseline,
)
from genshop.couplet.tones import tone_class
from genshop.couplet.vocab import Vocab
from genshop.errors import BadInputError


def test_bleu_equals_the_formula_with_hand_counted_ngrams():
    refs = ["晨露润花花更红", "夜雨敲窗寒"]
    hyps = ["夜雨敲花花更香", "夜雨敲窗声"]
    # matches / hypothesis n-grams, both lines together (hyp and ref lengths 12 = 12: BP = 1)
    # 1: (花 花 更) + (夜 雨 敲 窗) = 7/12; 2: (花花 花更) + (夜雨 雨敲 敲窗) = 5/10;
    # 3: (花花更) + (夜雨敲 雨敲窗) = 3/8;  4: 0 + (夜雨敲窗) = 1/6
    expected = 100 * (7 / 12 * 5 / 10 * 3 / 8 * 1 / 6) ** 0.25
    assert corpus_bleu(refs, hyps) == pytest.approx(expected, rel=1e-9)
    assert corpus_bleu(refs, hyps, max_order=2) == pytest.approx(100 * (7 / 12 * 5 / 10) ** 0.5)
    assert evaluate_answers(refs, refs, hyps)["bleu"] == pytest.approx(expected, rel=1e-9)


def test_bleu_brevity_penalty_and_tokenizer_agreement():
    # every n-gram of the 4-character answer matches; BP = exp(1 - 5/4)
    assert corpus_bleu(["夜雨敲窗寒"], ["夜雨敲窗"]) == pytest.approx(100 * math.exp(-0.25))
    refs, hyps = ["晨露润花花更红", "夜雨敲窗寒"], ["夜雨敲花花更香", "夜雨敲窗声"]
    for tokenize in ("zh", "char"):
        other = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score
        assert corpus_bleu(refs, hyps) == pytest.approx(other, rel=1e-12)


def test_char_accuracy_counts_chinese_positions_only():
    firsts = ["晚风摇树树还挺", "天，地"]
    refs = ["晨露润花花更红", "人，和"]
    answers = ["夜雨敲花花更红", "人，山"]
    result = evaluate_answers(firsts, refs, answers)
    assert result["char_accuracy"] == pytest.approx(5 / 9)        # 花 花 更 红 + 人
    assert result["violations"] == 0 and result["n"] == 2


def test_tone_shares_by_hand():
    firsts, answers = ["天风", "山水", "春来"], ["月雨", "花云", "秋归"]
    classes = {c: tone_class(c, classical=True) for c in "天风山水春来月雨花云秋归"}
    assert classes == {"天": "ping", "风": "ping", "山": "ping", "水": "ze", "春": "ping",
                       "来": "ping", "月": "ze", "雨": "ze", "花": "ping", "云": "ping",
                       "秋": "ping", "归": "ping"}
    result = evaluate_answers(firsts, answers, answers)
    assert result["tone_last"] == pytest.approx(2 / 3)           # 风/雨, 水/云; not 来/归
    assert result["tone_positions"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert result["char_accuracy"] == 1.0
    assert result["bleu"] == 0.0            # two-character lines have no 3- or 4-grams


def test_violations_and_repetition_agreement_by_hand():
    firsts = ["晚风摇树树还挺", "天雨", "水云", "山山"]
    answers = ["晨露润花草更红",   # repetition fails: 1
               "天风",             # position fails: 1
               "山",               # length, position, repetition fail: 3
               "水水"]             # fine
    result = evaluate_answers(firsts, firsts, answers)
    assert result["violations"] == 5
    assert result["repetition_agreement"] == pytest.approx(2 / 4)


def test_decoder_answers_have_no_violations():
    vocab = Vocab(["<pad>", "<unk>", *"天风树花雨山水月云日"])
    firsts = ["天风树树", "山水山水", "月，花"]
    g = torch.Generator().manual_seed(0)
    answers = [decode(f, torch.randn(len(f), len(vocab), generator=g), vocab)[0].text
               for f in firsts]
    assert evaluate_answers(firsts, firsts, answers)["violations"] == 0


@pytest.mark.parametrize("args", [([], [], []), (["天"], ["地"], []), (["天"], [None], ["地"])])
def test_bad_input(args):
    with pytest.raises(BadInputError):
        evaluate_answers(*args)


TRAIN = [("天风", "月雨"), ("山水", "月云"), ("花草", "日云"), ("江海", "云月"), ("石木", "月风")]


def test_most_frequent_baseline_by_hand():
    # counts: position 0: 月 3, 日 1, 云 1; position 1: 云 2, 雨 1, 月 1, 风 1
    answer = most_frequent_baseline(TRAIN, tone_weight=0.0)
    assert answer("江河") == "月云"
    assert answer("月河") == "日云"      # 月 is forbidden at 0; 日 and 云 tie at 0, 云 wins at 1
    assert answer("江江") == "月月"      # one group: 月 (3+1)(1+1) = 8 beats 云 (1+1)(2+1) = 6
    # unseen length: counts over all positions (月 4, 云 3, 日 雨 风 1; ties by vocabulary order)
    assert sorted(answer("江河山")) == sorted("月云日")
    # the tone bonus: 河 is 平, 月 is 仄: 日云 (2·3) loses to 日月 and 云月 (2·2·e, a tie)
    assert most_frequent_baseline(TRAIN, tone_weight=1.0)("月河") in {"日月", "云月"}


def test_nearest_neighbour_baseline_by_hand():
    train = [("晚风摇树树还挺", "晨露润花花更红"), ("春风拂柳柳含烟", "夜雨敲窗窗有声"),
             ("天高", "地厚")]
    answer = nearest_neighbour_baseline(train)
    assert answer("晚风摇树树还挺") == "晨露润花花更红"
    # 春风拂树树还挺: pair 1 has 5 position matches + 3 bigrams (树树 树还 还挺) = 8;
    # pair 2 has 3 matches + 2 bigrams (春风 风拂) = 5
    assert answer("春风拂树树还挺") == "晨露润花花更红"
    # 春风拂柳柳还挺: pair 1: 4 + 1 (还挺) = 5; pair 2: 5 + 4 (春风 风拂 拂柳 柳柳) = 9
    assert answer("春风拂柳柳还挺") == "夜雨敲窗窗有声"
    assert answer("天地人") == "地厚地"       # nearest length 2, cycled to 3
    assert answer("一二三四五") == "晨露润花花"  # nearest length 7 (distance 2 < 3), cut
