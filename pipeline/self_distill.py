"""Stage `self_distill`: one consensus trajectory per training study from all its teachers
(docs/method.md, stage 2), by `self_distill.method`: a label method (vote, weighted_vote,
dawid_skene) with reasoning composed from the teachers that agree, or the paper's in_context
(the SPD student reads the teachers and writes it). Every method in `self_distill.compare` is
measured against the benchmark's labels on the same studies (measured only, never trained on).

    python pipeline/self_distill.py --params params.yaml --benchmark data/benchmark \\
        --trajectories data/validated --model models/spd --templates templates/student \\
        --out data/consensus --methods reports/consensus_methods.csv --metrics reports/self_distill.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from apodistill.stage import Stage, read_weights, stage_parser

READS = ("base.seed", "base.findings", "self_distill", "teachers.roster")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__)
    ap.add_argument("--benchmark", required=True, help="fetch output folder (studies.parquet, pairs.parquet, images)")
    ap.add_argument("--trajectories", required=True, help="validate output folder (trajectories.parquet, weights.json)")
    ap.add_argument("--model", required=True, help="SPD student folder (spd stage output): writes the in_context consensus")
    ap.add_argument("--templates", required=True, help="student prompt templates folder (consensus prompt)")
    ap.add_argument("--out", required=True, help="output folder: consensus.parquet (what APO trains on) + provenance.json")
    ap.add_argument("--methods", required=True, help="CSV: every compared method's accuracy against the labels on train (report only)")
    ap.add_argument("--metrics", required=True, help="flat JSON metrics to write")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    st = Stage.begin("self_distill", args, READS, torch=True)
    params, cfg, base = st.params, st.params.self_distill, st.params.base
    import pandas as pd

    from apodistill.consensus import IN_CONTEXT
    from apodistill.training.data import ImageStore, group_answers, study_images
    from apodistill.training.self_distill import compare_methods, gold_answers, in_context, run_self_distill
    from apodistill.validation.weights import teacher_weights

    # model: only when the student writes a consensus (the method, or its comparison row)
    model = processor = images = None
    if cfg.method == IN_CONTEXT or (IN_CONTEXT in cfg.compare and cfg.compare_sample > 0):
        from apodistill.student import load_student, student_info

        model, processor = load_student(args.model)
        model.eval()
        images = ImageStore(args.benchmark, student_info(args.model).get("image_size", params.spd.image_size))

    # data
    bench = Path(args.benchmark)
    studies = pd.read_parquet(bench / "studies.parquet")
    pairs = pd.read_parquet(bench / "pairs.parquet") if (bench / "pairs.parquet").is_file() else None
    traj = pd.read_parquet(Path(args.trajectories) / "trajectories.parquet")
    train = traj[traj["split"] == "train"]
    groups = group_answers(train, base.findings, params.teachers.names())
    weights = read_weights(args.trajectories)

    # work
    image_of = study_images(studies)
    table = run_self_distill(cfg, groups, weights, base.findings, args.templates, image_of, images, model, processor)
    auto = teacher_weights("auto", train, list(base.findings), params.teachers.names())["weights"]
    gold = gold_answers(studies[studies["split"] == "train"], None if pairs is None else pairs[pairs["split"] == "train"], base.findings)

    def student(keys):
        return in_context(cfg, groups, keys, weights, base.findings, args.templates, image_of, images, model, processor)

    methods = compare_methods(cfg, groups, {"weighted_vote": auto}, gold, base.findings, table,
                              student if model is not None else None, base.seed)  # fmt: skip

    # save
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "consensus.parquet", index=False)
    Path(args.methods).parent.mkdir(parents=True, exist_ok=True)
    methods.to_csv(args.methods, index=False)
    st.save(out)
    n = max(len(groups), 1)
    metrics = {
        "self_distill.studies": len(groups),
        "self_distill.consensus": int(len(table)),
        "self_distill.fallback_fraction": float(table["fallback"].mean()) if len(table) else 0.0,
        "self_distill.dropped_fraction": 1.0 - len(table) / n,
        "self_distill.mean_teachers": float(table["n_teachers"].mean()) if len(table) else 0.0,
    }
    for r in methods.to_dict("records"):
        for task in ("single", "pair"):
            if task in r and r[task] == r[task]:
                metrics[f"self_distill.acc.{r['method']}.{task}"] = float(r[task])
    print("self_distill: accuracy on train against the labels (measured only):\n" + methods.to_string(index=False))

    # log
    st.finish(metrics, args.metrics, artifacts=[args.methods])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
