"""The evaluate core: every system scored on the same gold rows, the best teacher chosen on val,
clinical F1 and report metrics of the reasoning, bootstrap intervals, the per-example table."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from apodistill import evaluate as ev
from evaluate_helpers import FINDINGS, make_benchmark, make_trajectories, student_preds

TEACHERS = {"gpt5": 0, "sonnet4": 1, "grok4": 0, "glm45v": 0}  # name -> every n-th example wrong (0 never, 1 always)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    bench = make_benchmark(root / "bench", images=False)
    traj = pd.read_parquet(make_trajectories(bench, root / "traj", TEACHERS, refuse={"grok4": 4}) / "trajectories.parquet")
    studies, pairs = pd.read_parquet(bench / "studies.parquet"), pd.read_parquet(bench / "pairs.parquet")
    gold = {t: ev.gold_for(t, studies, pairs, "test") for t in ("single", "pair")}
    tp = ev.teacher_predictions(traj, FINDINGS, "test")
    preds = {f"teacher.{t}": tp[tp["system"] == t] for t in TEACHERS}
    preds["majority_vote"] = ev.majority_vote(tp, FINDINGS)
    preds["spd"] = student_preds(bench, "test", wrong_every=3)
    preds["apo"] = student_preds(bench, "test", wrong_every=0)
    scores = ev.score_systems(preds, gold, FINDINGS, best_teacher="gpt5", students=["spd", "apo"], bootstrap=300, seed=0, meteor=False)
    return scores, traj, gold


def test_accuracy_refusals_wrong_and_vote(scored):
    scores, traj, gold = scored
    m = scores.metrics
    assert m["teacher.gpt5.acc.mean"] == 1.0 and m["teacher.gpt5.pair_acc.mean"] == 1.0
    assert m["teacher.sonnet4.acc.mean"] == 0.0 and m["teacher.sonnet4.pair_acc.mean"] == 0.0
    # grok4 is always right when it answers: its accuracy is the share of scored examples it did not refuse.
    g = traj[(traj["teacher"] == "grok4") & (traj["split"] == "test") & (traj["task"] == "single")].set_index("study_id")
    answered = (g.loc[gold["single"]["study_id"], "status"] == "ok").to_numpy()
    scored_rows = gold["single"]["label_consolidation"].isin([0.0, 1.0]).to_numpy()
    assert m["teacher.grok4.acc.consolidation"] == pytest.approx(answered[scored_rows].mean())
    assert m["teacher.grok4.acc.consolidation"] < 1.0
    assert m["teacher.grok4.single_wellformed"] == pytest.approx(answered.mean())
    assert m["majority_vote.acc.mean"] == 1.0 and m["majority_vote.pair_acc.mean"] == 1.0


def test_best_teacher_and_bootstrap_keys(scored):
    m = scored[0].metrics
    assert {k[len("best_teacher.") :] for k in m if k.startswith("best_teacher.")} == {k[len("teacher.gpt5.") :] for k in m if k.startswith("teacher.gpt5.")}
    assert m["apo.vs_best_teacher.acc.diff"] == 0.0 and (m["apo.vs_best_teacher.acc.ci_low"], m["apo.vs_best_teacher.acc.ci_high"]) == (0.0, 0.0)
    d, lo, hi = (m[f"apo.vs_spd.pair_acc.{k}"] for k in ("diff", "ci_low", "ci_high"))
    assert d == pytest.approx(m["apo.pair_acc.mean"] - m["spd.pair_acc.mean"]) and d > 0
    assert lo <= d <= hi and lo < hi
    assert "spd.vs_spd.acc.diff" not in m and "spd.vs_best_teacher.acc.diff" in m
    assert not any(k.startswith("teacher.") and ".vs_" in k for k in m)


def test_reasoning_scored_as_a_report(scored):
    m = scored[0].metrics
    # apo's reasoning is the reference report itself: perfect overlap and clinical F1.
    assert m["apo.bleu4"] == pytest.approx(1.0) and m["apo.rouge_l"] == pytest.approx(1.0)
    assert m["apo.f1_micro_5"] == pytest.approx(1.0) and m["apo.f1_micro_14"] == pytest.approx(1.0)
    assert math.isnan(m["apo.meteor"])  # meteor=False: skipped, reported as NaN, never silently 0
    assert {"apo.f1_macro_5", "apo.f1_macro_14", "apo.cider", "teacher.gpt5.f1_micro_5", "best_teacher.f1_micro_5"} <= set(m)
    assert not any(k.startswith("majority_vote.") and ("bleu" in k or "f1_" in k) for k in m)  # the vote writes no reasoning


def test_per_example_table(scored):
    scores, _, gold = scored
    p = scores.predictions
    for col in ["system", "task", "study_id", "prior_study_id", "pair_id", "wellformed", "think", "text"]:
        assert col in p
    assert all(f"{k}_{f}" in p for f in FINDINGS for k in ("answer", "gold", "correct"))
    n = len(gold["single"]) + len(gold["pair"])
    assert p.groupby("system").size().eq(n).all()
    first = p[(p["system"] == "apo") & (p["task"] == "single")].iloc[0]
    assert first["gold_pneumonia"] == "uncertain" and math.isnan(first["correct_pneumonia"])
    pairs = p[(p["system"] == "apo") & (p["task"] == "pair")]
    assert list(pairs["pair_id"]) == list(gold["pair"]["pair_id"])
    assert pairs["gold_edema"].isna().sum() == gold["pair"]["progression_edema"].isna().sum()
    refused = p[(p["system"] == "grok4") | (p["system"] == "teacher.grok4")]
    assert (~refused["wellformed"]).sum() > 0 and refused.loc[~refused["wellformed"], "answer_edema"].isna().all()


def test_confusions_count_the_scored_examples(scored):
    scores, _, gold = scored
    c = scores.confusions[("spd", "single", "edema")]
    assert int(c.to_numpy().sum()) == int(gold["single"]["label_edema"].isin([0.0, 1.0]).sum())
    assert set(c.columns) == {"yes", "no", "uncertain", "unparsed"}
    assert ("teacher.gpt5", "single", "edema") not in scores.confusions
    pair = scores.confusions[("apo", "pair", "edema")]
    assert np.trace(pair.to_numpy()) == pair.to_numpy().sum()  # apo is always right


def test_best_teacher_is_chosen_on_val(tmp_path):
    bench = make_benchmark(tmp_path / "bench", images=False)
    teachers = {"val_star": {"val": 0, "test": 1}, "test_star": {"val": 1, "test": 0}}
    traj = pd.read_parquet(make_trajectories(bench, tmp_path / "traj", teachers) / "trajectories.parquet")
    studies, pairs = pd.read_parquet(bench / "studies.parquet"), pd.read_parquet(bench / "pairs.parquet")
    best, val_acc = ev.choose_best_teacher(ev.teacher_predictions(traj, FINDINGS, "val"), ev.gold_for("pair", studies, pairs, "val"), "pair", FINDINGS)
    assert best == "val_star" and val_acc == {"val_star": 1.0, "test_star": 0.0}
    assert ev.choose_best_teacher(traj.iloc[:0].assign(system=[]), ev.gold_for("pair", studies, pairs, "nosuch"), "pair", FINDINGS) == (None, {})


def test_unparseable_output_is_wrong_but_its_reasoning_is_read():
    rows = pd.DataFrame({"task": ["single"], "study_id": ["s"], "prior_study_id": [""], "text": ["<think>Large pleural effusion.</think> no answer block"]})
    p = ev.parse_predictions(rows, FINDINGS)
    assert not p.loc[0, "wellformed"] and p.loc[0, "answer_edema"] is None
    assert p.loc[0, "think"] == "Large pleural effusion."
    assert ev.parse_predictions(rows.assign(text=[None]), FINDINGS).loc[0, "think"] == ""


def test_gold_answers_and_primary_task():
    g = pd.DataFrame({"label_edema": [1.0, 0.0, -1.0, np.nan], "progression_edema": ["improving", None, "stable", np.nan]})
    assert ev.gold_answers(g, "single", "edema") == ["yes", "no", "uncertain", None]
    assert ev.gold_answers(g, "pair", "edema") == ["improving", None, "stable", None]
    assert ev.primary_task(["single", "pair"]) == "pair" and ev.primary_task(["single"]) == "single"


def test_describe_student(tmp_path):
    assert ev.describe_student(tmp_path) == ""
    record = {"stage": "apo", "config": {"apo": {"loss": "pairwise", "beta": 0.2, "optim": {"steps": 200, "lr": 1e-4}}}}
    (tmp_path / "provenance.json").write_text(json.dumps(record))
    assert ev.describe_student(tmp_path) == "apo: loss pairwise, beta 0.2, 200 steps, lr 0.0001"
    record["config"]["apo"]["optim"]["epochs"] = 1  # training uses epochs when set: so does the description
    (tmp_path / "provenance.json").write_text(json.dumps(record))
    assert ev.describe_student(tmp_path) == "apo: loss pairwise, beta 0.2, 1 epoch, lr 0.0001"
