"""Core of the `evaluate` stage: every system's predictions on the same held-out examples.

Systems: each teacher (its own test trajectories), the teachers' majority vote, the best
single teacher (chosen on the validation split, never on test), and each student. An
unparseable or refused answer counts as wrong for every finding. Single studies are
scored against ``label_<finding>`` (keyed by study_id); prior/current pairs against
``progression_<finding>`` (keyed by pair_id), the MS-CXR-T protocol. Scoring itself is
:mod:`apodistill.metrics`; the tables and pictures are :mod:`apodistill.reporting`.

Also :func:`zero_shot`: a trained student on a local CheXpert or Open-I copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from apodistill.consensus import TeacherAnswer, vote_labels
from apodistill.findings import ParsedTrajectory, try_parse

TASK_KEY = {"single": "study_id", "pair": "pair_id"}
# metrics.json prefix of each task's accuracy keys (``apo.acc.edema``, ``apo.pair_acc.edema``).
ACC = {"single": "acc", "pair": "pair_acc"}
TEACHER = "teacher."
BASELINES = ("majority_vote", "best_teacher")
SINGLE_GOLD = {1.0: "yes", 0.0: "no", -1.0: "uncertain"}
THINK = re.compile(r"<think>(.*?)</think>", re.S)


def gold_for(task: str, studies: pd.DataFrame, pairs: pd.DataFrame | None, split: str) -> pd.DataFrame:
    """Gold rows of one task and split; both carry ``study_id`` and ``prior_study_id``."""
    if task == "single":
        g = studies[studies["split"] == split].copy()
        g["prior_study_id"] = ""
        return g.reset_index(drop=True)
    if pairs is None:
        return pd.DataFrame(columns=["pair_id", "study_id", "prior_study_id"])
    g = pairs[pairs["split"] == split].copy()
    g["study_id"] = g["current_study_id"]
    return g.reset_index(drop=True)


def primary_task(tasks: Sequence[str]) -> str:
    """The headline task: MS-CXR-T's temporal pairs when teachers answered them, else single studies."""
    return "pair" if "pair" in tasks else "single"


def parse_predictions(rows: pd.DataFrame, findings: Sequence[str]) -> pd.DataFrame:
    """Add ``answer_<finding>`` (None when unparseable), ``wellformed`` and ``think`` to rows
    that have ``text`` and ``task``."""
    out = rows.copy()
    parsed = [try_parse(t, findings, task) if isinstance(t, str) else None for t, task in zip(out["text"], out["task"])]
    out["wellformed"] = [p is not None for p in parsed]
    # Reasoning is scored even when the answer block is broken: it was still written.
    out["think"] = [p.think if p else _think_of(t) for p, t in zip(parsed, out["text"])]
    for f in findings:
        out[f"answer_{f}"] = [p.labels[f] if p else None for p in parsed]
    return out


def _think_of(text: Any) -> str:
    m = THINK.search(text) if isinstance(text, str) else None
    return m.group(1).strip() if m else ""


def aligned(preds: pd.DataFrame, gold: pd.DataFrame, task: str, findings: Sequence[str]) -> pd.DataFrame:
    """Exactly one prediction row per gold row (missing -> all answers None), in gold order."""
    key = TASK_KEY[task]
    cols = [f"answer_{f}" for f in findings] + ["wellformed", "think"] + (["text"] if "text" in preds else [])
    p = preds[preds["task"] == task]
    if key == "pair_id" and "pair_id" not in p:
        ids = dict(zip(zip(gold["prior_study_id"], gold["study_id"]), gold["pair_id"]))
        p = p.assign(pair_id=[ids.get((a, b)) for a, b in zip(p["prior_study_id"], p["study_id"])])
    p = p.dropna(subset=[key]).drop_duplicates(key).set_index(key)
    out = p.reindex(gold[key])[cols].reset_index()
    out["wellformed"] = out["wellformed"].fillna(False).astype(bool)
    out["think"] = out["think"].fillna("")
    return out


def teacher_predictions(trajectories: pd.DataFrame, findings: Sequence[str], split: str) -> pd.DataFrame:
    t = trajectories[trajectories["split"] == split].copy()
    t["text"] = t["text"].where(t["status"] == "ok", None)
    t = t.rename(columns={"teacher": "system"})
    t["prior_study_id"] = t["prior_study_id"].fillna("")
    return parse_predictions(t[["system", "task", "study_id", "prior_study_id", "text"]], findings)


def majority_vote(teacher_preds: pd.DataFrame, findings: Sequence[str]) -> pd.DataFrame:
    """The teachers' per-example plurality over their well-formed answers (the usual baseline)."""
    rows = []
    ok = teacher_preds[teacher_preds["wellformed"]]
    for (task, study, prior), g in ok.groupby(["task", "study_id", "prior_study_id"], sort=True):
        answers = [TeacherAnswer(r.system, "", ParsedTrajectory("", {f: getattr(r, f"answer_{f}") for f in findings})) for r in g.itertuples()]
        labels = vote_labels(answers, {}, findings, task)
        rows.append({"task": task, "study_id": study, "prior_study_id": prior, "wellformed": True, "think": "", **{f"answer_{f}": labels[f] for f in findings}})
    return pd.DataFrame(rows, columns=["task", "study_id", "prior_study_id", "wellformed", "think", *[f"answer_{f}" for f in findings]])


def choose_best_teacher(val_preds: pd.DataFrame, val_gold: pd.DataFrame, task: str, findings: Sequence[str]) -> tuple[str | None, dict[str, float]]:
    """The teacher with the highest mean accuracy on the validation split (ties: first name).

    Chosen on val, never on test, so "best single teacher" is a system one could have picked
    in advance and not an oracle. None when val has no gold rows of ``task``.
    """
    from apodistill.metrics import accuracy_per_finding

    if not len(val_gold):
        return None, {}
    acc = {
        str(t): accuracy_per_finding(aligned(g, val_gold, task, findings), val_gold, findings, TASK_KEY[task], task)["acc.mean"]
        for t, g in val_preds.groupby("system")
    }
    return max(sorted(acc), key=lambda t: (acc[t] == acc[t], acc[t])), acc


def gold_answers(gold: pd.DataFrame, task: str, finding: str) -> list[str | None]:
    """Gold as answer strings (single: 1 yes, 0 no, -1 uncertain, NaN None; pairs as given)."""
    if task == "single":
        return [SINGLE_GOLD.get(float(v)) if v == v else None for v in gold[f"label_{finding}"]]
    return [v if isinstance(v, str) else None for v in gold[f"progression_{finding}"]]


@dataclass
class Scores:
    """Everything the report needs: flat metrics, the per-example table, confusion counts."""

    metrics: dict[str, float]
    predictions: pd.DataFrame
    confusions: dict[tuple[str, str, str], pd.DataFrame] = field(default_factory=dict)


def score_systems(
    preds: dict[str, pd.DataFrame],
    gold: dict[str, pd.DataFrame],
    findings: Sequence[str],
    *,
    best_teacher: str | None,
    students: Sequence[str],
    bootstrap: int,
    seed: int,
    uncertain: str = "negative",
    meteor: Any = True,
) -> Scores:
    """Score every system on every task against the same gold rows.

    Keys: ``<system>.<acc|pair_acc>.<finding|mean>``, ``<system>.<task>_wellformed``, and for
    systems that write reasoning (single studies) the report metrics of ``<think>`` against the
    reference report (``bleu1..4, rouge_l, meteor, cider``) and its clinical F1
    (``f1_{micro,macro}_{5,14}``); ``best_teacher.*`` repeats the chosen teacher's keys;
    ``<student>.vs_{spd,best_teacher}.<acc>.{diff,ci_low,ci_high}`` are paired bootstrap intervals.
    Systems whose predictions carry ``text`` wrote reasoning (teachers, students; not the vote):
    an empty or missing ``<think>`` then scores 0, it is not skipped.
    """
    from apodistill.metrics import accuracy_per_finding, chexpert_f1_from_labels, confusion, correctness, label_reports, paired_bootstrap, report_metrics
    from apodistill.metrics.faithfulness import faithfulness

    metrics: dict[str, float] = {}
    corr: dict[tuple[str, str], pd.DataFrame] = {}
    confusions: dict[tuple[str, str, str], pd.DataFrame] = {}
    rows = []
    refs = gold["single"]["report"].fillna("").tolist() if "single" in gold else []
    refs = refs if any(refs) else []  # no reference reports (CheXpert): no report metrics
    ref_labels = label_reports(refs) if refs else None
    for system, p in preds.items():
        for task, g in gold.items():
            key, a = TASK_KEY[task], aligned(p, g, task, findings)
            acc = accuracy_per_finding(a, g, findings, key, task)
            corr[(system, task)] = c = correctness(a, g, findings, key, task)
            metrics.update({f"{system}.{ACC[task]}.{k[4:]}": v for k, v in acc.items() if k.startswith("acc.")})
            metrics[f"{system}.{task}_wellformed"] = acc["wellformed"]
            if task == "single" and "text" in p and refs:
                metrics.update({f"{system}.{k}": v for k, v in report_metrics(refs, a["think"].tolist(), meteor=meteor).items()})
                f1 = chexpert_f1_from_labels(ref_labels, label_reports(a["think"].tolist()), uncertain)
                metrics.update({f"{system}.f1_{k.split('.', 1)[1]}": v for k, v in f1.items()})
            if "text" in p:  # does the reasoning say what the answer says, and what the image shows?
                metrics.update({f"{system}.{task}_faith.{k}": v for k, v in faithfulness(a, g, findings, task).items()
                                if not k.endswith("_n")})  # fmt: skip
            if system in students:
                confusions.update({(system, task, f): confusion(a, g, f, key, task) for f in findings})
            rows.append(_long_rows(a, g, task, c, system, findings))
    teacher_systems = [s for s in preds if s.startswith(TEACHER)]
    for task in gold if teacher_systems else ():
        # The mean teacher: each teacher's accuracy averaged (per finding, then the mean), and per
        # example the teachers' mean correctness, so students get a paired interval against it.
        for k in [f"{ACC[task]}.{f}" for f in findings] + [f"{ACC[task]}.mean"]:
            vals = [metrics[f"{t}.{k}"] for t in teacher_systems if metrics.get(f"{t}.{k}") == metrics.get(f"{t}.{k}")]
            metrics[f"mean_teacher.{k}"] = float(np.mean(vals)) if vals else float("nan")
        corr[("mean_teacher", task)] = sum(corr[(t, task)] for t in teacher_systems) / len(teacher_systems)
    if best_teacher is not None:
        prefix = f"{TEACHER}{best_teacher}."
        metrics.update({f"best_teacher.{k[len(prefix):]}": v for k, v in list(metrics.items()) if k.startswith(prefix)})
        preds_best = f"{TEACHER}{best_teacher}"
        corr.update({("best_teacher", t): corr[(preds_best, t)] for t in gold if (preds_best, t) in corr})
    for name in students:
        for ref, tag in (("spd", "spd"), ("best_teacher", "best_teacher"), ("mean_teacher", "mean_teacher")):
            if ref == name or bootstrap <= 0 or not all((ref, t) in corr for t in gold):
                continue
            for task in gold:
                d, lo, hi = paired_bootstrap(corr[(name, task)].to_numpy(), corr[(ref, task)].to_numpy(), bootstrap, seed)
                pre = f"{name}.vs_{tag}.{ACC[task]}"
                metrics[f"{pre}.diff"], metrics[f"{pre}.ci_low"], metrics[f"{pre}.ci_high"] = d, lo, hi
    return Scores(metrics, pd.concat(rows, ignore_index=True), confusions)


def _long_rows(a: pd.DataFrame, g: pd.DataFrame, task: str, corr: pd.DataFrame, system: str, findings: Sequence[str]) -> pd.DataFrame:
    """One system's aligned answers with their gold answer and correctness per finding."""
    out = pd.DataFrame(
        {
            "system": system,
            "task": task,
            "study_id": g["study_id"].to_numpy(),
            "prior_study_id": g["prior_study_id"].fillna("").to_numpy(),
            "pair_id": g["pair_id"].to_numpy() if task == "pair" else None,
            "wellformed": a["wellformed"].to_numpy(),
            "think": a["think"].to_numpy(),
            "text": a["text"].to_numpy() if "text" in a else None,
        }
    )
    for f in findings:
        out[f"answer_{f}"] = a[f"answer_{f}"].to_numpy()
        out[f"gold_{f}"] = gold_answers(g, task, f)
        out[f"correct_{f}"] = corr[f].to_numpy()
    return out


def student_predictions(
    model: Any,
    processor: Any,
    gold_by_task: dict[str, pd.DataFrame],
    image_of: dict[str, str],
    images: Any,
    prompts: dict[str, str],
    max_new_tokens: int,
    batch_size: int,
    system: str,
    findings: Sequence[str],
) -> pd.DataFrame:
    """Greedy answers of a student for every gold row of every task (its own prompt per task)."""
    from tqdm.auto import tqdm

    from apodistill.student import generate

    rows = [
        {"task": task, "study_id": r["study_id"], "prior_study_id": r["prior_study_id"]}
        for task, gold in gold_by_task.items()
        for r in gold[["study_id", "prior_study_id"]].to_dict("records")
    ]
    texts: list[str] = []
    for i in tqdm(range(0, len(rows), batch_size), desc=f"evaluate {system}", unit_scale=batch_size):
        batch = rows[i : i + batch_size]
        imgs = [
            [images.get(image_of[r["prior_study_id"]]), images.get(image_of[r["study_id"]])] if r["task"] == "pair" else [images.get(image_of[r["study_id"]])]
            for r in batch
        ]
        texts += generate(model, processor, imgs, [prompts[r["task"]] for r in batch], max_new_tokens)
    df = pd.DataFrame(rows, columns=["task", "study_id", "prior_study_id"])
    df["text"] = texts
    return parse_predictions(df, findings)


def student_image_size(folder: str | Path) -> int:
    """The image size a student was trained at (student.json), so evaluation feeds it the same."""
    from apodistill.student import student_info

    size = student_info(folder).get("image_size")
    if not size:
        raise KeyError(f"{folder}/student.json has no image_size: re-save the student with save_student(..., extra={{'image_size': N}})")
    return int(size)


def describe_student(folder: str | Path) -> str:
    """How a student folder was trained, in one line, from the provenance.json its stage wrote
    (``apo: loss plackett_luce, beta 0.1, 200 steps``), so an ablation row says what it is."""
    import json

    path = Path(folder) / "provenance.json"
    if not path.is_file():
        return ""
    record = json.loads(path.read_text())
    stage, config = record.get("stage", ""), record.get("config", {})
    section = config.get(stage, {}) if isinstance(config, dict) else {}
    optim = section.get("optim", {}) if isinstance(section, dict) else {}
    parts = [f"loss {section['loss']}" if "loss" in section else "", f"beta {section['beta']:g}" if "beta" in section else "",
             f"{optim['epochs']:g} epoch{'s' if optim['epochs'] != 1 else ''}" if optim.get("epochs") else (f"{optim['steps']} steps" if optim.get("steps") else ""),  # epochs win, as in training
             f"lr {optim['lr']:g}" if "lr" in optim else ""]  # fmt: skip
    detail = ", ".join(x for x in parts if x)
    return f"{stage}: {detail}" if detail else stage


def zero_shot(
    student_dir: str | Path,
    dataset: str,
    root: str | Path,
    templates_dir: str | Path,
    findings: Sequence[str],
    *,
    max_new_tokens: int = 96,
    batch_size: int = 16,
    images_dir: str | Path | None = None,
    limit: int | None = None,
    meteor: Any = True,
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """A trained student on a local CheXpert (``dataset="chexpert"``, its ``valid.csv``) or Open-I
    (``"openi"``) copy laid out as released: ``(metrics, predictions, quarantine)``.

    The student answers the single-study prompt it was trained with; metrics are per-finding
    accuracy (gold uncertain left out), AUC (yes 1, uncertain .5, no 0; the paper's zero-shot
    figure) and, where the dataset has reports (Open-I), report metrics and clinical F1 of the
    reasoning. Rows whose image is missing are in ``quarantine`` with the reason, not dropped.
    """
    from apodistill.metrics import auc_per_finding, read_chexpert, read_openi
    from apodistill.student import load_student
    from apodistill.training.data import ImageStore, study_images, task_prompt

    if dataset == "chexpert":
        studies, quarantine = read_chexpert(root)
    elif dataset == "openi":
        studies, quarantine = read_openi(root, images_dir)
    else:
        raise ValueError(f"unknown zero-shot dataset {dataset!r}; known: chexpert, openi")
    if limit is not None:
        studies = studies.iloc[:limit].reset_index(drop=True)
    gold = gold_for("single", studies, None, "test")
    model, processor = load_student(student_dir)
    model.eval()
    images = ImageStore(Path(root), student_image_size(student_dir))
    prompt = task_prompt(templates_dir, "single", findings)
    preds = student_predictions(model, processor, {"single": gold}, study_images(studies), images, {"single": prompt}, max_new_tokens, batch_size, "student", findings)
    scores = score_systems({"student": preds}, {"single": gold}, findings, best_teacher=None, students=[], bootstrap=0, seed=0, meteor=meteor)
    metrics = {k.split(".", 1)[1]: float(v) for k, v in scores.metrics.items()}
    metrics.update(auc_per_finding(aligned(preds, gold, "single", findings), gold, findings))
    metrics["quarantined"] = float(len(quarantine))
    return metrics, scores.predictions, quarantine


def bias_inheritance(
    preds: dict[str, pd.DataFrame],
    gold: pd.DataFrame,
    findings: Sequence[str],
    students: Sequence[str],
    control: str,
    named: dict[str, list[tuple[str, str, str]]],
    bootstrap: int,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """How much of each teacher's systematic error each student repeats (single studies).

    For every teacher and every finding and direction (``miss``: present, answered no;
    ``overcall``: absent, answered yes): on the test examples where the teacher made that error,
    each student's rate of making it too, the control student's rate (trained on the same images
    with the teachers explaining the gold labels: what image difficulty alone explains), the
    difference with a paired bootstrap interval, and the first student's rate minus each later
    one's (e.g. SPD - APO: what the critique step removed). ``named`` lists each teacher's known
    biases (the simulated profiles'): their rows go into the metrics as
    ``inherit.<teacher>.<finding>.<kind>.*``, every row into the returned table.
    """
    from apodistill.metrics.faithfulness import inheritance

    aligned_by = {s: aligned(preds[s], gold, "single", findings) for s in [*students, control] if s in preds}
    rows, metrics = [], {}
    for system in [s for s in preds if s.startswith(TEACHER)]:
        teacher = system[len(TEACHER):]
        t = aligned(preds[system], gold, "single", findings)
        known = {(f, k): name for f, k, name in named.get(teacher, [])}
        for f in findings:
            for kind in ("miss", "overcall"):
                res = inheritance(t, {s: aligned_by[s] for s in students if s in aligned_by}, aligned_by[control], gold, f, kind,
                                  bootstrap=bootstrap, seed=seed)  # fmt: skip
                if res.get("n", 0) == 0:
                    continue
                rows.append({"teacher": teacher, "finding": f, "kind": kind, "bias": known.get((f, kind), ""), **res})
                if (f, kind) in known:
                    metrics.update({f"inherit.{teacher}.{f}.{kind}.{k}": v for k, v in res.items()})
    return pd.DataFrame(rows), metrics
