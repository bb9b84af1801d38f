"""Core of the `evaluate` stage: every system's predictions on the same held-out examples.

Systems: each teacher (its own test trajectories), the teachers' majority vote, the best
single teacher (chosen on the validation split, never on test), and each student. An
unparseable or refused answer counts as wrong for every finding. Single studies are
scored against ``label_<finding>`` (keyed by study_id); prior/current pairs against
``progression_<finding>`` (keyed by pair_id), the MS-CXR-T protocol. Scoring itself is
:mod:`apodistill.metrics`.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from apodistill.consensus import TeacherAnswer, vote_labels
from apodistill.findings import ParsedTrajectory, try_parse

TASK_KEY = {"single": "study_id", "pair": "pair_id"}


def gold_for(task: str, studies: pd.DataFrame, pairs: pd.DataFrame | None, split: str) -> pd.DataFrame:
    """Gold rows of one task and split; both carry ``study_id`` and ``prior_study_id``."""
    if task == "single":
        g = studies[studies["split"] == split].copy()
        g["prior_study_id"] = ""
        return g.reset_index(drop=True)
    if pairs is None:
        return pd.DataFrame(columns=["pair_id", "study_id", "prior_study_id"])
    g = pairs[pairs["split"] == split].copy()
    g["study_id"] = g["current_study_id"]
    return g.reset_index(drop=True)


def parse_predictions(rows: pd.DataFrame, findings: Sequence[str]) -> pd.DataFrame:
    """Add ``answer_<finding>`` (None when unparseable), ``wellformed`` and ``think`` to rows
    that have ``text`` and ``task``."""
    out = rows.copy()
    parsed = [try_parse(t, findings, task) if isinstance(t, str) else None for t, task in zip(out["text"], out["task"])]
    out["wellformed"] = [p is not None for p in parsed]
    out["think"] = [p.think if p else "" for p in parsed]
    for f in findings:
        out[f"answer_{f}"] = [p.labels[f] if p else None for p in parsed]
    return out


def aligned(preds: pd.DataFrame, gold: pd.DataFrame, task: str, findings: Sequence[str]) -> pd.DataFrame:
    """Exactly one prediction row per gold row (missing -> all answers None), in gold order."""
    key = TASK_KEY[task]
    cols = [f"answer_{f}" for f in findings] + ["wellformed", "think"]
    p = preds[preds["task"] == task]
    if key == "pair_id" and "pair_id" not in p:
        ids = dict(zip(zip(gold["prior_study_id"], gold["study_id"]), gold["pair_id"]))
        p = p.assign(pair_id=[ids.get((a, b)) for a, b in zip(p["prior_study_id"], p["study_id"])])
    p = p.dropna(subset=[key]).drop_duplicates(key).set_index(key)
    out = p.reindex(gold[key])[cols].reset_index()
    out["wellformed"] = out["wellformed"].fillna(False).astype(bool)
    out["think"] = out["think"].fillna("")
    return out


def teacher_predictions(trajectories: pd.DataFrame, findings: Sequence[str], split: str) -> pd.DataFrame:
    t = trajectories[trajectories["split"] == split].copy()
    t["text"] = t["text"].where(t["status"] == "ok", None)
    t = t.rename(columns={"teacher": "system"})
    t["prior_study_id"] = t["prior_study_id"].fillna("")
    return parse_predictions(t[["system", "task", "study_id", "prior_study_id", "text"]], findings)


def majority_vote(teacher_preds: pd.DataFrame, findings: Sequence[str]) -> pd.DataFrame:
    """The teachers' per-example plurality over their well-formed answers (the usual baseline)."""
    rows = []
    ok = teacher_preds[teacher_preds["wellformed"]]
    for (task, study, prior), g in ok.groupby(["task", "study_id", "prior_study_id"], sort=True):
        answers = [TeacherAnswer(r.system, "", ParsedTrajectory("", {f: getattr(r, f"answer_{f}") for f in findings})) for r in g.itertuples()]
        labels = vote_labels(answers, {}, findings, task)
        rows.append({"task": task, "study_id": study, "prior_study_id": prior, "wellformed": True, "think": "", **{f"answer_{f}": labels[f] for f in findings}})
    return pd.DataFrame(rows, columns=["task", "study_id", "prior_study_id", "wellformed", "think", *[f"answer_{f}" for f in findings]])


def student_predictions(
    model: Any,
    processor: Any,
    gold_by_task: dict[str, pd.DataFrame],
    image_of: dict[str, str],
    images: Any,
    prompts: dict[str, str],
    max_new_tokens: int,
    batch_size: int,
    system: str,
    findings: Sequence[str],
) -> pd.DataFrame:
    """Greedy answers of a student for every gold row of every task (its own prompt per task)."""
    from tqdm.auto import tqdm

    from apodistill.student import generate

    rows = [
        {"task": task, "study_id": r["study_id"], "prior_study_id": r["prior_study_id"]}
        for task, gold in gold_by_task.items()
        for r in gold[["study_id", "prior_study_id"]].to_dict("records")
    ]
    texts: list[str] = []
    for i in tqdm(range(0, len(rows), batch_size), desc=f"evaluate {system}", unit_scale=batch_size):
        batch = rows[i : i + batch_size]
        imgs = [
            [images.get(image_of[r["prior_study_id"]]), images.get(image_of[r["study_id"]])] if r["task"] == "pair" else [images.get(image_of[r["study_id"]])]
            for r in batch
        ]
        texts += generate(model, processor, imgs, [prompts[r["task"]] for r in batch], max_new_tokens)
    df = pd.DataFrame(rows)
    df["text"] = texts
    return parse_predictions(df, findings)
