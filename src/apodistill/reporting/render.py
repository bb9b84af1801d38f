"""Write the evaluation report: reports/index.html (self-contained), reports/eval.md, the chart
PNGs and the `dvc plots` data, from the scores of :func:`apodistill.evaluate.score_systems`.

The page layout lives in templates (``index.html.j2``, ``eval.md.j2``, a DVC dep of the stage);
the numbers come from the metrics dict and the frames the stage passes (bias inheritance, the
consensus methods), never recomputed, so the report and ``dvc exp show`` agree. Pairs, the
paper's headline, come first in every table and chart.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from apodistill.evaluate import Scores, primary_task
from apodistill.reporting.examples import disagreements, png_data_uri
from apodistill.reporting.plots import accuracy_chart, confusion_chart, write_plot_data
from apodistill.reporting.frames import consensus_table, inheritance_table
from apodistill.reporting.tables import (CONTROL, Published, System, comparison_table, load_published, per_finding_table, reasoning_table,
                                         report_table, task_order)  # fmt: skip

PUBLISHED_FILE = "published.yaml"
HTML_TEMPLATE = "index.html.j2"
MD_TEMPLATE = "eval.md.j2"


@dataclass
class ReportInputs:
    """What the report shows besides the scores."""

    systems: list[System]
    tasks: list[str]
    findings: list[str]
    split: str
    counts: dict[str, int]  # gold rows per task
    best_teacher: str | None
    image_path: Callable[[str], Path | None]  # study id -> image file
    reports: dict[str, str]  # study id -> reference report
    examples: int
    provenance: dict | None = None
    setting: list[tuple[str, str]] = field(default_factory=list)  # training setting (apodistill.setting.training_setting)
    compare: tuple[str, str] = ("apo", "spd")  # the two students whose disagreements are shown
    inheritance: Any = None  # DataFrame from evaluate.bias_inheritance (None: no control arm)
    consensus_methods: Any = None  # DataFrame: self_distill's methods.csv (None: not passed)


def _environment(templates_dir: Path):
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir)), autoescape=jinja2.select_autoescape(["html.j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    env.filters["mdcell"] = _md_cell
    return env


def _md_cell(text: str, css: str) -> str:
    text = str(text).replace("|", "\\|")
    return f"*{text}*" if ("published" in css or "notrun" in css) and text != "—" else text


def write_report(
    scores: Scores,
    inputs: ReportInputs,
    templates_dir: str | Path,
    *,
    html: str | Path,
    markdown: str | Path,
    assets_dir: str | Path,
) -> dict[str, Path]:
    """Render both reports; PNG charts and ``plots/`` CSVs go to ``assets_dir`` (the stage's
    ``--out`` folder). Returns the paths written, by name."""
    templates_dir, assets = Path(templates_dir), Path(assets_dir)
    assets.mkdir(parents=True, exist_ok=True)
    published_path = templates_dir / PUBLISHED_FILE
    published: Published | None = load_published(published_path) if published_path.is_file() else None
    m, systems, tasks, findings = scores.metrics, inputs.systems, inputs.tasks, inputs.findings
    primary = primary_task(tasks)

    order = task_order(tasks)
    comparison = comparison_table(m, systems, tasks, primary, published)
    per_finding = [(t, per_finding_table(m, systems, t, findings, published)) for t in order]
    reasoning = reasoning_table(m, systems, tasks)
    reports = report_table(m, systems)
    consensus = consensus_table(inputs.consensus_methods) if inputs.consensus_methods is not None else None

    written: dict[str, Path] = {}
    charts, chart_files = {}, {}
    for t in order:
        png = accuracy_chart(m, systems, t, findings, published)
        path = assets / f"accuracy_{t}.png"
        path.write_bytes(png)
        written[f"accuracy_{t}.png"] = path
        charts[t], chart_files[t] = png_data_uri(png), _rel(path, markdown)
    students = [s for s in systems if s.kind == "student" and s.ran]
    confusion_charts, confusion_files = [], []
    for t in order:
        png = confusion_chart(scores.confusions, students, t, findings)
        if png is None:
            continue
        path = assets / f"confusion_{t}.png"
        path.write_bytes(png)
        written[f"confusion_{t}.png"] = path
        confusion_charts.append((t, png_data_uri(png)))
        confusion_files.append((t, _rel(path, markdown)))
    for p in write_plot_data(assets / "plots", m, scores.predictions, systems, order, findings):
        written[str(p.relative_to(assets))] = p
    inheritance = _inheritance(inputs.inheritance, assets, markdown, written)

    a, b = inputs.compare
    ran = {s.key for s in students}
    examples = []
    if a in ran and b in ran:
        per_task = -(-inputs.examples // len(order))  # shared between the tasks
        examples = [
            ex for t in order
            for ex in disagreements(scores.predictions[scores.predictions["task"] == t], a, b, findings, per_task, inputs.image_path, inputs.reports)
        ][: inputs.examples]  # fmt: skip
    examples_note = no_examples_note(a, b, ran, inputs.split)

    control = next((s for s in systems if s.key == CONTROL[0]), None)
    counts = {t: inputs.counts[t] for t in order if t in inputs.counts}
    context = dict(split=inputs.split, counts=counts, best=inputs.best_teacher, students=students, control=control, provenance=inputs.provenance,
                   setting=inputs.setting, comparison=comparison, per_finding=per_finding, reasoning=reasoning, inheritance=inheritance,
                   consensus=consensus, reports=reports, pair_names=(a, b), examples=examples, examples_note=examples_note)  # fmt: skip
    env = _environment(templates_dir)
    html, markdown = Path(html), Path(markdown)
    for path in (html, markdown):
        path.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(env.get_template(HTML_TEMPLATE).render(charts=charts, confusion_charts=confusion_charts, **context))
    md_context = dict(context, chart_files=chart_files, confusion_files=confusion_files, html_name=_rel(html, markdown))
    markdown.write_text(env.get_template(MD_TEMPLATE).render(**md_context))
    written.update(html=html, markdown=markdown)
    return written


INHERITANCE_CSV = "inheritance.csv"


def _inheritance(frame: Any, assets: Path, markdown: str | Path, written: dict[str, Path]) -> dict | None:
    """The bias-inheritance section: the named-bias table, the full table, and the full table
    as a CSV file in ``assets`` (linked from the Markdown) and as a ``data:`` URI (the HTML's
    download link, so the page stays self-contained). None when there is no control arm."""
    if frame is None:
        return None
    path = assets / INHERITANCE_CSV
    frame.to_csv(path, index=False)
    written[INHERITANCE_CSV] = path
    uri = "data:text/csv;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return dict(named=inheritance_table(frame), full=inheritance_table(frame, named_only=False), csv_uri=uri, csv_file=_rel(path, markdown))


def no_examples_note(a: str, b: str, ran: set[str], split: str) -> str:
    """What the examples section says when it shows none."""
    if a in ran and b in ran:
        return f"Students {a} and {b} give the same answers on every {split} example."
    return f"Needs both students '{a}' and '{b}'; evaluated: {', '.join(sorted(ran)) or 'none'}."


def _rel(path: Path, from_file: str | Path) -> str:
    """``path`` relative to the folder of ``from_file`` (Markdown links travel with the repo)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(from_file).resolve().parent)).as_posix()
