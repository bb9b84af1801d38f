"""A teachers run killed with SIGKILL resumes without losing or re-buying any answer."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from teachers_helpers import make_benchmark

from fake_openai_server import FakeOpenAIServer, identity_of
from apodistill.teachers.openai_compat import image_data_url

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "APODISTILL_TEST_TEACHER_KEY"


def _stage(tmp_path: Path) -> list[str]:
    return [sys.executable, str(REPO / "pipeline/teachers.py"), "--params", str(tmp_path / "params.yaml"),
            "--benchmark", str(tmp_path / "b"), "--templates", str(REPO / "templates/teachers"),
            "--cache", str(tmp_path / "cache.sqlite"), "--out", str(tmp_path / "out"),
            "--stats", str(tmp_path / "stats.json"), "--no-progress", "--no-mlflow"]


def _stored(db: Path) -> set[str]:
    with sqlite3.connect(db) as con:
        return {s for (s,) in con.execute("SELECT study_id FROM answers")}


def test_sigkill_midway_then_resume(tmp_path):
    bench = make_benchmark(tmp_path / "b", n_patients=150, studies_per_patient=2)  # 300 studies
    studies = pd.read_parquet(bench / "studies.parquet")
    ident = {s: identity_of([image_data_url(str(bench / p))]) for s, p in zip(studies.study_id, studies.image_path)}
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    env = {**os.environ, KEY_ENV: "sk-resume-test", "PYTHONPATH": str(REPO / "src")}
    with FakeOpenAIServer(latency_s=0.03) as server:
        params["teachers"]["roster"] = [{"name": "remote", "backend": "openai", "model": "m", "base_url": server.url,
                                         "api_key_env": KEY_ENV, "concurrency": 4, "rpm": 60000, "backoff_s": 0.02}]
        params["teachers"]["weights"] = "auto"
        params["teachers"]["tasks"] = ["single"]  # one request per study: the counts below are studies
        params["control"]["enabled"] = False
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

        proc = subprocess.Popen(_stage(tmp_path), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while len(server.log) < 120 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stdout.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stored_at_kill = _stored(tmp_path / "cache.sqlite")
        seen_before = len(server.log)
        assert 100 <= len(stored_at_kill) < 300, len(stored_at_kill)
        assert not (tmp_path / "out").exists()

        done = subprocess.run(_stage(tmp_path), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        second_run = server.log[seen_before:]

    table = pd.read_parquet(tmp_path / "out/trajectories.parquet")
    assert len(table) == 300 and table.record_id.is_unique and table.study_id.is_unique
    assert (table.status == "ok").all()
    with sqlite3.connect(tmp_path / "cache.sqlite") as con:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM answers").fetchone() == (300, 300)
    # no answer stored before the kill was asked for again ...
    asked_again = {e["identity"] for e in second_run} & {ident[s] for s in stored_at_kill}
    assert asked_again == set()
    # ... and the second run asked exactly for the rest (in-flight ones lost at the kill included)
    assert sorted(e["identity"] for e in second_run) == sorted(ident[s] for s in set(ident) - stored_at_kill)
    # the server answered each study once, plus at most one in-flight request per worker lost at the kill
    assert len(server.log) - 300 <= 4
    print(f"\nresume: {len(stored_at_kill)} stored at SIGKILL, {seen_before} requests seen before it, "
          f"{len(second_run)} asked after restart, {len(server.log)} requests in all for 300 answers")
