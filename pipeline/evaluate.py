"""Stage `evaluate`: per-finding top-1 accuracy of every teacher, the teachers' vote, the best
single teacher and each student on the held-out split, plus report metrics of the reasoning.

    python pipeline/evaluate.py --params params.yaml --benchmark data/benchmark \
        --trajectories data/trajectories --templates templates/student \
        --student spd=models/spd --student apo=models/apo --out reports/eval --metrics reports/metrics.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from apodistill.stage import load_or_exit, write_metrics


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
    from apodistill.metrics.bootstrap import paired_bootstrap
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
    tasks = sorted(traj["task"].unique())
    gold = ev.gold_table(studies, pairs if "pair" in tasks else None, findings, cfg.split)
    gold = gold[gold["task"].isin(tasks)].reset_index(drop=True)
    report_of = dict(zip(studies["study_id"], studies["report"]))

    with stage_run("evaluate", base.mlflow_experiment, config):
        preds = {}
        tp = ev.teacher_predictions(traj, findings, cfg.split)
        for t, g in tp.groupby("system"):
            preds[f"teacher.{t}"] = g
        preds["majority_vote"] = ev.majority_vote(tp, findings)
        val_gold = ev.gold_table(studies, pairs if "pair" in tasks else None, findings, "val")
        val_gold = val_gold[val_gold["task"].isin(tasks)]
        vp = ev.teacher_predictions(traj, findings, "val")
        val_corr = {t: ev.correctness(g, val_gold, findings) for t, g in vp.groupby("system")}
        best = ev.best_teacher(val_corr, findings) if val_corr and len(val_gold) else sorted(tp["system"].unique())[0]
        image_of = study_images(studies)
        for spec in args.student:
            name, folder = spec.split("=", 1)
            model, processor = load_student(folder)
            model.eval()
            images = ImageStore(bench, student_info(folder).get("image_size", params.spd.image_size))
            prompts = {task: task_prompt(args.templates, task, findings) for task in tasks}
            preds[name] = ev.student_predictions(model, processor, gold, image_of, images, prompts, cfg.max_new_tokens, cfg.batch_size, name, findings)

        metrics: dict[str, float] = {}
        corr = {}
        for system, p in preds.items():
            corr[system] = ev.correctness(p, gold, findings)
            for k, v in ev.accuracy(corr[system], findings).items():
                metrics[f"{system}.{k}"] = v
            p_idx = p.drop_duplicates(ev.KEY).set_index(ev.KEY).reindex(gold.set_index(ev.KEY).index)
            metrics[f"{system}.wellformed"] = float(p_idx["wellformed"].fillna(False).astype(bool).mean())
            single = gold[gold["task"] == "single"]
            if system != "majority_vote" and len(single):
                thinks = p_idx.loc[[tuple(k) for k in single[ev.KEY].to_numpy()], "think"].fillna("").tolist()
                rm = report_metrics([report_of[s] for s in single["study_id"]], thinks)
                metrics[f"{system}.bleu4"] = rm["bleu4"]
                metrics[f"{system}.rouge_l"] = rm["rouge_l"]
        best_key = f"teacher.{best}"
        for k, v in list(metrics.items()):
            if k.startswith(best_key + ".acc"):
                metrics["best_teacher" + k[len(best_key):]] = v
        for name in [s.split("=", 1)[0] for s in args.student]:
            for ref in ["spd", best_key]:
                if ref == name or ref not in corr:
                    continue
                d, lo, hi = paired_bootstrap(corr[name][findings].to_numpy(), corr[ref][findings].to_numpy(), cfg.bootstrap, base.seed)
                tag = "best_teacher" if ref == best_key else ref
                metrics[f"{name}.vs_{tag}.diff"], metrics[f"{name}.vs_{tag}.ci_low"], metrics[f"{name}.vs_{tag}.ci_high"] = d, lo, hi

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        all_preds = pd.concat([p.assign(system=s) for s, p in preds.items()], ignore_index=True)
        all_preds.drop(columns=[c for c in ("text",) if c in all_preds], errors="ignore").to_parquet(out / "predictions.parquet", index=False)
        (out / "best_teacher.txt").write_text(best + "\n")
        write_provenance(out, provenance("evaluate", config, seeds, best_teacher=best, students=args.student))
        write_metrics(args.metrics, metrics)
        mlflow.log_metrics({k.replace("@", "_"): v for k, v in metrics.items() if v == v})


if __name__ == "__main__":
    main()
