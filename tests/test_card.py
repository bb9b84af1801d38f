"""The model card states the training setting from the resolved params, not a roster default."""

from __future__ import annotations

from pathlib import Path

import yaml

from apodistill.config import load_params
from apodistill.serving.card import model_card
from apodistill.setting import training_setting

ROOT = Path(__file__).resolve().parents[1]


def _card(params: dict) -> str:
    metrics = {"apo.acc.mean": 0.9, "best_teacher.acc.mean": 0.7, "teacher.gpt5.acc.mean": 0.75}
    return model_card(model_name="apodistill-student", system="apo", student="tiny", params=params,
                      metrics=metrics, tags={}, data={})


def _resolved(tmp_path: Path, **teachers) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["teachers"].update(teachers)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_params(path).dump()


def _teacher_row(card: str, name: str) -> list[str]:
    row = next(line for line in card.splitlines() if line.startswith(f"| {name} |"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_flipping_conditioned_splits_changes_the_card(tmp_path):
    conditioned = _card(_resolved(tmp_path, conditioned_splits=["train"]))
    blind = _card(_resolved(tmp_path, conditioned_splits=[]))
    assert "label-conditioned on train" in conditioned and "blind on every split" not in conditioned
    assert "blind on every split" in blind and "label-conditioned on" not in blind
    # The teacher table: prompt on train follows conditioned_splits; the test split stays blind.
    assert _teacher_row(conditioned, "gpt5")[3:5] == ["label_conditioned", "blind"]
    assert _teacher_row(blind, "gpt5")[3:5] == ["blind", "blind"]


def test_setting_names_teachers_consensus_and_apo(tmp_path):
    params = _resolved(tmp_path, weights="auto")
    params["self_distill"]["method"] = "vote"
    params["apo"]["loss"] = "pairwise"
    text = "\n".join(f"{label}: {sentence}" for label, sentence in training_setting(params))
    for name in ("gpt5", "gemini25", "sonnet4", "qwen_vl_max", "grok4", "glm45v", "moonshot"):
        assert name in text
    assert "Teacher weights w_u: auto" in text and "Consensus: vote" in text and "APO: pairwise loss" in text
    assert "Evaluation: the test split, where the teachers were blind" in text
