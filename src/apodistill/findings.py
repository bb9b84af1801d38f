"""Finding vocabulary and the trajectory format shared by teachers, students and metrics.

A trajectory is ``<think>free-text reasoning</think>`` followed by an answer block with one
line per finding::

    <think>Blunted left costophrenic angle ...</think>
    <answer>
    consolidation: no
    pleural effusion: yes
    ...
    </answer>

Single-study answers take ``yes`` / ``no`` / ``uncertain``; prior/current pair answers take
``improving`` / ``stable`` / ``worsening`` (the MS-CXR-T classes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The 14 CheXpert observations, in the labeler's order.
CHEXPERT_14: tuple[str, ...] = (
    "no_finding",
    "enlarged_cardiomediastinum",
    "cardiomegaly",
    "lung_opacity",
    "lung_lesion",
    "edema",
    "consolidation",
    "pneumonia",
    "atelectasis",
    "pneumothorax",
    "pleural_effusion",
    "pleural_other",
    "fracture",
    "support_devices",
)
# The five findings of MS-CXR-T's temporal classification task.
MS_CXR_T_5: tuple[str, ...] = ("consolidation", "pleural_effusion", "pneumonia", "pneumothorax", "edema")

SINGLE_VALUES: tuple[str, ...] = ("yes", "no", "uncertain")
PAIR_VALUES: tuple[str, ...] = ("improving", "stable", "worsening")
TASKS: tuple[str, ...] = ("single", "pair")


def display(finding: str) -> str:
    """``pleural_effusion`` -> ``pleural effusion`` (the spelling used inside trajectories)."""
    return finding.replace("_", " ")


def values_for(task: str) -> tuple[str, ...]:
    if task == "single":
        return SINGLE_VALUES
    if task == "pair":
        return PAIR_VALUES
    raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")


def format_answer(labels: dict[str, str], findings: list[str] | tuple[str, ...]) -> str:
    lines = [f"{display(f)}: {labels[f]}" for f in findings]
    return "<answer>\n" + "\n".join(lines) + "\n</answer>"


def format_trajectory(think: str, labels: dict[str, str], findings: list[str] | tuple[str, ...]) -> str:
    return f"<think>{think.strip()}</think>\n" + format_answer(labels, findings)


class TrajectoryParseError(ValueError):
    """A trajectory that cannot be read; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ParsedTrajectory:
    think: str
    labels: dict[str, str]


_THINK = re.compile(r"(?s)<think>(.*?)</think>")
_ANSWER = re.compile(r"(?s)<answer>(.*?)</answer>")


def parse_trajectory(text: str, findings: list[str] | tuple[str, ...], task: str = "single") -> ParsedTrajectory:
    """Parse a trajectory; raise :class:`TrajectoryParseError` naming what is wrong.

    Every finding in ``findings`` must appear exactly once with a value of the task's
    vocabulary. Unknown finding names are an error too (a hallucinated observation).
    """
    allowed = values_for(task)
    think_m = _THINK.search(text or "")
    if think_m is None:
        raise TrajectoryParseError("no_think", "missing <think>...</think> block")
    ans_m = _ANSWER.search(text, think_m.end())
    if ans_m is None:
        raise TrajectoryParseError("no_answer", "missing <answer>...</answer> block after </think>")
    by_name = {display(f): f for f in findings}
    labels: dict[str, str] = {}
    for raw in ans_m.group(1).strip().splitlines():
        line = raw.strip()
        if not line:
            continue
        if ":" not in line:
            raise TrajectoryParseError("bad_answer_line", f"answer line {line!r} has no 'finding: value'")
        name, value = (part.strip().lower() for part in line.split(":", 1))
        if name not in by_name:
            raise TrajectoryParseError("unknown_finding", f"finding {name!r} is not in the vocabulary")
        if value not in allowed:
            raise TrajectoryParseError("bad_value", f"{name}: {value!r} is not one of {', '.join(allowed)}")
        key = by_name[name]
        if key in labels:
            raise TrajectoryParseError("duplicate_finding", f"finding {name!r} answered twice")
        labels[key] = value
    missing = [display(f) for f in findings if f not in labels]
    if missing:
        raise TrajectoryParseError("missing_finding", f"no answer for {', '.join(missing)}")
    return ParsedTrajectory(think=think_m.group(1).strip(), labels=labels)


def try_parse(text: str, findings, task: str = "single") -> ParsedTrajectory | None:
    """Like :func:`parse_trajectory` but returns None for an unreadable trajectory."""
    try:
        return parse_trajectory(text, findings, task)
    except TrajectoryParseError:
        return None
