"""Stage `register`: log the APO student to MLflow as a pyfunc model and register it as
`register.model_name` with alias `register.alias` (promotion to champion is separate).

    python pipeline/register.py --params params.yaml --model models/apo \
        --metrics reports/metrics.json --templates templates/student --out reports/register.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from apodistill.stage import load_or_exit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("--params", "--model", "--metrics", "--templates", "--out"):
        ap.add_argument(name, required=True)
    args = ap.parse_args()

    params = load_or_exit(args.params)
    cfg, base = params.register_, params.base
    from apodistill.provenance import experiment_name, git_revision
    from apodistill.serving.register import log_and_register
    from apodistill.tracking import stage_run
    from apodistill.training.data import task_prompt

    metrics = json.loads(Path(args.metrics).read_text())
    prompts = {t: task_prompt(args.templates, t, base.findings) for t in ("single", "pair")}
    tags = {"git_revision": git_revision(), "dvc_experiment": experiment_name() or "workspace", "source": args.model}
    with stage_run("register", base.mlflow_experiment, {"register": cfg.model_dump(mode="json")}):
        result = log_and_register(args.model, prompts, base.findings, metrics, cfg.model_name, cfg.alias, tags, params.dump())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"registered {result['model_uri']} (version {result['version']})")


if __name__ == "__main__":
    main()
