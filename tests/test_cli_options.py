"""Every numeric or multiple-choice option of every command refuses a bad value before any
work: exit 2, one line naming the option, no traceback, no file written.

The walk reads the commands, their options and positional arguments from what `genshop ...
--help` prints. An option shown as `{a,b,...}` takes a choice; whether another takes a number
or text comes from the config dataclass of `train FAMILY` (its fields' types) or, for the
other commands, from NUMBERS and TEXT below. An option that --help shows and neither names
fails `test_every_option_in_help_is_a_number_text_or_choice`, so a new command or option is
covered the day it is added.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import signal
from collections.abc import Iterator
from typing import get_type_hints

import pytest

from genshop.cli import main
from genshop.config import flag
from genshop.families import get_family

BAD_NUMBERS = ("abc", "nan", "1e999")  # not a number; NaN; a float that overflows to inf
BAD_CHOICE = "no-such-choice"
# The options of the commands outside `train` that take a number, and those that take text.
NUMBERS = {("bench",): {"--steps", "--seeds", "--samples", "--best", "--best-seeds", "--jobs"},
           ("couplet",): {"-n", "--limit"}, ("eval",): {"-n", "--seed"},
           ("fgan-fit",): {"--steps", "--seed"}, ("sample",): {"-n", "--seed"},
           ("serve",): {"--port"}, ("tour",): {"--seed"}}
TEXT = {("bench",): {"--losses", "--updates", "--out", "--resume", "--set"},
        ("couplet",): {"--run", "--data", "--json", "--to"},
        ("fgan-fit",): {"--divergence", "--out"}, ("sample",): {"--out", "--device"},
        ("serve",): {"--host"}, ("tour",): {"--only", "--out"}}

SUBCOMMAND = re.compile(r"^    ([\w-]+)", re.M)  # a sub-command in the list of its parent
POSITIONAL = re.compile(r"^  ([^\s-]\S*)", re.M)
OPTION = re.compile(r"^  (-\S.*?)(?: {2,}|$)", re.M)  # "-h, --help", "--steps STEPS", ...


def help_of(argv: tuple[str, ...]) -> str:
    """What `genshop ARGV --help` prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
    return out.getvalue()


def commands(prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """(argv prefix, --help text) of every leaf command, nested sub-commands included."""
    text = help_of(prefix)
    names = SUBCOMMAND.findall(text)
    if not names:
        yield prefix, text
    for name in names:
        yield from commands((*prefix, name))


def options(text: str) -> list[tuple[str, str]]:
    """(flag, metavar) of each option --help lists, by its last spelling; "" for a switch."""
    last = [re.split(r", (?=-)", invocation)[-1] for invocation in OPTION.findall(text)]
    return [(option, metavar) for option, _, metavar in (s.partition(" ") for s in last)]


def positionals(text: str) -> list[str]:
    """A value for each positional argument: its first choice, or "x" (which the command could
    only reject after the options, so the bad option is what it reports)."""
    return [p[1:].split(",")[0] if p.startswith("{") else "x" for p in POSITIONAL.findall(text)]


def kinds(prefix: tuple[str, ...]) -> tuple[set[str], set[str]]:
    """(the options of a command that take a number, those that take text)."""
    if prefix[0] != "train":
        return NUMBERS.get(prefix, set()), TEXT.get(prefix, set())
    config = get_family(prefix[1]).config_class
    types = get_type_hints(config)
    fields = dataclasses.fields(config)
    return ({flag(f.name) for f in fields if types[f.name] in (int, float)},
            {flag(f.name) for f in fields if types[f.name] is str})


LEAVES = list(commands())


def bad_cases() -> Iterator[tuple[list[str], str]]:
    for prefix, text in LEAVES:
        numbers = kinds(prefix)[0]
        for option, metavar in options(text):
            if metavar.startswith("{"):
                values = [BAD_CHOICE]
            elif option in numbers:
                values = list(BAD_NUMBERS)
            else:
                continue
            for value in values:
                yield [*prefix, *positionals(text), option, value], option


CASES = list(bad_cases())


def test_the_walk_covers_the_commands_and_their_options():
    covered = {tuple(a[:2]) for a, _ in CASES}
    assert ("train", "gan") in covered and ("train", "flow") in covered
    assert ("sample",) in {tuple(a[:1]) for a, _ in CASES}
    assert (["train", "gan", "--lr-g", "nan"], "--lr-g") in CASES
    assert (["bench", "modes", "--data", BAD_CHOICE], "--data") in CASES
    assert (["sample", "x", "-n", "abc"], "-n") in CASES
    assert {("data", "fetch"), ("data", "list"), ("divergences",)} <= {p for p, _ in LEAVES}
    assert len(CASES) > 60


@pytest.mark.parametrize(("prefix", "text"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_option_in_help_is_a_number_text_or_choice(prefix, text):
    numbers, texts = kinds(prefix)
    assert not numbers & texts
    taking_values = {option for option, metavar in options(text) if metavar}
    choices = {option for option, metavar in options(text) if metavar.startswith("{")}
    assert taking_values - choices - numbers - texts == set(), "option of no known kind"
    assert numbers | texts <= taking_values, "named option missing from --help"


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
