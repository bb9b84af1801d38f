"""Stage `spd`: supervised pre-distillation on the pooled, validated teacher trajectories.

    accelerate launch --config_file pipeline/accelerate/cpu.yaml pipeline/spd.py --params params.yaml ...

(see dvc.yaml for the full command). Reads `spd:`; writes the student to --out.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from apodistill.stage import load_or_exit, make_accelerator, read_weights, write_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", required=True)
    ap.add_argument("--benchmark", required=True, help="fetch output folder (studies.parquet, images)")
    ap.add_argument("--trajectories", required=True, help="validate output folder (trajectories.parquet, weights.json)")
    ap.add_argument("--templates", required=True, help="student prompt templates folder")
    ap.add_argument("--out", required=True, help="student output folder")
    ap.add_argument("--checkpoints", required=True, help="resumable checkpoints (kept across a crash)")
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--curve", required=True)
    args = ap.parse_args()

    # setup
    params = load_or_exit(args.params)
    cfg, base = params.spd, params.base
    import mlflow
    import pandas as pd

    from apodistill.provenance import provenance, seed_everything, write_provenance
    from apodistill.tracking import log_curve, stage_run
    from apodistill.training.data import ImageStore
    from apodistill.training.loop import clear_checkpoints
    from apodistill.training.spd import build_examples, train_spd
    from apodistill.student import save_student

    seeds = seed_everything(base.seed)
    accelerator = make_accelerator(cfg.optim.bf16)
    config = {"base": base.model_dump(mode="json"), "spd": cfg.model_dump(mode="json"), "self_distill.context": params.self_distill.context}

    # data
    studies = pd.read_parquet(Path(args.benchmark) / "studies.parquet")
    traj = pd.read_parquet(Path(args.trajectories) / "trajectories.parquet")
    traj = traj[traj["split"] == "train"].reset_index(drop=True)
    weights = read_weights(args.trajectories)
    examples, counts = build_examples(
        traj, studies, weights, base.findings, params.teachers.names(), args.templates,
        cfg.consensus_fraction, params.self_distill.context, base.seed,
    )
    images = ImageStore(args.benchmark, cfg.image_size)

    # work
    with stage_run("spd", base.mlflow_experiment, config):
        t0 = time.time()
        model, processor, base_ref, result = train_spd(cfg, examples, images, accelerator, args.checkpoints, args.curve, base.seed)
        seconds = time.time() - t0
        # save
        if accelerator.is_main_process:
            save_student(model, processor, args.out, base=base_ref, extra={"stage": "spd", "image_size": cfg.image_size, "max_length": cfg.max_length})
            write_provenance(args.out, provenance("spd", config, seeds, resumed_from_step=result.resumed_from))
            last = result.rows[-1] if result.rows else {}
            metrics = {
                "spd.steps": result.steps,
                "spd.final_loss": float(last.get("loss", float("nan"))),
                "spd.train_seconds": round(seconds, 1),
                "spd.parameters": int(sum(p.numel() for p in model.parameters())),
                **{f"spd.{k}": v for k, v in counts.items()},
            }
            write_metrics(args.metrics, metrics)
            mlflow.log_metrics(metrics)
            log_curve(result.rows, "spd.curve")
            clear_checkpoints(args.checkpoints)


if __name__ == "__main__":
    main()
