"""fetch.source cxr_max: the teachers stage imports the released trajectories, asking no teacher."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_released_trajectories_are_imported(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["fetch"]["source"] = "cxr_max"
    params["fetch"]["root"] = str(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    bench = tmp_path / "bench"
    bench.mkdir()
    rows = pd.DataFrame({"teacher": ["gpt5", "gpt5", "sonnet4"], "status": ["ok", "refused", "ok"], "text": ["a", "b", "c"]})
    rows.to_parquet(bench / "trajectories.parquet")
    spec = importlib.util.spec_from_file_location("teachers_stage", ROOT / "pipeline" / "teachers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out, stats = tmp_path / "out", tmp_path / "stats.json"
    rc = mod.main(["--params", str(tmp_path / "params.yaml"), "--benchmark", str(bench), "--templates", str(ROOT / "templates/teachers"),
                   "--cache", str(tmp_path / "c.sqlite"), "--out", str(out), "--stats", str(stats), "--no-progress", "--no-mlflow"])
    assert rc == 0
    assert pd.read_parquet(out / "trajectories.parquet").equals(rows)
    assert json.loads(stats.read_text()) == {"gpt5.ok": 1, "gpt5.refused": 1, "sonnet4.ok": 1}
    assert not (tmp_path / "c.sqlite").exists()
