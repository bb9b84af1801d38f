"""Stage ``validate``: quality-gate the teacher trajectories, set teacher weights, measure drift.

    python pipeline/validate.py --params params.yaml --benchmark data/benchmark \
        --trajectories data/trajectories --suites validation --out data/validated \
        --metrics reports/validate.json --docs reports/validation --drift reports/drift

Writes <out>/trajectories.parquet (rows that passed, with answer_<finding> columns),
<out>/quarantine.parquet (failed rows, with failed_expectations), <out>/weights.json,
<out>/drift.json, <out>/provenance.json; GX Data Docs into --docs; per-teacher drift CSV
and PNG into --drift; flat metrics into --metrics. Exits 1, after writing all of that,
when a teacher loses more than validate.max_quarantine_fraction of its rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--params", required=True, help="params.yaml (reads base.findings, teachers.weights, validate)")
    p.add_argument("--benchmark", required=True, help="benchmark folder with studies.parquet (fetch stage)")
    p.add_argument("--trajectories", required=True, help="folder with trajectories.parquet (teachers stage)")
    p.add_argument("--suites", required=True, help="folder with expectations/<suite>.yaml and the GX file context gx/")
    p.add_argument("--out", required=True, help="output folder for the validated and quarantined tables")
    p.add_argument("--metrics", required=True, help="flat metrics JSON")
    p.add_argument("--docs", required=True, help="folder for the GX Data Docs site")
    p.add_argument("--drift", required=True, help="folder for drift plots and per-teacher CSVs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from apodistill.stage import load_or_exit

    params = load_or_exit(args.params)  # exits 2 naming the bad key, before any output

    import pandas as pd

    from apodistill.provenance import provenance, seed_everything, write_provenance
    from apodistill.stage import write_metrics
    from apodistill.tracking import stage_run
    from apodistill.validation import validate_trajectories
    from apodistill.validation.drift import make_detector
    from apodistill.validation.plots import write_drift_report

    # setup: the resolved config first; a bad detector keyword fails before any output
    cfg = params.validate_
    config = {
        "base": {"findings": params.base.findings},
        "teachers": {"weights": params.teachers.weights},
        "validate": cfg.model_dump(),
    }
    try:
        make_detector(cfg.detector, cfg.detector_params)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seeds = seed_everything(params.base.seed)

    # data
    table = pd.read_parquet(Path(args.trajectories) / "trajectories.parquet")
    studies = pd.read_parquet(Path(args.benchmark) / "studies.parquet", columns=["study_id", "split"])
    print(f"validate: {len(table)} trajectories from {table['teacher'].nunique()} teachers", file=sys.stderr)

    # work (GX writes the Data Docs into --docs itself)
    outcome = validate_trajectories(table, studies, params.base.findings, cfg, params.teachers.weights, args.suites, args.docs)
    gate, drift = outcome.gate, outcome.drift

    # save: everything, also when a threshold is exceeded, so the failure can be inspected
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gate.passed.to_parquet(out / "trajectories.parquet", index=False)
    gate.quarantine.to_parquet(out / "quarantine.parquet", index=False)
    (out / "weights.json").write_text(json.dumps(outcome.weights, indent=2, sort_keys=True) + "\n")
    flags = {"detector": drift.detector, "window": cfg.drift_window, "flags": drift.flags.to_dict(orient="records")}
    (out / "drift.json").write_text(json.dumps(flags, indent=2) + "\n")
    write_drift_report(drift, args.drift)
    write_metrics(args.metrics, outcome.metrics)
    write_provenance(out, provenance("validate", config, seeds, violations=outcome.violations, suite=cfg.suite))

    with stage_run("validate", params.base.mlflow_experiment, config) as run:
        import mlflow

        mlflow.log_metrics({k: v for k, v in outcome.metrics.items() if v == v})  # NaN is not a metric
        mlflow.log_artifact(str(out / "weights.json"))
        mlflow.log_artifact(str(out / "provenance.json"))
        mlflow.log_artifacts(args.drift, artifact_path="drift")
        mlflow.set_tag("quarantine_violations", str(len(outcome.violations)))

    per_teacher = gate.per_teacher
    for teacher, r in per_teacher.iterrows():
        print(
            f"  {teacher:<12} {int(r.rows):>6} rows  {int(r.quarantined):>5} quarantined ({r.fraction:.1%})  "
            f"w={outcome.weights['weights'].get(teacher, float('nan')):.3f}  drift flags={int(outcome.metrics.get(f'drift.{teacher}.flags', 0))}",
            file=sys.stderr,
        )
    if outcome.violations:
        print("error: quarantine threshold exceeded:\n  " + "\n  ".join(outcome.violations), file=sys.stderr)
        return 1
    print(f"validate: {len(gate.passed)} passed, {len(gate.quarantine)} quarantined; run {run.info.run_id}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
