"""The headline that `dvc exp show` holds (~20 of ~600 numbers), and the sideways
`apodistill compare` table that fits 200 columns."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from apodistill.compare import render, table_rows
from apodistill.headline import headline

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("spd", "apo", "pairwise", "majority_vote", "best_teacher")
FINDINGS = ("consolidation", "pleural_effusion", "pneumonia", "pneumothorax", "edema")


def _full_metrics() -> dict[str, float]:
    """Every key shape the evaluate and validate stages write, pairs (MS-CXR-T) included."""
    m: dict[str, float] = {}
    for s in (*SYSTEMS, *(f"teacher.{t}" for t in ("gpt5", "gemini25", "sonnet4", "qwen_vl_max", "grok4", "glm45v", "moonshot"))):
        for acc in ("acc", "pair_acc"):
            m.update({f"{s}.{acc}.{f}": 0.8 for f in FINDINGS} | {f"{s}.{acc}.mean": 0.8})
        m.update({f"{s}.{k}": 0.1 for k in ("bleu4", "rouge_l", "f1_micro_5", "single_wellformed", "faithfulness.side", "faithfulness")})
    for s in ("spd", "pairwise", "apo"):
        for vs in ("vs_spd", "vs_best_teacher"):
            m.update({f"{s}.{vs}.{acc}.{k}": 0.01 for acc in ("acc", "pair_acc") for k in ("diff", "ci_low", "ci_high")})
    m.update({f"consensus.{c}.acc.{f}": 0.9 for c in ("vote", "dawid_skene", "in_context") for f in (*FINDINGS, "mean")})
    m.update({f"drift.{t}.flags": 0.0 for t in ("gpt5", "grok4")} | {"drift.flagged_teachers": 1.0, "quarantine.fraction": 0.06})
    m.update({"spd.bias.qwen_vl_max.pneumothorax": 0.3, "apo.bias_inheritance": 0.2, "apo.train_seconds": 57.0, "apo.ref_cache_hit": 1})
    return m


def test_headline_is_about_twenty_keys_pairs_first_no_per_teacher_or_per_finding():
    m = _full_metrics()
    assert len(m) > 250
    head = headline(m)
    assert 15 <= len(head) <= 26, list(head)
    keys = list(head)
    assert keys[:5] == sorted(f"{s}.pair_acc.mean" for s in SYSTEMS)  # the paper's headline first
    assert set(keys[5:10]) == {f"{s}.acc.mean" for s in SYSTEMS}
    assert {"apo.vs_spd.pair_acc.diff", "apo.vs_spd.pair_acc.ci_low", "apo.vs_spd.pair_acc.ci_high",
            "consensus.dawid_skene.acc.mean", "apo.faithfulness", "apo.bias_inheritance", "drift.flagged_teachers"} <= set(keys)
    assert not [k for k in keys if k.startswith("teacher.") or k.endswith(FINDINGS) or "seconds" in k or "cache_hit" in k]


def test_summary_stage_on_the_committed_reports(tmp_path):
    """The summary stage over today's committed reports (pairs and single studies)."""
    spec = importlib.util.spec_from_file_location("summary_stage", ROOT / "pipeline" / "summary.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    common = ["--params", str(ROOT / "params.yaml"), "--no-mlflow", "--headline", str(tmp_path / "h.json")]
    reports = ["--report", f"validate={ROOT / 'reports/validate.json'}", "--report", f"evaluate={ROOT / 'reports/metrics.json'}"]
    assert stage.main([*common, *reports]) == 0
    head = json.loads((tmp_path / "h.json").read_text())
    keys = list(head)
    assert keys[:2] == ["apo.pair_acc.mean", "best_teacher.pair_acc.mean"] and len(head) <= 30, keys
    assert keys.index("control.pair_acc.mean") < keys.index("apo.acc.mean")  # the paper's task first
    assert keys.index("apo.vs_spd.pair_acc.diff") < keys.index("apo.vs_spd.pair_acc.ci_low") < keys.index("apo.vs_spd.pair_acc.ci_high")
    assert head["quarantine.fraction"] == round(json.loads((ROOT / "reports/validate.json").read_text())["quarantine.fraction"], 4)
    assert stage.main([*common, "--report", "spd=nowhere.json"]) == 2


def _exp(name: str, beta: float, sonnet: float = 1.0, **metrics) -> dict:
    row = {"Experiment": name, "rev": name[:7], "typ": "branch_commit", "Created": "10:00", "State": "Success",
           "Executor": "dvc-task", "apo.loss": "plackett_luce", "apo.beta": beta, "spd.optim.steps": 2000,
           "data/benchmark": "0a1b2c.dir", "pipeline/apo.py": "ffee", **headline(_full_metrics()), **metrics}
    row.update({f"teachers.weights.{t}": 1.0 for t in ("gpt5", "gemini25", "qwen_vl_max", "grok4", "glm45v", "moonshot")})
    row["teachers.weights.sonnet4"] = sonnet
    return row


def test_compare_table_shows_beta_weights_headline_within_200_columns():
    rows = [{**_exp("", 0.1), "Experiment": None, "rev": "workspace", "typ": "workspace"},
            {**_exp("", 0.1), "Experiment": None, "rev": "4f2a9c1d", "typ": "baseline"},
            _exp("abl-pairwise", 0.1, **{"apo.loss": "pairwise"}), _exp("abl-pl-beta-0p05", 0.05),
            _exp("abl-pl-beta-0p2", 0.2), _exp("abl-pl-beta-0p5", 0.5), _exp("w-sonnet-half", 0.1, sonnet=0.5, **{"pairwise.acc.mean": "None"})]
    columns, fields = table_rows(rows)
    text = render(columns, fields, width=200)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 200 and "" not in lines  # one block: everything side by side
    names = [k for k, _ in fields]
    assert names[:2] == ["apo.loss", "apo.beta"] and "teachers.weights.sonnet4" in names
    assert "spd.optim.steps" not in names  # same everywhere: not shown
    assert "data/benchmark" not in names and "Created" not in names
    assert names.index("apo.pair_acc.mean") < names.index("apo.acc.mean")
    assert dict(fields)["apo.beta"][3:6] == [".050", ".200", ".500"] and dict(fields)["teachers.weights.sonnet4"][-1] == ".500"
    assert dict(fields)["pairwise.acc.mean"][-1] == "-" and dict(fields)["drift.flagged_teachers"][0] == "1"
    narrow = render(columns, fields, width=90)  # too many experiments for the width: a second block
    assert max(map(len, narrow.splitlines())) <= 90 and "" in narrow.splitlines()
