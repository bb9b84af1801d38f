"""Registry: the register stage logs a student only with its evaluation; the promotion gate
moves `champion` only for a better challenger; a fresh process loads champion and predicts.

One temporary MLflow sqlite store per module (set-up costs seconds). The fresh-process
`apodistill predict` starts in the fixture and runs while the gate tests work on a second
registered model whose versions have known metrics; each gate test sets the aliases it needs.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from types import SimpleNamespace

import mlflow
import pytest
from serving_helpers import (
    FINDINGS, NAME, REPO, TEMPLATES, apodistill_cmd, build_student, metrics_for, prompts, store_env,
    subprocess_env, write_params,
)
from teachers_helpers import make_benchmark
from typer.testing import CliRunner

from apodistill.cli import app
from apodistill.serving.promote import NO_EVALUATION, PROMOTED, REFUSED, USAGE, Version, decide
from apodistill.serving.register import MissingEvaluation, log_and_register
from apodistill.tracking import stage_run


def _stage():
    spec = importlib.util.spec_from_file_location("register_stage", REPO / "pipeline" / "register.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GATE = "gate-test"  # the gate tests move aliases of their own model, not of NAME (a subprocess reads NAME@champion)


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """NAME v1 through the register stage (acc .70, pair .60), promoted to champion (no
    champion yet), then `apodistill predict NAME@champion` started in a fresh process that
    runs while the other tests do. GATE v1-v3 through log_and_register with known metrics
    (.70/.60, .80/.59, .72/.65 for acc/pair_acc), GATE v4 registered without any evaluation."""
    from apodistill.data import render_study_image

    root = tmp_path_factory.mktemp("registry")
    previous_uri = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in store_env(root).items():
            mp.setenv(k, v)
        model, proc = build_student(root / "student")
        params = write_params(root / "params.yaml")
        bench = make_benchmark(root / "bench", n_patients=3, studies_per_patient=2)
        (root / "metrics.json").write_text(json.dumps(metrics_for(0.70, 0.60)))
        args = ["--params", str(params), "--model", str(root / "student"), "--templates", str(TEMPLATES)]
        rc = _stage().main(args + ["--metrics", str(root / "metrics.json"), "--out", str(root / "register.json"),
                                   "--benchmark", str(bench), "--card", str(root / "card.md")])
        assert rc == 0
        first = CliRunner().invoke(app, ["promote", "--params", str(params)])
        render_study_image({"pleural_effusion": 0.8, "edema": 0.3}, size=64, seed=3).save(root / "cxr.png")
        predict = subprocess.Popen(apodistill_cmd("predict", str(root / "cxr.png"), "--json"), cwd=REPO,
                                   env=subprocess_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for acc, pair in ((0.70, 0.60), (0.80, 0.59), (0.72, 0.65)):
            with stage_run("register", "serving-test", {}):
                log_and_register(root / "student", prompts(), FINDINGS, metrics_for(acc, pair), GATE, "challenger",
                                 {"git_revision": "test"}, {"base": {"findings": FINDINGS}}, max_new_tokens=12)
        client = mlflow.MlflowClient()
        with mlflow.start_run(run_name="hand-registered") as run:  # v4: registered by hand, never evaluated
            mlflow.log_text("not a model", "student/README")
        client.create_model_version(GATE, source=f"runs:/{run.info.run_id}/student", run_id=run.info.run_id)
        try:
            yield SimpleNamespace(root=root, model=model, proc=proc, params=params, args=args, client=client, first=first,
                                  predict=predict, stage_out=json.loads((root / "register.json").read_text()))
        finally:
            if predict.poll() is None:
                predict.kill()
                predict.communicate()
    mlflow.set_tracking_uri(previous_uri)


def _aliases(reg, challenger: str, champion: str | None) -> None:
    reg.client.set_registered_model_alias(GATE, "challenger", challenger)
    if champion is None:
        reg.client.delete_registered_model_alias(GATE, "champion")
    else:
        reg.client.set_registered_model_alias(GATE, "champion", champion)


def _promote(reg, *args: str):
    return CliRunner().invoke(app, ["promote", "--params", str(reg.params), "--name", GATE, *args])


def _champion(reg) -> str:
    return str(reg.client.get_model_version_by_alias(GATE, "champion").version)


def test_register_stage_logs_weights_card_params_metrics_and_tags(reg):
    v = reg.client.get_model_version(NAME, "1")
    assert reg.stage_out["version"] == "1" and reg.stage_out["alias"] == "challenger"
    assert v.tags["eval.acc.mean"] == "0.7" and v.tags["eval.pair_acc.mean"] == "0.6"
    assert v.tags["data_hash"].startswith("sha256:") and v.tags["dvc_experiment"] == "workspace"
    assert v.tags["git_revision"] and v.tags["system"] == "apo"
    local = mlflow.artifacts.download_artifacts(f"models:/{NAME}/1", dst_path=str(reg.root / "dl"))
    arts = {p.name for p in (reg.root / "dl" / "artifacts").iterdir()}
    assert {"student", "meta.json", "params.json", "metrics.json", "model_card.md"} <= arts, arts
    assert {"model.safetensors", "tokenizer.json", "student.json"} <= {p.name for p in (reg.root / "dl" / "artifacts" / "student").iterdir()}
    assert json.loads((reg.root / "dl" / "artifacts" / "metrics.json").read_text())["apo.acc.mean"] == 0.7
    card = (reg.root / "card.md").read_text()
    assert "Research use only. Not for clinical decisions." in card and "| **mean** | 0.700 | 0.600 |" in card
    assert "GPT-5 0.75" in card and "0.780" in card  # the paper's numbers beside ours
    assert (reg.root / "dl" / "artifacts" / "model_card.md").read_text() == card
    sig = mlflow.models.get_model_info(local).signature
    assert sig.inputs.input_names() == ["image", "prior_image", "prompt"]
    assert {"trajectory", "wellformed", "answer_pneumothorax"} <= set(sig.outputs.input_names())


def test_gate_refuses_a_worse_challenger_and_accepts_a_better_one(reg):
    _aliases(reg, "2", "1")  # default metric pair_acc.mean: .59 vs .60
    r = _promote(reg)
    assert r.exit_code == REFUSED, r.output
    assert "refused" in r.output and "0.5900" in r.output and "0.6000" in r.output and _champion(reg) == "1"
    _aliases(reg, "3", "1")  # .65 vs .60
    r = _promote(reg, "--margin", "0.1")
    assert r.exit_code == REFUSED and "0.6500" in r.output and _champion(reg) == "1"
    r = _promote(reg)
    assert r.exit_code == PROMOTED, r.output
    assert _champion(reg) == "3" and "0.6500" in r.output and "0.6000" in r.output
    tags = reg.client.get_model_version(GATE, "3").tags
    assert tags["promoted.previous_champion"] == "1" and tags["promoted.forced"] == "false"
    assert tags["promoted.metric"] == "pair_acc.mean"
    _aliases(reg, "2", "1")  # on single-study accuracy v2 wins: .80 vs .70 (full metrics key form)
    r = _promote(reg, "--metric", "apo.acc.mean")
    assert r.exit_code == PROMOTED and _champion(reg) == "2", r.output


def test_first_challenger_becomes_champion(reg):
    assert reg.first.exit_code == PROMOTED and "no champion yet" in reg.first.output, reg.first.output
    assert str(reg.client.get_model_version_by_alias(NAME, "champion").version) == "1"
    _aliases(reg, "1", None)
    r = _promote(reg)
    assert r.exit_code == PROMOTED and "no champion yet" in r.output and _champion(reg) == "1"


def test_force_moves_champion_and_records_the_reason(reg):
    _aliases(reg, "2", "3")
    assert _promote(reg, "--force").exit_code == USAGE and _champion(reg) == "3"
    r = _promote(reg, "--force", "--reason", "roll back: v3 regressed on pneumothorax")
    assert r.exit_code == PROMOTED and _champion(reg) == "2", r.output
    tags = reg.client.get_model_version(GATE, "2").tags
    assert tags["promoted.reason"] == "roll back: v3 regressed on pneumothorax" and tags["promoted.forced"] == "true"


def test_missing_evaluation_is_never_registered_nor_promoted(reg, tmp_path):
    _aliases(reg, "4", "1")
    for extra in ([], ["--force", "--reason", "try anyway"]):
        r = _promote(reg, *extra)
        assert r.exit_code == NO_EVALUATION and "no evaluation" in r.output and _champion(reg) == "1"
    n = len(reg.client.search_model_versions())
    teachers_only = {"teacher.gpt5.acc.mean": 0.6, "spd.acc.mean": 0.5}
    with pytest.raises(MissingEvaluation, match="apo.acc.mean"):
        log_and_register(reg.root / "student", prompts(), FINDINGS, teachers_only, NAME, "challenger", {}, {})
    (tmp_path / "m.json").write_text(json.dumps(teachers_only))
    rc = _stage().main(reg.args + ["--metrics", str(tmp_path / "m.json"), "--out", str(tmp_path / "r.json")])
    assert rc == 2 and not (tmp_path / "r.json").exists()
    assert len(reg.client.search_model_versions()) == n


def test_decision_edges():
    a = Version("2", "apo", {"acc.mean": 0.71, "pair_acc.mean": 0.5})
    b = Version("1", "apo", {"acc.mean": 0.70})
    d = decide(a, b, None, 0.01)  # champion has no pair_acc: both-present metric acc.mean, gain == margin
    assert d.promote and d.metric == "acc.mean"
    assert not decide(a, b, "pair_acc.mean", 0.0).promote  # cannot compare against a missing value
    assert not decide(b, Version("1", "apo", {"acc.mean": 0.70}), None, 0.0).promote  # same version
    assert not decide(Version("3", "apo", {"acc.mean": 0.70}), b, None, 0.0).promote  # equal is not better


def test_fresh_process_loads_champion_and_predicts_on_a_synthetic_image(reg):
    from apodistill.serving.predictor import Predictor, Query

    stdout, stderr = reg.predict.communicate(timeout=300)
    assert reg.predict.returncode == 0, stderr[-3000:]
    out = json.loads(stdout)
    assert out["model"] == {"uri": f"models:/{NAME}@champion", "name": NAME, "alias": "champion", "version": "1"}
    assert out["task"] == "single" and set(out["findings"]) == set(FINDINGS)
    expected = Predictor(reg.model, reg.proc, FINDINGS, prompts(), 64, 12).answer([Query(str(reg.root / "cxr.png"))])[0]
    assert out["trajectory"] == expected.trajectory and out["trajectory"]  # same weights, greedy: same text


def test_lora_student_on_a_local_base_is_registered_merged_and_loads_alone(reg, tmp_path):
    import torch

    from params_helpers import section
    from apodistill.data import render_study_image
    from apodistill.serving.predictor import Predictor, Query
    from apodistill.student import apply_lora, load_student, save_student

    base, proc = build_student(tmp_path / "base", seed=1)
    lora = apply_lora(base, section("spd.lora", enabled=True, r=2, alpha=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(7))  # B starts at zero: make the adapter matter
    save_student(lora, proc, tmp_path / "adapter", base=str(tmp_path / "base"), extra={"image_size": 64})
    with stage_run("register", "serving-test", {}):
        out = log_and_register(tmp_path / "adapter", prompts(), FINDINGS, metrics_for(0.5), GATE, "challenger", {}, {},
                               max_new_tokens=12)
    (tmp_path / "base").rename(tmp_path / "gone")  # the registered model must not need the local base
    local = mlflow.artifacts.download_artifacts(f"models:/{GATE}/{out['version']}", dst_path=str(tmp_path / "dl"))
    info = json.loads((tmp_path / "dl" / "artifacts" / "student" / "student.json").read_text())
    assert info["kind"] == "full" and info["merged_from"]["base"] == str(tmp_path / "base")
    loaded = mlflow.pyfunc.load_model(local).unwrap_python_model().predictor
    (tmp_path / "gone").rename(tmp_path / "base")
    model, proc2 = load_student(tmp_path / "adapter")  # the adapter on its base, merged in memory

    image = render_study_image({"edema": 0.6}, size=64, seed=4)
    want = Predictor(model.eval(), proc2, FINDINGS, prompts(), 64, 12).answer([Query(image)])[0].trajectory
    plain = Predictor(reg.model, reg.proc, FINDINGS, prompts(), 64, 12).answer([Query(image)])[0].trajectory
    assert loaded.answer([Query(image)])[0].trajectory == want != plain
