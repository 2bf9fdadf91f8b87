"""genshop: a workshop for generative models, built from eight posts of *Scientific Spaces*.

See README.md for the commands and shared/DESIGN.md for the architecture.
"""

__version__ = "0.1.0"
