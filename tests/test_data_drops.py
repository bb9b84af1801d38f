"""Readers that count what they drop: missing reports, unjoined and unreadable MS-CXR-T rows,
the fraction that fails the stage, MS-CXR-T with or without `previous_study_id`, and a
failing fetch that leaves nothing behind. Fixture trees: tests/fixtures (real layouts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from params_helpers import DEFAULT, section
from apodistill.data import DataError, build
from apodistill.data.card import data_card
from apodistill.data.sources import read_source_record

FIX = Path(__file__).parent / "fixtures"
MIMIC, MSCXRT = FIX / "mimic_cxr", FIX / "ms_cxr_t"
CSV = "MS_CXR_T_temporal_image_classification_v1.0.0.csv"


def params(source: str, **fetch) -> SimpleNamespace:
    return SimpleNamespace(base=DEFAULT.base, fetch=section("fetch", source=source, **{"max_bad_fraction": 0.5, **fetch}))


def tree_with_reports_outside(tmp_path: Path) -> tuple[Path, Path]:
    """The MIMIC fixture as PhysioNet ships it: the JPG tree, and the reports release elsewhere."""
    root = tmp_path / "physionet" / "mimic-cxr-jpg" / "2.1.0"
    shutil.copytree(MIMIC, root, ignore=shutil.ignore_patterns("mimic-cxr-reports", "_make_fixtures.py"))
    reports = tmp_path / "downloads" / "reports-unzipped"
    shutil.copytree(MIMIC / "mimic-cxr-reports", reports)
    return root, reports


def card_of(summary: dict, out: Path) -> str:
    tables = [pd.read_parquet(out / f"{n}.parquet") for n in ("studies", "pairs", "image_quarantine")]
    return data_card(*tables, summary, "mimic_cxr", None)


def test_reports_outside_the_tree_are_an_error_naming_where_they_were_looked_for(tmp_path):
    root, _ = tree_with_reports_outside(tmp_path)
    out = tmp_path / "bench"
    with pytest.raises(DataError) as err:
        build(params("mimic_cxr", root=str(root), max_dropped_fraction=0.5), out)
    msg = str(err.value)
    assert "no report found for any of the 7 studies" in msg
    for place in (root / "mimic-cxr-reports" / "files", root / "files", root.parent / "mimic-cxr-reports" / "files"):
        assert str(place) in msg
    assert "fetch.reports_root" in msg
    assert not out.exists()  # nothing written


def test_missing_reports_are_counted_in_the_card_and_fail_past_the_fraction(tmp_path):
    root, reports = tree_with_reports_outside(tmp_path)
    (reports / "files/p10/p10000032/s53189527.txt").unlink()  # a second missing report (58000000 has none)
    summary = build(params("mimic_cxr", root=str(root), reports_root=str(reports), max_dropped_fraction=0.5), tmp_path / "a")
    assert summary["dropped.missing_reports"] == 2 and summary["dropped.reports_expected"] == 7
    assert summary["dropped.missing_report_fraction"] == pytest.approx(2 / 7)
    assert summary["dropped.missing_images"] == 0 and summary["dropped.unreadable_rows"] == 0
    studies = pd.read_parquet(tmp_path / "a" / "studies.parquet").set_index("study_id")
    assert studies.at["50414267", "report"].startswith("FINDINGS: Moderate right pleural effusion")
    card = card_of(summary, tmp_path / "a")
    assert "## What the readers dropped" in card and "| missing report file | 2 | 7 | 28.57% |" in card
    json.dumps(summary)  # what reports/fetch.json gets

    with pytest.raises(DataError) as err:  # the default fraction (1%)
        build(params("mimic_cxr", root=str(root), reports_root=str(reports)), tmp_path / "b")
    assert "2 of 7 studies (28.57%) have no report file" in str(err.value)
    assert "fetch.max_dropped_fraction=1.00%" in str(err.value) and str(reports / "files") in str(err.value)
    assert not (tmp_path / "b").exists()


def test_reports_beside_the_tree_are_found(tmp_path):
    root, reports = tree_with_reports_outside(tmp_path)
    shutil.move(reports, root.parent / "mimic-cxr-reports")
    summary = build(params("mimic_cxr", root=str(root), max_dropped_fraction=0.5), tmp_path / "out")
    assert summary["dropped.missing_reports"] == 1  # 58000000: no report in the fixture
    studies = pd.read_parquet(tmp_path / "out" / "studies.parquet").set_index("study_id")
    assert studies.at["53189527", "report"] == "IMPRESSION: Small right pleural effusion, decreased."


def test_building_without_reports_is_a_choice(tmp_path):
    root, _ = tree_with_reports_outside(tmp_path)
    summary = build(params("mimic_cxr", root=str(root), max_dropped_fraction=1.0), tmp_path / "out")
    assert summary["dropped.missing_reports"] == summary["dropped.reports_expected"] == 7
    assert "| missing report file | 7 | 7 | 100.00% |" in card_of(summary, tmp_path / "out")


def _pairs(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "pairs.parquet").sort_values("pair_id").reset_index(drop=True)


@pytest.mark.parametrize("ids", ["path_like", "bare_hash"])
def test_ms_cxr_t_without_previous_study_id_joins_the_same_pairs(tmp_path, ids):
    raw = pd.read_csv(MSCXRT / CSV, dtype=str)
    if ids == "bare_hash":  # the prior's study is then known only from MIMIC's metadata
        for c in ("dicom_id", "previous_dicom_id"):
            raw[c] = raw[c].str.rsplit("/", n=1).str[-1]
    for name, table in (("with", raw), ("without", raw.drop(columns="previous_study_id"))):
        (tmp_path / name).mkdir()
        table.to_csv(tmp_path / name / CSV, index=False)
    with_col = build(params("ms_cxr_t", root=str(MIMIC), annotations=str(tmp_path / "with"), max_dropped_fraction=0.5), tmp_path / "a")
    without = build(params("ms_cxr_t", root=str(MIMIC), annotations=str(tmp_path / "without"), max_dropped_fraction=0.5), tmp_path / "b")
    a, b = _pairs(tmp_path / "a"), _pairs(tmp_path / "b")
    assert len(a) == 3
    pd.testing.assert_frame_equal(a, b)
    for k in ("dropped.unjoined_rows", "dropped.unreadable_rows", "pairs", "studies"):
        assert with_col[k] == without[k], k


def test_ms_cxr_t_prior_study_from_the_path_when_metadata_is_absent(tmp_path):
    root = tmp_path / "mimic"
    shutil.copytree(MIMIC, root, ignore=shutil.ignore_patterns("mimic-cxr-2.0.0-metadata.csv.gz"))
    (tmp_path / "csv").mkdir()
    pd.read_csv(MSCXRT / CSV, dtype=str).drop(columns="previous_study_id").to_csv(tmp_path / "csv" / CSV, index=False)
    build(params("ms_cxr_t", root=str(root), annotations=str(tmp_path / "csv"), max_dropped_fraction=0.5), tmp_path / "out")
    pairs = _pairs(tmp_path / "out")
    assert sorted(pairs["prior_study_id"]) == ["50414267", "56000001", "57375967"]


def test_unreadable_and_unjoined_ms_cxr_t_rows_are_counted_and_fail_past_the_fraction(tmp_path):
    raw = pd.read_csv(MSCXRT / CSV, dtype=str)
    broken = raw.iloc[[0, 0]].copy()
    broken.iloc[0, broken.columns.get_loc("subject_id")] = "n/a"
    broken.iloc[1, broken.columns.get_loc("edema_progression")] = "much worse"
    (tmp_path / "csv").mkdir()
    pd.concat([raw, broken]).to_csv(tmp_path / "csv" / CSV, index=False)
    summary = build(params("ms_cxr_t", root=str(MIMIC), annotations=str(tmp_path / "csv"), max_dropped_fraction=0.5), tmp_path / "a")
    assert summary["dropped.rows_read"] == 7
    assert summary["dropped.unreadable_rows"] == 2 and summary["dropped.unjoined_rows"] == 1
    q = pd.read_parquet(tmp_path / "a" / "image_quarantine.parquet")
    reasons = q.set_index("image_path")["reason"]
    assert reasons[f"{CSV} row 7"] == "unreadable row: subject_id 'n/a' is not a whole number"
    assert reasons[f"{CSV} row 8"].startswith("unreadable row: edema_progression 'much worse' is not one of")
    assert reasons[f"{CSV} row 6"].startswith("unjoined row:")
    card = data_card(*[pd.read_parquet(tmp_path / "a" / f"{n}.parquet") for n in ("studies", "pairs", "image_quarantine")],
                     summary, "ms_cxr_t", None)
    assert "| unreadable annotation row | 2 | 7 | 28.57% |" in card and "| unjoined MS-CXR-T row | 1 | 7 | 14.29% |" in card
    with pytest.raises(DataError, match=r"2 unreadable and 1 unjoined of 7 annotation rows \(42\.86%\), more than fetch.max_dropped_fraction=10\.00%"):
        build(params("ms_cxr_t", root=str(MIMIC), annotations=str(tmp_path / "csv"), max_dropped_fraction=0.1), tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_a_failing_fetch_leaves_an_earlier_output_untouched_and_no_temporary_folder(tmp_path):
    out = tmp_path / "bench"
    build(params("synthetic", n_patients=6, image_size=32), out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert read_source_record(out) == {"source": "synthetic", "credentialed": False, "images": 18, "image_roots": ["."],
                                       "licence": "rendered by apodistill from seeded parameters (no patient data)"}
    with pytest.raises(DataError):
        build(params("mimic_cxr", root=str(tmp_path / "missing")), out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["bench"]


def test_real_sources_record_that_their_images_are_credentialed(tmp_path):
    build(params("mimic_cxr", root=str(MIMIC), max_dropped_fraction=0.5), tmp_path / "out")
    rec = read_source_record(tmp_path / "out")
    assert rec["source"] == "mimic_cxr" and rec["credentialed"] is True and "PhysioNet" in rec["licence"]
    assert rec["image_roots"] == [str(MIMIC / "files")]
