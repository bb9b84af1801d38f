"""Which systems the report compares, in which order, and the tables it shows.

Tables are plain data (:class:`Table`: title, column names, cell strings, a CSS class per row)
so the HTML and the Markdown report render the very same numbers. Every value is read from the
flat ``metrics.json`` dict, so the report cannot disagree with what ``dvc exp show`` lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from apodistill.evaluate import ACC, TEACHER
from apodistill.findings import display

# The paper's ablation arms, in the order the table shows them. A student passed to the stage
# under one of these names fills that row; an arm that was not run still gets its row.
STUDENT_ARMS: tuple[tuple[str, str], ...] = (
    ("spd", "SPD only"),
    ("pairwise", "SPD + pairwise DPO"),
    ("apo", "SPD + consensus + APO"),
)
NOT_RUN = "not run"
DASH = "—"


@dataclass(frozen=True)
class System:
    """One row: ``key`` is its metrics.json prefix (``teacher.gpt5``, ``majority_vote``, ``apo``)."""

    key: str
    label: str
    kind: str  # teacher | baseline | student
    ran: bool = True
    note: str = ""


@dataclass(frozen=True)
class Published:
    """The paper's numbers (templates/report/published.yaml), keyed by the row they sit beside."""

    source: str
    task: str
    mean: dict[str, float]
    label: dict[str, str]
    findings: dict[str, dict[str, float]]


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    note: str = ""

    def add(self, cells: Sequence[str], css: str) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))
        self.classes.append(css)


def load_published(path: str | Path) -> Published:
    import yaml

    raw = yaml.safe_load(Path(path).read_text())
    entries = raw["systems"]
    return Published(
        source=raw["source"],
        task=raw["task"],
        mean={e["system"]: float(e["mean"]) for e in entries},
        label={e["system"]: e["label"] for e in entries},
        findings={e["system"]: {k: float(v) for k, v in e.get("findings", {}).items()} for e in entries},
    )


def systems_in_order(teachers: Sequence[str] | dict[str, str], best: str | None, students: dict[str, str]) -> list[System]:
    """Teachers (roster order), the two teacher baselines, the three arms, then other students.

    ``teachers``: names, or names mapped to a note (model and backend); ``students`` maps the
    names passed to the stage to a one-line note on how each was trained.
    """
    notes = teachers if isinstance(teachers, dict) else dict.fromkeys(teachers, "")
    rows = [System(f"{TEACHER}{t}", t, "teacher", note=n) for t, n in notes.items()]
    rows.append(System("majority_vote", "Majority vote of the teachers", "baseline", note=f"per-finding plurality, {len(notes)} teachers"))
    if best is not None:
        rows.append(System("best_teacher", f"Best single teacher ({best}, chosen on val)", "baseline", note=notes.get(best, "")))
    for name, label in STUDENT_ARMS:
        rows.append(System(name, label, "student", name in students, students.get(name, "")))
    arms = {n for n, _ in STUDENT_ARMS}
    rows += [System(n, n, "student", True, note) for n, note in students.items() if n not in arms]
    return rows


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{digits}f}"


def fmt_diff(metrics: dict[str, float], key: str, prefix: str) -> str:
    """``+0.012 [-0.010, +0.034]`` from ``<key>.<prefix>.{diff,ci_low,ci_high}``."""
    d = metrics.get(f"{key}.{prefix}.diff")
    if d is None:
        return DASH
    lo, hi = metrics[f"{key}.{prefix}.ci_low"], metrics[f"{key}.{prefix}.ci_high"]
    return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _kind(s: System) -> str:
    return {"teacher": "teacher", "baseline": "baseline", "student": "student"}[s.kind]


def _css(s: System) -> str:
    return s.kind if s.ran else f"{s.kind} notrun"


def _label(s: System) -> str:
    return s.label if s.ran else f"{s.label} ({NOT_RUN})"


def comparison_table(metrics: dict[str, float], systems: Sequence[System], tasks: Sequence[str], primary: str, published: Published | None) -> Table:
    """The one table of every system: headline accuracy, clinical F1, report metrics, intervals."""
    acc_cols = [("pair", "Pair accuracy, MS-CXR-T protocol"), ("single", "Single-study accuracy")]
    acc_cols = [(t, name) for t, name in acc_cols if t in tasks]
    report_cols = [("f1_micro_5", "Clinical F1 micro-5"), ("f1_macro_14", "Clinical F1 macro-14"), ("bleu4", "BLEU-4"),
                   ("rouge_l", "ROUGE-L"), ("meteor", "METEOR"), ("cider", "CIDEr")]  # fmt: skip
    pub = "Paper v2 MS-CXR-T (published)" if published else None
    columns = ["System", "Kind", "Trained with / source", *[n for _, n in acc_cols], "Well-formed", *[n for _, n in report_cols],
               f"Δ {ACC[primary]} vs SPD only [95% CI]", f"Δ {ACC[primary]} vs best teacher [95% CI]"]  # fmt: skip
    columns += [pub] if pub else []
    table = Table("Systems compared", columns, note=_note(tasks, primary, published))
    for s in systems:
        if not s.ran:
            table.add([_label(s), _kind(s), DASH, NOT_RUN, *[DASH] * (len(columns) - 4)], _css(s))
            continue
        cells = [_label(s), _kind(s), s.note or DASH]
        cells += [fmt(metrics.get(f"{s.key}.{ACC[t]}.mean")) for t, _ in acc_cols]
        cells.append(fmt(metrics.get(f"{s.key}.{primary}_wellformed"), 2))
        cells += [fmt(metrics.get(f"{s.key}.{k}")) for k, _ in report_cols]
        cells += [fmt_diff(metrics, s.key, f"vs_spd.{ACC[primary]}"), fmt_diff(metrics, s.key, f"vs_best_teacher.{ACC[primary]}")]
        if pub:
            v = published.mean.get(s.key)
            cells.append(f"{v:.2f} (published)" if v is not None else DASH)
        table.add(cells, _css(s))
    return table


def _note(tasks: Sequence[str], primary: str, published: Published | None) -> str:
    parts = [
        "Accuracy: top-1 per finding, unparseable or refused answers count as wrong; mean over findings.",
        "Clinical F1 and report metrics score the <think> reasoning against the reference report (single studies); the majority vote writes no reasoning.",
        f"Δ: paired bootstrap over test examples of the {ACC[primary]} mean, 95% interval.",
    ]
    if published:
        parts.append(f"Published numbers: {published.source}; real MS-CXR-T with real teachers and a 7B student, not comparable digit for digit.")
    return " ".join(parts)


def per_finding_table(metrics: dict[str, float], systems: Sequence[System], task: str, findings: Sequence[str], published: Published | None) -> Table:
    """Accuracy per finding for one task, with the paper's per-finding numbers where it has them."""
    title = "Temporal classification, prior/current pairs (MS-CXR-T protocol)" if task == "pair" else "Finding classification, single studies"
    columns = ["System", *[display(f) for f in findings], "mean", "Δ vs SPD only [95% CI]", "Δ vs best teacher [95% CI]"]
    table = Table(title, columns, note="Top-1 accuracy; gold 'uncertain' or unlabelled examples are left out for that finding only.")
    for s in systems:
        if not s.ran:
            table.add([_label(s), NOT_RUN, *[DASH] * (len(columns) - 2)], _css(s))
            continue
        acc = [fmt(metrics.get(f"{s.key}.{ACC[task]}.{f}")) for f in findings]
        table.add([_label(s), *acc, fmt(metrics.get(f"{s.key}.{ACC[task]}.mean")),
                   fmt_diff(metrics, s.key, f"vs_spd.{ACC[task]}"), fmt_diff(metrics, s.key, f"vs_best_teacher.{ACC[task]}")], _css(s))  # fmt: skip
    if published and published.task == task:
        for key, mean in published.mean.items():
            per = published.findings.get(key, {})
            table.add([f"{published.label[key]} (published)", *[fmt(per.get(f), 2) for f in findings], fmt(mean, 2), DASH, DASH], "published")
    return table


def report_table(metrics: dict[str, float], systems: Sequence[System]) -> Table:
    """Report-generation metrics and clinical F1 of every system that writes reasoning."""
    keys = ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "meteor", "cider", "f1_micro_5", "f1_macro_5", "f1_micro_14", "f1_macro_14"]
    names = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "METEOR", "CIDEr", "F1 micro-5", "F1 macro-5", "F1 micro-14", "F1 macro-14"]
    table = Table("Reasoning as a report: report metrics and clinical F1", ["System", *names],
                  note="The <think> text against the study's reference report; one tokenisation for every system. "
                       "Clinical F1: our offline CheXpert-style labeler on both texts (docs/metrics.md).")  # fmt: skip
    for s in systems:
        if not s.ran:
            table.add([_label(s), NOT_RUN, *[DASH] * (len(keys) - 1)], _css(s))
        elif f"{s.key}.bleu4" in metrics:
            table.add([_label(s), *[fmt(metrics.get(f"{s.key}.{k}")) for k in keys]], _css(s))
    return table
