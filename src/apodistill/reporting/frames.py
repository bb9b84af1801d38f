"""Tables read from the DataFrames the `evaluate` stage passes besides the metrics: bias
inheritance (:func:`apodistill.evaluate.bias_inheritance`) and the consensus methods on train
(self_distill's ``reports/consensus_methods.csv``). Cells are the frames' values, formatted, never recomputed.
"""

from __future__ import annotations

from typing import Any

from apodistill.findings import display
from apodistill.reporting.tables import CONTROL, DASH, Table, fmt, fmt_interval

# How the inheritance table names a student in its column heads.
STUDENT_SHORT = {"spd": "SPD", "apo": "APO", "pairwise": "pairwise DPO"}
# What each consensus method is, for a reader who does not know the registry names.
CONSENSUS_NAMES = {
    "vote": "plain vote (per-finding plurality)",
    "weighted_vote": "w_u-weighted vote (teachers.weights: auto)",
    "dawid_skene": "Dawid–Skene (per-teacher, per-finding confusion)",
    "in_context": "in-context student consensus (the paper's)",
}
INHERITANCE_NOTE = (
    "Inherited: on the test studies where the teacher made the error (n), the student's rate of making the same error "
    "minus the control arm's rate on the same studies (what image difficulty alone explains); "
    "reduced: the first student's rate minus this one's. Paired bootstrap 95% intervals over those studies; single studies."
)


def inheritance_students(frame: Any) -> list[str]:
    """The students a :func:`~apodistill.evaluate.bias_inheritance` frame has columns for, in its order."""
    return [c[len("rate."):] for c in frame.columns if c.startswith("rate.") and c != f"rate.{CONTROL[0]}"]


def _short(name: str) -> str:
    return STUDENT_SHORT.get(name, name)


def inheritance_table(frame: Any, named_only: bool = True) -> Table:
    """Per teacher and bias: the teacher's error count, the control's and each student's rate of
    repeating it, what each student inherited and what each later student removed, with intervals.

    ``named_only``: only the teachers' known biases (``bias`` not empty), the report's table;
    otherwise every (teacher, finding, kind) row, the full table.
    """
    students = inheritance_students(frame)
    first = students[0] if students else ""
    columns = ["Teacher", "Bias", "Finding", "Error", "Teacher's errors (n)", "Control rate", *[f"{_short(s)} rate" for s in students],
               *[f"Inherited by {_short(s)} [95% CI]" for s in students],
               *[f"Reduced by {_short(s)} ({_short(first)} − {_short(s)}) [95% CI]" for s in students[1:]]]  # fmt: skip
    title = "Bias inheritance: the teachers' named biases" if named_only else "Bias inheritance: every teacher, finding and error"
    table = Table(title, columns, note=INHERITANCE_NOTE if named_only else "", text_columns=4)
    for r in frame.to_dict("records"):
        bias = r.get("bias") if isinstance(r.get("bias"), str) else ""
        if named_only and not bias:
            continue
        cells = [str(r["teacher"]), bias or DASH, display(str(r["finding"])), str(r["kind"]), f"{int(r['n'])}", fmt(r.get("rate.control"))]
        cells += [fmt(r.get(f"rate.{s}")) for s in students]
        cells += [fmt_interval(*(r.get(f"inherited.{s}{k}") for k in ("", ".ci_low", ".ci_high"))) for s in students]
        cells += [fmt_interval(*(r.get(f"reduced.{s}{k}") for k in ("", ".ci_low", ".ci_high"))) for s in students[1:]]
        table.add(cells, "plain")
    return table


def consensus_table(frame: Any) -> Table:
    """Each label-free consensus method's accuracy on the train split against the labels (pairs first)."""
    table = Table("Consensus on train (measured against labels, never trained on)",
                  ["Method", "What it is", "Used for training", "Pair accuracy", "Pairs scored", "Single-study accuracy", "Studies scored"],
                  note="Each method combines the teachers' answers on the training studies without labels; the benchmark's labels only "
                       "measure them here. The chosen method (self_distill.method) makes the consensus APO trains on. "
                       "The in-context consensus generates, so it is scored on a seeded sample (its count).", text_columns=3)  # fmt: skip
    for r in frame.to_dict("records"):
        chosen = bool(r.get("chosen"))
        table.add([str(r["method"]), CONSENSUS_NAMES.get(str(r["method"]), DASH), "yes (chosen)" if chosen else "no",
                   fmt(r.get("pair")), _count(r.get("pair_n")), fmt(r.get("single")), _count(r.get("single_n"))],
                  "chosen" if chosen else "baseline")  # fmt: skip
    return table


def _count(n: Any) -> str:
    return DASH if n is None or n != n else f"{int(n)}"
