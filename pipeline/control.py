"""Stage `control`: the label-conditioned control arm. A second student is trained exactly like
SPD (same `spd:` settings, same code) on trajectories in which the teachers explain each training
study's known labels (data/validated/control.parquet). It is the upper bound with gold labels,
and the reference that bias inheritance is measured against in the evaluate stage; nothing the
main students train on comes from it. With `control.enabled: false` the folder only says so.

    accelerate launch --config_file pipeline/accelerate/cpu.yaml pipeline/control.py --params params.yaml \\
        --benchmark data/benchmark --trajectories data/validated --templates templates/student \\
        --out models/control --checkpoints checkpoints/control --metrics reports/control.json --curve reports/curves/control.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from apodistill.stage import Stage, make_accelerator, read_weights, stage_parser

READS = ("base.seed", "base.findings", "base.accelerate", "spd", "control", "self_distill.context", "teachers.roster")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__)
    ap.add_argument("--benchmark", required=True, help="fetch output folder (studies.parquet, images)")
    ap.add_argument("--trajectories", required=True, help="validate output folder (control.parquet, weights.json)")
    ap.add_argument("--templates", required=True, help="student prompt templates folder")
    ap.add_argument("--out", required=True, help="control student output folder")
    ap.add_argument("--checkpoints", required=True, help="resumable checkpoints (kept across a crash)")
    ap.add_argument("--metrics", required=True, help="flat JSON metrics to write")
    ap.add_argument("--curve", required=True, help="CSV training curve for dvc plots")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    st = Stage.begin("control", args, READS, torch=True)
    params, cfg, base = st.params, st.params.spd, st.params.base
    out = Path(args.out)
    if not params.control.enabled:
        out.mkdir(parents=True, exist_ok=True)
        (out / "STATUS").write_text("not run: control.enabled is false\n")
        st.finish({"control.enabled": 0}, args.metrics)
        Path(args.curve).parent.mkdir(parents=True, exist_ok=True)
        Path(args.curve).write_text("step,loss\n")
        return 0
    import pandas as pd

    from apodistill.student import save_student
    from apodistill.training.data import ImageStore
    from apodistill.training.loop import clear_checkpoints
    from apodistill.training.spd import build_examples, train_spd

    accelerator = make_accelerator(cfg.optim.bf16)

    # data
    studies = pd.read_parquet(Path(args.benchmark) / "studies.parquet")
    traj = pd.read_parquet(Path(args.trajectories) / "control.parquet")
    traj = traj[traj["split"] == "train"].reset_index(drop=True)
    examples, counts = build_examples(
        traj, studies, read_weights(args.trajectories), base.findings, params.teachers.names(), args.templates,
        cfg.consensus_fraction, params.self_distill.context, base.seed,
    )  # fmt: skip

    # work
    t0 = time.time()
    model, processor, base_ref, result = train_spd(cfg, examples, ImageStore(args.benchmark, cfg.image_size), accelerator,
                                                   args.checkpoints, args.curve, base.seed)  # fmt: skip
    seconds = round(time.time() - t0, 1)
    if not accelerator.is_main_process:
        return 0

    # save
    save_student(model, processor, out, base=base_ref, extra={"stage": "control", "image_size": cfg.image_size, "max_length": cfg.max_length})
    st.save(out)
    last = result.rows[-1] if result.rows else {}
    metrics = {
        "control.enabled": 1,
        "control.steps": result.steps,
        "control.final_loss": float(last.get("loss", float("nan"))),
        "control.train_seconds": seconds,
        **{f"control.{k}": v for k, v in counts.items()},
    }

    # log
    st.finish(metrics, args.metrics, curves={"control.curve": result.rows})
    clear_checkpoints(args.checkpoints)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
