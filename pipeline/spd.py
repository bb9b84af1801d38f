"""Stage `spd`: supervised pre-distillation on the pooled, validated teacher trajectories,
each teacher's examples weighted by its w_u (docs/method.md, stage 1).

    accelerate launch --config_file pipeline/accelerate/cpu.yaml pipeline/spd.py --params params.yaml \\
        --benchmark data/benchmark --trajectories data/validated --templates templates/student \\
        --out models/spd --checkpoints checkpoints/spd --metrics reports/spd.json --curve reports/curves/spd.csv

A killed run resumes from the last checkpoint in --checkpoints when its config and data match.
"""

from __future__ import annotations

import argparse

from apodistill.stage import Stage, stage_parser

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
    from apodistill.training.spd import run_spd_stage

    return run_spd_stage(st, args, "trajectories.parquet")  # data, work, save, log: shared with the control arm


if __name__ == "__main__":
    raise SystemExit(main())
