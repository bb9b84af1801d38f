"""Zero-shot readers on tiny fixture trees laid out as CheXpert and Open-I are released, and AUC."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apodistill.findings import CHEXPERT_14
from apodistill.metrics.zeroshot import answers_to_scores, auc_per_finding, read_chexpert, read_openi

FIXTURES = Path(__file__).parent / "fixtures"
STUDY_COLUMNS = ["patient_id", "study_id", "split", "image_path", "view", "report", "study_index", "stream_index"]


def test_chexpert_valid_one_frontal_per_study_and_missing_image_quarantined():
    studies, quarantine = read_chexpert(FIXTURES / "chexpert" / "CheXpert-v1.0-small")
    assert list(studies.columns) == STUDY_COLUMNS + [f"label_{f}" for f in CHEXPERT_14]
    assert list(studies["study_id"]) == ["patient64541/study1", "patient64542/study1", "patient64544/study2"]
    assert list(studies["view"]) == ["AP", "PA", "AP"]
    assert list(studies["study_index"]) == [0, 0, 1]
    assert list(studies["stream_index"]) == [0, 1, 2]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in studies["image_path"])
    first = studies.iloc[0]
    assert first["label_cardiomegaly"] == 1.0 and first["label_support_devices"] == 1.0
    assert first["label_pleural_effusion"] == 0.0
    assert list(quarantine["study_id"]) == ["patient64543/study1"]
    assert list(quarantine["reason"]) == ["image file not found"]


def test_chexpert_train_keeps_uncertain_and_blank():
    studies, _ = read_chexpert(FIXTURES / "chexpert" / "CheXpert-v1.0-small", csv_name="train.csv")
    second = studies.set_index("study_id").loc["patient00002/study2"]
    assert second["label_cardiomegaly"] == -1.0
    assert math.isnan(second["label_no_finding"])
    assert second["label_fracture"] == 1.0


def test_chexpert_all_views_and_repackaged_paths(tmp_path):
    # Some copies put train.csv next to valid/ without the CheXpert-v1.0-small parent folder name.
    root = tmp_path / "chexpert_copy"
    shutil.copytree(FIXTURES / "chexpert" / "CheXpert-v1.0-small", root)
    studies, _ = read_chexpert(root, frontal_only=False)
    assert len(studies) == 4  # the lateral view is kept; the image-less row is still quarantined
    assert "LATERAL" in set(studies["view"])
    assert all(str(p).startswith(str(root)) for p in studies["image_path"])


def test_chexpert_missing_columns_named(tmp_path):
    (tmp_path / "valid.csv").write_text("Path,Sex\nx.jpg,Male\n")
    with pytest.raises(KeyError, match="Frontal/Lateral"):
        read_chexpert(tmp_path)


def test_openi_reports_images_labels_and_quarantine():
    studies, quarantine = read_openi(FIXTURES / "openi")
    assert list(studies["study_id"]) == ["CXR1", "CXR2", "CXR5"]
    assert list(studies.columns[: len(STUDY_COLUMNS)]) == STUDY_COLUMNS
    assert studies["image_path"].iloc[0].endswith("CXR1_1_IM-0001-3001.png")  # first listed image
    assert studies["report"].iloc[0].startswith("The cardiac silhouette")
    assert studies["report"].iloc[0].endswith("Normal chest x-XXXX.")
    labels = studies.set_index("study_id")
    assert labels.loc["CXR1", "label_no_finding"] == 1.0
    assert labels.loc["CXR1", "label_pleural_effusion"] == 0.0  # "There are no XXXX of a pleural effusion"
    assert labels.loc["CXR2", "label_cardiomegaly"] == -1.0  # borderline
    assert labels.loc["CXR5", "label_cardiomegaly"] == 1.0 and labels.loc["CXR5", "label_edema"] == 1.0
    assert labels.loc["CXR5", "label_pleural_effusion"] == -1.0
    assert labels.loc["CXR2", "mesh_major"] == "Cardiomegaly/borderline; Pulmonary Artery/enlarged"
    reasons = dict(zip(quarantine["study_id"], quarantine["reason"]))
    assert reasons["CXR3"] == "report has no image"
    assert reasons["CXR4"] == "image file not found"
    assert reasons["10"].startswith("unreadable XML")


def test_openi_without_reports_folder_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="ecgen-radiology"):
        read_openi(tmp_path)


def test_auc_from_scores_and_from_answers():
    gold = pd.DataFrame(
        {
            "study_id": list("abcdef"),
            "label_edema": [1.0, 1.0, 0.0, 0.0, -1.0, np.nan],
            "label_cardiomegaly": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        }
    )
    scores = pd.DataFrame(
        {"study_id": list("abcdef"), "score_edema": [0.9, 0.4, 0.5, 0.1, 0.0, 1.0], "score_cardiomegaly": 0.5}
    )
    out = auc_per_finding(scores, gold, ["edema", "cardiomegaly"])
    # positives {.9, .4} vs negatives {.5, .1}: pairs won 3 of 4
    assert out["auc.edema"] == pytest.approx(0.75)
    assert math.isnan(out["auc.cardiomegaly"])  # one class only
    assert out["auc.mean"] == pytest.approx(0.75)
    answers = pd.DataFrame({"study_id": list("abcd"), "answer_edema": ["yes", None, "uncertain", "no"]})
    assert list(answers_to_scores(answers, ["edema"])["score_edema"]) == [1.0, 0.5, 0.5, 0.0]
    # positives {1, .5} vs negatives {.5, 0}: 1>.5, 1>0, .5=.5 (half), .5>0 -> 3.5/4
    assert auc_per_finding(answers, gold, ["edema"])["auc.edema"] == pytest.approx(0.875)
