"""Report metrics: shared tokenisation, golden values on fixed strings, METEOR without Java."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from apodistill.metrics import MeteorScorer, report_metrics, tokenize
from apodistill.metrics import reports as reports_module

GOLDEN = json.loads((Path(__file__).parent / "golden" / "metrics_fixed_strings.json").read_text())
KEYS = ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "meteor", "cider"]


@pytest.fixture(scope="module")
def meteor():
    """The process-wide METEOR process (the JVM start is the slow part, ~10 s), started once here."""
    if reports_module.shutil.which("java") is None:
        pytest.skip("no Java runtime: METEOR golden value cannot be checked here")
    start = time.perf_counter()
    scorer = reports_module.shared_meteor()
    scorer.score(["warm up"], ["warm up"])
    print(f"\nMETEOR JVM start + first call: {time.perf_counter() - start:.1f} s")
    return scorer


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Small L. effusion; no PTX.", "small l effusion no ptx"),
        ("  Heart size 1.5x NORMAL\n\tstable ", "heart size 1 5x normal stable"),
        ("", ""),
        (None, ""),
        ("|||", ""),
    ],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


def test_report_metrics_match_the_golden_file(meteor):
    got = report_metrics(GOLDEN["refs"], GOLDEN["hyps"])  # default: the shared METEOR process
    assert reports_module.shared_meteor() is meteor
    assert list(got) == KEYS
    for key in KEYS:
        assert got[key] == pytest.approx(GOLDEN["report_metrics"][key], abs=1e-6), key
    start = time.perf_counter()
    again = report_metrics(GOLDEN["refs"] * 40, GOLDEN["hyps"] * 40, meteor=meteor)
    print(f"\nreport_metrics on 240 pairs with a warm METEOR: {time.perf_counter() - start:.2f} s")
    assert again["meteor"] == pytest.approx(got["meteor"], abs=1e-6)  # same pairs repeated, same corpus score


def test_meteor_process_is_reused_and_identical_text_scores_high(meteor):
    same = report_metrics(["left pleural effusion"] * 3, ["Left pleural effusion."] * 3, meteor=meteor)
    assert same["bleu1"] == pytest.approx(1.0)
    assert same["rouge_l"] == pytest.approx(1.0)
    assert same["meteor"] > 0.9
    different = report_metrics(["left pleural effusion"], ["heart normal"], meteor=meteor)
    assert different["bleu1"] == pytest.approx(0.0, abs=1e-9) and different["meteor"] == 0.0


def test_other_metrics_do_not_need_java():
    got = report_metrics(GOLDEN["refs"], GOLDEN["hyps"], meteor=False)
    assert math.isnan(got["meteor"])
    for key in KEYS:
        if key != "meteor":
            assert got[key] == pytest.approx(GOLDEN["report_metrics"][key], abs=1e-6), key


@pytest.fixture
def no_java(monkeypatch):
    """No java on PATH, and a fresh process-wide scorer before and after (it is cached)."""
    monkeypatch.setattr(reports_module.shutil, "which", lambda name: None)
    reports_module.shared_meteor.cache_clear()
    yield
    reports_module.shared_meteor.cache_clear()


def test_missing_java_gives_nan_with_a_warning(no_java):
    with pytest.warns(UserWarning, match="java"):
        got = report_metrics(["no effusion"], ["no effusion"])
    assert math.isnan(got["meteor"])
    assert got["bleu1"] == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="java"), MeteorScorer() as scorer:
        assert not scorer.available and math.isnan(scorer.score(["a"], ["a"]))


def test_empty_hypotheses_score_zero_without_crashing():
    got = report_metrics(["no effusion", "heart is enlarged"], ["", ""], meteor=False)
    assert all(got[k] == 0.0 for k in KEYS if k != "meteor")


def test_bad_inputs():
    with pytest.raises(ValueError, match="2 references but 1"):
        report_metrics(["a", "b"], ["a"], meteor=False)
    with pytest.raises(ValueError, match="no reports"):
        report_metrics([], [], meteor=False)
