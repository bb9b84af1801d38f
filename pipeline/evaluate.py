"""Stage `evaluate`: per-finding top-1 accuracy of every teacher, the teachers' majority vote,
the best single teacher and each student on the held-out split (single studies, and
prior/current pairs when teachers answered them), report metrics and clinical F1 of the
reasoning text, paired-bootstrap intervals of each student against SPD and against the best
teacher; then the report (HTML, Markdown, charts, `dvc plots` data).

    python pipeline/evaluate.py --params params.yaml --benchmark data/benchmark \\
        --trajectories data/trajectories --templates templates/student \\
        --student spd=models/spd --student apo=models/apo [--student pairwise=models/apo_pairwise] \\
        --out reports/eval --metrics reports/metrics.json \\
        --report-templates templates/report --html reports/index.html --md reports/eval.md

Students named spd, pairwise and apo fill the table's three ablation rows; an arm not passed
(or a folder without a student, e.g. apo.pairwise_baseline: false) is shown as "not run".
Check the HTML renders: python -m apodistill.reporting.screenshot reports/index.html reports/index.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from apodistill.stage import Stage, stage_parser

READS = ("base.seed", "base.findings", "evaluate", "teachers", "self_distill", "apo")  # the last three: the report's training setting


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__)
    ap.add_argument("--benchmark", required=True, help="fetch output folder (studies.parquet, pairs.parquet, images)")
    ap.add_argument("--trajectories", required=True, help="teachers output folder (every teacher's answers, unfiltered)")
    ap.add_argument("--templates", required=True, help="student prompt templates folder")
    ap.add_argument("--out", required=True, help="folder for predictions, plot data and charts")
    ap.add_argument("--metrics", required=True, help="flat JSON metrics to write")
    ap.add_argument("--student", action="append", default=[], help="NAME=FOLDER of a trained student (repeatable); "
                    "`control` names the label-conditioned control arm that bias inheritance is measured against")
    ap.add_argument("--consensus-methods", help="self_distill's CSV of consensus methods against the labels on train (into the report)")
    ap.add_argument("--report-templates", help="folder with index.html.j2, eval.md.j2, published.yaml")
    ap.add_argument("--html", help="self-contained HTML report to write")
    ap.add_argument("--md", help="Markdown report to write (charts are linked from --out)")
    args = ap.parse_args(argv)
    if bool(args.html) != bool(args.md) or (args.html and not args.report_templates):
        ap.error("--html and --md go together, with --report-templates")
    args.student = [tuple(s.split("=", 1)) for s in args.student]
    if any(len(s) != 2 for s in args.student):
        ap.error(f"--student takes NAME=FOLDER, got {args.student}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    st = Stage.begin("evaluate", args, READS, torch=True)
    cfg, base, findings = st.params.evaluate, st.params.base, list(st.params.base.findings)
    import pandas as pd

    from apodistill import evaluate as ev
    from apodistill.data import resolve_image
    from apodistill.reporting import ReportInputs, systems_in_order, write_report
    from apodistill.setting import training_setting
    from apodistill.student import load_student
    from apodistill.training.data import ImageStore, study_images, task_prompt

    for name, folder in [s for s in args.student if not (Path(s[1]) / "student.json").is_file()]:
        print(f"evaluate: no student in {folder}: {name} reported as not run")
    students = [s for s in args.student if (Path(s[1]) / "student.json").is_file()]

    # data
    bench = Path(args.benchmark)
    studies = pd.read_parquet(bench / "studies.parquet")
    pairs = pd.read_parquet(bench / "pairs.parquet") if (bench / "pairs.parquet").is_file() else None
    traj = pd.read_parquet(Path(args.trajectories) / "trajectories.parquet")
    tasks = [t for t in ("single", "pair") if t in set(traj["task"])]
    primary = ev.primary_task(tasks)
    gold = {t: ev.gold_for(t, studies, pairs, cfg.split) for t in tasks}
    image_of = study_images(studies)

    # work: every system's answers on the same gold rows
    preds: dict[str, pd.DataFrame] = {}
    tp = ev.teacher_predictions(traj, findings, cfg.split)
    first = traj.drop_duplicates("teacher")  # roster order
    teachers = {t: f"{m} ({b})" for t, m, b in zip(first["teacher"], first["model"], first["backend"])}
    for t in teachers:
        preds[f"{ev.TEACHER}{t}"] = tp[tp["system"] == t]
    preds["majority_vote"] = ev.majority_vote(tp, findings)
    # The best single teacher is chosen on val, never on test.
    val_gold = ev.gold_for(primary, studies, pairs, "val")
    best, val_acc = ev.choose_best_teacher(ev.teacher_predictions(traj, findings, "val"), val_gold, primary, findings)
    if best is None:
        print(f"evaluate: no val {primary} examples: no best single teacher")
    notes = {}
    for name, folder in students:
        model, processor = load_student(folder)
        model.eval()
        images = ImageStore(bench, ev.student_image_size(folder))
        prompts = {task: task_prompt(args.templates, task, findings) for task in tasks}
        preds[name] = ev.student_predictions(model, processor, gold, image_of, images, prompts, cfg.max_new_tokens, cfg.batch_size, name, findings)
        notes[name] = ev.describe_student(folder)
    names = [n for n, _ in students]
    scores = ev.score_systems(preds, gold, findings, best_teacher=best, students=names, bootstrap=cfg.bootstrap, seed=base.seed,
                              uncertain=cfg.clinical_f1_uncertain)  # fmt: skip
    inheritance = None
    if "control" in preds and "single" in gold:
        inheritance, inherit_metrics = ev.bias_inheritance(
            preds, gold["single"], findings, [n for n in ("spd", "apo", "pairwise") if n in preds], "control",
            named_biases(Path(args.trajectories)), cfg.bootstrap, base.seed,
        )  # fmt: skip
        scores.metrics.update(inherit_metrics)
    methods = None
    if args.consensus_methods and Path(args.consensus_methods).is_file():
        methods = pd.read_csv(args.consensus_methods)

    # save
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scores.predictions.to_parquet(out / "predictions.parquet", index=False)
    (out / "best_teacher.txt").write_text(f"{best or ''}\n")
    facts = dict(best_teacher=best, val_accuracy=val_acc, students=dict(notes), tasks=tasks)
    st.save(out, **facts)
    artifacts = []
    if args.html:
        inputs = ReportInputs(
            systems=systems_in_order(teachers, best, notes), tasks=tasks, findings=findings, split=cfg.split,
            counts={t: len(g) for t, g in gold.items()}, best_teacher=best,
            image_path=lambda s: resolve_image(bench, image_of[s]) if s in image_of else None,
            reports=dict(zip(studies["study_id"], studies["report"].fillna(""))), examples=cfg.examples,
            provenance=st.record(**facts),  # no git revision or time: DVC hashes the report (they are in the sidecar)
            inheritance=inheritance, consensus_methods=methods,
            setting=training_setting(st.config),  # the training setting, from the resolved params
        )  # fmt: skip
        written = write_report(scores, inputs, args.report_templates, html=args.html, markdown=args.md, assets_dir=out)
        artifacts = [written["html"], written["markdown"]]

    # log
    st.finish(scores.metrics, args.metrics, artifacts=artifacts)
    summary = ", ".join(
        f"{s}={scores.metrics.get(f'{s}.{ev.ACC[primary]}.mean', float('nan')):.3f}" for s in [*names, "majority_vote", "best_teacher"]
    )
    print(f"evaluate: mean {ev.ACC[primary]} on {cfg.split}: {summary} (best teacher on val: {best})")
    return 0


def named_biases(trajectories: Path) -> dict[str, list[tuple[str, str, str]]]:
    """The teachers' known biases (finding, kind, name) that the teachers stage recorded (simulated ones)."""
    import json

    path = trajectories / "biases.json"
    return {t: [tuple(b) for b in v] for t, v in json.loads(path.read_text()).items()} if path.is_file() else {}


if __name__ == "__main__":
    raise SystemExit(main())
