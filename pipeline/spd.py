"""Stage `spd`: supervised pre-distillation on the pooled, validated teacher trajectories,
each teacher's examples weighted by its w_u (docs/method.md, stage 1).

    accelerate launch --config_file pipeline/accelerate/cpu.yaml pipeline/spd.py --params params.yaml \\
        --benchmark data/benchmark --trajectories data/validated --templates templates/student \\
        --out models/spd --checkpoints checkpoints/spd --metrics reports/spd.json --curve reports/curves/spd.csv

A killed run resumes from the last checkpoint in --checkpoints when its config and data match.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from apodistill.stage import Stage, make_accelerator, read_weights, stage_parser

READS = ("base.seed", "base.findings", "base.accelerate", "spd", "self_distill.context", "teachers.roster")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__)
    ap.add_argument("--benchmark", required=True, help="fetch output folder (studies.parquet, images)")
    ap.add_argument("--trajectories", required=True, help="validate output folder (trajectories.parquet, weights.json)")
    ap.add_argument("--templates", required=True, help="student prompt templates folder")
    ap.add_argument("--out", required=True, help="student output folder")
    ap.add_argument("--checkpoints", required=True, help="resumable checkpoints (kept across a crash)")
    ap.add_argument("--metrics", required=True, help="flat JSON metrics to write")
    ap.add_argument("--curve", required=True, help="CSV training curve for dvc plots")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    st = Stage.begin("spd", args, READS, torch=True)
    params, cfg, base = st.params, st.params.spd, st.params.base
    import pandas as pd

    from apodistill.student import save_student
    from apodistill.training.data import ImageStore
    from apodistill.training.loop import batch_record, clear_checkpoints
    from apodistill.training.spd import build_examples, train_spd

    accelerator = make_accelerator(cfg.optim.bf16)

    # data
    studies = pd.read_parquet(Path(args.benchmark) / "studies.parquet")
    traj = pd.read_parquet(Path(args.trajectories) / "trajectories.parquet")
    traj = traj[traj["split"] == "train"].reset_index(drop=True)
    examples, counts = build_examples(
        traj, studies, read_weights(args.trajectories), base.findings, params.teachers.names(), args.templates,
        cfg.consensus_fraction, params.self_distill.context, base.seed,
    )  # fmt: skip
    images = ImageStore(args.benchmark, cfg.image_size)

    # work
    t0 = time.time()
    model, processor, base_ref, result = train_spd(cfg, examples, images, accelerator, args.checkpoints, args.curve, base.seed)
    seconds = round(time.time() - t0, 1)
    if not accelerator.is_main_process:
        return 0

    # save
    save_student(model, processor, args.out, base=base_ref, extra={"stage": "spd", "image_size": cfg.image_size, "max_length": cfg.max_length})
    batch = batch_record(accelerator, cfg.optim)  # processes x micro-batch x accumulation
    st.save(args.out, **batch)
    st.note(resumed_from_step=result.resumed_from)
    last = result.rows[-1] if result.rows else {}
    metrics = {
        "spd.steps": result.steps,
        "spd.final_loss": float(last.get("loss", float("nan"))),
        "spd.train_seconds": seconds,
        "spd.parameters": int(sum(p.numel() for p in model.parameters())),
        **{f"spd.{k}": v for k, v in counts.items()},
        **{f"spd.{k}": v for k, v in batch.items()},
    }

    # log
    st.finish(metrics, args.metrics, curves={"spd.curve": result.rows})
    clear_checkpoints(args.checkpoints)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
