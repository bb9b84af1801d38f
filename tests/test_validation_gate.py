"""The GX quality gate: planted defects are quarantined with exactly the right expectation
names, clean rows pass with parsed answers, Data Docs are built. One GX checkpoint run
(module fixture) serves every test here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from validation_helpers import FINDINGS, plant, planted_defects, roster_table  # noqa: E402

from params_helpers import section  # noqa: E402
from apodistill.findings import parse_trajectory  # noqa: E402
from apodistill.validation import load_suite_spec, validate_trajectories  # noqa: E402
from apodistill.validation.gate import threshold_violations  # noqa: E402
from apodistill.validation.suite import SuiteError, build_gx_suite, suite_path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "validation"
REFUSED_SET = planted_defects()["refused"][1]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    table, studies = roster_table(n_studies=200, seed=3, drift_teacher=None, refusal_rate=0.02, pairs=60)
    table, studies, expected = plant(table, studies)
    docs = tmp_path_factory.mktemp("docs")
    result = validate_trajectories(
        table, studies, FINDINGS, section("validate", drift_window=50), {t: 1.0 for t in table["teacher"].unique()}, SUITES, docs
    )
    return result, table, expected, docs


def test_planted_defects_quarantined_with_their_expectation_names(outcome):
    result, table, expected, _ = outcome
    q = result.gate.quarantine.set_index("record_id")["failed_expectations"].map(lambda s: set(s.split(",")))
    refused = set(table.loc[table["status"] == "refused", "record_id"]) - set(expected)
    assert refused, "the generator should have refused some prompts"
    # exactly the planted rows and the generator's refusals, nothing else
    assert set(q.index) == set(expected) | refused
    for record_id, names in expected.items():
        assert q[record_id] == names, record_id
    for record_id in refused:
        assert q[record_id] == REFUSED_SET


def test_every_row_ends_in_exactly_one_table(outcome):
    result, table, _, _ = outcome
    gate = result.gate
    assert len(gate.passed) + len(gate.quarantine) == len(table)
    assert set(gate.passed["record_id"]).isdisjoint(gate.quarantine["record_id"])
    assert list(gate.quarantine.columns) == list(table.columns) + ["failed_expectations"]
    assert list(gate.passed.columns) == list(table.columns) + [f"answer_{f}" for f in FINDINGS]
    assert (gate.passed["status"] == "ok").all()
    pair_answers = gate.passed.loc[gate.passed["task"] == "pair", [f"answer_{f}" for f in FINDINGS]]
    assert len(pair_answers) > 300 and pair_answers.isin(["improving", "stable", "worsening"]).all().all()


def test_passed_answers_are_the_parsed_labels(outcome):
    passed = outcome[0].gate.passed
    for row in passed.sample(20, random_state=0).itertuples(index=False):
        labels = parse_trajectory(row.text, FINDINGS, row.task).labels
        assert {f: getattr(row, f"answer_{f}") for f in FINDINGS} == labels


def test_metrics_name_teachers_and_expectations(outcome):
    result, table, expected, _ = outcome
    m = result.metrics
    n_gpt5 = int((table["teacher"] == "gpt5").sum())
    q_gpt5 = int(result.gate.quarantine["teacher"].eq("gpt5").sum())
    assert m["quarantine.gpt5.rows"] == q_gpt5
    assert m["quarantine.gpt5.fraction"] == pytest.approx(q_gpt5 / n_gpt5)
    assert m["quarantine.expectation.unique_teacher_prompt"] == 1
    assert m["quarantine.expectation.labels_match_task"] == 1
    assert m["validated.rows"] == len(result.gate.passed)
    assert {f"drift.{t}.flags" for t in table["teacher"].unique()} <= set(m)
    assert all(isinstance(v, float) for v in m.values())


def test_data_docs_show_the_suite_results(outcome):
    docs = outcome[3]
    assert (docs / "index.html").is_file()
    pages = list((docs / "validations").rglob("*.html"))
    assert len(pages) == 1
    html = pages[0].read_text()
    for name in load_suite_spec(suite_path(SUITES, "trajectory_quality")).names():
        assert name in html, name


def test_threshold_names_teacher_and_numbers():
    per_teacher = pd.DataFrame({"rows": [100, 100], "quarantined": [60, 5]}, index=pd.Index(["grok4", "gpt5"], name="teacher"))
    per_teacher["fraction"] = per_teacher["quarantined"] / per_teacher["rows"]
    (msg,) = threshold_violations(per_teacher, 0.5)
    assert "grok4" in msg and "60 of 100" in msg and "60.0%" in msg and "50.0%" in msg
    assert threshold_violations(per_teacher, 0.6) == []


def _by_name(expectations: list[dict]) -> dict[str, tuple]:
    return {e["meta"]["name"]: (e["type"], e["kwargs"]) for e in expectations}


def test_every_suite_file_builds_and_matches_the_committed_gx_context():
    files = sorted((SUITES / "expectations").glob("*.yaml"))
    assert files
    for path in files:
        spec = load_suite_spec(path)
        built = _by_name(build_gx_suite(spec).to_json_dict()["expectations"])
        assert set(built) == set(spec.names())
        committed = json.loads((SUITES / "gx" / "expectations" / f"{spec.name}.json").read_text())
        assert _by_name(committed["expectations"]) == built, (
            f"validation/gx is stale for {path.name}: run `python -m apodistill.validation validation`"
        )


def test_suite_file_errors_name_the_entry(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("expectations:\n  - {name: x, type: ExpectNothingAtAll, kwargs: {}}\n")
    with pytest.raises(SuiteError, match="ExpectNothingAtAll"):
        load_suite_spec(bad)
    bad.write_text("expectations:\n  - {name: x, type: ExpectColumnValuesToBeNull, kwargs: {column: a, nonsense: 1}}\n")
    with pytest.raises(SuiteError, match="expectation x"):
        build_gx_suite(load_suite_spec(bad))
