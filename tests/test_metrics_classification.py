"""Per-finding accuracy, confusion matrices and precision/recall/F1 on hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from apodistill.metrics import accuracy_per_finding, confusion, correctness, precision_recall_f1


@pytest.fixture
def single():
    gold = pd.DataFrame(
        {
            "study_id": ["s1", "s2", "s3", "s4", "s5"],
            "label_pleural_effusion": [1.0, 0.0, 1.0, -1.0, 0.0],
            "label_edema": [0.0, 0.0, np.nan, 1.0, 1.0],
        }
    )
    # s5 is in gold only (another split); s3 was unparseable; s2 answered "uncertain".
    pred = pd.DataFrame(
        {
            "study_id": ["s4", "s1", "s2", "s3"],
            "answer_pleural_effusion": ["yes", "yes", "uncertain", None],
            "answer_edema": ["yes", "no", "no", None],
        }
    )
    return pred, gold


def test_accuracy_counts_unparsed_as_wrong_and_skips_uncertain_gold(single):
    pred, gold = single
    out = accuracy_per_finding(pred, gold, ["pleural_effusion", "edema"])
    # effusion: s1 right, s2 wrong (uncertain), s3 wrong (unparsed), s4 gold -1 left out -> 1/3
    # edema: s4 right, s1 right, s2 right, s3 gold NaN left out -> 3/3
    assert out["acc.pleural_effusion"] == pytest.approx(1 / 3)
    assert out["acc.edema"] == pytest.approx(1.0)
    assert out["acc.mean"] == pytest.approx((1 / 3 + 1) / 2)
    assert out["wellformed"] == pytest.approx(3 / 4)
    assert out["n"] == 4
    assert set(out) == {"acc.pleural_effusion", "acc.edema", "acc.mean", "wellformed", "n"}


def test_correctness_matrix_follows_prediction_order(single):
    pred, gold = single
    corr = correctness(pred, gold, ["pleural_effusion", "edema"])
    assert list(corr.index) == ["s4", "s1", "s2", "s3"]
    expected = np.array([[np.nan, 1], [1, 1], [0, 1], [0, np.nan]], dtype=float)
    np.testing.assert_array_equal(corr.to_numpy(), expected)


def test_answers_are_case_and_space_insensitive_but_vocabulary_checked(single):
    pred, gold = single
    pred = pred.assign(answer_pleural_effusion=[" YES", "Yes", "maybe", "no"])
    out = accuracy_per_finding(pred, gold, ["pleural_effusion"])
    assert out["acc.pleural_effusion"] == pytest.approx(1 / 3)  # s1 right, s2 "maybe" wrong, s3 wrong
    assert out["wellformed"] == pytest.approx(3 / 4)


def test_pairs_use_progression_gold():
    gold = pd.DataFrame(
        {
            "pair_id": ["p1", "p2", "p3", "p4"],
            "progression_pneumothorax": ["improving", "stable", "worsening", None],
        }
    )
    pred = pd.DataFrame(
        {"pair_id": ["p1", "p2", "p3", "p4"], "answer_pneumothorax": ["improving", "worsening", None, "stable"]}
    )
    out = accuracy_per_finding(pred, gold, ["pneumothorax"], key="pair_id")
    assert out["acc.pneumothorax"] == pytest.approx(1 / 3)
    assert out["wellformed"] == pytest.approx(3 / 4)
    table = confusion(pred, gold, "pneumothorax", key="pair_id")
    assert list(table.index) == ["improving", "stable", "worsening"]
    assert list(table.columns) == ["improving", "stable", "worsening", "unparsed"]
    assert table.loc["improving", "improving"] == 1
    assert table.loc["stable", "worsening"] == 1
    assert table.loc["worsening", "unparsed"] == 1
    assert int(table.to_numpy().sum()) == 3
    prf = precision_recall_f1(pred, gold, ["pneumothorax"], key="pair_id")
    # macro over classes: improving P=R=F=1; stable P=0 (no stable predicted on labelled rows), R=0;
    # worsening: predicted once (wrong) -> P=0, gold once (missed) -> R=0
    assert prf["f1.pneumothorax"] == pytest.approx(1 / 3)


def test_confusion_and_prf_single(single):
    pred, gold = single
    table = confusion(pred, gold, "pleural_effusion")
    assert list(table.columns) == ["yes", "no", "uncertain", "unparsed"]
    assert table.loc["yes", "yes"] == 1 and table.loc["yes", "unparsed"] == 1
    assert table.loc["no", "uncertain"] == 1
    assert int(table.to_numpy().sum()) == 3  # s4 (gold -1) left out
    prf = precision_recall_f1(pred, gold, ["pleural_effusion", "edema"])
    # effusion: tp 1 (s1), fp 0, fn 1 (s3 unparsed) -> P 1, R .5, F 2/3
    assert prf["precision.pleural_effusion"] == pytest.approx(1.0)
    assert prf["recall.pleural_effusion"] == pytest.approx(0.5)
    assert prf["f1.pleural_effusion"] == pytest.approx(2 / 3)
    # edema: tp 1 (s4), no fp, no fn -> 1
    assert prf["f1.edema"] == pytest.approx(1.0)
    assert prf["f1.mean"] == pytest.approx((2 / 3 + 1) / 2)


def test_no_positive_anywhere_gives_zero_not_nan():
    gold = pd.DataFrame({"study_id": ["a", "b"], "label_edema": [0.0, 0.0]})
    pred = pd.DataFrame({"study_id": ["a", "b"], "answer_edema": ["no", "no"]})
    prf = precision_recall_f1(pred, gold, ["edema"])
    assert prf["f1.edema"] == 0.0 and prf["precision.edema"] == 0.0


def test_finding_without_any_gold_is_nan_and_left_out_of_the_mean(single):
    pred, gold = single
    gold = gold.assign(label_edema=np.nan)
    out = accuracy_per_finding(pred, gold, ["pleural_effusion", "edema"])
    assert math.isnan(out["acc.edema"])
    assert out["acc.mean"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda p, g: (pd.concat([p, p.iloc[:1]]), g), ValueError, "duplicate"),
        (lambda p, g: (p.assign(study_id=["s1", "s2", "s3", "zz"]), g), ValueError, "no gold row"),
        (lambda p, g: (p.drop(columns=["answer_edema"]), g), KeyError, "answer_edema"),
        (lambda p, g: (p, g.assign(progression_edema="stable")), ValueError, "both"),
        (lambda p, g: (p, g.drop(columns=["label_edema"])), KeyError, "neither"),
    ],
)
def test_bad_inputs_fail_with_a_message(single, mutate, error, match):
    pred, gold = mutate(*single)
    with pytest.raises(error, match=match):
        accuracy_per_finding(pred, gold, ["pleural_effusion", "edema"])
