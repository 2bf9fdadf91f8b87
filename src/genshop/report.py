"""HTML pages of the lab: the tour's report, benchmark pages and a run directory's page.

Tables and PNG plots, viewable offline. The library writes data only; these pages are drawn
from it (`genshop report RUN_DIR` redraws a run's page at any time).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from genshop.atomic import write_text_atomic
from genshop.claims import CLAIMS, Verdict
from genshop.config import read_config_json
from genshop.metrics.runs import protocol_note
from genshop.plots import plt, save_figure
from genshop.runs import EVAL, PAGE, SAMPLES, read_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Table:
    """A titled table of a page: column names, rows of values, a note under it."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


class ShownSection(Protocol):
    """What the report shows of a tour section (`genshop.tour.Section` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str: ...


class ShownResult(Protocol):
    """What the report shows of a section's result (`genshop.tour.SectionResult` is one)."""

    @property
    def summary(self) -> str: ...
    @property
    def tables(self) -> Sequence[Table]: ...
    @property
    def figures(self) -> Sequence[Path]: ...
    @property
    def claims(self) -> Mapping[str, Verdict]: ...


class ShownOutcome(Protocol):
    """What the report reads of a section's run (`genshop.tour.SectionOutcome` is one)."""

    @property
    def section(self) -> ShownSection: ...
    @property
    def seconds(self) -> float: ...
    @property
    def result(self) -> ShownResult | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def ok(self) -> bool: ...


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.holds { background: #e3f6e3; } .does-not-hold { background: #fbe3e3; }
.inconclusive { background: #fff6d6; }
.untested-yet { color: #777; } .failed { background: #fbe3e3; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5rem 0; }
pre { background: #f7f7f7; padding: 0.5rem; overflow-x: auto; }
"""


def format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for v in row:
            cls = ' class="num"' if isinstance(v, int | float) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{html.escape(format_value(v))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    note = f"<p>{html.escape(table.note)}</p>" if table.note else ""
    return (f"<h3>{html.escape(table.title)}</h3><table><tr>{head}</tr>{''.join(body)}</table>"
            f"{note}")


def table_markdown(table: Table) -> str:
    """The table as a GitHub-markdown section: a `###` title, the table, its note."""
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(format_value(c).replace("|", "\\|") for c in cells) + " |"

    rows = [line(table.columns), "|" + "---|" * len(table.columns),
            *(line(r) for r in table.rows)]
    note = f"\n\n{table.note}" if table.note else ""
    return f"### {table.title}\n\n" + "\n".join(rows) + note + "\n"


def claims_html(outcomes: Sequence[ShownOutcome]) -> str:
    verdicts: dict[str, Verdict] = {}
    for o in outcomes:
        if o.result is not None:
            verdicts |= o.result.claims
    rows = []
    for claim in CLAIMS:
        v = verdicts.get(claim.id, Verdict("untested yet", ""))
        cls = v.status.replace(" ", "-")
        rows.append(f"<tr class='{cls}'><td>{html.escape(claim.post)}</td>"
                    f"<td>{html.escape(claim.text)}</td><td>{html.escape(v.measurement)}</td>"
                    f"<td>{html.escape(v.status)}</td></tr>")
    return ("<h2>Claims of the posts</h2><table><tr><th>post</th><th>claim</th>"
            f"<th>measurement</th><th>verdict</th></tr>{''.join(rows)}</table>")


def section_html(o: ShownOutcome, run_dir: Path) -> str:
    parts = [f"<h2 id='{o.section.name}'>{html.escape(o.section.title)}</h2>",
             f"<p><code>--only {o.section.name}</code> · {o.seconds:.1f} s</p>"]
    if o.result is None:
        parts.append(f"<p class='failed'>This section failed.</p><pre>{html.escape(o.error)}</pre>")
        return "".join(parts)
    if o.result.summary:
        parts.append(f"<p>{html.escape(o.result.summary)}</p>")
    parts += [table_html(t) for t in o.result.tables]
    parts += [f"<img src='{html.escape(str(p.relative_to(run_dir)))}' alt='{html.escape(p.stem)}'>"
              for p in o.result.figures]
    return "".join(parts)


def write_report(run_dir: Path, outcomes: Sequence[ShownOutcome],
                 title: str = "genshop tour") -> Path:
    """Write `run_dir/index.html`: the claims table, a timing table, then each section."""
    timing = "".join(
        f"<tr class='{'' if o.ok else 'failed'}'><td><a href='#{o.section.name}'>"
        f"{o.section.name}</a></td><td>{'ok' if o.ok else 'failed'}</td>"
        f"<td class='num'>{o.seconds:.1f}</td></tr>" for o in outcomes)
    total = sum(o.seconds for o in outcomes)
    body = (f"{claims_html(outcomes)}"
            f"<h2>Sections</h2><table><tr><th>section</th><th>status</th><th>seconds</th></tr>"
            f"{timing}<tr><td>total</td><td></td><td class='num'>{total:.1f}</td></tr></table>"
            f"{''.join(section_html(o, run_dir) for o in outcomes)}")
    return write_page(run_dir / PAGE, title, body)


def write_page(path: Path, title: str, body: str) -> Path:
    """Write a self-contained HTML page (the report's style, a title, a date, then `body`)."""
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
           f"<p>Written {datetime.now():%Y-%m-%d %H:%M:%S}.</p>{body}</body></html>")
    return write_text_atomic(path, doc)


def metric_curves(records: Sequence[dict[str, Any]]) -> Figure:
    """One panel per logged quantity of metrics.jsonl against the step (it/s left out)."""
    keys = [k for k in records[0] if k not in ("step", "it_per_s")]
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    steps = [r["step"] for r in records]
    for ax in axes.flat[len(keys):]:
        ax.set_axis_off()
    for ax, key in zip(axes.flat, keys, strict=False):
        ax.plot(steps, [r.get(key, math.nan) for r in records], lw=1)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig



def eval_table(record: dict[str, Any]) -> Table:
    """The scores of an eval.json record (`genshop.metrics.evaluate_run`), with their
    protocol in the note (`genshop.metrics.runs.protocol_note`)."""
    return Table(f"Scores (genshop eval, step {record['protocol']['step']})", ["score", "value"],
                 [[k, v] for k, v in record["scores"].items()],
                 protocol_note(record["protocol"]))


def write_run_page(run_dir: Path, snapshots: int = 4) -> Path:
    """`run_dir/index.html` of a training run: its config, the scores of `genshop eval` (if
    any), metric curves, the pictures its family wrote at the end (`Family.finish`: PNG files
    in the run folder, e.g. GLO's reconstructions), the last snapshots. A missing or corrupt
    config.json is a DataError; a torn last metrics line is skipped."""
    run_dir = Path(run_dir)
    config = read_config_json(run_dir)
    body = table_html(Table("Config", ["option", "value"], [[k, v] for k, v in config.items()]))
    if (run_dir / EVAL).is_file():
        body += table_html(eval_table(json.loads((run_dir / EVAL).read_text())))
    records = read_metrics(run_dir)
    if records:
        last = records[-1]
        body += table_html(Table(f"Last logged step ({last['step']})", ["quantity", "value"],
                                 [[k, v] for k, v in last.items() if k != "step"]))
        save_figure(metric_curves(records), run_dir / "curves.png")
        body += "<h3>Curves</h3><img src='curves.png' alt='metric curves'>"
    body += "".join(f"<h3>{html.escape(p.stem)}</h3>"
                    f"<img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'>"
                    for p in sorted(run_dir.glob("*.png")) if p.name != "curves.png")
    shots = sorted((run_dir / SAMPLES).glob("step_*.png"))[-snapshots:]
    body += "".join(f"<h3>Samples at {html.escape(p.stem)}</h3>"
                    f"<img src='{SAMPLES}/{html.escape(p.name)}' alt='{html.escape(p.stem)}'>"
                    for p in shots)
    return write_page(run_dir / PAGE, f"genshop run: {run_dir.name}", body)
