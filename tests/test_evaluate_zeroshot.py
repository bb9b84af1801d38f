"""Zero-shot: a trained student folder on local CheXpert and Open-I copies laid out as released
(the fixture trees), through apodistill.evaluate.zero_shot."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from apodistill.evaluate import zero_shot
from apodistill.student import save_student
from evaluate_helpers import FINDINGS

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "student"


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    from conftest import TINY_DIMS, make_trajectory
    import numpy as np

    from apodistill.config.train import TinyStudentConfig
    from apodistill.student import build_processor, build_tiny_student, train_tokenizer

    rng = np.random.default_rng(1)
    tok = train_tokenizer([make_trajectory(rng) for _ in range(40)] + ["Chest X-ray. Think, then answer."], TINY_DIMS["vocab_size"])
    folder = tmp_path_factory.mktemp("student")
    save_student(build_tiny_student(TinyStudentConfig(**TINY_DIMS), tok, seed=0), build_processor(tok, 64), folder, extra={"image_size": 64})
    return folder


def test_chexpert(student):
    metrics, preds, quarantine = zero_shot(student, "chexpert", FIXTURES / "chexpert" / "CheXpert-v1.0-small", TEMPLATES, FINDINGS, max_new_tokens=6, meteor=False)
    # valid.csv: 4 frontal studies, one without its image (quarantined, not dropped silently)
    assert metrics["quarantined"] == 1.0 and list(quarantine["reason"]) == ["image file not found"]
    assert len(preds) == 3 and set(preds["system"]) == {"student"} and preds["text"].map(lambda t: isinstance(t, str)).all()
    # a random tiny student writes nothing readable: wrong everywhere, AUC at chance where gold has both classes
    assert metrics["single_wellformed"] == 0.0 and metrics["acc.mean"] == 0.0
    assert metrics["auc.edema"] == 0.5 and metrics["auc.pneumothorax"] == 0.5
    assert math.isnan(metrics["auc.consolidation"])  # one gold class only
    assert not any(k.startswith(("bleu", "f1_")) for k in metrics)  # CheXpert ships no reports
    assert list(preds["gold_edema"]) == ["yes", "no", "no"]


def test_openi_scores_reasoning_against_reports(student):
    metrics, preds, quarantine = zero_shot(student, "openi", FIXTURES / "openi", TEMPLATES, FINDINGS, max_new_tokens=6, meteor=False)
    assert len(preds) == 3 and metrics["quarantined"] == len(quarantine) == 3
    assert {"bleu4", "rouge_l", "cider", "f1_micro_5", "f1_macro_14"} <= set(metrics)
    assert metrics["f1_micro_5"] == 0.0  # no reasoning, no findings named
    assert math.isnan(metrics["meteor"])


def test_unknown_dataset(student):
    with pytest.raises(ValueError, match="chexpert, openi"):
        zero_shot(student, "chestxray14", FIXTURES, TEMPLATES, FINDINGS)
