"""The PHI guard trusts the data, not params.yaml.

The bypass it closes: a benchmark built from a MIMIC-CXR tree, `fetch.source` set back to
`synthetic`, then the teachers stage against endpoints with `phi_approved: false`. The guard
reads the benchmark's own record (source.json) and every image path; 0 requests may leave.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from teachers_helpers import make_benchmark

from fake_openai_server import FakeOpenAIServer
from params_helpers import DEFAULT, teachers_config
from apodistill.teachers.guard import PhiGuardError, assess_images
from apodistill.teachers.runner import run_teachers

REPO = Path(__file__).resolve().parents[1]
MIMIC = REPO / "tests" / "fixtures" / "mimic_cxr"
TEMPLATES = str(REPO / "templates" / "teachers")
KEY_ENV = "APODISTILL_TEST_GUARD_KEY"


def _stage(name: str):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "pipeline" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _remote(url: str, name: str, **kw) -> dict:
    return {"name": name, "backend": "openai", "model": "gpt-5", "base_url": url, "api_key_env": KEY_ENV,
            "timeout_s": 2, "max_retries": 0, **kw}


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-guard-test")


def test_credentialed_benchmark_with_the_source_param_changed_sends_nothing(tmp_path, key, capsys):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["fetch"].update(source="mimic_cxr", root=str(MIMIC), max_bad_fraction=0.5, max_dropped_fraction=0.5)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rc = _stage("fetch").main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "benchmark"),
                               "--card", str(tmp_path / "data.md"), "--contact-sheet", str(tmp_path / "sheet.png"),
                               "--metrics", str(tmp_path / "fetch.json"), "--no-mlflow"])
    assert rc == 0
    assert json.loads((tmp_path / "benchmark" / "source.json").read_text())["credentialed"] is True

    with FakeOpenAIServer() as server:
        params["fetch"] = yaml.safe_load((REPO / "params.yaml").read_text())["fetch"]  # set back: the bypass
        assert params["fetch"]["source"] == "synthetic"
        params["teachers"]["roster"] = [_remote(server.url, "gpt5"), _remote(server.url, "grok4"),
                                        {"name": "local", "backend": "simulated", "model": "m", "profile": "gpt5"}]
        params["teachers"]["weights"] = "auto"
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        rc = _stage("teachers").main(["--params", str(tmp_path / "params.yaml"), "--benchmark", str(tmp_path / "benchmark"),
                                      "--templates", TEMPLATES, "--cache", str(tmp_path / "cache.sqlite"),
                                      "--out", str(tmp_path / "traj"), "--stats", str(tmp_path / "teachers.json"),
                                      "--no-progress", "--no-mlflow"])
        assert server.log == []  # zero requests reached the server
    err = capsys.readouterr().err
    assert rc == 3
    assert "gpt5 (openai http://127.0.0.1" in err and "grok4 (openai" in err and "local" not in err.split("Why")[0]
    assert "mimic_cxr images from" in err and "source.json says source 'mimic_cxr'" in err and "PhysioNet" in err
    assert not (tmp_path / "traj").exists() and not (tmp_path / "teachers.json").exists()
    assert not (tmp_path / "cache.sqlite").exists()


def test_swapped_tables_with_a_synthetic_record_are_refused(tmp_path, key):
    """The record says synthetic, but the tables point into a MIMIC-CXR tree."""
    bench = make_benchmark(tmp_path / "b", n_patients=2, studies_per_patient=1)
    studies = pd.read_parquet(bench / "studies.parquet")
    jpg = sorted((MIMIC / "files").rglob("*.jpg"))[:2]
    studies["image_path"] = [str(p) for p in jpg]
    studies.to_parquet(bench / "studies.parquet", index=False)
    verdict = assess_images(bench, [str(p) for p in jpg])
    assert verdict.credentialed and len(verdict.reasons) == 2
    assert "lie outside the folders source.json covers" in verdict.reasons[0]
    assert "laid out like MIMIC-CXR" in verdict.reasons[1]
    with FakeOpenAIServer() as server:
        cfg = teachers_config(roster=[_remote(server.url, "remote")], tasks=["single"])
        with pytest.raises(PhiGuardError, match="remote"):
            run_teachers(cfg, DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
        assert server.log == []


def test_a_benchmark_without_its_record_is_refused_and_a_synthetic_one_is_sent(tmp_path, key):
    bench = make_benchmark(tmp_path / "b", n_patients=2, studies_per_patient=1)
    with FakeOpenAIServer() as server:
        cfg = teachers_config(roster=[_remote(server.url, "remote")], tasks=["single"])
        out = run_teachers(cfg, DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
        assert (out.table.status == "ok").all() and len(server.log) == 2
        (bench / "source.json").unlink()
        shutil.rmtree(tmp_path / "c.sqlite", ignore_errors=True)
        with pytest.raises(PhiGuardError, match="source.json is missing or unreadable"):
            run_teachers(cfg, DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "d.sqlite", progress=False)
        assert len(server.log) == 2


def test_approved_and_local_teachers_may_read_credentialed_data(tmp_path, key):
    bench = make_benchmark(tmp_path / "b", n_patients=2, studies_per_patient=1, source="mimic_cxr")
    with FakeOpenAIServer() as server:
        roster = [_remote(server.url, "approved", phi_approved=True),
                  {"name": "local", "backend": "simulated", "model": "m", "profile": "gpt5"}]
        cfg = teachers_config(roster=roster, tasks=["single"])
        out = run_teachers(cfg, DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
        assert (out.table.status == "ok").all() and len(server.log) == 2


def test_a_table_path_leaving_a_relative_benchmark_folder_is_refused(tmp_path, key, monkeypatch):
    """DVC passes `--benchmark data/benchmark`, relative: a table path that climbs out of it
    (`../../outside/x.png`) must be judged where it really lies, outside the recorded folder."""
    bench = make_benchmark(tmp_path / "data" / "benchmark", n_patients=2, studies_per_patient=1)
    outside = tmp_path / "outside"
    outside.mkdir()
    studies = pd.read_parquet(bench / "studies.parquet")
    for i, rel in enumerate(studies["image_path"]):
        shutil.copy(bench / rel, outside / f"x{i}.png")
    studies["image_path"] = [f"../../outside/x{i}.png" for i in range(len(studies))]
    studies.to_parquet(bench / "studies.parquet", index=False)
    monkeypatch.chdir(tmp_path)
    with FakeOpenAIServer() as server:
        cfg = teachers_config(roster=[_remote(server.url, "remote")], tasks=["single"])
        with pytest.raises(PhiGuardError, match="lie outside the folders source.json covers"):
            run_teachers(cfg, DEFAULT.base, "synthetic", Path("data/benchmark"), TEMPLATES, tmp_path / "c.sqlite", progress=False)
        assert server.log == []
