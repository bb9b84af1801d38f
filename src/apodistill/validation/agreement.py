"""Agreement of each teacher with the leave-one-out majority of the other teachers.

Why leave-one-out: with 7 teachers, a teacher's own vote is 1/7 of the pooled majority;
leaving it out keeps a biased teacher from agreeing with itself. The same number feeds
the drift stream (per row, in stream order) and the ``auto`` teacher weights (train split).
No reference label is used: this works on a stream nobody has labelled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Identifies the question a label answers, across teachers.
ITEM_KEY = ("task", "study_id", "prior_study_id")


def long_labels(table: pd.DataFrame, findings: list[str]) -> pd.DataFrame:
    """One row per (trajectory, finding) with a parsed label, from ``answer_<finding>`` columns.

    Keeps ``row_id`` (when present), teacher, item key, split and stream_index.
    """
    keep = [c for c in ("row_id", "teacher", *ITEM_KEY, "split", "stream_index") if c in table.columns]
    parts = []
    for f in findings:
        part = table[keep].copy()
        part["finding"] = f
        part["value"] = table[f"answer_{f}"]
        parts.append(part[part["value"].notna()])
    if not parts:
        return pd.DataFrame(columns=[*keep, "finding", "value"])
    out = pd.concat(parts, ignore_index=True)
    out["prior_study_id"] = out["prior_study_id"].fillna("")
    return out


def loo_agreement(labels: pd.DataFrame, min_voters: int = 2) -> pd.DataFrame:
    """``labels`` (from :func:`long_labels`) with ``majority`` and ``agree`` added.

    ``majority`` is the most frequent value among the *other* teachers' labels for the same
    item and finding; ``agree`` is 1.0 / 0.0, or NaN when there is no strict majority
    (a tie, or fewer than ``min_voters`` other teachers answered). ``peers`` counts the
    other teachers and ``share_<value>`` is the fraction of their votes for each value
    (NaN without peers). A teacher that answered one item twice votes once per distinct value.
    """
    out = labels.copy()
    if out.empty:
        out["majority"] = pd.Series(dtype=object)
        out["agree"] = pd.Series(dtype=float)
        return out
    item = pd.factorize(pd.MultiIndex.from_frame(out[[*ITEM_KEY, "finding"]].astype(str)))[0]
    values, value_names = pd.factorize(out["value"])
    voter = pd.factorize(pd.MultiIndex.from_arrays([out["teacher"].astype(str), item]))[0]
    n_items, n_values, n_voters = item.max() + 1, len(value_names), voter.max() + 1

    own = np.zeros((n_voters, n_values))
    own[voter, values] = 1.0  # one vote per (teacher, item, value)
    voter_item = np.zeros(n_voters, dtype=np.int64)
    voter_item[voter] = item
    counts = np.zeros((n_items, n_values))
    np.add.at(counts, voter_item, own)

    others = counts[item] - own[voter]
    top = others.max(axis=1)
    strict = (others == top[:, None]).sum(axis=1) == 1
    voters = np.zeros(n_items)
    np.add.at(voters, voter_item, 1.0)
    enough = (voters[item] - 1) >= min_voters
    has = strict & enough & (top > 0)
    majority = np.asarray(value_names, dtype=object)[others.argmax(axis=1)]
    out["majority"] = pd.Series(np.where(has, majority, None), index=out.index, dtype=object)
    out["agree"] = np.where(has, (others.argmax(axis=1) == values).astype(float), np.nan)
    # share of the other teachers' votes for each value: the drift detectors compare a
    # teacher's label rate with its peers' on the same items (robust to the case mix)
    total = others.sum(axis=1)
    out["peers"] = voters[item] - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        for j, name in enumerate(value_names):
            out[f"share_{name}"] = np.where(total > 0, others[:, j] / total, np.nan)
    return out


def row_agreement(scored: pd.DataFrame) -> pd.Series:
    """Mean agreement over the findings of each trajectory (indexed by ``row_id``)."""
    return scored.groupby("row_id")["agree"].mean()


def teacher_agreement(scored: pd.DataFrame) -> pd.DataFrame:
    """Per teacher: agreement rate over items that had a majority, and how many there were."""
    rated = scored[scored["agree"].notna()]
    g = rated.groupby("teacher")["agree"]
    return pd.DataFrame({"agreement": g.mean(), "items": g.size()})
