"""Patient-level splits and label-stratified patient subsets.

Why patient level: two studies of one patient share anatomy; if they fell in different
splits the test score would measure memorised patients. Why stratified: the paper trains
on a tenth of MIMIC-CXR, and a plain random tenth of a few hundred synthetic patients can
lose most of a rare finding. Patients are grouped by which findings they ever show, each
group shuffled, the groups laid end to end, and position ``i`` gets the low-discrepancy
number ``frac(offset + i * golden)``: any run of consecutive patients, hence every group,
gets close to the requested shares. Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_GOLDEN = (np.sqrt(5) - 1) / 2


def _stratified_order(patients: pd.DataFrame, strata: list[str], rng: np.random.Generator) -> pd.Index:
    """Patient ids grouped by stratum (positive/negative on each column), shuffled inside groups."""
    keys = (patients[strata].fillna(0) > 0).astype(int).astype(str).agg("".join, axis=1) if strata else pd.Series("", index=patients.index)
    order: list = []
    for key in sorted(keys.unique()):
        ids = keys.index[keys == key].to_numpy()
        order.extend(rng.permutation(np.sort(ids)))
    return pd.Index(order)


def _uniform_positions(n: int, rng: np.random.Generator) -> np.ndarray:
    return (rng.random() + np.arange(n) * _GOLDEN) % 1.0


def patient_strata(studies: pd.DataFrame, findings: list[str]) -> pd.DataFrame:
    """One row per patient: 1 where the patient ever has the finding (label 1 or -1)."""
    cols = [f"label_{f}" for f in findings if f"label_{f}" in studies]
    ever = studies[["patient_id"] + cols].copy()
    ever[cols] = ever[cols].abs().fillna(0)
    return ever.groupby("patient_id", sort=True)[cols].max()


def assign_splits(
    studies: pd.DataFrame, findings: list[str], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    """patient_id -> ``train|val|test``, stratified on the findings each patient shows."""
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training patients")
    rng = np.random.default_rng([seed, 101])
    strata = patient_strata(studies, findings)
    order = _stratified_order(strata, list(strata.columns), rng)
    u = _uniform_positions(len(order), rng)
    split = np.where(u < test_fraction, "test", np.where(u < test_fraction + val_fraction, "val", "train"))
    return dict(zip(order, split))


def stratified_subset(studies: pd.DataFrame, findings: list[str], fraction: float, seed: int) -> set[str]:
    """Patient ids of a label-stratified ``fraction`` of patients, taken within each split."""
    if fraction >= 1:
        return set(studies["patient_id"])
    rng = np.random.default_rng([seed, 202])
    keep: set[str] = set()
    for _, part in studies.groupby("split", sort=True):
        strata = patient_strata(part, findings)
        order = _stratified_order(strata, list(strata.columns), rng)
        u = _uniform_positions(len(order), rng)
        chosen = [pid for pid, ui in zip(order, u) if ui < fraction]
        if not chosen and len(order):
            chosen = [order[0]]  # never empty a split that had patients
        keep.update(chosen)
    return keep
