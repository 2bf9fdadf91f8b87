"""genshop: train, sample, measure and compare the generative models of Scientific Spaces posts.

Each subcommand is a module in `genshop/commands/` with `NAME`, `HELP`, `add_arguments(parser)`
and `run(args) -> int`; this file discovers them. A `GenshopError` is printed in one line and
exits 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from genshop import __version__
from genshop.errors import GenshopError


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (with the valid choices) and exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def command_modules() -> list[ModuleType]:
    import genshop.commands as pkg

    mods = [importlib.import_module(f"{pkg.__name__}.{m.name}")
            for m in pkgutil.iter_modules(pkg.__path__)]
    return sorted(mods, key=lambda m: m.NAME)


EPILOG = ("Start with `genshop tour` (every result at a quick size, one HTML report) or "
          "`genshop train gan --data ring8 --out runs/x`; `genshop COMMAND --help` lists a "
          "command's options.")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="genshop", description=__doc__.splitlines()[0], epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"genshop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for mod in command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(handler=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `genshop`: the usage and the commands
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.handler(args) or 0)
    except GenshopError as err:
        print(f"genshop: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genshop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `genshop ... | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
