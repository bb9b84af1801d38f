"""Drift measurement: leave-one-out agreement by hand, JS divergence by hand, the planted
drift flagged within two windows with no flags on the other teachers, auto weights from
the train split only, plots and dvc-plots CSVs written. No GX here (fast)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from validation_helpers import ACCURACY, FINDINGS, roster_table

from apodistill.validation.agreement import long_labels, loo_agreement, teacher_agreement
from apodistill.validation.derive import derive_columns
from apodistill.validation.drift import DETECTORS, js_divergence, make_detector, measure_drift
from apodistill.validation.plots import write_drift_report, write_drift_tables
from apodistill.validation.weights import teacher_weights

WINDOW = 100
DRIFT_AT = 900


def _prepared(table: pd.DataFrame, studies: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the gate hands to drift: every row (with refused) and the clean rows' scored labels."""
    rows = derive_columns(table, FINDINGS, dict(zip(studies["study_id"], studies["split"])))
    rows["refused"] = rows["status"] == "refused"
    scored = loo_agreement(long_labels(rows[rows["status"] == "ok"], FINDINGS))
    return rows, scored


@pytest.fixture(scope="module")
def drifting():
    table, studies = roster_table(n_studies=1800, seed=11, drift_teacher="grok4", drift_at=DRIFT_AT, drift_accuracy=0.5)
    return _prepared(table, studies)


def _answers(**by_teacher: str) -> pd.DataFrame:
    """One study, one finding: teacher -> value."""
    return pd.DataFrame(
        {
            "teacher": list(by_teacher),
            "task": "single",
            "study_id": "s1",
            "prior_study_id": None,
            "split": "train",
            "stream_index": 0,
            "row_id": range(len(by_teacher)),
            "answer_edema": list(by_teacher.values()),
        }
    )


def test_leave_one_out_majority_by_hand():
    scored = loo_agreement(long_labels(_answers(a="yes", b="yes", c="yes", d="no", e="no"), ["edema"])).set_index("teacher")
    # a: others b,c = yes (2) vs d,e = no (2) -> tie -> no majority
    assert math.isnan(scored.loc["a", "agree"]) and pd.isna(scored.loc["a", "majority"])
    # d: others yes x3, no x1 -> yes; d said no
    assert scored.loc["d", "majority"] == "yes" and scored.loc["d", "agree"] == 0.0
    # with its own vote counted, d's item would still be "yes": the point is a's tie
    scored = loo_agreement(long_labels(_answers(a="no", b="yes", c="yes"), ["edema"])).set_index("teacher")
    assert scored.loc["a", "agree"] == 0.0 and pd.isna(scored.loc["b", "majority"])  # b: yes vs no tie
    # too few other voters
    scored = loo_agreement(long_labels(_answers(a="no", b="no"), ["edema"]), min_voters=2)
    assert scored["agree"].isna().all()


def test_js_divergence_by_hand():
    assert js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert js_divergence(np.array([3.0, 1.0]), np.array([6.0, 2.0])) == pytest.approx(0.0)
    # p = (1/2, 1/2), q = (1, 0): m = (3/4, 1/4)
    expected = 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)) + 0.5 * math.log2(1 / 0.75)
    assert js_divergence(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(expected)


def test_planted_drift_flagged_within_two_windows_and_no_false_flags(drifting):
    rows, scored = drifting
    result = measure_drift(rows, scored, WINDOW, "adwin", {"delta": 0.002})
    flags = result.flags
    grok = flags[flags["teacher"] == "grok4"]
    assert len(grok) >= 1
    assert (grok["stream_index"] >= DRIFT_AT).all(), "no flag before the drift"
    delay = grok["window"].min() - DRIFT_AT // WINDOW
    assert 0 <= delay <= 2
    others = flags[flags["teacher"] != "grok4"]
    assert len(others) == 0, others
    m = result.summary()
    assert m["drift.grok4.flags"] == len(grok) and m["drift.gpt5.flags"] == 0
    assert m["drift.flagged_teachers"] == 1
    # the measures move with the drift: agreement falls, divergence rises
    w = result.windows[result.windows["teacher"] == "grok4"].set_index("window")
    assert w.loc[: DRIFT_AT // WINDOW - 1, "agreement"].mean() - w.loc[DRIFT_AT // WINDOW :, "agreement"].mean() > 0.2
    assert w.loc[DRIFT_AT // WINDOW :, "js_divergence"].mean() > 3 * w.loc[: DRIFT_AT // WINDOW - 1, "js_divergence"].mean()


def test_page_hinkley_is_registered_and_also_finds_the_drift(drifting):
    rows, scored = drifting
    assert {"adwin", "page_hinkley"} <= set(DETECTORS.names())
    flags = measure_drift(rows, scored, WINDOW, "page_hinkley", {}).flags
    assert set(flags["teacher"]) == {"grok4"}
    assert flags["window"].min() - DRIFT_AT // WINDOW <= 2


def test_unknown_detector_and_bad_params_fail_naming_them():
    with pytest.raises(KeyError, match="adwin"):
        make_detector("cusum", {})
    with pytest.raises(ValueError, match="detector_params"):
        make_detector("adwin", {"not_a_param": 1})


def test_windows_measure_refusals_and_labels():
    table, studies = roster_table(n_studies=400, seed=5, drift_teacher=None, refusal_rate=0.0)
    late = (table["teacher"] == "moonshot") & (table["stream_index"] >= 200)
    table.loc[late, "status"] = "refused"
    table.loc[late, "text"] = "As an AI, I cannot help."
    rows, scored = _prepared(table, studies)
    w = measure_drift(rows, scored, WINDOW, "adwin", {}).windows.set_index(["teacher", "window"])
    assert w.loc[("moonshot", 1), "refusal_rate"] == 0.0 and w.loc[("moonshot", 3), "refusal_rate"] == 1.0
    assert w.loc[("moonshot", 3), "rated"] == 0 and w.loc[("gpt5", 3), "rated"] > 90
    fracs = w[[c for c in w.columns if c.startswith("frac_")]].dropna()
    assert np.allclose(fracs.sum(axis=1), 1.0)


def test_auto_weights_use_the_train_split_only():
    table, studies = roster_table(n_studies=300, seed=2, drift_teacher=None, refusal_rate=0.0)
    rows = derive_columns(table, FINDINGS, dict(zip(studies["study_id"], studies["split"])))
    teachers = sorted(ACCURACY)
    auto = teacher_weights("auto", rows, FINDINGS, teachers)
    assert auto["mode"] == "auto" and auto["split"] == "train"
    assert np.mean(list(auto["weights"].values())) == pytest.approx(1.0)
    assert auto["weights"]["gpt5"] > auto["weights"]["sonnet4"]  # accuracy 0.90 vs 0.75
    # sabotage gpt5 on test studies only: train-based weights must not move
    test = (rows["teacher"] == "gpt5") & (rows["split"] == "test")
    for f in FINDINGS:
        rows.loc[test, f"answer_{f}"] = "uncertain"
    assert teacher_weights("auto", rows, FINDINGS, teachers)["weights"] == pytest.approx(auto["weights"])
    # ... whereas agreement over all splits would have seen it
    assert teacher_agreement(loo_agreement(long_labels(rows, FINDINGS)))["agreement"]["gpt5"] < auto["agreement"]["gpt5"]
    fixed = teacher_weights({"gpt5": 2.0, "sonnet4": 0.5}, rows, FINDINGS, teachers)
    assert fixed == {"mode": "fixed", "weights": {"gpt5": 2.0, "sonnet4": 0.5}}


def test_drift_report_files(drifting, tmp_path):
    rows, scored = drifting
    result = measure_drift(rows, scored, WINDOW, "adwin", {"delta": 0.002})
    write_drift_report(result, tmp_path)
    for teacher in ACCURACY:
        png = tmp_path / f"{teacher}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        csv = pd.read_csv(tmp_path / f"{teacher}.csv")
        assert list(csv["window"]) == list(range(18)) and csv.columns[-1] == "agreement"
    assert (tmp_path / "overview.png").is_file()
    assert pd.read_csv(tmp_path / "grok4.csv")["flags"].sum() == result.summary()["drift.grok4.flags"]


def test_pairs_are_their_own_stream(tmp_path):
    table, studies = roster_table(n_studies=400, seed=6, drift_teacher="grok4", drift_at=200, drift_accuracy=0.4, pairs=399)
    rows, scored = _prepared(table, studies)
    result = measure_drift(rows, scored, WINDOW, "adwin", {"delta": 0.005, "clock": 8})
    assert set(result.windows["task"]) == {"single", "pair"}
    pair_flags = result.flags[result.flags["task"] == "pair"]
    assert set(pair_flags["teacher"]) == {"grok4"} and pair_flags["stream"].str.startswith("pair:").all()
    assert set(result.flags["teacher"]) == {"grok4"}
    write_drift_tables(result, tmp_path)  # (plots: test_drift_report_files; 15 PNGs would take ~8 s)
    assert pd.read_csv(tmp_path / "grok4_pair.csv")["flags"].sum() == len(pair_flags)
    assert (tmp_path / "grok4.csv").is_file()
