"""The couplet robot of "a couplet robot from CNN + sequence labelling" (kexue.fm archives/6270).

Given the first line of a Chinese couplet (上联), answer the second (下联): the same length, the
characters matched position by position. The parts live in modules beside this one: `data`
(the corpus mined from Tang and Song regulated verse, and the in.txt / out.txt format), `vocab`
(characters to ids), and the model, decoding, metrics and server modules. Importing this package
loads none of them, so `import genshop.couplet` stays light (no opencc, no torch);
`genshop.couplet.load_pretrained()` (the shipped bot) is the one name loaded on first use.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "load_pretrained":
        from genshop.couplet.bot import load_pretrained

        return load_pretrained
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
