"""The whole DAG, end to end, in a temporary copy of the repository at smoke size.

This is the real pipeline (`dvc repro` of dvc.yaml, every stage script), only with a
params override that makes it small: a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

SMOKE = {
    "fetch": {"n_patients": 36, "studies_per_patient": 2},
    "spd": {"optim": {"steps": 12, "batch_size": 8, "checkpoint_every": 5, "log_every": 2}},
    "self_distill": {"batch_size": 32, "max_new_tokens": 48, "compare_sample": 8},
    "apo": {"pairwise_baseline": True, "optim": {"steps": 4, "epochs": None, "batch_size": 2, "checkpoint_every": 2, "log_every": 1}},
    "evaluate": {"bootstrap": 20, "batch_size": 32, "max_new_tokens": 48},
}


def _merge(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}")
    return r


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dst = tmp_path_factory.mktemp("repo")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    params = _merge(yaml.safe_load((dst / "params.yaml").read_text()), SMOKE)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(GX_ANALYTICS_ENABLED="false", MLFLOW_DISABLE_TELEMETRY="true", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    _run(git + ["init", "-q"], dst, env)
    _run(git + ["add", "-A"], dst, env)
    _run(git + ["commit", "-qm", "smoke"], dst, env)
    _run(["dvc", "repro"], dst, env)
    return dst, env


def test_headline_is_the_only_dvc_metrics_file(repo):
    """The only DVC metrics file is the summary stage's ~20 headline keys: no per-teacher keys,
    no timings (wall times are in each stage's sidecar)."""
    dst, env = repo
    head = json.loads((dst / "reports" / "headline.json").read_text())
    assert list(head)[0] == "apo.pair_acc.mean" and "apo.vs_spd.pair_acc.ci_low" in head and 8 <= len(head) <= 30, list(head)
    assert not [k for k in head if "seconds" in k or k.startswith("teacher.")]
    assert json.loads((dst / "reports" / "provenance" / "spd.json").read_text())["wall_seconds"] > 0
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], dst, env).stdout)
    files = {f for rev in shown.values() for f in rev.get("data", {})}
    assert files == {"reports/headline.json"}, files


def test_metrics_cover_every_system(repo):
    dst, _ = repo
    m = json.loads((dst / "reports" / "metrics.json").read_text())
    params = yaml.safe_load((dst / "params.yaml").read_text())
    systems = [f"teacher.{t['name']}" for t in params["teachers"]["roster"]] + [
        "spd", "apo", "pairwise", "control", "majority_vote", "best_teacher", "mean_teacher"]
    for s in systems:
        for acc in ("pair_acc", "acc"):  # MS-CXR-T pairs and single studies
            for f in params["base"]["findings"]:
                assert f"{s}.{acc}.{f}" in m, f"{s}.{acc}.{f} missing"
            assert 0.0 <= m[f"{s}.{acc}.mean"] <= 1.0
    assert "apo.bleu4" in m and "apo.rouge_l" in m and "apo.pair_faith.contradiction" in m and "spd.vs_mean_teacher.pair_acc.diff" in m
    assert any(k.startswith("inherit.") for k in m), "no bias inheritance measured against the control arm"
    sd = json.loads((dst / "reports" / "self_distill.json").read_text())
    assert {f"self_distill.acc.{x}.single" for x in ("vote", "weighted_vote", "dawid_skene", "in_context")} <= set(sd)
    for out in ("data/benchmark", "data/trajectories", "data/validated", "models/spd", "models/control", "data/consensus",
                "models/apo", "models/apo_pairwise", "reports/eval"):
        prov = json.loads((dst / out / "provenance.json").read_text())
        assert prov["versions"]["torch"] and prov["config"]["base"]["seed"] == params["base"]["seed"]
        assert not {"git_revision", "time", "host", "argv"} & set(prov), out  # volatile: in the sidecar only
    for stage in yaml.safe_load((dst / "dvc.yaml").read_text())["stages"]:
        side = json.loads((dst / "reports" / "provenance" / f"{stage}.json").read_text())
        assert len(side["git_revision"]) >= 40 and side["host"] and side["argv"], stage


def test_registry_has_challenger(repo):
    dst, env = repo
    code = (
        "import mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db');"
        "v = mlflow.MlflowClient().get_model_version_by_alias('apodistill-student', 'challenger');"
        "print(v.version, v.tags.get('git_revision', ''))"
    )
    out = _run([sys.executable, "-c", code], dst, env).stdout.split()
    assert out[0] == "1" and len(out[1]) >= 40


def test_second_repro_is_a_no_op(repo):
    dst, env = repo
    r = _run(["dvc", "repro"], dst, env)
    assert "Running stage" not in r.stdout
    assert "up to date" in r.stdout


def test_a_commit_or_an_identical_rerun_reruns_nothing(repo):
    """Provenance that does not churn: a README-only commit leaves every stage up to date, and
    so does an upstream stage that reruns (forced, at the new revision) and writes the same bytes."""
    dst, env = repo
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    _run(git + ["add", "-A"], dst, env)
    _run(git + ["commit", "-qm", "results of the run"], dst, env)
    (dst / "README.md").write_text((dst / "README.md").read_text() + "\nOne more line.\n")
    _run(git + ["commit", "-qam", "README only"], dst, env)
    assert _run(git + ["show", "--name-only", "--format=", "HEAD"], dst, env).stdout.split() == ["README.md"]
    assert "Data and pipelines are up to date" in _run(["dvc", "status"], dst, env).stdout
    _run(["dvc", "repro", "--force", "-s", "fetch"], dst, env)
    status = _run(["dvc", "status"], dst, env).stdout
    assert "Data and pipelines are up to date" in status, status


def test_changed_param_changes_the_output(repo):
    """No stage is a stub: apo.beta reruns APO (reference log-probs reused) with new weights."""
    dst, env = repo
    before = (dst / "models" / "apo" / "model.safetensors").read_bytes()
    _run(["dvc", "repro", "-s", "apo", "--force"], dst, env)  # same params: same weights (deterministic)
    assert (dst / "models" / "apo" / "model.safetensors").read_bytes() == before
    p = yaml.safe_load((dst / "params.yaml").read_text())
    p["apo"]["beta"] = 0.7
    (dst / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    status = _run(["dvc", "status", "apo"], dst, env).stdout
    assert "changed deps" in status and "modified:           apo" in status
    _run(["dvc", "repro", "-s", "apo"], dst, env)
    assert (dst / "models" / "apo" / "model.safetensors").read_bytes() != before
    assert json.loads((dst / "reports" / "apo.json").read_text())["apo.ref_cache_hit"] == 1


def _runs_by_experiment(dst: Path, env: dict) -> dict[str, list[str]]:
    """{dvc_experiment tag: [stage, ...]} of every run in the repository's own store."""
    import sqlite3

    with sqlite3.connect(dst / "mlflow.db") as conn:
        rows = conn.execute(
            "SELECT e.value, s.value FROM tags e JOIN tags s ON e.run_uuid = s.run_uuid "
            "WHERE e.key = 'dvc_experiment' AND s.key = 'stage'"
        ).fetchall()
    out: dict[str, list[str]] = {}
    for exp, stage in rows:
        out.setdefault(exp, []).append(stage)
    return out


def test_queued_experiment_reuses_spd_and_logs_to_the_repository_store(repo):
    """`dvc exp run --queue` runs in .dvc/tmp/exps/..., which DVC deletes afterwards: its
    MLflow runs must land in the repository's mlflow.db, and only the stages downstream of
    the changed param rerun (SPD is restored from the DVC cache, not retrained)."""
    dst, env = repo
    before = _runs_by_experiment(dst, env)
    # pairwise_baseline off: one APO training instead of two, the shortest arm that proves the point
    _run(["dvc", "exp", "run", "--queue", "-n", "smoke-beta", "-S", "apo.beta=0.3", "-S", "apo.pairwise_baseline=false"], dst, env)
    r = _run(["dvc", "exp", "run", "--run-all", "--jobs", "1"], dst, env)
    after = _runs_by_experiment(dst, env)
    assert "smoke-beta" not in before
    assert sorted(after.get("smoke-beta", [])) == ["apo", "evaluate", "register", "summary"], (after, r.stdout[-3000:])
    assert sum(map(len, after.values())) == sum(map(len, before.values())) + 4
    assert not list((dst / ".dvc" / "tmp").rglob("mlflow.db"))  # no store left behind in a temp workspace
    table = _run([sys.executable, "-m", "apodistill.cli", "compare", "smoke-beta"], dst, env).stdout
    beta = next(line.split() for line in table.splitlines() if line.startswith("apo.beta "))
    assert beta[-1] == ".300" and max(map(len, table.splitlines())) <= 200, table


def test_spd_to_apo_on_two_cpu_processes(repo):
    """`base.accelerate: multi_cpu`: spd -> self_distill -> apo rerun on 2 gloo processes, each
    stage with one MLflow run, one reference cache and the effective batch on record."""
    import sqlite3
    from collections import Counter

    def runs() -> Counter:
        return Counter(r[0] for r in sqlite3.connect(dst / "mlflow.db").execute("select name from runs"))

    dst, env = repo
    before = runs()
    p = yaml.safe_load((dst / "params.yaml").read_text())
    p["base"]["accelerate"] = "multi_cpu"
    (dst / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    out = _run(["dvc", "repro", "apo"], dst, env).stdout
    assert all(f"Running stage '{s}'" in out for s in ("spd", "self_distill", "apo"))
    spd, apo = (json.loads((dst / "reports" / f"{s}.json").read_text()) for s in ("spd", "apo"))
    micro = SMOKE["spd"]["optim"]["batch_size"]
    assert (spd["spd.processes"], spd["spd.effective_batch"]) == (2, 2 * micro)
    assert (apo["apo.processes"], apo["apo.ref_cache_hit"]) == (2, 0)
    assert json.loads((dst / "models" / "spd" / "provenance.json").read_text())["effective_batch"] == 2 * micro
    lrs = [float(r.split(",")[2]) for r in (dst / "reports" / "curves" / "spd.csv").read_text().splitlines()[1:]]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # no warm-up at this size: the cosine only decays
    assert runs() - before == Counter({"spd": 1, "self_distill": 1, "apo": 1})
    assert sorted(x.name for x in (dst / "models" / "apo_ref").iterdir()) == ["key.json", "ref_logps.parquet"]
