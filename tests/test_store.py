"""One MLflow store per repository: found from a subfolder and from DVC's temp workspaces,
never created by a command that only reads it, and still loadable after `cp -r` of the
repository. Also the CLI's "file not found: PATH" errors.

The DVC side (a queued `dvc exp run` logging to the repository's store) is in
test_pipeline_e2e.py.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from serving_helpers import FINDINGS, NAME, build_student, metrics_for, prompts
from typer.testing import CliRunner

from apodistill.cli import app
from apodistill.serving.register import log_and_register
from apodistill.serving.store import load_model
from apodistill.tracking import STORE_FILE, process_start_time, repository_root, stage_run

_ENV = ("MLFLOW_TRACKING_URI", "APODISTILL_MLFLOW_ARTIFACTS", "DVC_ROOT")


def _make_repo(root: Path) -> Path:
    (root / ".dvc").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "reports").mkdir()
    return root


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch):
    for k in _ENV:
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A repository whose default store holds `apodistill-student` v1 as champion, registered
    by a stage-like process that ran in the repository's reports/ subfolder."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    root = _make_repo(tmp_path_factory.mktemp("store") / "repo")
    with pytest.MonkeyPatch.context() as mp:
        for k in _ENV:
            mp.delenv(k, raising=False)
        mp.chdir(root / "reports")
        build_student(root.parent / "student")
        with stage_run("register", "apodistill", {"register": {"alias": "champion"}}) as run:
            log_and_register(root.parent / "student", prompts(), FINDINGS, metrics_for(0.7), NAME, "champion",
                             {"git_revision": "test"}, {}, max_new_tokens=8)
            time.sleep(0.2)
    run = mlflow.get_run(run.info.run_id)
    mlflow.set_tracking_uri(previous)
    return root, run


def _png(path: Path) -> Path:
    from apodistill.data import render_study_image

    render_study_image({"pleural_effusion": 0.7}, size=64, seed=0).save(path)
    return path


def test_a_stage_in_a_subfolder_logs_to_the_repository_store(repo):
    root, run = repo
    assert (root / STORE_FILE).is_file() and not (root / "reports" / STORE_FILE).exists()
    assert run.info.artifact_uri.startswith((root / "mlartifacts").as_uri())
    # The run spans the process, not only the `with` block: it started when this process did.
    assert abs(run.info.start_time / 1000 - process_start_time()) < 1.0
    assert run.data.metrics["stage_seconds"] >= (run.info.end_time - run.info.start_time) / 1000 - 1.0


def test_predict_from_a_subfolder_uses_the_repository_store(repo, tmp_path, monkeypatch):
    root, _ = repo
    monkeypatch.chdir(root / "reports")
    r = CliRunner().invoke(app, ["predict", str(_png(tmp_path / "cxr.png")), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["model"] == {"uri": f"models:/{NAME}@champion", "name": NAME, "alias": "champion", "version": "1"}
    assert set(out["findings"]) == set(FINDINGS)
    assert not (root / "reports" / STORE_FILE).exists()
    listed = CliRunner().invoke(app, ["store"])
    assert listed.exit_code == 0 and f"sqlite:///{root / STORE_FILE}" in listed.output and "register 1" in listed.output


def test_a_copied_repository_loads_the_champion_from_its_own_artifacts(repo, tmp_path, monkeypatch):
    root, _ = repo
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(root), str(copy)], check=True)
    hidden = root.with_name("moved-away")
    root.rename(hidden)  # nothing may still point into the original
    try:
        monkeypatch.chdir(copy / "reports")
        model, info = load_model(f"models:/{NAME}@champion")
        import pandas as pd

        out = model.predict(pd.DataFrame([{"image": str(_png(tmp_path / "cxr.png"))}]))
        assert info["version"] == "1" and list(out.columns[:3]) == ["trajectory", "task", "wellformed"]
        with sqlite3.connect(copy / STORE_FILE) as conn:
            uris = [r[0] for r in conn.execute("SELECT artifact_uri FROM runs UNION ALL SELECT storage_location FROM model_versions")]
        assert uris and all(u.startswith(copy.as_uri() + "/") for u in uris), uris
    finally:
        hidden.rename(root)


def test_outside_a_repository_says_where_it_looked_and_creates_no_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["predict", str(_png(tmp_path / "cxr.png"))])
    assert r.exit_code == 2
    assert f"looked for dvc.yaml and .dvc/ in {tmp_path}" in " ".join(r.output.split())
    bare = _make_repo(tmp_path / "bare")  # a repository that has never run the pipeline
    monkeypatch.chdir(bare)
    for args in (["predict", str(tmp_path / "cxr.png")], ["store"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and f"no MLflow store at {bare / STORE_FILE}" in " ".join(r.output.split()), args
    assert not list(tmp_path.rglob(STORE_FILE))


def test_missing_image_folder_or_model_is_file_not_found(repo, tmp_path, monkeypatch):
    root, _ = repo
    monkeypatch.chdir(root)
    for args, path in ((["scan"], "scan"), ([str(tmp_path)], str(tmp_path)),
                       ([str(_png(tmp_path / "cxr.png")), "--prior", "nope/prior.png"], "nope/prior.png"),
                       ([str(tmp_path / "cxr.png"), "--model", "no/such/model"], "no/such/model")):
        r = CliRunner().invoke(app, ["predict", *args])
        assert r.exit_code == 2 and f"file not found: {path}" in r.output, r.output
        assert "BytesIO" not in r.output


def test_temp_workspace_and_dvc_root_resolve_to_the_main_repository(tmp_path, monkeypatch):
    root = _make_repo(tmp_path / "main")
    temp = _make_repo(root / ".dvc" / "tmp" / "exps" / "tmpabc123")  # what `dvc exp run --temp/--queue` runs in
    assert repository_root(temp / "reports") == root
    assert repository_root(root / "reports") == root
    monkeypatch.setenv("DVC_ROOT", str(root))
    assert repository_root(tmp_path) == root
    monkeypatch.delenv("DVC_ROOT")
    assert repository_root(tmp_path) is None
