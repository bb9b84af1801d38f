"""Which numbers `dvc exp show` shows: the headline, about twenty, out of ~600.

Every stage writes all its numbers to its own report file (``reports/<stage>.json``,
``reports/metrics.json`` for evaluate): the detail, read by people, MLflow and the
register stage, but not declared as DVC metrics, so `dvc exp show` does not expand it.
The `summary` stage picks the headline out of the reports that hold results into the one
DVC metrics file, ``reports/headline.json``. Timings stay out of it: each stage's wall time
is in its provenance sidecar (``reports/provenance/<stage>.json``, ``wall_seconds``) and its
MLflow run, so `dvc exp show --only-changed` is led by results, not by how long a stage took.
Standard library only, so the summary stage's code deps are small.

The headline is chosen by key pattern, not by a list of today's keys, so a new system, a
new consensus method or a new student finds its way into it:

- pair accuracy (MS-CXR-T prior/current, the paper's headline) and single-study accuracy
  of every system (``<system>.pair_acc.mean``, ``<system>.acc.mean``; ``teacher.<name>.*``,
  one level deeper, stays in the detail);
- APO against SPD-only with its paired-bootstrap interval, and against the best teacher,
  on pairs when the run has them (else single studies);
- SPD-only against the mean teacher (difference);
- consensus accuracy on train per method and task (``self_distill.acc.<method>.<task>``);
- how often each student's reasoning contradicts its own answer on the headline task
  (``<student>.<task>_faith.contradiction``; a student is a system with
  ``<student>.vs_best_teacher.*`` keys; the rest of faithfulness and bias inheritance stay in
  the detail and the report);
- the data: teachers flagged for drift, share of trajectories quarantined.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable, Mapping

# In the order `dvc exp show` prints them. {primary} is pair_acc when the run has pairs, else
# acc; {students} are the systems compared with the best teacher (spd, apo, pairwise, ...).
HEADLINE_PATTERNS: tuple[str, ...] = (
    r"^\w+\.pair_acc\.mean$",
    r"^\w+\.acc\.mean$",
    r"^apo\.vs_spd\.{primary}\.(diff|ci_low|ci_high)$",
    r"^apo\.vs_best_teacher\.{primary}\.diff$",
    r"^spd\.vs_mean_teacher\.{primary}\.diff$",
    r"^(consensus|self_distill)\.(\w+\.)*\w*acc\w*(\.mean)?$",
    r"^self_distill\.acc\.\w+\.(pair|single)$",
    r"^({students})\.(faithful\w*|bias\w*)(\.mean)?$",
    r"^({students})\.{primary_task}_faith\.contradiction$",
    r"^drift\.flagged_teachers$",
    r"^quarantine\.fraction$",
)


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def headline_keys(keys: Iterable[str], patterns: Iterable[str] = HEADLINE_PATTERNS) -> list[str]:
    """The headline among flat metric ``keys``, in pattern order."""
    keys = sorted(set(keys))
    primary = "pair_acc" if any(re.match(r"^\w+\.pair_acc\.mean$", k) for k in keys) else "acc"
    students = sorted({k.split(".", 1)[0] for k in keys if re.match(r"^\w+\.vs_best_teacher\.", k)}) or ["apo"]
    out: list[str] = []
    for pattern in patterns:
        task = "pair" if primary == "pair_acc" else "single"
        rx = re.compile(pattern.replace("{primary_task}", task).replace("{primary}", primary).replace("{students}", "|".join(map(re.escape, students))))
        out += sorted((k for k in keys if k not in out and rx.search(k)), key=_reading_order)
    return out


def _reading_order(key: str) -> tuple[str, int, str]:
    """``x.diff`` before ``x.ci_low`` before ``x.ci_high``; otherwise alphabetical."""
    stem, _, last = key.rpartition(".")
    return stem, {"diff": 0, "ci_low": 1, "ci_high": 2}.get(last, 3), last


def headline(metrics: Mapping[str, object], patterns: Iterable[str] = HEADLINE_PATTERNS) -> dict[str, float]:
    """The headline subset of flat ``metrics`` (numbers only, NaN dropped), in pattern order."""
    numbers = {k: float(v) for k, v in metrics.items() if _number(v) and not math.isnan(float(v))}
    return {k: round(numbers[k], 4) for k in headline_keys(numbers, patterns)}


def read_reports(named: Mapping[str, str | Path]) -> dict[str, dict[str, object]]:
    """``{stage: flat metrics}`` from ``{stage: report file}``; a missing file is an error naming it."""
    out = {}
    for stage, path in named.items():
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the {stage} stage writes it (dvc repro {stage})")
        out[stage] = json.loads(path.read_text())
    return out


def write(path: str | Path, numbers: Mapping[str, float]) -> Path:
    """Flat JSON in the given order (`dvc exp show` keeps it for its columns)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(numbers), indent=2) + "\n")
    return path


def summarize(named: Mapping[str, str | Path]) -> dict[str, float]:
    """The headline over the stage reports ``{stage: file}`` (later files win a shared key)."""
    merged: dict[str, object] = {}
    for metrics in read_reports(named).values():
        merged.update(metrics)
    return headline(merged)
