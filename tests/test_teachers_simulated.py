"""Simulated roster on the synthetic benchmark: calibration on single studies and pairs, errors
that follow the image (named biases), reasoning that says what the answer says, styles, drift,
the label-conditioned mode, determinism."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from teachers_helpers import ROSTER, make_benchmark, simulated_roster, teachers_params

from apodistill.consensus import aggregate
from apodistill.data import build
from apodistill.data.synthetic import level_of
from apodistill.findings import MS_CXR_T_5, TrajectoryParseError, parse_trajectory, try_parse
from apodistill.metrics.faithfulness import finding_sentences
from apodistill.teachers import phrases
from apodistill.teachers.profiles import PROFILES, named_biases, sens_spec
from apodistill.teachers.runner import run_teachers
from apodistill.training.data import group_answers
from params_helpers import DEFAULT, section, teachers_config

TEMPLATES = "templates/teachers"
F = list(MS_CXR_T_5)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The blind roster on a synthetic benchmark of 2,100 studies and 1,400 pairs."""
    d = tmp_path_factory.mktemp("calib")
    params = SimpleNamespace(base=section("base", seed=3), fetch=section("fetch", n_patients=700, studies_per_patient=3, image_size=32))
    build(params, d / "bench")
    cfg = teachers_config(**teachers_params(simulated_roster(), tasks=("single", "pair")))
    cfg = cfg.model_copy(update={"roster": [r.model_copy(update={"drift_at": 0.5}) if r.name == "grok4" else r for r in cfg.roster]})
    out = run_teachers(cfg, params.base, "synthetic", d / "bench", TEMPLATES, d / "c.sqlite", progress=False)
    studies = pd.read_parquet(d / "bench" / "studies.parquet").set_index("study_id")
    pairs = pd.read_parquet(d / "bench" / "pairs.parquet").set_index("current_study_id")
    return out.table, studies, pairs


def _answers(table: pd.DataFrame, task: str) -> pd.DataFrame:
    rows = []
    for r in table[(table.task == task) & (table.status == "ok")].itertuples():
        p = try_parse(r.text, F, task)
        if p is not None:
            rows.append({"teacher": r.teacher, "study_id": r.study_id, "stream_index": r.stream_index, "split": r.split,
                         "think": p.think, **p.labels})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def single(run):
    return _answers(run[0], "single")


@pytest.fixture(scope="module")
def pair(run):
    return _answers(run[0], "pair")


def _truth(studies: pd.DataFrame, ids, f: str) -> np.ndarray:
    return np.where(np.isin(studies.loc[ids, f"label_{f}"].to_numpy(), [1.0, -1.0]), "yes", "no")


def test_every_teacher_keeps_the_paper_accuracy_on_single_studies_and_pairs(run, single, pair):
    _, studies, pairs = run
    worst = 0.0
    for teacher, g in single.groupby("teacher"):
        acc = np.mean([(g[f].to_numpy() == _truth(studies, g.study_id, f)).mean() for f in F])
        worst = max(worst, abs(acc - PROFILES[teacher].paper_accuracy))
        assert abs(acc - PROFILES[teacher].paper_accuracy) <= 0.03, (teacher, "single", acc)
    for teacher, g in pair.groupby("teacher"):
        accs = []
        for f in F:
            gold = pairs.loc[g.study_id, f"progression_{f}"].to_numpy(dtype=object)
            keep = np.array([isinstance(v, str) for v in gold])
            accs.append((g[f].to_numpy()[keep] == gold[keep]).mean())
        assert abs(np.mean(accs) - PROFILES[teacher].paper_accuracy) <= 0.03, (teacher, "pair", accs)
    assert worst > 0.0  # measured, not copied


def test_errors_follow_the_image_where_a_profile_names_a_bias(run, single):
    _, studies, _ = run

    def rate(teacher, f, answer, mask):
        g = single[single.teacher == teacher]
        m = mask.loc[g.study_id].to_numpy()
        return float((g[f].to_numpy()[m] == answer).mean())

    s = studies
    no_eff = s.severity_pleural_effusion == 0
    atel = s.severity_atelectasis > 0
    # sonnet4 reads basal atelectasis as an effusion; gpt5 has no such bias
    assert rate("sonnet4", "pleural_effusion", "yes", no_eff & atel) > rate("sonnet4", "pleural_effusion", "yes", no_eff & ~atel) + 0.3
    assert rate("gpt5", "pleural_effusion", "yes", no_eff & atel) < rate("sonnet4", "pleural_effusion", "yes", no_eff & atel) - 0.3
    # qwen misses faint pneumothorax far more than a large one
    faint, large = (s.severity_pneumothorax > 0) & (s.severity_pneumothorax < 0.45), s.severity_pneumothorax > 0.75
    assert rate("qwen_vl_max", "pneumothorax", "no", faint) > 0.85
    assert rate("qwen_vl_max", "pneumothorax", "no", faint) > rate("qwen_vl_max", "pneumothorax", "no", large) + 0.3
    # glm45v reads a large heart as edema
    no_edema, heart = s.severity_edema == 0, s.severity_cardiomegaly > 0
    assert rate("glm45v", "edema", "yes", no_edema & heart) > rate("glm45v", "edema", "yes", no_edema & ~heart) + 0.3
    # every teacher misses faint findings more than large ones (shared difficulty)
    for t in ROSTER:
        for f in F:
            faint_f = (s[f"severity_{f}"] > 0) & (s[f"severity_{f}"] < 0.45)
            large_f = s[f"severity_{f}"] > 0.75
            assert rate(t, f, "yes", large_f) >= rate(t, f, "yes", faint_f) - 0.05, (t, f)
    assert named_biases(teachers_config(**teachers_params(simulated_roster())))["sonnet4"] == [
        ["pleural_effusion", "overcall", "reads basal atelectasis as a pleural effusion"]]


def test_consensus_without_labels_beats_the_plain_vote(run):
    table, studies, pairs = run
    t = table[(table.status == "ok") & table.text.map(lambda x: True)].copy()
    t = t[[try_parse(x, F, k) is not None for x, k in zip(t.text, t.task)]]
    t["prior_study_id"] = t["prior_study_id"].fillna("")
    groups = group_answers(t[t.task == "single"], F, ROSTER)
    vote, ds = aggregate("vote", groups, {}, F), aggregate("dawid_skene", groups, {}, F)

    def acc(labels):
        return np.mean([np.mean([labels[k][f] == _truth(studies, [k[1]], f)[0] for k in labels]) for f in F])

    assert acc(ds) > acc(vote) + 0.02, (acc(ds), acc(vote))


def test_reasoning_states_each_answer_with_the_true_side_and_size_where_seen(run, single, pair):
    _, studies, pairs = run
    checked = sided = 0
    for r in single.sample(600, random_state=0).itertuples():
        said = finding_sentences(r.think, F)
        for f in F:
            assert f in said, (r.think, f)
            sentences = [s for s, _ in said[f] if not s.startswith("impression")]
            v = said[f][0][1]
            answer = getattr(r, f)
            hedged_yes = r.teacher == "gemini25" and answer == "yes" and v == -1.0  # the hedger's "probable ..."
            assert hedged_yes or v == {"yes": 1.0, "no": 0.0}.get(answer, v), (sentences[0], answer)  # yes/no stated as such
            checked += 1
            sev, side = studies.at[r.study_id, f"severity_{f}"], studies.at[r.study_id, f"side_{f}"]
            if answer == "yes" and sev > 0 and f in ("pleural_effusion", "pneumothorax", "consolidation") and r.teacher != "gemini25":
                assert side in sentences[0], (sentences[0], side)
                word = ("small", "moderate", "large")[level_of(sev) - 1]
                assert word in sentences[0].lower(), (sentences[0], sev)
                sided += 1
    assert checked > 2000 and sided > 100
    # pairs: the sentence names the change the answer gives
    for r in pair.sample(300, random_state=0).itertuples():
        said = finding_sentences(r.think, F)
        for f in F:
            s = said[f][0][0]
            answer = getattr(r, f)
            if answer == "worsening":
                assert re.search(r"increased|larger|new ", s), s
            elif answer == "improving":
                assert re.search(r"decreased|smaller|resolved", s), s
            else:
                assert re.search(r"unchanged|stable|either study|current or the prior", s), s


def test_styles(run, single):
    t = run[0][run[0].task == "single"]
    refused = t.groupby("teacher").status.apply(lambda s: (s == "refused").mean())
    assert refused["sonnet4"] > 0.15 and refused.drop("sonnet4").max() < 0.05
    assert all(t[t.status == "refused"].text.str.contains("AI|sorry|unable"))
    uncertain = single.groupby("teacher").apply(lambda g: (g[F] == "uncertain").any(axis=1).mean())
    assert uncertain["gemini25"] > 0.3 and uncertain.drop("gemini25").max() == 0
    reasons = {}
    for r in t[t.status == "ok"].itertuples():
        try:
            parse_trajectory(r.text, F, "single")
        except TrajectoryParseError as err:
            reasons.setdefault(r.teacher, set()).add(err.reason)
    assert reasons.keys() == {"moonshot", "glm45v"}
    assert reasons["moonshot"] == {"unknown_finding"}  # hallucinated answer lines
    assert {"no_think", "no_answer", "bad_answer_line"} <= reasons["glm45v"]  # broken format
    words = single.assign(n=single.think.str.split().map(len)).groupby("teacher").n
    assert words.mean()["gpt5"] > words.mean().drop("gpt5").max()  # verbose: adds an impression
    assert single[single.teacher == "moonshot"].think.str.contains("rib fracture|nodule|hilar mass").mean() > 0.15
    # reasoning does not open with one fixed phrase: a student copying it would not either
    assert single.think.str.slice(0, 25).value_counts(normalize=True).iloc[0] < 0.5


def test_drift_changes_the_bias_at_the_stream_point(run, single):
    _, studies, _ = run
    g = single[single.teacher == "grok4"]
    frac = (g.stream_index / (studies.stream_index.max() + 1)).to_numpy()
    pos = _truth(studies, g.study_id, "pneumothorax") == "yes"
    said = g.pneumothorax.to_numpy() == "yes"
    assert said[pos & (frac < 0.5)].mean() - said[pos & (frac >= 0.5)].mean() > 0.2  # .50 -> .25 measured


def test_drift_point_is_configurable(tmp_path):
    bench = make_benchmark(tmp_path / "b", n_patients=60, studies_per_patient=2)
    roster = [{"name": "grok4", "backend": "simulated", "model": "grok-4", "profile": "grok4", "drift_at": 1.0},
              {"name": "g2", "backend": "simulated", "model": "grok-4", "profile": "grok4", "drift_at": 0.0}]
    out = run_teachers(teachers_config(**teachers_params(roster)), DEFAULT.base, "synthetic", bench, TEMPLATES,
                       tmp_path / "c.sqlite", progress=False)
    assert out.table.record_id.nunique() == 240
    a = out.table[out.table.teacher == "grok4"].text.to_numpy()
    b = out.table[out.table.teacher == "g2"].text.to_numpy()
    assert (a != b).mean() > 0.3


def test_label_conditioned_explains_the_known_labels(tmp_path):
    bench = make_benchmark(tmp_path / "b", n_patients=40, studies_per_patient=2)
    cfg = teachers_config(**teachers_params(simulated_roster(prompt_mode="label_conditioned")))
    out = run_teachers(cfg, DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
    studies = pd.read_parquet(bench / "studies.parquet").set_index("study_id")
    ans = _answers(out.table, "single")
    assert len(ans) > 300
    for f in F:
        truth = np.where(studies.loc[ans.study_id, f"label_{f}"].to_numpy() == 1.0, "yes", "no")
        assert (ans[f].to_numpy() == truth).all()
    assert (out.table.template == "single_label_conditioned.txt").all()


def test_deterministic_given_seed(tmp_path):
    bench = make_benchmark(tmp_path / "b", n_patients=20, studies_per_patient=2)
    cfg = teachers_config(**teachers_params(simulated_roster()))
    a = run_teachers(cfg, section("base", seed=7), "synthetic", bench, TEMPLATES, tmp_path / "a.sqlite", progress=False).table
    b = run_teachers(cfg, section("base", seed=7), "synthetic", bench, TEMPLATES, tmp_path / "b.sqlite", progress=False).table
    c = run_teachers(cfg, section("base", seed=8), "synthetic", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False).table
    assert a.equals(b)
    assert (a.text != c.text).mean() > 0.5
    assert set(a.teacher) == set(ROSTER)


def test_sens_spec_keeps_accuracy_at_prevalence():
    for acc in (0.47, 0.6, 0.75):
        for bias in (-1, -0.5, 0, 0.6, 1):
            for pi in (0.1, 0.3, 0.5):
                s, p = sens_spec(acc, bias, pi)
                assert 0 <= s <= 1 and 0 <= p <= 1
                assert abs(pi * s + (1 - pi) * p - acc) < 1e-9
    assert sens_spec(0.6, -1, 0.3)[0] < 0.6 < sens_spec(0.6, 1, 0.3)[0]


def test_profiles_average_to_the_paper():
    for p in PROFILES.values():
        assert abs(np.mean(list(p.before.accuracy.values())) - p.paper_accuracy) < 1e-9, p.name
        if p.after:
            assert abs(np.mean(list(p.after.accuracy.values())) - p.paper_accuracy) < 1e-9, p.name
    assert set(PROFILES) == set(ROSTER)
    assert phrases.REFUSALS
