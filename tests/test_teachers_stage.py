"""The stage script end to end: contract columns, stats keys, provenance, MLflow metrics."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pandas as pd
import yaml
from teachers_helpers import make_benchmark

from apodistill.teachers.runner import TRAJECTORY_COLUMNS

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates/teachers"


def test_stage_script_writes_the_contract(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("APODISTILL_MLFLOW_ARTIFACTS", str(tmp_path / "mlartifacts"))
    make_benchmark(tmp_path / "b", n_patients=6, studies_per_patient=3)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["teachers"]["tasks"] = ["single", "pair"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    spec = importlib.util.spec_from_file_location("stage_teachers", REPO / "pipeline/teachers.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    args = ["--params", str(tmp_path / "params.yaml"), "--benchmark", str(tmp_path / "b"), "--templates", str(TEMPLATES),
            "--cache", str(tmp_path / "cache/t.sqlite"), "--out", str(tmp_path / "traj"),
            "--stats", str(tmp_path / "reports/teachers.json"), "--no-progress"]
    assert stage.main(args) == 0
    table = pd.read_parquet(tmp_path / "traj/trajectories.parquet")
    assert list(table.columns) == list(TRAJECTORY_COLUMNS)
    assert len(table) == 7 * (18 + 12) and table.record_id.is_unique
    assert set(table.task) == {"single", "pair"} and set(table.status) <= {"ok", "refused", "error"}
    assert table[table.task == "pair"].prior_study_id.notna().all()
    assert table.stream_index.dtype == "int64" and table.latency_s.dtype == "float64"
    stats = json.loads((tmp_path / "reports/teachers.json").read_text())
    for t in ("gpt5", "moonshot"):
        for k in ("ok", "refused", "error", "latency_p50", "latency_p95", "tokens"):
            assert isinstance(stats[f"{t}.{k}"], (int, float)), k
    prov = json.loads((tmp_path / "traj/provenance.json").read_text())
    assert prov["stage"] == "teachers" and prov["seeds"]["python"] == 42
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["apodistill"])
    assert runs["metrics.gpt5.ok"].iloc[0] == stats["gpt5.ok"]
