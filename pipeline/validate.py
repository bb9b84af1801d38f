"""Stage `validate`: quality-gate the teacher trajectories, set teacher weights, measure drift.

    python pipeline/validate.py --params params.yaml --benchmark data/benchmark \\
        --trajectories data/trajectories --suites validation --out data/validated \\
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

from apodistill.stage import Stage, stage_parser

READS = ("base.seed", "base.findings", "teachers.weights", "validate", "control.enabled")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__)
    ap.add_argument("--benchmark", required=True, help="benchmark folder with studies.parquet (fetch stage)")
    ap.add_argument("--trajectories", required=True, help="folder with trajectories.parquet (teachers stage)")
    ap.add_argument("--suites", required=True, help="folder with expectations/<suite>.yaml and the GX file context gx/")
    ap.add_argument("--out", required=True, help="output folder for the validated and quarantined tables")
    ap.add_argument("--metrics", required=True, help="flat metrics JSON")
    ap.add_argument("--docs", required=True, help="folder for the GX Data Docs site")
    ap.add_argument("--assets", default=None, help="vendored CSS/JS the Data Docs use offline (`make setup`: python -m apodistill.offline fetch)")
    ap.add_argument("--drift", required=True, help="folder for drift plots and per-teacher CSVs")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    st = Stage.begin("validate", args, READS)
    params, cfg = st.params, st.params.validate_
    import pandas as pd

    from apodistill.validation import validate_trajectories
    from apodistill.validation.drift import make_detector
    from apodistill.validation.plots import write_drift_report

    try:  # a bad detector keyword fails before any output
        make_detector(cfg.detector, cfg.detector_params)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    # data
    table = pd.read_parquet(Path(args.trajectories) / "trajectories.parquet")
    studies = pd.read_parquet(Path(args.benchmark) / "studies.parquet", columns=["study_id", "split"])
    print(f"validate: {len(table)} trajectories from {table['teacher'].nunique()} teachers", file=sys.stderr)

    # work (GX writes the Data Docs into --docs itself)
    outcome = validate_trajectories(table, studies, params.base.findings, cfg, params.teachers.weights, args.suites, args.docs)
    gate, drift = outcome.gate, outcome.drift
    from apodistill.offline import localize_if_vendored

    print(localize_if_vendored(args.docs, args.assets), file=sys.stderr)

    # save: everything, also when a threshold is exceeded, so the failure can be inspected
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gate.passed.to_parquet(out / "trajectories.parquet", index=False)
    gate.quarantine.to_parquet(out / "quarantine.parquet", index=False)
    control = Path(args.trajectories) / "control.parquet"
    if params.control.enabled and control.is_file():  # the control arm's data passes the same gate (no docs, no drift)
        from apodistill.validation.gate import run_gate
        from apodistill.validation.run import benchmark_splits
        from apodistill.validation.suite import load_suite_spec, suite_path

        spec = load_suite_spec(suite_path(args.suites, cfg.suite))
        cgate = run_gate(pd.read_parquet(control), list(params.base.findings), cfg, spec, args.suites, None, benchmark_splits(studies))
        cgate.passed.to_parquet(out / "control.parquet", index=False)
        outcome.metrics["control.validated.rows"] = float(len(cgate.passed))
        outcome.metrics["control.quarantine.rows"] = float(len(cgate.quarantine))
    (out / "weights.json").write_text(json.dumps(outcome.weights, indent=2, sort_keys=True) + "\n")
    flags = {"detector": drift.detector, "window": cfg.drift_window, "flags": drift.flags.to_dict(orient="records")}
    (out / "drift.json").write_text(json.dumps(flags, indent=2) + "\n")
    write_drift_report(drift, args.drift)
    prov = st.save(out, violations=outcome.violations, suite=cfg.suite)

    # log
    with st.tracking():
        st.finish(outcome.metrics, args.metrics, artifacts=[out / "weights.json", prov])
        if st.mlflow:
            import mlflow

            mlflow.log_artifacts(args.drift, artifact_path="drift")
            mlflow.set_tag("quarantine_violations", str(len(outcome.violations)))

    for teacher, r in gate.per_teacher.iterrows():
        print(
            f"  {teacher:<12} {int(r.rows):>6} rows  {int(r.quarantined):>5} quarantined ({r.fraction:.1%})  "
            f"w={outcome.weights['weights'].get(teacher, float('nan')):.3f}  drift flags={int(outcome.metrics.get(f'drift.{teacher}.flags', 0))}",
            file=sys.stderr,
        )
    if outcome.violations:
        print("error: quarantine threshold exceeded:\n  " + "\n  ".join(outcome.violations), file=sys.stderr)
        return 1
    print(f"validate: {len(gate.passed)} passed, {len(gate.quarantine)} quarantined", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
