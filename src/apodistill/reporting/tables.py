"""Which systems the report compares, in which order, and the tables it shows.

Pairs (MS-CXR-T's temporal classification) come first wherever both tasks are shown: they are
the paper's headline. Tables are plain data (:class:`Table`: title, column names, cell strings, a CSS class per row)
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
# The label-conditioned control arm: SPD on teachers that explain the gold labels. An upper bound
# and the reference of bias inheritance, never a method arm: its own row, its own name.
CONTROL = ("control", "Control arm (gold labels reach training)")
MEAN_TEACHER = "mean_teacher"
NOT_RUN = "not run"
DASH = "—"
# Task names as the tables head their columns; pairs first (the headline).
TASK_NAME = {"pair": "Pairs", "single": "Single studies"}
# The references a student's accuracy is compared with: metrics.json tag and column name.
REFERENCES = (("spd", "SPD only"), ("best_teacher", "best teacher"), (MEAN_TEACHER, "mean teacher"))


@dataclass(frozen=True)
class System:
    """One row: ``key`` is its metrics.json prefix (``teacher.gpt5``, ``majority_vote``, ``apo``)."""

    key: str
    label: str
    kind: str  # teacher | baseline | student | control
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
    text_columns: int = 1  # leading columns of words (left-aligned, may wrap); the rest are numbers

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
    """Teachers (roster order), the teacher baselines (vote, mean teacher, best teacher), the
    three arms, other students, and last the control arm (``control``; "not run" when absent).

    ``teachers``: names, or names mapped to a note (model and backend); ``students`` maps the
    names passed to the stage to a one-line note on how each was trained.
    """
    notes = teachers if isinstance(teachers, dict) else dict.fromkeys(teachers, "")
    rows = [System(f"{TEACHER}{t}", t, "teacher", note=n) for t, n in notes.items()]
    rows.append(System("majority_vote", "Majority vote of the teachers", "baseline", note=f"per-finding plurality, {len(notes)} teachers"))
    rows.append(System(MEAN_TEACHER, "Mean teacher", "baseline", note=f"each teacher's accuracy averaged, {len(notes)} teachers"))
    if best is not None:
        rows.append(System("best_teacher", f"Best single teacher ({best}, chosen on val)", "baseline", note=notes.get(best, "")))
    for name, label in STUDENT_ARMS:
        rows.append(System(name, label, "student", name in students, students.get(name, "")))
    known = {n for n, _ in STUDENT_ARMS} | {CONTROL[0]}
    rows += [System(n, n, "student", True, note) for n, note in students.items() if n not in known]
    rows.append(System(CONTROL[0], CONTROL[1], "control", CONTROL[0] in students, students.get(CONTROL[0], "")))
    return rows


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{digits}f}"


def fmt_interval(d: float | None, lo: float | None, hi: float | None) -> str:
    """``+0.012 [-0.010, +0.034]``; a dash when the difference is missing or NaN."""
    if d is None or d != d:
        return DASH
    return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def fmt_diff(metrics: dict[str, float], key: str, prefix: str) -> str:
    """``+0.012 [-0.010, +0.034]`` from ``<key>.<prefix>.{diff,ci_low,ci_high}``."""
    return fmt_interval(*(metrics.get(f"{key}.{prefix}.{k}") for k in ("diff", "ci_low", "ci_high")))


def task_order(tasks: Sequence[str]) -> list[str]:
    """The tasks as the report shows them: pairs (the headline) first."""
    return sorted(tasks, key=lambda t: t != "pair")


def _kind(s: System) -> str:
    return {"teacher": "teacher", "baseline": "baseline", "student": "student", "control": "control arm"}[s.kind]


def _css(s: System) -> str:
    return s.kind if s.ran else f"{s.kind} notrun"


def _label(s: System) -> str:
    return s.label if s.ran else f"{s.label} ({NOT_RUN})"


def comparison_table(metrics: dict[str, float], systems: Sequence[System], tasks: Sequence[str], primary: str, published: Published | None) -> Table:
    """Every system's mean accuracy per task (pairs first); for the headline task the paired
    intervals of a student against SPD only, the best teacher and the mean teacher (the other
    task's are in its per-finding table); the well-formed share; the paper's number."""
    order = task_order(tasks)
    pub = "Paper v2 MS-CXR-T (published)" if published else None
    head = TASK_NAME[primary]
    columns = ["System", "Kind", "Trained with / source", *[f"{TASK_NAME[t]}: accuracy" for t in order],
               *[f"{head}: Δ vs {name} [95% CI]" for _, name in REFERENCES], f"Well-formed ({head.lower()})"] + ([pub] if pub else [])  # fmt: skip
    table = Table("Systems compared: mean accuracy and paired intervals", columns, note=_note(order, primary, published), text_columns=3)
    for s in systems:
        if not s.ran:
            table.add([_label(s), _kind(s), DASH, NOT_RUN, *[DASH] * (len(columns) - 4)], _css(s))
            continue
        cells = [_label(s), _kind(s), s.note or DASH, *[fmt(metrics.get(f"{s.key}.{ACC[t]}.mean")) for t in order]]
        cells += [fmt_diff(metrics, s.key, f"vs_{ref}.{ACC[primary]}") for ref, _ in REFERENCES]
        cells.append(fmt(metrics.get(f"{s.key}.{primary}_wellformed"), 2))
        if pub:
            v = published.mean.get(s.key)
            cells.append(f"{v:.2f} (published)" if v is not None else DASH)
        table.add(cells, _css(s))
    return table


def _note(order: Sequence[str], primary: str, published: Published | None) -> str:
    parts = [
        "Accuracy: top-1 per finding, unparseable or refused answers count as wrong; mean over findings.",
        "Mean teacher: each teacher's accuracy averaged; a student's interval against it pairs the student's correctness with the teachers' mean correctness per example.",
        f"Δ: the row's {TASK_NAME[primary].lower()} accuracy minus the reference's, paired bootstrap over the same test examples, 95% interval"
        + ("; the other task's intervals are in its own table." if len(order) > 1 else "."),
        f"{CONTROL[1]}: SPD trained on teachers that explain the gold labels, an upper bound, not a method.",
    ]
    if published:
        parts.append(f"Published numbers: {published.source}; real MS-CXR-T with real teachers and a 7B student, not comparable digit for digit.")
    return " ".join(parts)


def per_finding_table(metrics: dict[str, float], systems: Sequence[System], task: str, findings: Sequence[str], published: Published | None) -> Table:
    """Accuracy per finding for one task, with the paper's per-finding numbers where it has them."""
    title = "Pair accuracy: temporal classification of prior/current pairs (MS-CXR-T protocol)" if task == "pair" else "Single-study accuracy: finding classification"
    columns = ["System", *[display(f) for f in findings], "mean", *[f"Δ vs {name} [95% CI]" for _, name in REFERENCES]]
    note = ("Top-1 accuracy of improving / stable / worsening per finding, the paper's headline; " if task == "pair" else "Top-1 accuracy of yes / no / uncertain per finding; ")
    table = Table(title, columns, note=note + "gold 'uncertain' or unlabelled examples are left out for that finding only. Δ: paired bootstrap, 95% interval.")
    for s in systems:
        if not s.ran:
            table.add([_label(s), NOT_RUN, *[DASH] * (len(columns) - 2)], _css(s))
            continue
        acc = [fmt(metrics.get(f"{s.key}.{ACC[task]}.{f}")) for f in findings]
        table.add([_label(s), *acc, fmt(metrics.get(f"{s.key}.{ACC[task]}.mean")),
                   *[fmt_diff(metrics, s.key, f"vs_{ref}.{ACC[task]}") for ref, _ in REFERENCES]], _css(s))  # fmt: skip
    if published and published.task == task:
        for key, mean in published.mean.items():
            per = published.findings.get(key, {})
            table.add([f"{published.label[key]} (published)", *[fmt(per.get(f), 2) for f in findings], fmt(mean, 2), *[DASH] * len(REFERENCES)], "published")
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


# Faithfulness of the reasoning (metrics.faithfulness): metrics.json suffix and column name.
FAITH = (("contradiction", "contradiction"), ("side_acc", "side right"), ("size_acc", "size right"))
CLINICAL_F1 = (("f1_micro_5", "Clinical F1 micro-5"), ("f1_macro_5", "Clinical F1 macro-5"))


def reasoning_table(metrics: dict[str, float], systems: Sequence[System], tasks: Sequence[str]) -> Table:
    """Does the reasoning support the answer and state what the image shows: clinical F1 of the
    ``<think>`` text (single studies) and the faithfulness rates per task, pairs first."""
    order = task_order(tasks)
    keys = [(k, name) for k, name in CLINICAL_F1 if "single" in tasks]
    keys += [(f"{t}_faith.{k}", f"{TASK_NAME[t]}: {name}") for t in order for k, name in FAITH]
    table = Table("Reasoning: clinical F1 and faithfulness", ["System", *[name for _, name in keys]],
                  note="Clinical F1: the offline CheXpert-style labeler on the reasoning and on the reference report (single studies). "
                       "Contradiction (lower is better): share of (example, finding) cells whose reasoning asserts what the answer denies. "
                       "Side / size right: where the finding is present and the system says so, the share of reasoning naming the true side / "
                       "size level (a dash: the benchmark does not know it, or no reasoning named one). "
                       "The majority vote and the mean teacher write no reasoning.")  # fmt: skip
    for s in systems:
        if not s.ran:
            table.add([_label(s), NOT_RUN, *[DASH] * (len(keys) - 1)], _css(s))
        elif any(f"{s.key}.{k}" in metrics for k, _ in keys):
            table.add([_label(s), *[fmt(metrics.get(f"{s.key}.{k}")) for k, _ in keys]], _css(s))
    return table
