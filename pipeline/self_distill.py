"""Stage `self_distill`: the SPD student reads every teacher's trajectory of a training study
and writes one consensus (docs/method.md, stage 2), or a w_u-weighted vote (`self_distill.method`).

    python pipeline/self_distill.py --params params.yaml --benchmark data/benchmark \\
        --trajectories data/validated --model models/spd --templates templates/student \\
        --out data/consensus --metrics reports/self_distill.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from apodistill.stage import Stage, read_weights, stage_parser

READS = ("base.seed", "base.findings", "self_distill", "teachers.roster")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__)
    ap.add_argument("--benchmark", required=True, help="fetch output folder (studies.parquet, images)")
    ap.add_argument("--trajectories", required=True, help="validate output folder (trajectories.parquet, weights.json)")
    ap.add_argument("--model", required=True, help="SPD student folder (spd stage output)")
    ap.add_argument("--templates", required=True, help="student prompt templates folder (consensus prompt)")
    ap.add_argument("--out", required=True, help="output folder: consensus.parquet + provenance.json")
    ap.add_argument("--metrics", required=True, help="flat JSON metrics to write")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    st = Stage.begin("self_distill", args, READS, torch=True)
    params, cfg, base = st.params, st.params.self_distill, st.params.base
    import pandas as pd

    from apodistill.consensus import IN_CONTEXT
    from apodistill.training.data import ImageStore, group_answers, study_images
    from apodistill.training.self_distill import run_self_distill

    # model
    model = processor = images = None
    if cfg.method == IN_CONTEXT:
        from apodistill.student import load_student, student_info

        model, processor = load_student(args.model)
        model.eval()
        images = ImageStore(args.benchmark, student_info(args.model).get("image_size", params.spd.image_size))

    # data
    studies = pd.read_parquet(Path(args.benchmark) / "studies.parquet")
    traj = pd.read_parquet(Path(args.trajectories) / "trajectories.parquet")
    groups = group_answers(traj[traj["split"] == "train"], base.findings, params.teachers.names())

    # work
    weights = read_weights(args.trajectories)
    table = run_self_distill(cfg, groups, weights, base.findings, args.templates, study_images(studies), images, model, processor)

    # save
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "consensus.parquet", index=False)
    st.save(out)
    n = max(len(groups), 1)
    metrics = {
        "self_distill.studies": len(groups),
        "self_distill.consensus": int(len(table)),
        "self_distill.fallback_fraction": float(table["fallback"].mean()) if len(table) else 0.0,
        "self_distill.dropped_fraction": 1.0 - len(table) / n,
        "self_distill.mean_teachers": float(table["n_teachers"].mean()) if len(table) else 0.0,
    }

    # log
    st.finish(metrics, args.metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
