"""Stage `teachers`: every roster teacher answers every study (and prior/current pair).

    python pipeline/teachers.py --params params.yaml --benchmark data/benchmark \
        --templates templates/teachers --cache cache/teachers.sqlite \
        --out data/trajectories --stats reports/teachers.json

Answers already in the cache are not asked again, so a killed run resumes where it stopped
and a rerun with unchanged inputs costs nothing. A credentialed source (mimic_cxr, ms_cxr_t)
is refused before any request when a teacher's endpoint is not `phi_approved` (exit 3).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", required=True, help="params.yaml (reads base, fetch.source, teachers)")
    ap.add_argument("--benchmark", required=True, help="fetch stage output folder (studies.parquet, pairs.parquet)")
    ap.add_argument("--templates", required=True, help="folder of prompt templates <task>_<mode>.txt")
    ap.add_argument("--cache", required=True, help="SQLite answer cache (kept between runs)")
    ap.add_argument("--out", required=True, help="output folder: trajectories.parquet + provenance.json")
    ap.add_argument("--stats", required=True, help="per-teacher stats JSON (flat keys)")
    ap.add_argument("--no-progress", action="store_true", help="hide the per-teacher progress bars")
    ap.add_argument("--no-mlflow", action="store_true", help="skip MLflow logging (tests, dry runs)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from apodistill.stage import load_or_exit

    params = load_or_exit(args.params)  # setup: exits 2 naming the bad key, nothing written

    from apodistill.provenance import provenance, seed_everything, write_provenance
    from apodistill.teachers.backends import TeacherSetupError
    from apodistill.teachers.guard import PhiGuardError
    from apodistill.teachers.runner import run_teachers
    from apodistill.teachers.stats import dumps

    seeds = seed_everything(params.base.seed)
    config = {"base": params.base.model_dump(mode="json"), "fetch.source": params.fetch.source,
              "teachers": params.teachers.model_dump(mode="json")}
    t0 = time.time()
    if params.fetch.source == "cxr_max":
        return import_released(args, config, seeds)
    try:
        result = run_teachers(params.teachers, params.base, params.fetch.source, args.benchmark,
                              args.templates, args.cache, progress=not args.no_progress)
    except PhiGuardError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except TeacherSetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    wall = time.time() - t0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_parquet(out / "trajectories.parquet", index=False)
    write_provenance(out, provenance("teachers", config, seeds, rows=len(result.table),
                                     requested=result.requested, skipped_quarantined=result.skipped,
                                     wall_s=round(wall, 2)))
    stats_path = Path(args.stats)
    stats_path.parent.mkdir(parents=True, exist_ok=True)
    stats_path.write_text(dumps(result.stats))

    if not args.no_mlflow:
        from apodistill.tracking import stage_run

        with stage_run("teachers", params.base.mlflow_experiment, config):
            import mlflow

            mlflow.log_metrics({k: float(v) for k, v in result.stats.items()})
            mlflow.log_metric("wall_s", wall)
            mlflow.log_artifact(str(stats_path))
            mlflow.log_artifact(str(out / "provenance.json"))
    n = result.table["status"].value_counts().to_dict()
    print(f"teachers: {len(result.table)} rows ({n}), {sum(result.requested.values())} asked now, {wall:.1f} s")
    return 0


def import_released(args: argparse.Namespace, config: dict, seeds: dict) -> int:
    """`fetch.source: cxr_max`: the released trajectories are the teachers' answers; no teacher is asked."""
    import json

    import pandas as pd

    from apodistill.provenance import provenance, write_provenance

    src = Path(args.benchmark) / "trajectories.parquet"
    if not src.is_file():
        print(f"error: {src} missing: the cxr_max fetch writes the released trajectories there", file=sys.stderr)
        return 2
    table = pd.read_parquet(src)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "trajectories.parquet", index=False)
    write_provenance(out, provenance("teachers", config, seeds, rows=len(table), imported_from=str(src)))
    counts = table.groupby(["teacher", "status"]).size()
    stats = {f"{t}.{st}": int(n) for (t, st), n in counts.items()}
    Path(args.stats).parent.mkdir(parents=True, exist_ok=True)
    Path(args.stats).write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    print(f"teachers: imported {len(table)} released CXR-MAX trajectories, no teacher asked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
