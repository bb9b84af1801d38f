"""pipeline/evaluate.py end to end on a small benchmark with two tiny students built here:
metrics.json keys, the per-example Parquet, the HTML and Markdown reports, `dvc plots` data.

MLflow and the METEOR JVM are replaced by recorders (their own tests cover them); everything
else is the real stage, including student generation.
"""

from __future__ import annotations

import contextlib
import json
import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from apodistill.student import save_student
from evaluate_helpers import FINDINGS, make_benchmark, make_trajectories

REPO = Path(__file__).resolve().parents[1]


class FakeMeteor:
    def score(self, refs, hyps):
        return 0.25


@pytest.fixture
def stage_env(tmp_path, tiny_student, monkeypatch):
    import mlflow

    import apodistill.metrics.reports as reports
    import apodistill.tracking as tracking

    logged: dict = {"metrics": {}, "artifacts": []}
    monkeypatch.setattr(tracking, "stage_run", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(mlflow, "log_metrics", lambda m: logged["metrics"].update(m))
    monkeypatch.setattr(mlflow, "log_artifact", lambda p: logged["artifacts"].append(p))
    monkeypatch.setattr(reports, "shared_meteor", lambda: FakeMeteor())
    bench = make_benchmark(tmp_path / "bench", n_patients=8)
    make_trajectories(bench, tmp_path / "traj", {"gpt5": 0, "sonnet4": 1, "grok4": 3})
    for name, seed in (("spd", 0), ("apo", 1)):
        model, proc = tiny_student(seed=seed)
        save_student(model, proc, tmp_path / name, extra={"image_size": 64})
        record = {"stage": name, "config": {name: {"optim": {"steps": 3, "lr": 1e-3}, **({"loss": "plackett_luce", "beta": 0.1} if name == "apo" else {})}}}
        (tmp_path / name / "provenance.json").write_text(json.dumps(record))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["evaluate"].update(max_new_tokens=6, batch_size=16, bootstrap=50, examples=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path, logged


def _run(tmp_path: Path, *students: str, monkeypatch) -> None:
    argv = ["pipeline/evaluate.py", "--params", str(tmp_path / "params.yaml"), "--benchmark", str(tmp_path / "bench"),
            "--trajectories", str(tmp_path / "traj"), "--templates", str(REPO / "templates" / "student"),
            "--out", str(tmp_path / "reports" / "eval"), "--metrics", str(tmp_path / "reports" / "metrics.json"),
            "--report-templates", str(REPO / "templates" / "report"),
            "--html", str(tmp_path / "reports" / "index.html"), "--md", str(tmp_path / "reports" / "eval.md")]  # fmt: skip
    for s in students:
        argv += ["--student", f"{s}={tmp_path / s}"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:  # as `python pipeline/evaluate.py ...` runs it
        runpy.run_path(str(REPO / "pipeline" / "evaluate.py"), run_name="__main__")
    assert done.value.code == 0


def test_stage_outputs(stage_env, monkeypatch):
    tmp_path, logged = stage_env
    _run(tmp_path, "spd", "apo", monkeypatch=monkeypatch)
    reports = tmp_path / "reports"
    m = json.loads((reports / "metrics.json").read_text())
    for system in ("teacher.gpt5", "teacher.sonnet4", "teacher.grok4", "majority_vote", "best_teacher", "spd", "apo"):
        assert {f"{system}.acc.mean", f"{system}.pair_acc.mean"} <= set(m), system
    assert m["teacher.gpt5.pair_acc.mean"] == 1.0 and m["best_teacher.pair_acc.mean"] == 1.0  # gpt5 is best on val too
    assert m["apo.meteor"] == 0.25 and {"apo.bleu4", "apo.cider", "apo.f1_micro_5", "apo.f1_macro_14", "spd.f1_micro_14"} <= set(m)
    assert {"apo.vs_spd.pair_acc.ci_low", "apo.vs_best_teacher.acc.ci_high", "spd.vs_best_teacher.pair_acc.diff"} <= set(m)
    # random tiny students: nothing parses, every answer counts as wrong
    assert m["apo.single_wellformed"] == 0.0 and m["apo.acc.mean"] == 0.0
    assert logged["metrics"] and all(v == v for v in logged["metrics"].values())  # NaN never sent to MLflow

    preds = pd.read_parquet(reports / "eval" / "predictions.parquet")
    assert set(preds["system"]) == {"teacher.gpt5", "teacher.sonnet4", "teacher.grok4", "majority_vote", "spd", "apo"}
    assert preds[preds["system"] == "apo"]["text"].map(lambda t: isinstance(t, str)).all()  # raw outputs kept for inspection
    assert (reports / "eval" / "best_teacher.txt").read_text().strip() == "gpt5"
    prov = json.loads((reports / "eval" / "provenance.json").read_text())
    assert prov["students"]["apo"] == "apo: loss plackett_luce, beta 0.1, 3 steps, lr 0.001"

    html = (reports / "index.html").read_text()
    for row in ("SPD only", "SPD + pairwise DPO (not run)", "SPD + consensus + APO", "Best single teacher (gpt5, chosen on val)", "(published)"):
        assert row in html, row
    assert (reports / "eval.md").read_text().count("![") == 4  # 2 accuracy charts, 2 confusion grids
    from apodistill.provenance import volatile

    rev = volatile("evaluate")["git_revision"].removesuffix("-dirty")
    for report in ("index.html", "eval.md"):  # DVC hashes the reports: the revision lives in the sidecar only
        text = (reports / report).read_text()
        assert rev not in text and "reports/provenance/evaluate.json" in text, report
    assert sorted(map(str, logged["artifacts"])) == sorted([str(reports / "index.html"), str(reports / "eval.md")])
    plots = reports / "eval" / "plots"
    assert (plots / "accuracy.csv").is_file() and len(list((plots / "confusion").glob("*.csv"))) == 2 * 2 * len(FINDINGS)


def test_stage_rejects_half_report_arguments(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["evaluate.py", "--params", "p", "--benchmark", "b", "--trajectories", "t", "--templates", "x",
                                      "--out", "o", "--metrics", "m", "--html", "h.html"])  # fmt: skip
    with pytest.raises(SystemExit) as err:
        runpy.run_path(str(REPO / "pipeline" / "evaluate.py"), run_name="__main__")
    assert err.value.code == 2 and "--html and --md go together" in capsys.readouterr().err
