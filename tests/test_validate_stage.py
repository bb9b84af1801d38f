"""pipeline/validate.py end to end on a small synthetic roster: every output written, the
quarantine threshold fails the stage naming the teacher, bad params fail before output."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from validation_helpers import plant, roster_table

REPO = Path(__file__).resolve().parents[1]


def _stage():
    spec = importlib.util.spec_from_file_location("validate_stage", REPO / "pipeline" / "validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage")
    table, studies = roster_table(n_studies=150, seed=4, drift_teacher=None)
    table, studies, expected = plant(table, studies)
    (root / "bench").mkdir()
    (root / "traj").mkdir()
    studies.to_parquet(root / "bench" / "studies.parquet")
    table.to_parquet(root / "traj" / "trajectories.parquet")
    return root, table, expected


@pytest.fixture(autouse=True)
def _mlflow(inputs, monkeypatch):
    root = inputs[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv("APODISTILL_MLFLOW_ARTIFACTS", str(root / "mlartifacts"))


def _params(root: Path, name: str, **validate) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["validate"].update(drift_window=25, **validate)
    path = root / name
    path.write_text(yaml.safe_dump(params))
    return path


def _args(root: Path, params: Path, tag: str) -> list[str]:
    out = root / tag
    return [
        "--params", str(params), "--benchmark", str(root / "bench"), "--trajectories", str(root / "traj"),
        "--suites", str(REPO / "validation"), "--out", str(out / "validated"), "--metrics", str(out / "validate.json"),
        "--docs", str(out / "docs"), "--drift", str(out / "drift"),
    ]  # fmt: skip


def test_stage_writes_every_output(inputs):
    root, table, expected = inputs
    assert _stage().main(_args(root, _params(root, "ok.yaml"), "ok")) == 0
    out = root / "ok"
    passed = pd.read_parquet(out / "validated" / "trajectories.parquet")
    quarantine = pd.read_parquet(out / "validated" / "quarantine.parquet")
    assert len(passed) + len(quarantine) == len(table)
    assert set(expected) <= set(quarantine["record_id"])
    assert "answer_edema" in passed.columns and "failed_expectations" in quarantine.columns
    weights = json.loads((out / "validated" / "weights.json").read_text())
    assert weights["mode"] == "fixed" and set(weights["weights"]) == set(table["teacher"])
    metrics = json.loads((out / "validate.json").read_text())
    assert metrics["quarantine.expectation.labels_match_task"] == 1
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    prov = json.loads((out / "validated" / "provenance.json").read_text())
    assert prov["stage"] == "validate" and prov["violations"] == []
    assert (out / "docs" / "index.html").is_file()
    assert {p.name for p in (out / "drift").iterdir()} >= {"gpt5.png", "gpt5.csv", "overview.png"}


def test_quarantine_threshold_fails_naming_teacher_after_writing_reports(inputs, capsys):
    root, table, _ = inputs
    params = _params(root, "strict.yaml", max_quarantine_fraction=0.005)
    data = yaml.safe_load(params.read_text())
    data["teachers"]["weights"] = "auto"
    params.write_text(yaml.safe_dump(data))
    assert _stage().main(_args(root, params, "strict")) == 1
    err = capsys.readouterr().err
    n = int((table["teacher"] == "gpt5").sum())
    assert "teacher gpt5:" in err and f"of {n} trajectories quarantined" in err and "0.5%" in err
    out = root / "strict"
    assert (out / "validated" / "quarantine.parquet").is_file()  # the evidence is kept
    weights = json.loads((out / "validated" / "weights.json").read_text())
    assert weights["mode"] == "auto" and sum(weights["weights"].values()) == pytest.approx(len(weights["weights"]))


def test_bad_params_fail_before_any_output(inputs, capsys):
    root = inputs[0]
    params = _params(root, "bad.yaml", min_length_ratio=5.0)
    with pytest.raises(SystemExit) as exit_info:
        _stage().main(_args(root, params, "bad"))
    assert exit_info.value.code == 2
    assert "validate" in capsys.readouterr().err
    assert not (root / "bad").exists()


def test_bad_detector_params_fail_before_any_output(inputs, capsys):
    root = inputs[0]
    params = _params(root, "bad_detector.yaml", detector_params={"not_a_param": 1})
    assert _stage().main(_args(root, params, "bad_detector")) == 2
    assert "detector_params" in capsys.readouterr().err
    assert not (root / "bad_detector").exists()
