"""Faithfulness of reasoning (contradiction, side, size) and bias inheritance, on hand-made rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from apodistill.metrics.faithfulness import error_cells, faithfulness, inheritance

F = ("pleural_effusion", "pneumothorax")


def _rows(thinks, answers):
    return pd.DataFrame({"think": thinks, **{f"answer_{f}": [a[i] for a in answers] for i, f in enumerate(F)}})


def test_contradiction_side_and_size_on_single_studies():
    gold = pd.DataFrame({
        "label_pleural_effusion": [1.0, 1.0, 0.0, 0.0], "label_pneumothorax": [0.0, 1.0, 0.0, 1.0],
        "severity_pleural_effusion": [0.3, 0.9, 0.0, 0.0], "severity_pneumothorax": [0.0, 0.6, 0.0, 0.6],
        "side_pleural_effusion": ["left", "right", "left", "left"], "side_pneumothorax": ["left", "left", "right", "right"],
    })
    pred = _rows(
        ["Small left pleural effusion. No pneumothorax.",  # faithful, right side and size
         "Small right pleural effusion. Moderate right pneumothorax.",  # effusion size wrong; ptx side wrong
         "Large left pleural effusion. No pneumothorax.",  # says effusion, answers no: contradiction
         "No pleural effusion. No pneumothorax."],  # answers ptx yes, reasoning denies it: contradiction
        [("yes", "no"), ("yes", "yes"), ("no", "no"), ("no", "yes")],
    )
    m = faithfulness(pred, gold, F, "single")
    assert m["contradiction"] == 2 / 8
    assert m["side_n"] == 3 and m["side_acc"] == 2 / 3  # rows 0 effusion, 1 effusion, 1 ptx
    assert m["size_n"] == 3 and m["size_acc"] == 2 / 3  # row 1 effusion says small, is large


def test_pair_direction_contradicts_the_answer():
    gold = pd.DataFrame({"progression_pleural_effusion": ["worsening", "improving"], "progression_pneumothorax": [None, None],
                         "current_severity_pleural_effusion": [0.6, 0.3], "current_severity_pneumothorax": [0.0, 0.0]})
    pred = _rows(["The left pleural effusion has increased from small to moderate since the prior study. No pneumothorax on either study.",
                  "The left pleural effusion has increased from moderate to large since the prior study. No pneumothorax on either study."],
                 [("worsening", "stable"), ("improving", "stable")])
    m = faithfulness(pred, gold, F, "pair")
    assert m["contradiction"] == 1 / 4
    assert np.isnan(m["side_acc"])  # no side_ columns: not measurable


def test_error_cells_and_inheritance():
    gold = pd.DataFrame({"label_pneumothorax": [1.0] * 6 + [0.0] * 4})
    teacher = pd.DataFrame({"answer_pneumothorax": ["no"] * 4 + ["yes"] * 2 + ["no"] * 4})
    assert error_cells(teacher, gold, "pneumothorax", "miss").tolist() == [True] * 4 + [False] * 6
    spd = pd.DataFrame({"answer_pneumothorax": ["no", "no", "no", "yes"] + ["yes"] * 2 + ["no"] * 4})
    apo = pd.DataFrame({"answer_pneumothorax": ["no", "yes", "yes", "yes"] + ["yes"] * 2 + ["no"] * 4})
    control = pd.DataFrame({"answer_pneumothorax": ["no", "yes", "yes", "yes"] + ["yes"] * 2 + ["no"] * 4})
    m = inheritance(teacher, {"spd": spd, "apo": apo}, control, gold, "pneumothorax", "miss", bootstrap=200)
    assert m["n"] == 4
    assert m["rate.spd"] == 0.75 and m["rate.apo"] == 0.25 and m["rate.control"] == 0.25
    assert m["inherited.spd"] == 0.5 and m["inherited.apo"] == 0.0
    assert m["reduced.apo"] == 0.5
    assert m["inherited.spd.ci_low"] <= 0.5 <= m["inherited.spd.ci_high"]
