"""Per-finding classification metrics for parsed answers against the benchmark's gold labels.

Predictions come one row per example with ``answer_<finding>`` strings (``yes|no|uncertain`` for
single studies, ``improving|stable|worsening`` for prior/current pairs) and None where the system's
output could not be parsed or was a refusal. Gold comes from ``studies.parquet``
(``label_<finding>`` floats) or ``pairs.parquet`` (``progression_<finding>`` strings).

Conventions (docs/metrics.md):
- an unparseable / refused / out-of-vocabulary answer counts as wrong, never as skipped, so a
  system cannot raise its accuracy by refusing the hard cases;
- gold ``-1`` (uncertain) and NaN / None (not labelled) rows are left out for that finding only;
- ``uncertain`` against a gold 1/0 is wrong.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from apodistill.findings import values_for

UNPARSED = "unparsed"


def _task_of(gold: pd.DataFrame, finding: str, task: str | None) -> str:
    """Which gold column a finding is read from: ``label_`` (single) or ``progression_`` (pair)."""
    has_single, has_pair = f"label_{finding}" in gold, f"progression_{finding}" in gold
    if task is not None:
        values_for(task)  # validates the name
        col = f"label_{finding}" if task == "single" else f"progression_{finding}"
        if col not in gold:
            raise KeyError(f"gold has no column {col!r} for task {task!r}")
        return task
    if has_single and has_pair:
        raise ValueError(f"gold has both label_{finding} and progression_{finding}: pass task='single' or 'pair'")
    if has_single:
        return "single"
    if has_pair:
        return "pair"
    raise KeyError(f"gold has neither label_{finding} nor progression_{finding}")


def _expected(gold_col: pd.Series, task: str) -> pd.Series:
    """Gold as the answer string a correct system gives, None where the example is left out."""
    if task == "single":
        out = pd.Series(None, index=gold_col.index, dtype=object)
        values = pd.to_numeric(gold_col, errors="raise")
        out[values == 1.0] = "yes"
        out[values == 0.0] = "no"
        return out
    allowed = set(values_for("pair"))
    cleaned = gold_col.map(lambda v: v.strip().lower() if isinstance(v, str) else None)
    bad = cleaned.dropna()[~cleaned.dropna().isin(allowed)]
    if len(bad):
        raise ValueError(f"gold progression values outside {sorted(allowed)}: {sorted(set(bad))[:5]}")
    return cleaned.astype(object).where(cleaned.notna(), None)


def _normalised(answers: pd.Series, task: str) -> pd.Series:
    """Answers lower-cased; None for missing or anything outside the task's vocabulary."""
    allowed = set(values_for(task))

    def norm(v):
        if isinstance(v, str) and v.strip().lower() in allowed:
            return v.strip().lower()
        return None

    return answers.map(norm).astype(object)


def _align(pred: pd.DataFrame, gold: pd.DataFrame, key: str) -> pd.DataFrame:
    """Gold rows in prediction order; every prediction must have exactly one gold row."""
    for name, frame in (("pred", pred), ("gold", gold)):
        if key not in frame:
            raise KeyError(f"{name} has no key column {key!r}")
        dup = frame[key][frame[key].duplicated()]
        if len(dup):
            raise ValueError(f"{name} has duplicate {key} values, e.g. {list(dup.iloc[:3])}")
    gold_idx = gold.set_index(key)
    missing = pred[key][~pred[key].isin(gold_idx.index)]
    if len(missing):
        raise ValueError(f"{len(missing)} predictions have no gold row, e.g. {list(missing.iloc[:3])}")
    return gold_idx.loc[pred[key].to_numpy()].reset_index()


def correctness(
    pred: pd.DataFrame,
    gold: pd.DataFrame,
    findings: Sequence[str],
    key: str = "study_id",
    task: str | None = None,
) -> pd.DataFrame:
    """Per-example correctness, index = ``pred[key]``, one column per finding.

    1.0 right, 0.0 wrong (unparsed answers included), NaN where gold leaves the example out.
    This matrix is what :func:`apodistill.metrics.paired_bootstrap` resamples.
    """
    aligned = _align(pred, gold, key)
    out = {}
    for f in findings:
        t = _task_of(gold, f, task)
        col = f"answer_{f}"
        if col not in pred:
            raise KeyError(f"pred has no column {col!r}")
        expected = _expected(aligned[f"label_{f}" if t == "single" else f"progression_{f}"], t)
        answers = _normalised(pred[col].reset_index(drop=True), t)
        right = (answers == expected) & answers.notna()
        out[f] = np.where(expected.isna(), np.nan, right.astype(float))
    return pd.DataFrame(out, index=pd.Index(pred[key].to_numpy(), name=key), columns=list(findings))


def _wellformed(pred: pd.DataFrame, gold: pd.DataFrame, findings: Sequence[str], task: str | None) -> float:
    if len(pred) == 0:
        return float("nan")
    ok = np.ones(len(pred), dtype=bool)
    for f in findings:
        ok &= _normalised(pred[f"answer_{f}"], _task_of(gold, f, task)).notna().to_numpy()
    return float(ok.mean())


def accuracy_per_finding(
    pred: pd.DataFrame,
    gold: pd.DataFrame,
    findings: Sequence[str],
    key: str = "study_id",
    task: str | None = None,
) -> dict[str, float]:
    """Top-1 accuracy per finding and their unweighted mean (the MS-CXR-T protocol).

    Keys: ``acc.<finding>``, ``acc.mean`` (mean over findings that have at least one gold
    example), ``wellformed`` (fraction of rows whose every answer parses), ``n`` (rows scored).
    Pass one row per evaluated example, with None answers for unreadable outputs, so that ``n``
    is the same for every system compared.
    """
    corr = correctness(pred, gold, findings, key, task)
    out: dict[str, float] = {}
    for f in findings:
        col = corr[f].to_numpy()
        out[f"acc.{f}"] = float(np.nanmean(col)) if np.isfinite(col).any() else float("nan")
    accs = [out[f"acc.{f}"] for f in findings if np.isfinite(out[f"acc.{f}"])]
    out["acc.mean"] = float(np.mean(accs)) if accs else float("nan")
    out["wellformed"] = _wellformed(pred, gold, findings, task)
    out["n"] = float(len(pred))
    return out


def confusion(
    pred: pd.DataFrame,
    gold: pd.DataFrame,
    finding: str,
    key: str = "study_id",
    task: str | None = None,
) -> pd.DataFrame:
    """Counts of gold class (rows) by predicted class (columns, plus ``unparsed``) for one finding.

    Rows are ``yes``/``no`` for single studies (gold uncertain / missing left out) and the three
    progression classes for pairs; columns are the task's whole vocabulary, so ``uncertain``
    answers are visible, and ``unparsed`` collects None and out-of-vocabulary answers.
    """
    t = _task_of(gold, finding, task)
    aligned = _align(pred, gold, key)
    expected = _expected(aligned[f"label_{finding}" if t == "single" else f"progression_{finding}"], t)
    answers = _normalised(pred[f"answer_{finding}"].reset_index(drop=True), t).fillna(UNPARSED)
    rows = ["yes", "no"] if t == "single" else list(values_for("pair"))
    cols = list(values_for(t)) + [UNPARSED]
    table = pd.DataFrame(0, index=pd.Index(rows, name="gold"), columns=pd.Index(cols, name="pred"))
    keep = expected.notna()
    for g, p in zip(expected[keep], answers[keep]):
        table.loc[g, p] += 1
    return table


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1 with 0 where a denominator is 0 (sklearn's zero_division=0)."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return p, r, f


def precision_recall_f1(
    pred: pd.DataFrame,
    gold: pd.DataFrame,
    findings: Sequence[str],
    key: str = "study_id",
    task: str | None = None,
) -> dict[str, float]:
    """``precision.<f>``, ``recall.<f>``, ``f1.<f>`` and ``f1.mean``.

    Single studies: the positive class is ``yes`` (an ``uncertain`` or unparsed answer on a gold
    positive is a miss). Pairs have no positive class: the three progression classes are
    macro-averaged.
    """
    out: dict[str, float] = {}
    for f in findings:
        conf = confusion(pred, gold, f, key, task)
        positives = ["yes"] if list(conf.index) == ["yes", "no"] else list(conf.index)
        scores = []
        for c in positives:
            tp = int(conf.loc[c, c])
            fp = int(conf[c].sum() - tp)
            fn = int(conf.loc[c].sum() - tp)
            scores.append(_prf(tp, fp, fn))
        p, r, f1 = (float(np.mean(x)) for x in zip(*scores))
        out[f"precision.{f}"], out[f"recall.{f}"], out[f"f1.{f}"] = p, r, f1
    out["f1.mean"] = float(np.mean([out[f"f1.{f}"] for f in findings])) if findings else float("nan")
    return out
