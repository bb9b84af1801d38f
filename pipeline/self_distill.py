"""Stage `self_distill`: the SPD student reads every teacher's trajectory of a training study
and writes one consensus (docs/method.md, stage 2), or a w_u-weighted vote (`self_distill.method`).

    python pipeline/self_distill.py --params params.yaml --benchmark data/benchmark \
        --trajectories data/validated --model models/spd --templates templates/student \
        --out data/consensus --metrics reports/self_distill.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from apodistill.stage import load_or_exit, read_weights, write_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("--params", "--benchmark", "--trajectories", "--model", "--templates", "--out", "--metrics"):
        ap.add_argument(name, required=True)
    args = ap.parse_args()

    params = load_or_exit(args.params)
    cfg, base = params.self_distill, params.base
    import mlflow
    import pandas as pd

    from apodistill.provenance import provenance, seed_everything, write_provenance
    from apodistill.tracking import stage_run
    from apodistill.training.data import ImageStore, group_answers, study_images
    from apodistill.training.self_distill import run_self_distill

    import torch  # noqa: F401  (seeded below)

    seeds = seed_everything(base.seed)
    config = {"base": base.model_dump(mode="json"), "self_distill": cfg.model_dump(mode="json")}
    studies = pd.read_parquet(Path(args.benchmark) / "studies.parquet")
    traj = pd.read_parquet(Path(args.trajectories) / "trajectories.parquet")
    traj = traj[traj["split"] == "train"]
    weights = read_weights(args.trajectories)
    groups = group_answers(traj, base.findings, params.teachers.names())

    with stage_run("self_distill", base.mlflow_experiment, config):
        model = processor = images = None
        if cfg.method == "in_context":
            from apodistill.student import load_student, student_info

            model, processor = load_student(args.model)
            model.eval()
            images = ImageStore(args.benchmark, student_info(args.model).get("image_size", params.spd.image_size))
        table = run_self_distill(cfg, groups, weights, base.findings, args.templates, study_images(studies), images, model, processor)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_parquet(out / "consensus.parquet", index=False)
        write_provenance(out, provenance("self_distill", config, seeds))
        n = max(len(groups), 1)
        metrics = {
            "self_distill.studies": len(groups),
            "self_distill.consensus": int(len(table)),
            "self_distill.fallback_fraction": float(table["fallback"].mean()) if len(table) else 0.0,
            "self_distill.dropped_fraction": 1.0 - len(table) / n,
            "self_distill.mean_teachers": float(table["n_teachers"].mean()) if len(table) else 0.0,
        }
        write_metrics(args.metrics, metrics)
        mlflow.log_metrics(metrics)


if __name__ == "__main__":
    main()
