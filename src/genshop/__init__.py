"""genshop: a workshop for generative models, built from eight posts of *Scientific Spaces*.

See README.md for the commands and shared/DESIGN.md for the architecture.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`genshop.load_run` without importing torch at `import genshop` (the CLI starts faster)."""
    if name == "load_run":
        from genshop.runs import load_run

        return load_run
    raise AttributeError(f"module 'genshop' has no attribute {name!r}")
