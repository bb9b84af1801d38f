"""Core of the `evaluate` stage: every system's predictions on the same held-out studies.

Systems: each teacher (its own test trajectories), the teachers' majority vote, the best
single teacher (chosen on the validation split, never on test), and each student. An
unparseable or refused answer counts as wrong for every finding.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from apodistill.consensus import TeacherAnswer, vote_labels
from apodistill.findings import try_parse

KEY = ["task", "study_id", "prior_study_id"]


def _norm_prior(v: Any) -> str:
    return v if isinstance(v, str) else ""


def parse_predictions(rows: pd.DataFrame, findings: Sequence[str]) -> pd.DataFrame:
    """Add ``answer_<finding>`` (None when unparseable) and ``think`` to rows with ``text`` and ``task``."""
    out = rows.copy()
    out["prior_study_id"] = out["prior_study_id"].map(_norm_prior)
    parsed = [try_parse(t, findings, task) if isinstance(t, str) else None for t, task in zip(out["text"], out["task"])]
    out["wellformed"] = [p is not None for p in parsed]
    out["think"] = [p.think if p else "" for p in parsed]
    for f in findings:
        out[f"answer_{f}"] = [p.labels[f] if p else None for p in parsed]
    return out


def teacher_predictions(trajectories: pd.DataFrame, findings: Sequence[str], split: str) -> pd.DataFrame:
    t = trajectories[trajectories["split"] == split].copy()
    t.loc[t["status"] != "ok", "text"] = None
    t = t.rename(columns={"teacher": "system"})
    return parse_predictions(t[["system", *KEY, "text"]], findings)


def majority_vote(teacher_preds: pd.DataFrame, findings: Sequence[str], weights: dict[str, float] | None = None) -> pd.DataFrame:
    """The teachers' per-study plurality over their well-formed answers (the classic baseline)."""
    rows = []
    ok = teacher_preds[teacher_preds["wellformed"]]
    for key, g in ok.groupby(KEY, sort=True):
        from apodistill.findings import ParsedTrajectory

        answers = [TeacherAnswer(r.system, "", ParsedTrajectory("", {f: getattr(r, f"answer_{f}") for f in findings})) for r in g.itertuples()]
        labels = vote_labels(answers, weights or {}, findings, key[0])
        rows.append({"system": "majority_vote", **dict(zip(KEY, key)), "text": None, "wellformed": True, "think": "", **{f"answer_{f}": labels[f] for f in findings}})
    return pd.DataFrame(rows)


def gold_table(studies: pd.DataFrame, pairs: pd.DataFrame | None, findings: Sequence[str], split: str) -> pd.DataFrame:
    """Gold answers in the prediction vocabulary: yes/no for single studies (uncertain and
    unlabelled findings are left out), progression classes for pairs."""
    s = studies[studies["split"] == split]
    rows = pd.DataFrame({"task": "single", "study_id": s["study_id"], "prior_study_id": ""})
    for f in findings:
        v = s[f"label_{f}"].to_numpy(dtype=float)
        rows[f"gold_{f}"] = np.where(v == 1.0, "yes", np.where(v == 0.0, "no", None))
    rows["report"] = s["report"].to_numpy()
    if pairs is not None and len(pairs):
        p = pairs[pairs["split"] == split]
        pr = pd.DataFrame({"task": "pair", "study_id": p["current_study_id"], "prior_study_id": p["prior_study_id"]})
        for f in findings:
            col = f"progression_{f}"
            pr[f"gold_{f}"] = p[col].to_numpy() if col in p else None
        rows = pd.concat([rows, pr], ignore_index=True)
    return rows.reset_index(drop=True)


def correctness(preds: pd.DataFrame, gold: pd.DataFrame, findings: Sequence[str]) -> pd.DataFrame:
    """Per (study, finding): 1.0 right, 0.0 wrong (missing prediction is wrong), NaN unlabelled."""
    g = gold.set_index(KEY)
    p = preds.drop_duplicates(KEY).set_index(KEY).reindex(g.index)
    out = pd.DataFrame(index=g.index)
    for f in findings:
        gold_f = g[f"gold_{f}"]
        pred_f = p[f"answer_{f}"] if f"answer_{f}" in p else pd.Series(None, index=g.index)
        out[f] = np.where(gold_f.isna(), np.nan, (pred_f.to_numpy() == gold_f.to_numpy()).astype(float))
    return out


def accuracy(corr: pd.DataFrame, findings: Sequence[str]) -> dict[str, float]:
    """Top-1 accuracy per finding over labelled studies, and their average."""
    accs = {f: float(np.nanmean(corr[f].to_numpy())) if corr[f].notna().any() else float("nan") for f in findings}
    out = {f"acc.{f}": v for f, v in accs.items()}
    out["acc.mean"] = float(np.nanmean(list(accs.values())))
    return out


def best_teacher(val_corr: dict[str, pd.DataFrame], findings: Sequence[str]) -> str:
    return max(sorted(val_corr), key=lambda t: accuracy(val_corr[t], findings)["acc.mean"])


def student_predictions(
    model: Any,
    processor: Any,
    gold: pd.DataFrame,
    image_of: dict[str, str],
    images: Any,
    prompts: dict[str, str],
    max_new_tokens: int,
    batch_size: int,
    system: str,
    findings: Sequence[str],
) -> pd.DataFrame:
    """Greedy answers of a student for every gold row (its own prompt per task)."""
    from tqdm.auto import tqdm

    from apodistill.student import generate

    rows = gold[KEY].to_dict("records")
    texts: list[str] = []
    for i in tqdm(range(0, len(rows), batch_size), desc=f"evaluate {system}", unit_scale=batch_size):
        batch = rows[i : i + batch_size]
        imgs = [
            [images.get(image_of[r["prior_study_id"]]), images.get(image_of[r["study_id"]])] if r["task"] == "pair" else [images.get(image_of[r["study_id"]])]
            for r in batch
        ]
        texts += generate(model, processor, imgs, [prompts[r["task"]] for r in batch], max_new_tokens)
    df = pd.DataFrame(rows)
    df["system"] = system
    df["text"] = texts
    return parse_predictions(df, findings)
