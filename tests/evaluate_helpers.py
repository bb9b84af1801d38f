"""A small benchmark, teacher trajectories and student answers with known right/wrong patterns,
shared by tests/test_evaluate*.py and tests/test_reporting*.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from apodistill.findings import CHEXPERT_14, MS_CXR_T_5, format_trajectory

FINDINGS = list(MS_CXR_T_5)
PAIR_CLASSES = ("improving", "stable", "worsening")
REPORT_POS = {"consolidation": "Focal consolidation.", "pleural_effusion": "Large pleural effusion.", "pneumonia": "Findings consistent with pneumonia.",
              "pneumothorax": "Small pneumothorax.", "edema": "Pulmonary edema."}  # fmt: skip
REPORT_NEG = {"consolidation": "No consolidation.", "pleural_effusion": "No pleural effusion.", "pneumonia": "No pneumonia.",
              "pneumothorax": "No pneumothorax.", "edema": "No edema."}  # fmt: skip


def report_for(labels: dict[str, float]) -> str:
    return "FINDINGS: " + " ".join(REPORT_POS[f] if labels[f] == 1.0 else REPORT_NEG[f] for f in FINDINGS)


def make_benchmark(root: Path, n_patients: int = 12, seed: int = 0, images: bool = True) -> Path:
    """``n_patients`` x 2 studies and one prior/current pair each; patients alternate test / val.

    Gold is drawn from a fixed generator; one test study has an uncertain (-1) pneumonia label
    and pairs have some unlabelled (None) findings, so 'left out' rules are exercised.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    studies, pairs = [], []
    for p in range(n_patients):
        pid, split = f"P{p:03d}", ("test" if p % 2 == 0 else "val")
        for s in range(2):
            sid = f"{pid}-S{s}"
            labels = {f: float(rng.random() < 0.4) for f in FINDINGS}
            path = f"images/{sid}.png"
            if images:
                (root / "images").mkdir(exist_ok=True)
                Image.fromarray((rng.random((32, 32)) * 255).astype("uint8"), mode="L").save(root / path)
            row = {"patient_id": pid, "study_id": sid, "split": split, "image_path": path, "view": "PA", "report": report_for(labels),
                   "study_index": s, "stream_index": 2 * p + s}  # fmt: skip
            row.update({f"label_{f}": labels.get(f, np.nan) for f in CHEXPERT_14})
            studies.append(row)
        prog = {f: (PAIR_CLASSES[int(rng.integers(3))] if rng.random() < 0.8 else None) for f in FINDINGS}
        pairs.append({"pair_id": f"{pid}-S0-S1", "patient_id": pid, "split": split, "prior_study_id": f"{pid}-S0", "current_study_id": f"{pid}-S1",
                      "prior_image_path": f"images/{pid}-S0.png", "current_image_path": f"images/{pid}-S1.png", "stream_index": p,
                      **{f"progression_{f}": v for f, v in prog.items()}})  # fmt: skip
    studies_df = pd.DataFrame(studies)
    studies_df.loc[0, "label_pneumonia"] = -1.0
    studies_df.to_parquet(root / "studies.parquet", index=False)
    pd.DataFrame(pairs).to_parquet(root / "pairs.parquet", index=False)
    return root


def gold_answer(row, task: str, f: str) -> str:
    if task == "single":
        v = getattr(row, f"label_{f}")
        return "yes" if v == 1.0 else "no"
    v = getattr(row, f"progression_{f}")
    return v if isinstance(v, str) else "stable"


def wrong_answer(task: str, right: str) -> str:
    return {"yes": "no", "no": "yes"}[right] if task == "single" else PAIR_CLASSES[(PAIR_CLASSES.index(right) + 1) % 3]


def answers(bench: Path, task: str, wrong_every: int | dict[str, int], offset: int = 0, think=None) -> list[dict]:
    """Rows (task, study_id, prior_study_id, split, text): right except every ``wrong_every``-th example
    (0: always right; a dict gives one period per split), whose answers are all wrong.
    ``think(study_id)`` gives the reasoning (default: the reference report)."""
    studies = pd.read_parquet(bench / "studies.parquet")
    rows_src = studies if task == "single" else pd.read_parquet(bench / "pairs.parquet")
    reports = dict(zip(studies["study_id"], studies["report"]))
    out = []
    for i, r in enumerate(rows_src.itertuples()):
        study = r.study_id if task == "single" else r.current_study_id
        prior = None if task == "single" else r.prior_study_id
        every = wrong_every[r.split] if isinstance(wrong_every, dict) else wrong_every
        bad = every > 0 and (i + offset) % every == 0
        labels = {f: (wrong_answer(task, gold_answer(r, task, f)) if bad else gold_answer(r, task, f)) for f in FINDINGS}
        text = format_trajectory(think(study) if think else reports[study], labels, FINDINGS)
        out.append({"task": task, "study_id": study, "prior_study_id": prior, "split": r.split, "text": text})
    return out


def make_trajectories(bench: Path, out_dir: Path, teachers: dict[str, int | dict[str, int]], tasks=("single", "pair"), refuse: dict[str, int] | None = None) -> Path:
    """The teachers stage's table: ``teachers`` maps a name to its ``wrong_every``; ``refuse``
    maps a name to a period of refusals (status refused, empty text)."""
    rows = []
    for k, (name, wrong_every) in enumerate(teachers.items()):
        for task in tasks:
            for i, a in enumerate(answers(bench, task, wrong_every, offset=k)):
                refused = bool(refuse and name in refuse and i % refuse[name] == 1)
                rows.append({"record_id": f"{name}-{task}-{i}", "teacher": name, "model": name, "backend": "simulated", "task": task,
                             "study_id": a["study_id"], "prior_study_id": a["prior_study_id"], "split": a["split"], "stream_index": i,
                             "prompt_mode": "blind", "template": f"{task}.txt", "text": "" if refused else a["text"],
                             "status": "refused" if refused else "ok", "reason": "refusal" if refused else None,
                             "latency_s": 0.0, "prompt_tokens": 0, "completion_tokens": 0})  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(out_dir / "trajectories.parquet", index=False)
    return out_dir


def student_preds(bench: Path, split: str, wrong_every: int, tasks=("single", "pair"), offset: int = 0, think=None) -> pd.DataFrame:
    """A student's parsed answers on ``split`` (what :func:`apodistill.evaluate.student_predictions` returns)."""
    from apodistill.evaluate import parse_predictions

    rows = [a for t in tasks for a in answers(bench, t, wrong_every, offset, think) if a["split"] == split]
    df = pd.DataFrame(rows).drop(columns="split")
    df["prior_study_id"] = df["prior_study_id"].fillna("")
    return parse_predictions(df, FINDINGS)


REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates" / "report"
REPORT_TEACHERS = {"gpt5": 0, "sonnet4": 1, "grok4": 3}
ROW_LABELS = ["gpt5", "sonnet4", "grok4", "Majority vote of the teachers", "Best single teacher (gpt5, chosen on val)",
              "SPD only", "SPD + pairwise DPO (not run)", "SPD + consensus + APO"]  # fmt: skip


def build_report(root: Path, students=("spd", "apo")):
    """Scores of three teachers, the vote and fake students, written as a report under ``root/reports``."""
    from apodistill import evaluate as ev
    from apodistill.reporting import ReportInputs, systems_in_order, write_report

    bench = make_benchmark(root / "bench")
    traj = pd.read_parquet(make_trajectories(bench, root / "traj", REPORT_TEACHERS) / "trajectories.parquet")
    studies, pairs = pd.read_parquet(bench / "studies.parquet"), pd.read_parquet(bench / "pairs.parquet")
    gold = {t: ev.gold_for(t, studies, pairs, "test") for t in ("single", "pair")}
    tp = ev.teacher_predictions(traj, FINDINGS, "test")
    preds = {f"teacher.{t}": tp[tp["system"] == t] for t in REPORT_TEACHERS}
    preds["majority_vote"] = ev.majority_vote(tp, FINDINGS)
    made = {"spd": student_preds(bench, "test", wrong_every=3), "apo": student_preds(bench, "test", 0, think=lambda s: f"<b>bold</b> study {s}: large pleural effusion.")}
    preds.update({s: made[s] for s in students})
    scores = ev.score_systems(preds, gold, FINDINGS, best_teacher="gpt5", students=list(students), bootstrap=100, seed=0, meteor=False)
    image_of = dict(zip(studies["study_id"], studies["image_path"]))
    inputs = ReportInputs(
        systems=systems_in_order(list(REPORT_TEACHERS), "gpt5", {s: f"{s}: 3 steps" for s in students}), tasks=["single", "pair"], findings=FINDINGS,
        split="test", counts={t: len(g) for t, g in gold.items()}, best_teacher="gpt5", image_path=lambda s: bench / image_of[s],
        reports=dict(zip(studies["study_id"], studies["report"])), examples=4, provenance={"git_revision": "abc123", "dvc_experiment": None},
    )  # fmt: skip
    written = write_report(scores, inputs, TEMPLATES, html=root / "reports" / "index.html", markdown=root / "reports" / "eval.md", assets_dir=root / "reports" / "eval")
    return scores, inputs, written
