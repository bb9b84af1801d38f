"""The report's sections from issue 11: pairs first everywhere, the mean teacher and the control
arm as rows of their own, the reasoning table (clinical F1, faithfulness), bias inheritance and
the consensus methods; every number equal to its input, both renderers the same, absences shown."""

from __future__ import annotations

import base64
import html as htmllib
import io
import re
from pathlib import Path

import pandas as pd
import pytest

from apodistill import evaluate as ev
from apodistill.findings import display
from apodistill.reporting import NOT_RUN, ReportInputs, systems_in_order, write_report
from apodistill.reporting import screenshot as shot
from apodistill.reporting.frames import consensus_table, inheritance_table
from apodistill.reporting.tables import comparison_table, fmt, fmt_diff, reasoning_table
from evaluate_helpers import FINDINGS, REPORT_TEACHERS, TEMPLATES, build_report, make_benchmark, make_trajectories, student_preds

CONTROL_LABEL = "Control arm (gold labels reach training)"
NAMED = {"sonnet4": [("edema", "miss", "misses faint edema")], "grok4": [("pleural_effusion", "overcall", "calls blunted angles effusion")]}
METHODS = pd.DataFrame([
    {"method": "vote", "chosen": False, "single": 0.81, "single_n": 120, "pair": 0.62, "pair_n": 40},
    {"method": "dawid_skene", "chosen": True, "single": 0.86, "single_n": 120, "pair": 0.66, "pair_n": 40},
    {"method": "in_context", "chosen": False, "single": 0.7, "single_n": 32},  # generates: a sample, single studies only here
])  # fmt: skip


def build_full_report(root: Path):
    """Three teachers, the vote, SPD, APO and the control arm, with the benchmark's true size and
    side (so faithfulness has numbers), bias inheritance and the consensus methods."""
    bench = make_benchmark(root / "bench")
    studies = pd.read_parquet(bench / "studies.parquet")
    for f in FINDINGS:
        studies[f"severity_{f}"] = studies[f"label_{f}"].map(lambda v: 0.9 if v == 1.0 else 0.0)
        studies[f"side_{f}"] = studies[f"label_{f}"].map(lambda v: "left" if v == 1.0 else None)
    studies.to_parquet(bench / "studies.parquet", index=False)
    traj = pd.read_parquet(make_trajectories(bench, root / "traj", REPORT_TEACHERS) / "trajectories.parquet")
    gold = {t: ev.gold_for(t, studies, pd.read_parquet(bench / "pairs.parquet"), "test") for t in ("single", "pair")}
    tp = ev.teacher_predictions(traj, FINDINGS, "test")
    preds = {f"teacher.{t}": tp[tp["system"] == t] for t in REPORT_TEACHERS}
    preds["majority_vote"] = ev.majority_vote(tp, FINDINGS)
    preds["spd"] = student_preds(bench, "test", wrong_every=3)
    preds["apo"] = student_preds(bench, "test", 0, think=lambda s: f"study {s}: large pleural effusion.")
    preds["control"] = student_preds(bench, "test", 5, think=lambda s: "Small left pleural effusion.")
    students = ["spd", "apo", "control"]
    scores = ev.score_systems(preds, gold, FINDINGS, best_teacher="gpt5", students=students, bootstrap=100, seed=0, meteor=False)
    inheritance, metrics = ev.bias_inheritance(preds, gold["single"], FINDINGS, ["spd", "apo"], "control", NAMED, 100, 0)
    scores.metrics.update(metrics)
    image_of = dict(zip(studies["study_id"], studies["image_path"]))
    inputs = ReportInputs(
        systems=systems_in_order(list(REPORT_TEACHERS), "gpt5", {s: f"{s}: 3 steps" for s in students}), tasks=["single", "pair"],
        findings=FINDINGS, split="test", counts={t: len(g) for t, g in gold.items()}, best_teacher="gpt5",
        image_path=lambda s: bench / image_of[s], reports=dict(zip(studies["study_id"], studies["report"])), examples=2,
        inheritance=inheritance, consensus_methods=METHODS,
    )  # fmt: skip
    written = write_report(scores, inputs, TEMPLATES, html=root / "reports" / "index.html", markdown=root / "reports" / "eval.md", assets_dir=root / "reports" / "eval")
    return scores, inputs, written


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    scores, inputs, written = build_full_report(tmp_path_factory.mktemp("full"))
    return scores, inputs, written, written["html"].read_text(), written["markdown"].read_text()


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """No control arm, no consensus frame, only SPD: what a partial run gives."""
    _, _, written = build_report(tmp_path_factory.mktemp("bare"), students=("spd",))
    return written, written["html"].read_text(), written["markdown"].read_text()


def html_tables(page: str) -> dict[str, list[list[str]]]:
    """Each ``<h2>`` title of the page with the body rows of the table under it."""
    out = {}
    for title, body in re.findall(r'<h2 id="[^"]*">([^<]*)</h2>\s*<table>(.*?)</table>', page, re.S):
        rows = re.findall(r"<tr class=[^>]*>(.*?)</tr>", body, re.S)
        out[htmllib.unescape(title)] = [[htmllib.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in rows]
    return out


def md_tables(md: str) -> dict[str, list[list[str]]]:
    """Each ``##`` title of the Markdown that heads a table, with its body rows (italics and escapes removed)."""
    out = {}
    for block in md.split("\n## ")[1:]:
        title, *lines = block.split("\n")
        if not any(ln.startswith("| ") for ln in lines):
            continue
        rows = [ln for ln in lines if ln.startswith("| ")][1:]  # the first is the head
        cell = lambda c: c.strip().replace("\\|", "|").removeprefix("*").removesuffix("*")  # noqa: E731
        out[title] = [[cell(c) for c in r.strip().strip("|").split(" | ")] for r in rows]
    return out


def titles_in_order(page: str) -> list[str]:
    return [htmllib.unescape(t) for t in re.findall(r"<h2 id=\"[^\"]*\">([^<]*)</h2>", page)]


def test_pairs_come_first_in_every_table_and_chart(full):
    scores, inputs, written, page, md = full
    first, second = titles_in_order(page)[:2]
    assert first.startswith("Pair accuracy") and second.startswith("Single-study accuracy")
    assert [t for t in md_tables(md)][:2] == [first, second]
    assert page.index("6 prior/current pairs") < page.index("12 single studies") and md.index("prior/current pairs") < md.index("single studies")
    assert page.index('alt="per-finding accuracy, pair"') < page.index('alt="per-finding accuracy, single"')
    assert md.index("eval/accuracy_pair.png") < md.index("eval/accuracy_single.png") < md.index("## Systems compared")
    assert md.index("eval/confusion_pair.png") < md.index("eval/confusion_single.png")
    cmp = comparison_table(scores.metrics, inputs.systems, inputs.tasks, "pair", None)
    assert cmp.columns.index("Pairs: accuracy") < cmp.columns.index("Single studies: accuracy")
    assert [c for c in cmp.columns if "Δ" in c] == ["Pairs: Δ vs SPD only [95% CI]", "Pairs: Δ vs best teacher [95% CI]", "Pairs: Δ vs mean teacher [95% CI]"]
    cols = reasoning_table(scores.metrics, inputs.systems, inputs.tasks).columns
    assert max(i for i, c in enumerate(cols) if c.startswith("Pairs:")) < min(i for i, c in enumerate(cols) if c.startswith("Single studies:"))


def test_mean_teacher_and_control_rows_read_the_metrics(full):
    scores, _, _, page, _ = full
    m = scores.metrics
    pair = html_tables(page)["Pair accuracy: temporal classification of prior/current pairs (MS-CXR-T protocol)"]
    rows = {r[0]: r for r in pair}
    assert rows["Mean teacher"][1:7] == [fmt(m[f"mean_teacher.pair_acc.{f}"]) for f in FINDINGS] + [fmt(m["mean_teacher.pair_acc.mean"])]
    apo = rows["SPD + consensus + APO"]
    assert apo[-3:] == [fmt_diff(m, "apo", f"vs_{r}.pair_acc") for r in ("spd", "best_teacher", "mean_teacher")]
    assert apo[-1] != "—" and apo[-1].startswith(f"{m['apo.vs_mean_teacher.pair_acc.diff']:+.3f} [")
    labels = [r[0] for r in pair]
    assert labels.index(CONTROL_LABEL) == labels.index("SPD + consensus + APO") + 1  # after the arms, before the paper's rows
    assert rows[CONTROL_LABEL][6] == fmt(m["control.pair_acc.mean"])
    assert '<tr class="control"><td class="text">Control arm (gold labels reach training)</td><td class="text">control arm</td>' in page
    systems = html_tables(page)["Systems compared: mean accuracy and paired intervals"]
    mean_row = next(r for r in systems if r[0] == "Mean teacher")
    assert mean_row[1:5] == ["baseline", "each teacher's accuracy averaged, 3 teachers", fmt(m["mean_teacher.pair_acc.mean"]), fmt(m["mean_teacher.acc.mean"])]


def test_reasoning_table_is_clinical_f1_and_faithfulness(full):
    scores, _, _, page, _ = full
    m = scores.metrics
    table = html_tables(page)["Reasoning: clinical F1 and faithfulness"]
    rows = {r[0]: r for r in table}
    assert "Majority vote of the teachers" not in rows and "Mean teacher" not in rows  # they write no reasoning
    keys = ["f1_micro_5", "f1_macro_5", *[f"{t}_faith.{k}" for t in ("pair", "single") for k in ("contradiction", "side_acc", "size_acc")]]
    for label, key in (("gpt5", "teacher.gpt5"), ("SPD only", "spd"), ("SPD + consensus + APO", "apo"), (CONTROL_LABEL, "control")):
        assert rows[label][1:] == [fmt(m.get(f"{key}.{k}")) for k in keys], label
    assert rows[CONTROL_LABEL][7] == "1.000"  # "Small left pleural effusion.": the true side, every time it is said
    assert rows["gpt5"][3] == "0.000" and rows["sonnet4"][6] != "0.000"  # sonnet4 answers against its own reasoning
    assert rows["SPD + pairwise DPO (not run)"][1:3] == [NOT_RUN, "—"]


def test_inheritance_table_shows_the_named_biases_as_given(full):
    _, inputs, written, page, md = full
    frame = inputs.inheritance
    named = frame[frame["bias"] != ""]
    assert len(named) == 2 and len(frame) > len(named)
    title = "Bias inheritance: the teachers' named biases"
    table = html_tables(page)[title]
    expected = [[r["teacher"], r["bias"], display(r["finding"]), r["kind"], str(int(r["n"])), fmt(r["rate.control"]), fmt(r["rate.spd"]), fmt(r["rate.apo"]),
                 *[f"{r[k]:+.3f} [{r[k + '.ci_low']:+.3f}, {r[k + '.ci_high']:+.3f}]" for k in ("inherited.spd", "inherited.apo", "reduced.apo")]]
                for r in named.to_dict("records")]  # fmt: skip
    assert table == expected and md_tables(md)[title] == expected
    assert "minus the control arm's rate on the same studies" in htmllib.unescape(page)
    # the full table: collapsed in the page, a CSV download (data: URI) and a CSV file the Markdown links
    assert len(html_tables(page)["Bias inheritance: every teacher, finding and error"]) == len(frame)
    uri = re.search(r'<a download="inheritance.csv" href="data:text/csv;base64,([^"]+)"', page).group(1)
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(base64.b64decode(uri))).fillna({"bias": ""}), frame, check_dtype=False)
    assert "[eval/inheritance.csv](eval/inheritance.csv)" in md and (written["markdown"].parent / "eval" / "inheritance.csv").is_file()


def test_consensus_table_marks_the_chosen_method(full):
    _, _, _, page, md = full
    title = "Consensus on train (measured against labels, never trained on)"
    rows = html_tables(page)[title]
    assert [r[0] for r in rows] == ["vote", "dawid_skene", "in_context"]
    assert rows[1][2:] == ["yes (chosen)", "0.660", "40", "0.860", "120"] and rows[0][2] == "no"
    assert rows[2][3:] == ["—", "—", "0.700", "32"]  # no pairs in its sample: a dash, not a zero
    assert '<tr class="chosen"><td class="text">dawid_skene</td>' in page
    assert md_tables(md)[title] == rows


def test_html_and_markdown_show_the_same_tables(full):
    _, _, _, page, md = full
    h, m = html_tables(page), md_tables(md)
    shared = set(h) & set(m)
    assert {"Systems compared: mean accuracy and paired intervals", "Reasoning: clinical F1 and faithfulness",
            "Bias inheritance: the teachers' named biases", "Consensus on train (measured against labels, never trained on)"} <= shared  # fmt: skip
    assert shared == set(m)  # every Markdown table is in the page
    for title in shared:
        assert h[title] == m[title], title


def test_missing_control_consensus_and_students_render_as_absent(bare):
    written, page, md = bare
    for text in (page, md):
        assert "Not measured: it needs the control arm" in text and "Not shown: the stage was not given self_distill's output" in text
        assert f"{CONTROL_LABEL} (not run)" in text and "SPD + consensus + APO (not run)" in text
    assert "inheritance.csv" not in md and not (written["markdown"].parent / "eval" / "inheritance.csv").exists()
    assert "Bias inheritance: the teachers' named biases" not in html_tables(page)


def test_tables_without_pairs_or_later_students():
    systems = systems_in_order(["gpt5"], None, {"spd": ""})
    m = {"spd.acc.mean": 0.5, "spd.f1_micro_5": 0.4, "spd.single_faith.contradiction": 0.1}
    cmp = comparison_table(m, systems, ["single"], "single", None)
    assert not any("Pairs" in c for c in cmp.columns) and "Single studies: Δ vs mean teacher [95% CI]" in cmp.columns
    reasoning = reasoning_table(m, systems, ["single"])
    assert reasoning.columns[1:4] == ["Clinical F1 micro-5", "Clinical F1 macro-5", "Single studies: contradiction"]
    assert [r[0] for r in reasoning.rows] == ["SPD only", "SPD + pairwise DPO (not run)", "SPD + consensus + APO (not run)", f"{CONTROL_LABEL} (not run)"]
    assert reasoning.rows[0][1:5] == ["0.400", "—", "0.100", "—"]
    only_spd = pd.DataFrame([{"teacher": "t", "finding": "edema", "kind": "miss", "bias": "b", "n": 3.0, "rate.control": 0.0, "rate.spd": 1 / 3,
                              "inherited.spd": 1 / 3, "inherited.spd.ci_low": 0.0, "inherited.spd.ci_high": 1.0}])  # fmt: skip
    table = inheritance_table(only_spd)
    assert not any(c.startswith("Reduced") for c in table.columns) and table.rows == [["t", "b", "edema", "miss", "3", "0.000", "0.333", "+0.333 [+0.000, +1.000]"]]
    assert inheritance_table(only_spd.assign(bias="")).rows == []  # unnamed rows only in the full table
    assert consensus_table(pd.DataFrame([{"method": "vote", "chosen": True, "single": 0.8, "single_n": 10}])).rows == [
        ["vote", "plain vote (per-finding plurality)", "yes (chosen)", "—", "—", "0.800", "10"]]  # fmt: skip


@pytest.mark.skipif(shot.find_browser() is None, reason="no Chromium on PATH (apt-get install -y chromium)")
def test_full_report_renders_in_chromium(full, tmp_path):
    _, _, written, _, _ = full
    sections = ["Pair accuracy", "Single-study accuracy", "Reasoning: clinical F1 and faithfulness", "Bias inheritance: the teachers' named biases",
                "misses faint edema", "Consensus on train", "dawid_skene"]  # fmt: skip
    assert shot.check_report(written["html"], tmp_path / "full.png", shot.REQUIRED_ROWS + sections) == []
