"""Character vocabulary of the couplet tagger (kexue.fm archives/6270, "a couplet robot from CNN +
sequence labelling").

The post counts characters and keeps those seen at least `min_count = 2` times; every other
character maps to one unknown id. genshop adds a padding id so that lines of different lengths
can share a batch:

    tokens = ["<pad>", "<unk>"] + [c for c in chars if count(c) >= min_count],
    sorted by count (descending), then by character (code point), so the ids are deterministic;
    id(c) = tokens.index(c), or UNK = 1 for a character outside the vocabulary.

`decode` writes one character per non-padding id (UNK as "□", the mark for a missing character),
so a decoded line is as long as the line it came from.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

from genshop.errors import BadInputError, DataError

PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"
UNK_CHAR = "□"
FORMAT = "genshop-couplet-vocab"


class Vocab:
    """Characters <-> ids; `tokens[0] == "<pad>"`, `tokens[1] == "<unk>"`, then one character
    per id."""

    PAD: int = 0
    UNK: int = 1

    def __init__(self, tokens: Iterable[str]):
        self.tokens: list[str] = list(tokens)
        _check_tokens(self.tokens)
        self._ids = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(tuple(self.tokens))

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"

    def id(self, ch: str) -> int:
        """The id of character `ch`; UNK when it is not in the vocabulary."""
        return self._ids.get(ch, self.UNK) if len(ch) == 1 else self.UNK

    def encode(self, text: str) -> list[int]:
        """One id per character of `text`."""
        return [self.id(ch) for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of `ids` (ints or a 1-D tensor/array); PAD is skipped, UNK is "□"."""
        chars = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise BadInputError(f"id {i} is outside the vocabulary of {len(self)} tokens")
            if i != self.PAD:
                chars.append(UNK_CHAR if i == self.UNK else self.tokens[i])
        return "".join(chars)

    @classmethod
    def build(cls, lines: Iterable[str], min_count: int = 2) -> Vocab:
        """The characters of `lines` seen at least `min_count` times, most frequent first (ties
        by code point), after "<pad>" and "<unk>"."""
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise BadInputError(f"min_count must be an integer >= 1, got {min_count!r}")
        counts = Counter(ch for line in lines for ch in line)
        kept = sorted((c for c, n in counts.items() if n >= min_count),
                      key=lambda c: (-counts[c], c))
        return cls([PAD_TOKEN, UNK_TOKEN, *kept])

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": 1, "tokens": self.tokens},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        """The vocabulary `to_json` wrote; DataError for anything else."""
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, TypeError) as err:
            raise DataError(f"the couplet vocabulary is not valid JSON ({err}); write it again "
                            "with Vocab.to_json") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT or obj.get("version") != 1:
            raise DataError(f"the JSON is not a {FORMAT} version 1 file; write it again with "
                            "Vocab.to_json")
        try:
            return cls(obj.get("tokens"))
        except (BadInputError, TypeError) as err:
            raise DataError(f"the couplet vocabulary file is corrupt: {err}") from None


def _check_tokens(tokens: list[str]) -> None:
    if tokens[:2] != [PAD_TOKEN, UNK_TOKEN]:
        raise BadInputError(f"a vocabulary starts with {PAD_TOKEN!r}, {UNK_TOKEN!r}")
    rest = tokens[2:]
    bad = [t for t in rest if not isinstance(t, str) or len(t) != 1]
    if bad:
        raise BadInputError(f"vocabulary tokens after the first two must be single characters, "
                            f"not {bad[0]!r}")
    if len(set(rest)) != len(rest):
        raise BadInputError("a vocabulary lists a character twice")
