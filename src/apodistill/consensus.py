"""Self-distillation ("compare"): one consensus trajectory per study from all its teachers.

``self_distill.method`` names the method:
- ``in_context`` (the paper): the SPD student reads the study's image(s) and the teachers'
  trajectories concatenated in its prompt, and writes the consensus.
- ``vote``: a w_u-weighted label vote per finding; the reasoning is taken from the teacher
  that agrees with the vote most. For students too small to aggregate in context, and the
  fallback for an in-context consensus that cannot be parsed.
Label methods (a function of the teachers' parsed answers and w_u, no model) register by name
in :data:`METHODS`; ``in_context`` needs the SPD student and is run by
``apodistill.training.self_distill``.
Each consensus keeps its provenance: method, which teachers agreed per finding, fallback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Sequence

from apodistill.findings import ParsedTrajectory, display, format_trajectory, parse_trajectory, values_for
from apodistill.registry import Registry

METHODS: Registry[Callable] = Registry("self-distillation method")
IN_CONTEXT = "in_context"  # the paper's method: the student writes the consensus (not a label method)


@dataclass(frozen=True)
class TeacherAnswer:
    teacher: str
    text: str
    parsed: ParsedTrajectory


@dataclass(frozen=True)
class Consensus:
    text: str
    labels: dict[str, str]
    agreeing: dict[str, list[str]]  # finding -> teachers whose answer matches the consensus
    method: str
    fallback: bool = False

    def provenance(self) -> str:
        return json.dumps(self.agreeing, sort_keys=True)


def vote_labels(answers: Sequence[TeacherAnswer], weights: dict[str, float], findings: Sequence[str], task: str) -> dict[str, str]:
    """w_u-weighted plurality per finding; ties go to the earlier value of the task vocabulary
    (``yes`` before ``no``; ``improving`` before ``stable``), which is deterministic."""
    order = values_for(task)
    out = {}
    for f in findings:
        score = {v: 0.0 for v in order}
        for a in answers:
            score[a.parsed.labels[f]] += weights.get(a.teacher, 1.0)
        out[f] = max(order, key=lambda v: (score[v], -order.index(v)))
    return out


def agreeing(answers: Sequence[TeacherAnswer], labels: dict[str, str]) -> dict[str, list[str]]:
    return {f: [a.teacher for a in answers if a.parsed.labels[f] == v] for f, v in labels.items()}


@METHODS.register("vote")
def vote(answers: Sequence[TeacherAnswer], weights: dict[str, float], findings: Sequence[str], task: str) -> Consensus:
    """Weighted vote; reasoning from the teacher agreeing on most findings (then higher w_u)."""
    if not answers:
        raise ValueError("vote needs at least one parsed teacher trajectory")
    labels = vote_labels(answers, weights, findings, task)
    best = max(
        enumerate(answers),
        key=lambda ia: (sum(ia[1].parsed.labels[f] == labels[f] for f in findings), weights.get(ia[1].teacher, 1.0), -ia[0]),
    )[1]
    text = format_trajectory(best.parsed.think, labels, findings)
    return Consensus(text=text, labels=labels, agreeing=agreeing(answers, labels), method="vote")


def format_context(answers: Sequence[TeacherAnswer], findings: Sequence[str], context: str) -> str:
    """The teachers' trajectories as the student reads them: ``full`` text, or ``answers``
    (each teacher's answer lines only: short enough for a tiny student's context)."""
    parts = []
    for i, a in enumerate(answers, 1):
        if context == "full":
            body = a.text.strip()
        elif context == "answers":
            body = "; ".join(f"{display(f)}: {a.parsed.labels[f]}" for f in findings)
        else:
            raise ValueError(f"unknown context {context!r}; known: full, answers")
        parts.append(f"Teacher {i}: {body}")
    return "\n".join(parts)


def from_generation(
    text: str,
    answers: Sequence[TeacherAnswer],
    weights: dict[str, float],
    findings: Sequence[str],
    task: str,
    fallback: str,
) -> Consensus | None:
    """Turn a generated consensus into a :class:`Consensus`; unparseable -> vote or None."""
    try:
        parsed = parse_trajectory(text, findings, task)
    except ValueError:
        if fallback == "vote":
            v = vote(answers, weights, findings, task)
            return Consensus(v.text, v.labels, v.agreeing, method="in_context", fallback=True)
        return None
    clean = format_trajectory(parsed.think, parsed.labels, findings)
    return Consensus(clean, parsed.labels, agreeing(answers, parsed.labels), method="in_context")
