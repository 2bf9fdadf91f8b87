"""Errors a user can cause. The CLI prints any `GenshopError` in one line and exits 2."""

from __future__ import annotations

from collections.abc import Iterable


class GenshopError(Exception):
    """Base class: something the user can fix. The message says what went wrong and what to do."""


class UnknownNameError(GenshopError, KeyError):
    """A name (divergence, loss, data set, section, command) that is not registered."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], also: str = ""):
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        more = f", or {also}" if also else ""
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.choices)}"
                         f"{more}")

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]


class BadInputError(GenshopError, ValueError):
    """An argument with the wrong shape, type, range or non-finite values."""


class DataError(GenshopError):
    """Data that is missing, corrupt or fails its checksum."""


class TrainingDiverged(GenshopError):
    """A loss became NaN or Inf; the last good checkpoint is kept."""
