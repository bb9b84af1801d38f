"""Stage `evaluate`: per-finding top-1 accuracy of every teacher, the teachers' majority vote,
the best single teacher and each student on the held-out split (single studies, and
prior/current pairs when teachers answered them), report metrics of the reasoning text, and
paired-bootstrap intervals of each student against SPD and against the best teacher.

    python pipeline/evaluate.py --params params.yaml --benchmark data/benchmark \
        --trajectories data/trajectories --templates templates/student \
        --student spd=models/spd --student apo=models/apo --out reports/eval --metrics reports/metrics.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from apodistill.stage import load_or_exit, write_metrics

ACC = {"single": "acc", "pair": "pair_acc"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("--params", "--benchmark", "--trajectories", "--templates", "--out", "--metrics"):
        ap.add_argument(name, required=True)
    ap.add_argument("--student", action="append", default=[], help="NAME=FOLDER of a trained student (repeatable)")
    args = ap.parse_args()

    params = load_or_exit(args.params)
    cfg, base = params.evaluate, params.base
    import mlflow
    import pandas as pd

    from apodistill import evaluate as ev
    from apodistill.metrics import accuracy_per_finding, correctness, paired_bootstrap
    from apodistill.metrics.reports import report_metrics
    from apodistill.provenance import provenance, seed_everything, write_provenance
    from apodistill.student import load_student, student_info
    from apodistill.tracking import stage_run
    from apodistill.training.data import ImageStore, study_images, task_prompt

    seeds = seed_everything(base.seed)
    findings = base.findings
    config = {"base": base.model_dump(mode="json"), "evaluate": cfg.model_dump(mode="json")}
    bench = Path(args.benchmark)
    studies = pd.read_parquet(bench / "studies.parquet")
    pairs = pd.read_parquet(bench / "pairs.parquet") if (bench / "pairs.parquet").is_file() else None
    traj = pd.read_parquet(Path(args.trajectories) / "trajectories.parquet")
    tasks = [t for t in ("single", "pair") if t in set(traj["task"])]
    gold = {t: ev.gold_for(t, studies, pairs, cfg.split) for t in tasks}
    val_gold = {t: ev.gold_for(t, studies, pairs, "val") for t in tasks}

    with stage_run("evaluate", base.mlflow_experiment, config):
        preds: dict[str, pd.DataFrame] = {}
        tp = ev.teacher_predictions(traj, findings, cfg.split)
        for t, g in tp.groupby("system"):
            preds[f"teacher.{t}"] = g
        preds["majority_vote"] = ev.majority_vote(tp, findings)
        # The best single teacher is chosen on val (single-study accuracy), never on test.
        vp = ev.teacher_predictions(traj, findings, "val")
        val_acc = {
            t: accuracy_per_finding(ev.aligned(g, val_gold[tasks[0]], tasks[0], findings), val_gold[tasks[0]], findings, ev.TASK_KEY[tasks[0]])["acc.mean"]
            for t, g in vp.groupby("system")
        } if len(val_gold[tasks[0]]) else {}
        best = max(sorted(val_acc), key=val_acc.get) if val_acc else sorted(tp["system"].unique())[0]
        image_of = study_images(studies)
        students = [s.split("=", 1) for s in args.student]
        for name, folder in students:
            model, processor = load_student(folder)
            model.eval()
            images = ImageStore(bench, student_info(folder).get("image_size", params.spd.image_size))
            prompts = {task: task_prompt(args.templates, task, findings) for task in tasks}
            preds[name] = ev.student_predictions(model, processor, gold, image_of, images, prompts, cfg.max_new_tokens, cfg.batch_size, name, findings)

        metrics: dict[str, float] = {}
        corr: dict[tuple[str, str], pd.DataFrame] = {}
        rows = []
        for system, p in preds.items():
            for task in tasks:
                key, a = ev.TASK_KEY[task], ev.aligned(p, gold[task], task, findings)
                acc = accuracy_per_finding(a, gold[task], findings, key)
                corr[(system, task)] = correctness(a, gold[task], findings, key)
                for k, v in acc.items():
                    if k.startswith("acc."):
                        metrics[f"{system}.{ACC[task]}.{k[4:]}"] = v
                metrics[f"{system}.{task}_wellformed"] = acc["wellformed"]
                if task == "single" and system != "majority_vote":
                    rm = report_metrics(gold[task]["report"].fillna("").tolist(), a["think"].tolist())
                    metrics.update({f"{system}.{k}": v for k, v in rm.items()})
                rows.append(a.assign(system=system, task=task))
        for task in tasks:
            for k, v in list(metrics.items()):
                prefix = f"teacher.{best}.{ACC[task]}."
                if k.startswith(prefix):
                    metrics[f"best_teacher.{ACC[task]}.{k[len(prefix):]}"] = v
        for name, _ in students:
            for ref, tag in (("spd", "spd"), (f"teacher.{best}", "best_teacher")):
                if ref == name or ref not in preds:
                    continue
                for task in tasks:
                    d, lo, hi = paired_bootstrap(corr[(name, task)].to_numpy(), corr[(ref, task)].to_numpy(), cfg.bootstrap, base.seed)
                    pre = f"{name}.vs_{tag}.{ACC[task]}"
                    metrics[f"{pre}.diff"], metrics[f"{pre}.ci_low"], metrics[f"{pre}.ci_high"] = d, lo, hi

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        pd.concat(rows, ignore_index=True).to_parquet(out / "predictions.parquet", index=False)
        (out / "best_teacher.txt").write_text(best + "\n")
        write_provenance(out, provenance("evaluate", config, seeds, best_teacher=best, students=args.student))
        write_metrics(args.metrics, metrics)
        mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})
        summary = ", ".join(f"{s}={metrics.get(f'{s}.acc.mean', float('nan')):.3f}" for s in [n for n, _ in students] + ["majority_vote", "best_teacher"])
        print(f"evaluate: mean accuracy on {cfg.split}: {summary} (best teacher on val: {best})")


if __name__ == "__main__":
    main()
