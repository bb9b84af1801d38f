"""Does the reasoning say what the answer says, and what the image shows?

Three rates per system, from the offline labeler (:mod:`apodistill.metrics.labeler`) run on each
sentence of the ``<think>`` text:

- ``contradiction``: share of (example, finding) cells whose reasoning asserts what the answer
  denies: the reasoning calls the finding present and the answer says ``no``, or absent and the
  answer says ``yes`` (pairs: the reasoning describes a change in the other direction, or none).
  Cells whose reasoning does not mention the finding do not count as contradictions.
- ``side_acc``: where the finding is present, the system answered ``yes`` and its reasoning
  names a side (left / right / bilateral) for it, the share naming the true side.
- ``size_acc``: the same for the size word (small / mild, moderate, large / severe) against the
  true size level (single studies; on pairs, the size on the current film).

The true side and size exist only where the benchmark knows them (the synthetic benchmark's
``side_<finding>`` and ``severity_<finding>`` columns); elsewhere those two are NaN.

And :func:`inheritance`: how much of a teacher's systematic error a student reproduces, on the
examples where the teacher made it, against a control student trained on gold labels.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from apodistill.data.synthetic import level_of  # the benchmark's size levels (small, moderate, large)


_SIDE = re.compile(r"\b(left|right|bilateral|both)\b")
_SIZE = {"small": 1, "mild": 1, "tiny": 1, "trace": 1, "moderate": 2, "large": 3, "severe": 3, "extensive": 3}
_SIZE_RE = re.compile(r"\b(" + "|".join(_SIZE) + r")\b")
_UP = re.compile(r"\b(increas\w*|larger|worse\w*|progress\w*|new)\b")
_DOWN = re.compile(r"\b(decreas\w*|smaller|improv\w*|resolv\w*|resolution)\b")
_SAME = re.compile(r"\b(unchanged|stable|no interval change|either study|current or the prior)\b")


def finding_sentences(think: str, findings: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
    """Each finding's sentences in a reasoning text, with the label the labeler gives the sentence."""
    from apodistill.metrics.labeler import label_report, split_sentences

    out: dict[str, list[tuple[str, float]]] = {}
    for s in split_sentences(think or ""):
        labels = label_report(s)
        for f in findings:
            v = labels.get(f, float("nan"))
            if v == v:
                out.setdefault(f, []).append((s.lower(), float(v)))
    return out


def _direction(sentence: str) -> str | None:
    if _UP.search(sentence) and not _DOWN.search(sentence):
        return "worsening"
    if _DOWN.search(sentence) and not _UP.search(sentence):
        return "improving"
    return "stable" if _SAME.search(sentence) else None


def _contradicts(task: str, answer: str, said: list[tuple[str, float]]) -> bool:
    if task == "single":
        return any((v == 1.0 and answer == "no") or (v == 0.0 and answer == "yes") for _, v in said)
    directions = {_direction(s) for s, _ in said} - {None}
    return bool(directions) and answer not in directions


def faithfulness(aligned: pd.DataFrame, gold: pd.DataFrame, findings: Sequence[str], task: str) -> dict[str, float]:
    """``{contradiction, side_acc, size_acc, *_n}`` of one system on one task (rows aligned with ``gold``)."""
    cells = contradictions = side_n = side_ok = size_n = size_ok = 0
    for i, think in enumerate(aligned["think"].fillna("")):
        said = finding_sentences(think, findings)
        for f in findings:
            answer = aligned[f"answer_{f}"].iat[i]
            if not isinstance(answer, str):
                continue
            cells += 1
            if f not in said:
                continue
            contradictions += _contradicts(task, answer, said[f])
            sev_col = f"severity_{f}" if task == "single" else f"current_severity_{f}"
            if sev_col not in gold:
                continue
            severity = gold[sev_col].iat[i]
            present_yes = answer == "yes" if task == "single" else answer in ("worsening", "improving", "stable")
            if not (severity == severity and severity > 0 and present_yes):
                continue
            text = " ".join(s for s, v in said[f] if v != 0.0)
            side_col = f"side_{f}"
            if side_col in gold and isinstance(gold[side_col].iat[i], str) and f not in ("pneumonia", "edema"):
                m = _SIDE.search(text)
                if m:
                    side_n += 1
                    side_ok += m.group(1).replace("both", "bilateral") == gold[side_col].iat[i]
            m = _SIZE_RE.findall(text)
            if m:
                size_n += 1
                size_ok += _SIZE[m[-1]] == level_of(severity)  # the last size named is the current one
    nan = float("nan")
    return {
        "contradiction": contradictions / cells if cells else nan,
        "side_acc": side_ok / side_n if side_n else nan,
        "size_acc": size_ok / size_n if size_n else nan,
        "side_n": float(side_n),
        "size_n": float(size_n),
    }



def error_cells(answers: pd.DataFrame, gold: pd.DataFrame, finding: str, kind: str, task: str = "single") -> np.ndarray:
    """Boolean mask of examples where ``answers`` made a ``miss`` (present, answered no / stable) or
    an ``overcall`` (absent, answered yes) on ``finding``."""
    a = answers[f"answer_{finding}"].to_numpy(dtype=object)
    if task == "single":
        g = gold[f"label_{finding}"].to_numpy(dtype=float)
        if kind == "miss":
            return (g == 1.0) & (a == "no")
        return (g == 0.0) & (a == "yes")
    g = gold[f"progression_{finding}"].to_numpy(dtype=object)
    changed = np.isin(g, ["improving", "worsening"])
    if kind == "miss":
        return changed & (a == "stable")
    return (g == "stable") & np.isin(a, ["improving", "worsening"])


def inheritance(
    teacher: pd.DataFrame,
    students: dict[str, pd.DataFrame],
    control: pd.DataFrame,
    gold: pd.DataFrame,
    finding: str,
    kind: str,
    *,
    task: str = "single",
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """How often each student repeats a teacher's error, on the examples where the teacher made it.

    ``rate.<student>``: share of the teacher's ``kind`` errors on ``finding`` that the student
    makes too; ``rate.control``: the same for the control student (trained on gold labels: what
    image difficulty alone explains). ``inherited.<student>`` = rate - control rate, with a paired
    bootstrap 95% interval over those examples (``.ci_low``/``.ci_high``); and for every student
    but the first, ``reduced.<student>`` = first student's rate - this one's (e.g. SPD - APO).
    """
    from apodistill.metrics.bootstrap import paired_bootstrap

    cells = error_cells(teacher, gold, finding, kind, task)
    out: dict[str, float] = {"n": float(cells.sum())}
    if not cells.any():
        return out
    same = {name: error_cells(p, gold, finding, kind, task)[cells].astype(float) for name, p in students.items()}
    ctrl = error_cells(control, gold, finding, kind, task)[cells].astype(float)
    out["rate.control"] = float(ctrl.mean())
    names = list(students)
    for name in names:
        out[f"rate.{name}"] = float(same[name].mean())
        d, lo, hi = paired_bootstrap(same[name], ctrl, bootstrap, seed)
        out[f"inherited.{name}"], out[f"inherited.{name}.ci_low"], out[f"inherited.{name}.ci_high"] = d, lo, hi
    for name in names[1:]:
        d, lo, hi = paired_bootstrap(same[names[0]], same[name], bootstrap, seed)
        out[f"reduced.{name}"], out[f"reduced.{name}.ci_low"], out[f"reduced.{name}.ci_high"] = d, lo, hi
    return out
