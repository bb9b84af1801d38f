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
from pathlib import Path

from apodistill.stage import Stage, stage_parser

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
    out = Path(args.out)
    if not st.params.control.enabled:
        out.mkdir(parents=True, exist_ok=True)
        (out / "STATUS").write_text("not run: control.enabled is false\n")
        st.finish({"control.enabled": 0}, args.metrics)
        Path(args.curve).parent.mkdir(parents=True, exist_ok=True)
        Path(args.curve).write_text("step,loss\n")
        return 0
    from apodistill.training.spd import run_spd_stage

    return run_spd_stage(st, args, "control.parquet", {"control.enabled": 1})  # exactly as the spd stage trains


if __name__ == "__main__":
    raise SystemExit(main())
