"""The evaluation report: one table with every system (arms not run included), the paper's numbers
marked as published, charts and examples embedded, Markdown twin, `dvc plots` data."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from apodistill import evaluate as ev
from apodistill.reporting import NOT_RUN, load_published, systems_in_order
from apodistill.reporting.examples import disagreements
from apodistill.reporting.render import no_examples_note
from apodistill.reporting.tables import comparison_table, fmt_diff, per_finding_table
from evaluate_helpers import FINDINGS, ROW_LABELS, TEMPLATES, build_report, make_benchmark, student_preds


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build_report(tmp_path_factory.mktemp("rep"))


def test_html_has_every_row_and_marks_published_and_not_run(report):
    _, _, written = report
    html = written["html"].read_text()
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html)
    for label in ROW_LABELS:
        assert label in cells, label
    assert "0.78 (published)" in cells and "0.75 (published)" in cells  # apo and gpt5 rows
    assert "Distilled student (paper) (published)" in cells
    assert '<tr class="student notrun">' in html and NOT_RUN in cells


def test_html_is_self_contained_and_escaped(report):
    _, _, written = report
    html = written["html"].read_text()
    assert not re.search(r'(src|href)="(?!data:|#)', html)  # no file or network reference
    assert html.count('src="data:image/png;base64,') >= 4 + 2  # 2 chart + 2 confusion PNGs, example images
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html  # model output is text, never markup


def test_examples_where_students_disagree(report):
    _, _, written = report
    html = written["html"].read_text()
    examples = html.split('<div class="example">')[1:]
    assert 1 <= len(examples) <= 4
    assert all("data:image/png;base64," in e for e in examples)
    pair = [e for e in examples if "pair ·" in e]
    assert pair and all(e.count("<img ") == 2 for e in pair)  # prior and current


def test_markdown_twin(report):
    _, _, written = report
    md = written["markdown"].read_text()
    for label in ROW_LABELS:
        assert f"| {label} |" in md or f"| *{label}* |" in md, label
    assert "| *Distilled student (paper) (published)* |" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all((written["markdown"].parent / link).is_file() for link in links)
    assert "&lt;" not in md  # Markdown is not HTML-escaped


def test_dvc_plot_data(report):
    scores, _, written = report
    out = written["html"].parent / "eval" / "plots"
    acc = pd.read_csv(out / "accuracy.csv")
    assert set(acc["system"]) == {"majority_vote", "mean_teacher", "best_teacher", "spd", "apo"}
    row = acc[(acc["system"] == "spd") & (acc["task"] == "pair") & (acc["finding"] == "edema")]
    assert row["accuracy"].item() == pytest.approx(scores.metrics["spd.pair_acc.edema"])
    mean = pd.read_csv(out / "accuracy_mean.csv")
    assert {"teacher.gpt5", "teacher.sonnet4", "teacher.grok4"} <= set(mean["system"])
    files = sorted(p.name for p in (out / "confusion").glob("*.csv"))
    assert files == sorted(f"{s}.{t}.{f}.csv" for s in ("spd", "apo") for t in ("single", "pair") for f in FINDINGS)
    cm = pd.read_csv(out / "confusion" / "spd.single.edema.csv")
    assert list(cm.columns) == ["actual", "predicted"]
    assert len(cm) == int(scores.confusions[("spd", "single", "edema")].to_numpy().sum())


def test_charts_are_pngs(report):
    _, _, written = report
    for name in ("accuracy_pair.png", "accuracy_single.png", "confusion_pair.png", "confusion_single.png"):
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_only_spd_evaluated():
    systems = systems_in_order(["gpt5"], "gpt5", {"spd": ""})
    labels = [r[0] for r in comparison_table({}, systems, ["pair"], "pair", None).rows]
    assert "SPD + consensus + APO (not run)" in labels and "SPD + pairwise DPO (not run)" in labels
    assert no_examples_note("apo", "spd", {"spd"}, "test") == "Needs both students 'apo' and 'spd'; evaluated: spd."
    assert no_examples_note("apo", "spd", {"spd", "apo"}, "test").startswith("Students apo and spd give the same answers")


def test_published_numbers_match_the_paper():
    pub = load_published(TEMPLATES / "published.yaml")
    assert pub.task == "pair"
    assert pub.mean == {"apo": 0.78, "teacher.gpt5": 0.75, "teacher.glm45v": 0.69, "teacher.qwen_vl_max": 0.64, "teacher.grok4": 0.56,
                        "teacher.gemini25": 0.53, "teacher.moonshot": 0.48, "teacher.sonnet4": 0.47}  # fmt: skip
    assert pub.findings["apo"] == {"consolidation": 0.84, "pleural_effusion": 0.67, "pneumonia": 0.78, "pneumothorax": 0.96, "edema": 0.65}
    assert sum(pub.findings["apo"].values()) / 5 == pytest.approx(pub.mean["apo"])


def test_tables_and_formatting():
    systems = systems_in_order(["gpt5"], "gpt5", {"spd": "", "apo": "", "extra": "x"})
    assert [s.key for s in systems] == ["teacher.gpt5", "majority_vote", "mean_teacher", "best_teacher", "spd", "pairwise", "apo", "extra", "control"]
    assert [s.ran for s in systems] == [True, True, True, True, True, False, True, True, False]
    m = {"apo.vs_spd.pair_acc.diff": 0.0125, "apo.vs_spd.pair_acc.ci_low": -0.01, "apo.vs_spd.pair_acc.ci_high": 0.034, "apo.pair_acc.mean": 0.5}
    assert fmt_diff(m, "apo", "vs_spd.pair_acc") == "+0.013 [-0.010, +0.034]"
    assert fmt_diff(m, "spd", "vs_spd.pair_acc") == "—"
    t = comparison_table(m, systems, ["pair"], "pair", None)
    assert len(t.rows) == len(systems) and all(len(r) == len(t.columns) for r in t.rows)
    assert t.rows[5][:4] == ["SPD + pairwise DPO (not run)", "student", "—", NOT_RUN]
    assert t.rows[8][:4] == ["Control arm (gold labels reach training) (not run)", "control arm", "—", NOT_RUN]
    assert t.rows[3][2] == "—" and t.rows[1][2] == "per-finding plurality, 1 teachers"
    pub = load_published(TEMPLATES / "published.yaml")
    assert len(per_finding_table(m, systems, "single", FINDINGS, pub).rows) == len(systems)  # published numbers are pairs only
    assert len(per_finding_table(m, systems, "pair", FINDINGS, pub).rows) == len(systems) + len(pub.mean)


def test_disagreement_order_and_limit(tmp_path):
    bench = make_benchmark(tmp_path / "b")
    a = student_preds(bench, "test", 0, tasks=("single",))
    b = student_preds(bench, "test", 3, tasks=("single",))
    rows = []
    for name, p in (("a", a), ("b", b)):
        g = ev.gold_for("single", pd.read_parquet(bench / "studies.parquet"), None, "test")
        rows.append(ev._long_rows(ev.aligned(p, g, "single", FINDINGS), g, "single", _correct(p, g), name, FINDINGS))
    preds = pd.concat(rows, ignore_index=True)
    found = disagreements(preds, "a", "b", FINDINGS, 10, lambda s: None)
    differing = {s for s, x, y in zip(a["study_id"], a["answer_edema"], b["answer_edema"]) if x != y}
    assert {e.study_id for e in found} == differing and all(not e.images for e in found)
    assert len(disagreements(preds, "a", "b", FINDINGS, 1, lambda s: None)) == 1
    assert disagreements(preds, "a", "a", FINDINGS, 5, lambda s: None) == []


def _correct(p, g):
    from apodistill.metrics import correctness

    return correctness(ev.aligned(p, g, "single", FINDINGS), g, FINDINGS, "study_id", "single")
