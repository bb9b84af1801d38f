"""Synthetic benchmark: determinism, contract, splits, pairs, image signatures, reports."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from params_helpers import section
from apodistill.data import RENDERED, build, render_study_image, resolve_image
from apodistill.data.sources import PAIR_COLUMNS, STUDY_COLUMNS
from apodistill.findings import CHEXPERT_14, MS_CXR_T_5

SMALL = dict(n_patients=40, studies_per_patient=3, image_size=48)


def params(seed: int = 42, **fetch) -> SimpleNamespace:
    return SimpleNamespace(base=section("base", seed=seed), fetch=section("fetch", **{**SMALL, **fetch}))


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    return out, build(params(), out)


def test_same_seed_gives_byte_identical_tables_and_images(bench, tmp_path):
    out, _ = bench
    build(params(), tmp_path)
    for name in ("studies.parquet", "pairs.parquet", "image_quarantine.parquet"):
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name
    first = pd.read_parquet(out / "studies.parquet")["image_path"].iloc[0]
    assert (out / first).read_bytes() == (tmp_path / first).read_bytes()


def test_other_seed_gives_other_data(bench, tmp_path):
    out, _ = bench
    build(params(seed=7), tmp_path)
    assert (out / "studies.parquet").read_bytes() != (tmp_path / "studies.parquet").read_bytes()


def test_tables_follow_the_contract(bench):
    out, summary = bench
    studies = pd.read_parquet(out / "studies.parquet")
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert list(studies.columns[: len(STUDY_COLUMNS)]) == STUDY_COLUMNS
    assert all(f"severity_{f}" in studies for f in CHEXPERT_14)
    assert list(pairs.columns[: len(PAIR_COLUMNS)]) == PAIR_COLUMNS  # then the synthetic-only features (severities, sides)
    assert len(studies) == 40 * 3 and len(pairs) == 40 * 2 == summary["pairs"]
    assert studies["stream_index"].tolist() == list(range(len(studies)))
    assert pairs["stream_index"].tolist() == list(range(len(pairs)))
    assert studies["study_id"].is_unique
    labels = studies[[f"label_{f}" for f in CHEXPERT_14]]
    assert set(np.unique(labels.to_numpy()[~np.isnan(labels.to_numpy())])) <= {-1.0, 0.0, 1.0}
    for f in MS_CXR_T_5:
        assert set(pairs[f"progression_{f}"].dropna()) <= {"improving", "stable", "worsening"}
    # the stream is in time order within each patient
    for _, g in studies.groupby("patient_id"):
        assert g["study_index"].is_monotonic_increasing


def test_no_patient_in_two_splits(bench):
    out, _ = bench
    studies = pd.read_parquet(out / "studies.parquet")
    assert studies.groupby("patient_id")["split"].nunique().max() == 1
    assert set(studies["split"]) == {"train", "val", "test"}
    pairs = pd.read_parquet(out / "pairs.parquet")
    split_of = studies.drop_duplicates("patient_id").set_index("patient_id")["split"]
    assert (pairs["split"] == pairs["patient_id"].map(split_of)).all()


def test_every_image_decodes_at_the_configured_size(bench):
    from PIL import Image

    out, summary = bench
    studies = pd.read_parquet(out / "studies.parquet")
    for p in studies["image_path"]:
        with Image.open(resolve_image(out, p)) as im:
            assert im.size == (48, 48) and im.mode == "L"
    assert summary["bad_images"] == 0


def test_labels_match_severities_and_reports(bench):
    out, _ = bench
    s = pd.read_parquet(out / "studies.parquet")
    for f in ("pleural_effusion", "pneumothorax", "cardiomegaly"):
        present = s[f"severity_{f}"] > 0
        assert (s.loc[present, f"label_{f}"].isin([1.0, -1.0])).all()
        assert (s.loc[~present, f"label_{f}"] == 0.0).all()
    hedged = s[s["label_pleural_effusion"] == -1.0]
    assert all("ossible" in r or "uestionable" in r for r in hedged["report"])
    assert s["report"].str.startswith("FINDINGS:").all()
    assert s["report"].str.contains("No pneumothorax|no pneumothorax|No evidence of pneumothorax").any()
    assert s["label_fracture"].isna().all()
    assert ((s["label_no_finding"] == 1.0) == (s[[f"severity_{f}" for f in RENDERED if f != "support_devices"]].sum(axis=1) == 0)).all()


def test_pair_progression_follows_severity_change(bench):
    out, _ = bench
    s = pd.read_parquet(out / "studies.parquet").set_index("study_id")
    pairs = pd.read_parquet(out / "pairs.parquet")
    for f in MS_CXR_T_5:
        delta = s.loc[pairs["current_study_id"], f"severity_{f}"].to_numpy() - s.loc[pairs["prior_study_id"], f"severity_{f}"].to_numpy()
        lab = pairs[f"progression_{f}"].to_numpy()
        assert all(d >= 0.15 for d, v in zip(delta, lab) if v == "worsening")
        assert all(d <= -0.15 for d, v in zip(delta, lab) if v == "improving")
        assert all(abs(d) < 0.15 for d, v in zip(delta, lab) if v == "stable")


def test_prevalence_and_progression_classes_are_not_degenerate(tmp_path):
    """Default-size statistics without images: every finding 20-45% positive, all 3 classes common."""
    from apodistill.data.synthetic import ACUTE, simulate_series

    rng = np.random.default_rng(0)
    series = [simulate_series(3, rng) for _ in range(2000)]
    for f in ACUTE:
        rate = np.mean([st[f] > 0 for s in series for st in s])
        assert 0.2 < rate < 0.45, (f, rate)
        deltas = [b[f] - a[f] for s in series for a, b in zip(s, s[1:]) if a[f] or b[f]]
        classes = np.histogram(deltas, bins=[-2, -0.15, 0.15, 2])[0] / len(deltas)
        assert classes.min() > 0.2, (f, classes)


def test_fraction_keeps_a_stratified_patient_subset(tmp_path):
    full = build(params(n_patients=60, image_size=32), tmp_path / "full")
    part = build(params(n_patients=60, image_size=32, fraction=0.5), tmp_path / "half")
    assert 24 <= part["patients"] <= 36
    assert part["patients_test"] > 0 and part["patients_val"] > 0 and part["patients_train"] > 0
    s_full = pd.read_parquet(tmp_path / "full" / "studies.parquet")
    s_half = pd.read_parquet(tmp_path / "half" / "studies.parquet")
    assert set(s_half["patient_id"]) < set(s_full["patient_id"])
    # a patient's split does not depend on the fraction
    split_full = s_full.drop_duplicates("patient_id").set_index("patient_id")["split"]
    split_half = s_half.drop_duplicates("patient_id").set_index("patient_id")["split"]
    assert (split_half == split_full.loc[split_half.index]).all()
    # only the kept patients' images were rendered
    assert len(list((tmp_path / "half" / "images").rglob("*.png"))) == len(s_half)
    for f in MS_CXR_T_5:
        assert abs(part[f"positive_rate_{f}"] - full[f"positive_rate_{f}"]) < 0.15


@pytest.mark.parametrize("finding", RENDERED)
def test_each_finding_changes_the_image_and_grows_with_severity(finding):
    base = np.asarray(render_study_image({}, 64, seed=3), dtype=float)
    diffs = [np.abs(np.asarray(render_study_image({finding: s}, 64, seed=3), dtype=float) - base).sum() for s in (0.3, 1.0)]
    assert diffs[0] > 255 * 3  # clearly visible: several pixels fully changed, or many partly
    if finding != "support_devices":  # devices are present or not
        assert diffs[1] > diffs[0]


def test_signatures_have_the_expected_polarity():
    def mean(sev, seed=5):
        return np.asarray(render_study_image(sev, 64, seed=seed), dtype=float).mean()

    normal = mean({})
    assert mean({"pleural_effusion": 0.8}) > normal + 2  # fluid is dense (bright)
    assert mean({"pneumothorax": 0.8}) < normal - 1  # free air is dark
    assert mean({"edema": 0.8}) > normal + 1


def test_render_rejects_findings_it_cannot_draw():
    with pytest.raises(ValueError, match="no image signature"):
        render_study_image({"fracture": 1.0}, 64, 0)
