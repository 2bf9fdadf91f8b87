"""The tour: every registered section, small and quick, written into one HTML report.

A feature adds its part of the tour by putting a module in `genshop/sections/` that decorates a
function with `@section(...)`. The function gets a `SectionContext` (its own output folder, a seed)
and returns a `SectionResult` (tables, figures, claim verdicts, metrics). A section that raises is
reported as failed in the page and in the exit code; the others still run.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from genshop.atomic import write_text_atomic
from genshop.claims import CLAIM_IDS, Verdict
from genshop.registry import Registry
from genshop.report import Table, write_report
from genshop.threads import torch_threads


@dataclass
class SectionResult:
    summary: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    claims: dict[str, Verdict] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class SectionContext:
    name: str
    out_dir: Path
    seed: int = 0

    def path(self, filename: str) -> Path:
        """Where the section writes a file of its own (a figure, an array)."""
        return self.out_dir / filename


@dataclass
class Section:
    name: str
    title: str
    run: Callable[[SectionContext], SectionResult]
    order: int = 100


@dataclass
class SectionOutcome:
    section: Section
    seconds: float
    result: SectionResult | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


SECTIONS: Registry[Section] = Registry("tour section")


def section(name: str, title: str, order: int = 100):
    """Register `fn(ctx) -> SectionResult` as the tour section `name`."""

    def decorate(fn: Callable[[SectionContext], SectionResult]):
        SECTIONS.add(name, Section(name, title, fn, order))
        return fn

    return decorate


def discover() -> list[Section]:
    """Import every module of `genshop.sections` and return the sections in tour order."""
    import genshop.sections as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    return sorted((SECTIONS.get(n) for n in SECTIONS), key=lambda s: (s.order, s.name))


def run_section(sec: Section, run_dir: Path, seed: int) -> SectionOutcome:
    """Run one section on one torch thread (its tensors are small, and on a busy machine extra
    OpenMP threads wait on each other: a grid integral took 40× longer with two); a section that
    does heavy work may raise the count inside with `genshop.threads.torch_threads`."""
    ctx = SectionContext(sec.name, run_dir / sec.name, seed)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        with torch_threads(1):
            result = sec.run(ctx)
        unknown = set(result.claims) - CLAIM_IDS
        if unknown:
            raise ValueError(f"section {sec.name} reports unknown claims {sorted(unknown)}")
        return SectionOutcome(sec, time.perf_counter() - start, result=result)
    except Exception:
        return SectionOutcome(sec, time.perf_counter() - start, error=traceback.format_exc())


@dataclass
class TourOutcome:
    run_dir: Path
    report: Path
    outcomes: list[SectionOutcome]

    @property
    def failed(self) -> list[str]:
        return [o.section.name for o in self.outcomes if not o.ok]


def run_tour(out_root: Path = Path("runs"), only: Sequence[str] = (), seed: int = 0) -> TourOutcome:
    sections = discover()
    if only:
        sections = [SECTIONS.get(name) for name in only]
    run_dir = out_root / f"tour-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=False)
    outcomes = []
    for i, sec in enumerate(sections, 1):
        print(f"[{i}/{len(sections)}] {sec.name}: {sec.title} ...", file=sys.stderr, flush=True)
        outcome = _one_owner_per_claim(run_section(sec, run_dir, seed), outcomes)
        status = "ok" if outcome.ok else "FAILED"
        print(f"[{i}/{len(sections)}] {sec.name}: {status} in {outcome.seconds:.1f} s",
              file=sys.stderr, flush=True)
        outcomes.append(outcome)
    write_results_json(run_dir / "results.json", outcomes)
    return TourOutcome(run_dir, write_report(run_dir, outcomes), outcomes)


def _one_owner_per_claim(outcome: SectionOutcome,
                         earlier: Sequence[SectionOutcome]) -> SectionOutcome:
    """A claim has one measuring section: a second section reporting it fails, so the claims
    table never shows a verdict silently replaced by another."""
    if outcome.result is None:
        return outcome
    owners = {c: o.section.name for o in earlier if o.result for c in o.result.claims}
    clash = sorted(set(outcome.result.claims) & set(owners))
    if not clash:
        return outcome
    taken = ", ".join(f"{c} (by {owners[c]})" for c in clash)
    return SectionOutcome(outcome.section, outcome.seconds,
                          error=f"claims already reported by another section: {taken}")


def write_results_json(path: Path, outcomes: Sequence[SectionOutcome]) -> None:
    doc = {}
    for o in outcomes:
        entry: dict[str, Any] = {"ok": o.ok, "seconds": round(o.seconds, 3)}
        if o.result is not None:
            entry |= {
                "summary": o.result.summary,
                "metrics": o.result.metrics,
                "tables": [asdict(t) for t in o.result.tables],
                "claims": {k: asdict(v) for k, v in o.result.claims.items()},
                "figures": [str(p.relative_to(path.parent)) for p in o.result.figures],
            }
        else:
            entry["error"] = o.error
        doc[o.section.name] = entry
    write_text_atomic(path, json.dumps(doc, indent=2, default=str) + "\n")
