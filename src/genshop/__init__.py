"""genshop: a workshop for generative models, built from eight posts of *Scientific Spaces*.

The one way to start a run: `genshop.train(genshop.configure("gan", data="ring8", ...))`,
which returns a `Run`; `genshop.load_run(RUN_DIR)` rebuilds a saved one. See README.md.
"""

__version__ = "0.1.0"

_LAZY = {"train": "genshop.engine", "configure": "genshop.engine", "load_run": "genshop.runs"}


def __getattr__(name: str):
    """`genshop.train`, `configure` and `load_run` without importing torch at `import genshop`
    (the CLI starts faster)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'genshop' has no attribute {name!r}")


__all__ = ["__version__", "configure", "load_run", "train"]
