"""Consensus answers without labels: Dawid-Skene equals crowd-kit's, beats the vote where
teachers differ in reliability; the composed reasoning supports the consensus answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from apodistill.consensus import METHODS, TeacherAnswer, aggregate, compose, dawid_skene_proba, reliability
from apodistill.findings import MS_CXR_T_5, ParsedTrajectory, format_trajectory, parse_trajectory
from apodistill.metrics.labeler import label_report


def _answers(rng: np.random.Generator, n: int, accuracy: dict[str, float], findings=MS_CXR_T_5):
    """Studies with a random truth and teachers right with their accuracy (else the other value)."""
    truth = {i: {f: ("yes" if rng.random() < 0.35 else "no") for f in findings} for i in range(n)}
    groups = {}
    for i in range(n):
        answers = []
        for t, acc in accuracy.items():
            labels = {f: (v if rng.random() < acc else ("no" if v == "yes" else "yes")) for f, v in truth[i].items()}
            answers.append(TeacherAnswer(t, "", ParsedTrajectory("", labels)))
        groups[("single", f"s{i}", None)] = answers
    return groups, truth


def _acc(labels, truth):
    return np.mean([labels[k][f] == truth[int(k[1][1:])][f] for k in labels for f in labels[k]])


def test_dawid_skene_equals_crowd_kit():
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    rng = np.random.default_rng(0)
    rows = []
    truth = rng.integers(3, size=300)
    acc = rng.uniform(0.35, 0.85, 7)
    for i in range(300):
        for j in range(7):
            if rng.random() < 0.1:
                continue
            rows.append((i, j, int(truth[i] if rng.random() < acc[j] else rng.integers(3))))
    df = pd.DataFrame(rows, columns=["task", "worker", "label"])
    ours, _ = dawid_skene_proba(df.task, df.worker, df.label, 3)
    ref = crowdkit.DawidSkene(n_iter=100).fit(df).probas_.reindex(index=range(300), columns=range(3)).to_numpy()
    assert np.abs(ours - ref).max() < 1e-9


def test_dawid_skene_beats_the_vote_when_reliability_differs():
    rng = np.random.default_rng(1)
    # two good readers, five near-coin-flip ones: the plain vote follows the many
    groups, truth = _answers(rng, 400, {"a": 0.9, "b": 0.85, "c": 0.55, "d": 0.52, "e": 0.5, "f": 0.48, "g": 0.47})
    vote = aggregate("vote", groups, {}, MS_CXR_T_5)
    ds = aggregate("dawid_skene", groups, {}, MS_CXR_T_5)
    assert _acc(ds, truth) > _acc(vote, truth) + 0.1, (_acc(ds, truth), _acc(vote, truth))
    weighted = aggregate("weighted_vote", groups, {"a": 3.0, "b": 3.0}, MS_CXR_T_5)
    assert _acc(weighted, truth) > _acc(vote, truth)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError, match="dawid_skene.*vote|vote.*dawid_skene"):
        aggregate("majority", {}, {}, MS_CXR_T_5)
    assert {"vote", "weighted_vote", "dawid_skene"} <= set(METHODS.names())


def test_composed_reasoning_supports_the_consensus_answers():
    findings = ("pleural_effusion", "pneumothorax")
    a = "<think>Small left pleural effusion. No pneumothorax.</think>"
    b = "<think>No pleural effusion. Large right pneumothorax.</think>"
    c = "<think>Moderate right pleural effusion with a meniscus. There is a small left pneumothorax.</think>"
    answers = [
        TeacherAnswer(t, x, parse_trajectory(x + "\n<answer>\n" + lines + "\n</answer>", findings))
        for t, x, lines in (
            ("a", a, "pleural effusion: yes\npneumothorax: no"),
            ("b", b, "pleural effusion: no\npneumothorax: yes"),
            ("c", c, "pleural effusion: yes\npneumothorax: yes"),
        )
    ]
    labels = {"pleural_effusion": "yes", "pneumothorax": "yes"}
    out = compose(answers, labels, findings, {"a": 0.9, "b": 0.8, "c": 0.1}, "dawid_skene")
    think = parse_trajectory(out.text, findings).think
    # effusion from the most reliable agreeing teacher (a), pneumothorax from b (a said no)
    assert think == "Small left pleural effusion. Large right pneumothorax."
    assert label_report(think)["pleural_effusion"] == 1.0 and label_report(think)["pneumothorax"] == 1.0
    assert out.agreeing == {"pleural_effusion": ["a", "c"], "pneumothorax": ["b", "c"]}
    # a finding no agreeing teacher wrote about still gets a sentence that states the answer
    plain = compose(answers[:1], {"pleural_effusion": "no", "pneumothorax": "no"}, findings, {}, "vote")
    assert parse_trajectory(plain.text, findings).think.startswith("Pleural effusion: no.")


def test_reliability_is_agreement_with_the_consensus():
    rng = np.random.default_rng(2)
    groups, _ = _answers(rng, 200, {"good": 0.95, "bad": 0.55, "mid": 0.75})
    rank = reliability(groups, aggregate("dawid_skene", groups, {}, MS_CXR_T_5), MS_CXR_T_5)
    assert rank["good"] > rank["mid"] > rank["bad"]


def test_formats_round_trip():
    labels = {f: "no" for f in MS_CXR_T_5}
    assert parse_trajectory(format_trajectory("x.", labels, MS_CXR_T_5), MS_CXR_T_5).labels == labels


def test_compare_methods_scores_every_method_against_the_labels_on_the_same_studies():
    from apodistill.training.self_distill import compare_methods, gold_answers, run_self_distill
    from params_helpers import section

    rng = np.random.default_rng(3)
    groups, truth = _answers(rng, 120, {"a": 0.9, "b": 0.85, "c": 0.55, "d": 0.5, "e": 0.5})
    cfg = section("self_distill", method="dawid_skene", compare=["vote", "dawid_skene", "in_context"], compare_sample=0)
    table = run_self_distill(cfg, groups, {}, MS_CXR_T_5, "templates/student", {})
    studies = pd.DataFrame([{"study_id": f"s{i}", **{f"label_{f}": float(v == "yes") for f, v in t.items()}} for i, t in truth.items()])
    gold = gold_answers(studies, None, MS_CXR_T_5)
    # the chosen method's row comes from the table (a DataFrame: its prior column is NaN/None)
    rows = compare_methods(cfg, groups, {}, gold, MS_CXR_T_5, pd.DataFrame(table.to_dict("records")), None).set_index("method")
    assert rows.loc["dawid_skene", "chosen"] and not rows.loc["vote", "chosen"]
    assert rows.loc["dawid_skene", "single"] == pytest.approx(_acc(aggregate("dawid_skene", groups, {}, MS_CXR_T_5), truth))
    assert rows.loc["dawid_skene", "single"] > rows.loc["vote", "single"]
    assert "in_context" not in rows.index  # no student passed: not measured, not invented
