"""Every numeric or multiple-choice option of every command refuses a bad value before any
work: exit 2, one line naming the option, no traceback, no file written.

The walk reads the options from the CLI's own parsers, so a new command or option is covered
the day it is added.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Iterator

import pytest

from genshop.cli import build_parser, main

BAD_NUMBERS = ("abc", "nan", "1e999")  # not a number; NaN; a float that overflows to inf
BAD_CHOICE = "no-such-choice"


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(argv prefix, parser) of every leaf command, nested sub-commands included."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from commands(child, (*prefix, name))


def positionals(parser: argparse.ArgumentParser) -> list[str]:
    """A value for each required positional argument: its first choice, or "x" (which the
    command could only reject after the options, so the bad option is what it reports)."""
    return [next(iter(a.choices)) if a.choices else "x" for a in parser._actions
            if not a.option_strings and a.required
            and not isinstance(a, argparse._SubParsersAction)]


def bad_cases() -> Iterator[tuple[list[str], str]]:
    for prefix, parser in commands(build_parser()):
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            flag = action.option_strings[-1]
            if action.choices is not None:
                values = [BAD_CHOICE]
            elif action.type in (int, float):
                values = list(BAD_NUMBERS)
            else:
                continue
            for value in values:
                yield [*prefix, *positionals(parser), flag, value], flag


CASES = list(bad_cases())


def test_the_walk_covers_the_commands_and_their_options():
    covered = {tuple(a[:2]) for a, _ in CASES}
    assert ("train", "gan") in covered and ("train", "flow") in covered
    assert ("sample",) in {tuple(a[:1]) for a, _ in CASES}
    assert len(CASES) > 60


class WorkStarted(Exception):
    pass


@pytest.mark.parametrize(("argv", "flag"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_a_bad_value_is_refused_in_one_line_before_any_work(argv, flag, tmp_path, monkeypatch,
                                                            capsys):
    monkeypatch.chdir(tmp_path)

    def too_long(*_):
        raise WorkStarted(f"{' '.join(argv)} was accepted and started work")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(20)
    try:
        with pytest.raises(SystemExit) as exited:
            raise SystemExit(main(argv))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    dest = flag.lstrip("-").replace("-", "_")
    assert flag in err or dest in err, err
    assert list(tmp_path.iterdir()) == [], "a refused command wrote files"
