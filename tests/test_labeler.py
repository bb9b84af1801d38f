"""The report labeler on hand-written sentences, its aggregation rules, and clinical F1."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from apodistill.findings import CHEXPERT_14
from apodistill.metrics import chexpert_f1, label_report, label_reports
from apodistill.metrics.labeler import explain

DATA = Path(__file__).parent / "data" / "labeler_sentences.tsv"
GOLDEN = json.loads((Path(__file__).parent / "golden" / "metrics_fixed_strings.json").read_text())


def _rows() -> list[dict]:
    with DATA.open() as fh:
        return list(csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t"))


def _expected(row: dict) -> dict[str, float]:
    pairs = (item.split("=") for item in row["expected"].split(";"))
    return {finding: float(value) for finding, value in pairs}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_sentence_file_is_well_formed():
    rows = _rows()
    assert len(rows) >= 100
    assert len({r["id"] for r in rows}) == len(rows)
    seen_findings, seen_values = set(), set()
    for r in rows:
        assert r["set"] in ("dev", "holdout"), r["id"]
        for finding, value in _expected(r).items():
            assert finding in CHEXPERT_14, (r["id"], finding)
            seen_findings.add(finding)
            seen_values.add("nan" if math.isnan(value) else value)
    assert seen_findings == set(CHEXPERT_14)  # every observation is exercised
    assert seen_values == {1.0, 0.0, -1.0, "nan"}


def test_labeler_accuracy_on_hand_written_sentences():
    """Accuracy over every (sentence, expected finding) pair; prints the figure (pytest -s)."""
    right = {"dev": 0, "holdout": 0}
    total = {"dev": 0, "holdout": 0}
    misses = []
    for r in _rows():
        labels = label_report(r["sentence"])
        for finding, value in _expected(r).items():
            total[r["set"]] += 1
            if _same(labels[finding], value):
                right[r["set"]] += 1
            else:
                misses.append(f"{r['id']} {finding}: expected {value}, got {labels[finding]} <- {r['sentence']}")
    acc = sum(right.values()) / sum(total.values())
    print(
        f"\nlabeler accuracy {acc:.3f} ({sum(right.values())}/{sum(total.values())} labels, {len(_rows())} sentences;"
        f" dev {right['dev']}/{total['dev']}, holdout {right['holdout']}/{total['holdout']})"
    )
    for miss in misses:
        print("  miss:", miss)
    assert acc >= 0.9, "\n".join(misses)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("No effusion. Small left effusion.", {"pleural_effusion": 1.0}),  # positive beats negative
        ("Possible effusion. No effusion.", {"pleural_effusion": -1.0}),  # uncertain beats negative
        ("Possible effusion. Large effusion.", {"pleural_effusion": 1.0}),
        ("Lines and tubes in place. No acute process.", {"support_devices": 1.0, "no_finding": 1.0}),
        ("Possible pneumonia.", {"no_finding": float("nan")}),  # uncertain pathology rules out No Finding
        ("Pneumothorax: none.", {"pneumothorax": 0.0}),
        ("No pneumothorax seen, mild edema.", {"pneumothorax": 0.0, "edema": 1.0}),
    ],
)
def test_report_level_rules(text, expected):
    labels = label_report(text)
    for finding, value in expected.items():
        assert _same(labels[finding], value), (finding, labels[finding], explain(text))


def test_every_observation_is_returned_and_empty_text_says_nothing():
    assert list(label_report("Heart size is normal.")) == list(CHEXPERT_14)
    for text in ("", "   ", None):
        assert all(math.isnan(v) for v in label_report(text).values())
    frame = label_reports(["Cardiomegaly.", ""])
    assert list(frame.columns) == [f"label_{f}" for f in CHEXPERT_14]
    assert frame.loc[0, "label_cardiomegaly"] == 1.0 and math.isnan(frame.loc[1, "label_cardiomegaly"])


def test_explain_names_the_cue():
    rows = explain("No effusion, possible consolidation.")
    assert [(r.finding, r.value, r.cues) for r in rows] == [
        ("pleural_effusion", 0.0, ("neg",)),
        ("consolidation", -1.0, ("unc",)),
    ]


def test_chexpert_f1_by_hand():
    refs = ["Small left pleural effusion.", "Cardiomegaly.", "No acute process."]
    hyps = ["Small left pleural effusion.", "No cardiomegaly.", "Possible pneumonia."]
    # 14: effusion tp; cardiomegaly fn; no_finding ref row 3 (fn) and hyp row 2 (fp); pneumonia -1 = negative.
    got = chexpert_f1(refs, hyps)
    assert got["chexpert_f1.micro_14"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 2))
    assert got["chexpert_f1.macro_14"] == pytest.approx(1 / 14)
    assert got["chexpert_f1.micro_5"] == pytest.approx(1.0)  # only effusion among the 5 is positive anywhere
    assert got["chexpert_f1.macro_5"] == pytest.approx(1 / 5)
    unc = chexpert_f1(refs, hyps, uncertain="positive")  # the possible pneumonia becomes a false positive
    assert unc["chexpert_f1.micro_14"] == pytest.approx(2 / (2 + 2 + 2))
    assert unc["chexpert_f1.micro_5"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="uncertain"):
        chexpert_f1(refs, hyps, uncertain="ignore")


def test_chexpert_f1_and_labels_match_the_golden_file():
    assert chexpert_f1(GOLDEN["refs"], GOLDEN["hyps"]) == pytest.approx(GOLDEN["chexpert_f1"], abs=1e-6)
    assert chexpert_f1(GOLDEN["refs"], GOLDEN["hyps"], uncertain="positive") == pytest.approx(
        GOLDEN["chexpert_f1_uncertain_positive"], abs=1e-6
    )
    for side in ("refs", "hyps"):
        got = label_reports(GOLDEN[side]).to_dict(orient="list")
        for column, values in GOLDEN["labels"][side].items():
            assert all(_same(a, b) for a, b in zip(got[column], values)), (side, column, got[column], values)
