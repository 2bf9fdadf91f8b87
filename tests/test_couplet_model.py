"""The couplet tagger (kexue.fm 6270): gated block by hand, receptive field, padding mask, the
family through the engine (overfit, exact resume, bucket sampler), the bot and the CLI."""

import json
import math
from pathlib import Path

import pytest
import torch

from genshop.cli import main
from genshop.commands.couplet import PROBES
from genshop.couplet.bot import (
    ASSETS,
    CoupletBot,
    Reply,
    check_line,
    evaluate,
    load_bot,
    load_pretrained,
    load_run_bot,
    tiny_bot,
)
from genshop.couplet.model import (
    MAX_CHARS,
    PAD,
    UNK,
    CoupletNet,
    CoupletNetConfig,
    GatedResBlock,
    pad_rows,
    pair_loss,
    parameter_count,
    post_greedy,
)
from genshop.couplet.vocab import Vocab
from genshop.engine import configure, train
from genshop.errors import BadInputError, DataError
from genshop.families import StepInput
from genshop.families.couplet import CoupletFamily, PairData

TOY = [("晚风摇树树还挺", "晨露润花花更红"), ("鱼跃此时海", "鸟鸣何日人"),
       ("白日依山尽", "黄河入海流"), ("两岸猿声啼不住", "轻舟已过万重山"),
       ("明月松间照", "清泉石上流"), ("红豆生南国", "春来发几枝"), ("海上生明月", "天涯共此时"),
       ("山重水复疑无路", "柳暗花明又一村"), ("春眠不觉晓", "秋望总关情"), ("天高云淡", "地阔水长")]


def write_pairs(folder: Path, pairs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "in.txt").write_text("".join(" ".join(a) + "\n" for a, _ in pairs))
    (folder / "out.txt").write_text("".join(" ".join(b) + "\n" for _, b in pairs))
    return folder


def toy_folder(root: Path, pairs=TOY) -> Path:
    """train/ and valid/ both holding `pairs` (the overfit protocol)."""
    write_pairs(root / "train", pairs)
    write_pairs(root / "valid", pairs)
    return root


def toy_config(data: Path, out: Path, **options):
    base = {"data_dir": str(data), "steps": 300, "batch_size": 16, "log_every": 50, "dim": 64,
            "min_count": 1, "out": str(out), "checkpoint_every": 1000}
    return configure("couplet", **{**base, **options})


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "it_per_s"} for r in rows]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    config = toy_config(toy_folder(root / "data"), root / "run")
    train(config, progress=False)
    return root / "run"


# --- the net ------------------------------------------------------------------------------


def test_gated_block_matches_a_hand_computation():
    torch.manual_seed(0)
    block = GatedResBlock(dim=2, kernel=3)
    w = torch.randn(4, 2, 3).double()
    b = torch.randn(4).double()
    x = torch.randn(1, 2, 5).double()
    block.double()
    with torch.no_grad():
        block.conv.weight.copy_(w)
        block.conv.bias.copy_(b)
    y = block(x)[0]

    def conv(o: int, t: int) -> float:  # "same" padding: x is 0 outside 0..4
        return b[o].item() + sum(w[o, c, j].item() * x[0, c, t + j - 1].item()
                                 for c in range(2) for j in range(3) if 0 <= t + j - 1 < 5)

    for t in range(5):
        for ch in range(2):
            gate = 1 / (1 + math.exp(-conv(ch, t)))  # first d channels: the gate g
            cand = conv(2 + ch, t)  # last d channels: the candidate c
            hand = x[0, ch, t].item() * gate + cand * (1 - gate)
            assert y[ch, t].item() == pytest.approx(hand, abs=1e-12)


def test_an_open_gate_keeps_the_input_and_a_shut_gate_gives_the_candidate():
    block = GatedResBlock(dim=3).double()
    x = torch.randn(2, 3, 4).double()
    with torch.no_grad():
        block.conv.weight.zero_()
        block.conv.bias[:3] = 50.0  # g → +∞: σ(g) = 1, y = x
        block.conv.bias[3:] = torch.tensor([1.0, -2.0, 3.0]).double()
    torch.testing.assert_close(block(x), x, atol=1e-12, rtol=0)
    with torch.no_grad():
        block.conv.bias[:3] = -50.0  # σ(g) = 0, y = c = the bias of the candidate half
    assert torch.allclose(block(x), torch.tensor([1.0, -2.0, 3.0]).double()[None, :, None]
                          .expand(2, 3, 4), atol=1e-12)


def test_shapes_and_the_posts_parameter_count():
    v = 50
    net = CoupletNet(CoupletNetConfig(v))
    assert net(torch.randint(2, v, (3, 9))).shape == (3, 9, v)
    per_block = 3 * 128 * 256 + 256
    assert per_block == 98_560  # the post's table
    assert parameter_count(net) == v * 128 + 6 * per_block + 128 * v + v
    assert parameter_count(CoupletNet(CoupletNetConfig(v, directions=2))) == \
        parameter_count(net) + 2 * 128


def test_the_transformer_parameter_count():
    """Embedding, positions, per layer 2 LayerNorms + attention (4 d×d maps with biases) +
    FF (d → 4d → d), the final LayerNorm and the output layer."""
    v, d, layers = 50, 32, 3
    net = CoupletNet(CoupletNetConfig.transformer(v, dim=d, blocks=layers, heads=4))
    per_layer = 2 * 2 * d + 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    assert parameter_count(net) == v * d + MAX_CHARS * d + layers * per_layer + 2 * d \
        + d * v + v
    assert net(torch.randint(2, v, (3, 9))).shape == (3, 9, v)


@pytest.mark.parametrize(("config", "reach"), [
    (CoupletNetConfig(40), 6), (CoupletNetConfig.dilated(40), 31),
    (CoupletNetConfig.transformer(40, dim=16), MAX_CHARS - 1)])
def test_receptive_field(config, reach):
    """Output i depends on input j exactly when |i − j| ≤ (receptive field − 1) / 2."""
    assert config.receptive_field == 2 * reach + 1
    torch.manual_seed(1)
    net = CoupletNet(config).eval()
    ids = torch.randint(2, 40, (1, 40))
    base = net(ids)[0]
    changed = ids.clone()
    changed[0, 20] = 2 if ids[0, 20] != 2 else 3
    moved = (net(changed)[0] - base).abs().amax(-1) > 1e-7
    assert moved.tolist() == [abs(i - 20) <= reach for i in range(40)]


@pytest.mark.parametrize("config", [CoupletNetConfig(30, dim=16),
                                    CoupletNetConfig.transformer(30, dim=16, blocks=2)])
def test_padding_does_not_change_the_real_positions(config):
    torch.manual_seed(2)
    net = CoupletNet(config).eval()
    lines = [[5, 6, 7], [8, 9, 10, 11, 12], [3, 4, 5, 6, 7, 8, 9]]
    batch = net(pad_rows(lines))
    for i, line in enumerate(lines):
        alone = net(torch.tensor([line]))[0]
        torch.testing.assert_close(batch[i, :len(line)], alone, atol=1e-5, rtol=1e-5)
    # the same batch padded with a real token instead of PAD does change them: the mask matters
    filled = pad_rows(lines).masked_fill(pad_rows(lines) == PAD, 13)
    assert (net(filled)[0, :3] - batch[0, :3]).abs().max() > 1e-3


def test_post_greedy_skips_pad_unk_and_the_inputs_own_character():
    logits = torch.tensor([[[9.0, 8.0, 7.0, 1.0, 0.0], [9.0, 8.0, 0.0, 7.0, 5.0]]])
    ids = torch.tensor([[2, 3]])
    assert post_greedy(logits, ids).tolist() == [[3, 4]]  # not PAD, UNK, nor 2 / 3 in place
    assert post_greedy(logits, torch.tensor([[4, 4]])).tolist() == [[2, 3]]


# --- data and family ------------------------------------------------------------------------


def test_buckets_are_drawn_in_proportion_to_their_size_and_reproducibly():
    pairs = [("一二三四五", "六七八九十")] * 30 + [("甲乙丙丁戊己庚", "子丑寅卯辰巳午")] * 10
    data = PairData.from_splits("toy", {"train": pairs, "valid": pairs[:1]}, min_count=1)
    gen = torch.Generator().manual_seed(0)
    lengths = [data.sample(4, gen).shape[-1] for _ in range(2000)]
    assert abs(lengths.count(5) / 2000 - 0.75) < 0.04  # 4 standard errors
    assert set(lengths) == {5, 7}
    a = data.sample(8, torch.Generator().manual_seed(5))
    assert torch.equal(a, data.sample(8, torch.Generator().manual_seed(5)))
    assert a.dtype == torch.long and a.shape[:2] == (8, 2) and (a != PAD).all()


@pytest.mark.parametrize("direction", ["forward", "reverse", "both"])
def test_a_step_learns_the_pairs_in_the_runs_direction(tmp_path, direction):
    """forward: 上联 → 下联; reverse: the pairs swapped; both: odd rows swapped, flagged."""
    pairs = [("一二三四五", "六七八九十"), ("甲乙丙丁戊", "子丑寅卯辰")] * 5
    data = PairData.from_splits("toy", {"train": pairs, "valid": pairs[:2]}, min_count=1)
    config = configure("couplet", data_dir=str(tmp_path), dim=16, blocks=1, dropout=0.0,
                       direction=direction, out=str(tmp_path / "r"))
    torch.manual_seed(0)
    family = CoupletFamily(config, data, torch.device("cpu"))
    batch = data.train.batch(4, torch.Generator().manual_seed(1))
    x, y = batch.x, batch.y
    odd = (torch.arange(4) % 2 == 1)[:, None]
    first, second, rev = {"forward": (x, y, None), "reverse": (y, x, None),
                          "both": (torch.where(odd, y, x), torch.where(odd, x, y),
                                   odd[:, 0])}[direction]
    with torch.no_grad():
        expected = pair_loss(family.net, torch.stack([first, second], 1), rev).item()
        swapped = pair_loss(family.net, torch.stack([second, first], 1), rev).item()
    got = family.train_step(StepInput.of(batch, torch.Generator()))["loss"]
    assert got == pytest.approx(expected, rel=1e-6) and abs(got - swapped) > 1e-4


def test_a_folder_without_validation_data_is_refused(tmp_path):
    write_pairs(tmp_path / "d", TOY[:5])  # fewer than 10 pairs: nothing held out
    with pytest.raises(DataError, match="no validation pairs"):
        train(toy_config(tmp_path / "d", tmp_path / "r", steps=2), progress=False)


def test_the_tagger_learns_ten_toy_pairs(toy_run):
    last = metrics(toy_run)[-1]
    assert last["step"] == 300 and last["valid_char_accuracy"] == 1.0
    assert metrics(toy_run)[0]["valid_loss"] > 10 * last["valid_loss"]
    bot = load_run_bot(toy_run)
    assert [r.second for r in bot.answer_many([a for a, _ in TOY])] == [b for _, b in TOY]
    best = json.loads((toy_run / "best.json").read_text())
    assert best["valid_char_accuracy"] == 1.0 and best["step"] <= 300


def test_the_transformer_learns_ten_toy_pairs_and_the_bot_reads_it(tmp_path):
    config = toy_config(toy_folder(tmp_path / "data"), tmp_path / "run", arch="transformer",
                        blocks=2, dim=32, dropout=0.1, steps=250)
    train(config, progress=False)
    assert metrics(tmp_path / "run")[-1]["valid_char_accuracy"] == 1.0
    bot = load_run_bot(tmp_path / "run")
    assert bot.net.config.kind == "transformer"
    assert [r.second for r in bot.answer_many([a for a, _ in TOY])] == [b for _, b in TOY]


def test_transformer_heads_must_divide_the_width(tmp_path, capsys):
    data = toy_folder(tmp_path / "data")
    argv = ["train", "couplet", "--data-dir", str(data), "--arch", "transformer", "--dim", "30",
            "--heads", "4", "--min-count", "1", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--heads 4" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("arch", ["post", "transformer"])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, arch):
    data = toy_folder(tmp_path / "data")
    options = {"steps": 30, "log_every": 5, "checkpoint_every": 10, "direction": "both",
               "arch": arch, "blocks": 2 if arch == "transformer" else 6}
    train(toy_config(data, tmp_path / "a", **options), progress=False)
    train(toy_config(data, tmp_path / "b", **{**options, "steps": 15}), progress=False)
    train(toy_config(data, tmp_path / "b", **options), resume=True, progress=False)
    a, b = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=True) for r in "ab")
    for k, v in a["models"]["net"].items():
        assert torch.equal(v, b["models"]["net"][k]), k
    assert a["family_state"] == b["family_state"]
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert (tmp_path / "a" / "best.safetensors").read_bytes() == \
        (tmp_path / "b" / "best.safetensors").read_bytes()
    # and the run did learn something between the cut and the end
    assert metrics(tmp_path / "a")[-1]["valid_loss"] < metrics(tmp_path / "a")[2]["valid_loss"]


# --- the bot ------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["晚风摇树树还挺", "科学空间", "春风，得意！", "天"])
def test_a_reply_is_as_long_as_the_line(line):
    reply = tiny_bot().answer(line, n=3)
    assert isinstance(reply, Reply) and reply.first == line
    assert len(reply.second) == len(line)
    assert reply.alternatives[0].text == reply.second
    texts = [c.text for c in reply.alternatives]
    assert len(set(texts)) == len(texts) and all(len(t) == len(line) for t in texts)
    assert [c.score for c in reply.alternatives] == sorted(
        (c.score for c in reply.alternatives), reverse=True)


def test_one_batched_forward_gives_what_single_lines_give():
    bot = tiny_bot(1)
    lines = ["晚风摇树树还挺", "科学空间", "鱼跃此时海"]
    together = bot.log_probs(lines)
    for line, lp in zip(lines, together, strict=True):
        torch.testing.assert_close(lp, bot.log_probs([line])[0], atol=1e-5, rtol=1e-5)
    assert [r.second for r in bot.answer_many(lines, n=2)] == \
        [bot.answer(x, n=2).second for x in lines]
    assert not torch.allclose(bot.log_probs(lines[:1], reverse=True)[0], together[0])


def test_a_one_direction_bot_refuses_the_other_direction():
    both = tiny_bot()
    net = CoupletNet(CoupletNetConfig(len(both.vocab), dim=8, blocks=1))
    forward = CoupletBot(net, both.vocab, "forward")
    assert len(forward.answer("科学空间").second) == 4
    with pytest.raises(BadInputError, match="--direction both"):
        forward.answer("科学空间", reverse=True)
    with pytest.raises(BadInputError, match="1 to 20"):
        both.answer("科学空间", n=0)


def test_check_line():
    assert check_line("  晚风摇树树还挺\n") == "晚风摇树树还挺"
    assert check_line("天" * 64) == "天" * 64
    for bad, why in [(None, "text"), (7, "text"), ("", "empty"), (" \t\n", "empty"),
                     ("天" * 65, "65 characters"), ("hello!", "no Chinese"),
                     ("、。，", "no Chinese")]:
        with pytest.raises(BadInputError, match=why):
            check_line(bad)


def test_saved_bot_reads_back_half_precision_weights(tmp_path):
    bot = tiny_bot(3)
    load_back = load_bot(bot.save(tmp_path / "b", {"note": "x"}))
    assert load_back.vocab == bot.vocab and load_back.info["note"] == "x"
    for k, v in bot.net.state_dict().items():
        assert torch.equal(load_back.net.state_dict()[k], v.half().float())
    assert load_back.answer("晚风摇树树还挺").second == bot.answer("晚风摇树树还挺").second


def test_evaluate_scores_the_best_answers():
    bot = tiny_bot()
    pairs = [("晚风摇树树还挺", "晨露润花花更红"), ("科学空间", "文明大中")]
    answers = [r.second for r in bot.answer_many([a for a, _ in pairs], n=1)]
    hits = sum(x == y for (_, ref), ans in zip(pairs, answers, strict=True)
               for x, y in zip(ref, ans, strict=True))
    scores = evaluate(bot, pairs)
    assert scores["char_accuracy"] == pytest.approx(hits / 11)
    assert scores["violations"] == 0 and scores["n"] == 2


def test_the_shipped_model_answers_the_posts_lines_as_recorded():
    files = [p for p in ASSETS.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 8 * 2**20
    bot = load_pretrained()
    info = json.loads((ASSETS / "couplet.json").read_text())
    assert bot.direction == "both"
    for way, recorded in info["probes"].items():  # written by `genshop couplet export`
        replies = bot.answer_many(list(recorded), n=1, reverse=way == "reverse")
        assert {r.first: r.second for r in replies} == recorded
    for reverse in (False, True):
        reply = bot.answer("晚风摇树树还挺", n=5, reverse=reverse)
        assert len(reply.second) == 7 and len(reply.alternatives) == 5
        assert reply.second[3] == reply.second[4] != reply.second[2]  # 树树 mirrored
        assert all(c.checks["length"] and c.checks["position"] for c in reply.alternatives)


# --- CLI ----------------------------------------------------------------------------------


def test_cli_answers_and_lists_alternatives(toy_run, capsys):
    assert main(["couplet", "--run", str(toy_run), "晚风摇树树还挺"]) == 0
    assert capsys.readouterr().out == "晨露润花花更红\n"
    assert main(["couplet", "--run", str(toy_run), "-n", "3", "白日依山尽"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "黄河入海流" and out[1].startswith("  1. 黄河入海流") and len(out) == 4


@pytest.mark.parametrize("argv", [["couplet"], ["couplet", ""], ["couplet", "hello"],
                                  ["couplet", "-n", "0", "天"], ["couplet", "eval"],
                                  ["couplet", "--run", "/no/such/run", "天"]])
def test_cli_bad_input_is_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("genshop: error: ") and err.count("\n") == 1


def test_cli_eval_and_train_resume(tmp_path, capsys):
    data = toy_folder(tmp_path / "data")
    out = str(tmp_path / "run")
    common = ["train", "couplet", "--data-dir", str(data), "--min-count", "1", "--dim", "32",
              "--batch-size", "8", "--log-every", "5", "--out", out, "--quiet"]
    assert main([*common, "--steps", "10"]) == 0
    assert main([*common, "--steps", "20", "--resume"]) == 0
    assert [r["step"] for r in metrics(Path(out))] == [5, 10, 15, 20]
    capsys.readouterr()
    assert main(["couplet", "eval", out, "--data", str(data), "--split", "valid",
                 "--json", str(tmp_path / "s.json")]) == 0
    printed = capsys.readouterr().out
    scores = json.loads((tmp_path / "s.json").read_text())
    assert "char_accuracy" in printed and 0 <= scores["char_accuracy"] <= 1
    assert scores["n"] == len(TOY) and scores["violations"] == 0
    assert main(["couplet", "export", out, "--to", str(tmp_path / "pack")]) == 0
    packed = load_bot(tmp_path / "pack")
    assert packed.info["recipe"]["command"] == (
        f"genshop train couplet --steps 20 --batch-size 8 --log-every 5 --data-dir {data} "
        "--dim 32 --min-count 1 --out RUN_DIR")
    assert packed.info["metrics"]["valid"]["char_accuracy"] == \
        pytest.approx(scores["char_accuracy"], abs=0.05)  # fp16 weights may move a character
    assert set(packed.info["probes"]["forward"]) == set(PROBES)


def test_vocab_ids_used_by_the_model_match_the_vocab_constants():
    assert (PAD, UNK) == (Vocab.PAD, Vocab.UNK) == (0, 1)
