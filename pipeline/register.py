"""Stage `register`: log the APO student to MLflow as a pyfunc model (weights, processor,
prompts, resolved params, evaluation metrics, model card) and register it as
`register.model_name` with alias `register.alias`. Promotion to `champion` is a separate,
gated step (`apodistill promote`). A student without evaluation metrics is refused (exit 2).

    python pipeline/register.py --params params.yaml --model models/apo \\
        --metrics reports/metrics.json --templates templates/student --out reports/register.json \\
        [--benchmark data/benchmark] [--system apo] [--card reports/model_card.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from apodistill.stage import Stage, stage_parser

READS = ("base.findings", "evaluate.max_new_tokens", "register.model_name", "register.alias",
         "evaluate.split", "teachers", "self_distill", "apo")  # the last four: the card's training setting


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__, mlflow_optional=False)
    ap.add_argument("--model", required=True, help="student folder to register (apo stage output)")
    ap.add_argument("--metrics", required=True, help="evaluate stage metrics JSON (flat keys <system>.acc.mean, ...)")
    ap.add_argument("--templates", required=True, help="student prompt templates (stored with the model)")
    ap.add_argument("--out", required=True, help="JSON written with the registered name, version and URI")
    ap.add_argument("--system", default="apo", help="name of this student in the metrics (evaluate's --student NAME=...)")
    ap.add_argument("--benchmark", default=None, help="fetch output folder: its studies.parquet hash becomes the data_hash tag; "
                    "its train images give the input profile predict/serve check images against")
    ap.add_argument("--card", default=None, help="also write the model card here (markdown)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    st = Stage.begin("register", args, READS)
    params, cfg, base = st.params, st.params.register_, st.params.base
    from apodistill.serving.register import MissingEvaluation, data_fingerprint, log_and_register, student_evaluation

    # data: never registered without an evaluation; fail before MLflow is touched
    metrics_path = Path(args.metrics)
    if not metrics_path.is_file():
        print(f"error: {metrics_path} not found; run the evaluate stage first (never registered without evaluation)", file=sys.stderr)
        return 2
    metrics = json.loads(metrics_path.read_text())
    try:
        student_evaluation(metrics, args.system)
    except MissingEvaluation as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from apodistill.provenance import volatile
    from apodistill.serving.input_check import profile_from_benchmark
    from apodistill.training.data import task_prompt

    data_hash, data = data_fingerprint(args.benchmark) if args.benchmark else ("unknown", {})
    # statistics of the training images: predict / serve refuse images far outside them (422)
    input_profile = profile_from_benchmark(args.benchmark) if args.benchmark else None
    if input_profile is None:
        print("warning: no input profile (no --benchmark, or under 20 train images): predict / serve will check "
              "only image size and transparency", file=sys.stderr)
    prompts = {t: task_prompt(args.templates, t, base.findings) for t in ("single", "pair")}
    v = volatile("register")
    tags = {"git_revision": v["git_revision"], "dvc_experiment": v["dvc_experiment"] or "workspace", "data_hash": data_hash, "source": args.model}

    # work, save, log: the registration is itself the stage's MLflow run
    with st.tracking():
        result = log_and_register(args.model, prompts, base.findings, metrics, cfg.model_name, cfg.alias, tags,
                                  params.dump(), system=args.system, data=data, max_new_tokens=params.evaluate.max_new_tokens,
                                  input_profile=input_profile)  # fmt: skip
        card = result.pop("model_card")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**result, "provenance": st.record(system=args.system, data_hash=data_hash)}, indent=2, default=str) + "\n")
        if args.card:
            Path(args.card).parent.mkdir(parents=True, exist_ok=True)
            Path(args.card).write_text(card)
        st.finish()
    print(f"registered {result['model_uri']} (version {result['version']}, {result['evaluation']}); promote with `apodistill promote`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
