"""`genshop divergences`: the f-divergence catalog, with its table's claims checked live.

Post: f-GAN introduction (kexue.fm archives/6016): f, the conjugate f*, the activation g_f.
"""

from __future__ import annotations

import argparse

from genshop import divergences

NAME = "divergences"
HELP = "print the f-divergence catalog (f, f*, activation) and check each row live"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="divergences to show (default: all); alpha:<a> works too")


def run(args: argparse.Namespace) -> int:
    divs = [divergences.get(n) for n in args.names or divergences.names()]
    checks = [divergences.check(d) for d in divs]
    header = ["name", "D_f", "f(u)", "f*(t)", "activation g_f(v)", "checks passed"]
    rows = [[d.name, d.integral, d.f_formula, d.conjugate_formula, d.activation_formula,
             passed_text(c)] for d, c in zip(divs, checks, strict=True)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0 if all(c.passed for results in checks for c in results) else 1


def passed_text(results) -> str:
    failed = [c.check for c in results if not c.passed]
    text = f"{len(results) - len(failed)}/{len(results)}"
    return text + (f" (failed: {', '.join(failed)})" if failed else "")
