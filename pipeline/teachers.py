"""Stage `teachers`: every roster teacher answers every study (and prior/current pair).

    python pipeline/teachers.py --params params.yaml --benchmark data/benchmark \\
        --templates templates/teachers --cache cache/teachers.sqlite \\
        --out data/trajectories --stats reports/teachers.json

Answers already in the cache are not asked again, so a killed run resumes where it stopped
and a rerun with unchanged inputs costs nothing. Credentialed images (judged from the benchmark's
own source.json and image paths, whatever fetch.source says now) are refused before any request
when a teacher's endpoint is not `phi_approved` (exit 3). When teachers.budget_usd is spent, no
new request is sent; the outputs record the stop and the stage exits 4 (a rerun with a higher
budget asks only for what is missing).
With ``fetch.source: cxr_max`` the released trajectories are imported and no teacher is asked.
With ``control.enabled`` the roster also explains each training study's known labels
(label-conditioned prompts) into control.parquet: the control arm's data, never the main students'.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from apodistill.stage import Stage, stage_parser

READS = ("base.seed", "base.findings", "fetch.source", "teachers", "control.enabled")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__)
    ap.add_argument("--benchmark", required=True, help="fetch stage output folder (studies.parquet, pairs.parquet)")
    ap.add_argument("--templates", required=True, help="folder of prompt templates <task>_<mode>.txt")
    ap.add_argument("--cache", required=True, help="SQLite answer cache (kept between runs)")
    ap.add_argument("--out", required=True, help="output folder: trajectories.parquet + provenance.json")
    ap.add_argument("--stats", required=True, help="per-teacher stats JSON (flat keys)")
    ap.add_argument("--no-progress", action="store_true", help="hide the per-teacher progress bars")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    st = Stage.begin("teachers", args, READS)
    params = st.params
    if params.fetch.source == "cxr_max":
        return import_released(args, st)

    from apodistill.teachers.backends import TeacherSetupError
    from apodistill.teachers.guard import PhiGuardError
    from apodistill.teachers.profiles import named_biases
    from apodistill.teachers.runner import run_teachers

    # work
    try:
        result = run_teachers(params.teachers, params.base, params.fetch.source, args.benchmark,
                              args.templates, args.cache, progress=not args.no_progress)  # fmt: skip
    except PhiGuardError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except TeacherSetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    control = None
    if params.control.enabled and not result.stopped:
        # The same roster, label-conditioned on train: the blind val/test requests are the same
        # cache keys as above, so only the conditioned training answers are asked.
        cond = params.teachers.model_copy(update={"conditioned_splits": ["train"]})
        control = run_teachers(cond, params.base, params.fetch.source, args.benchmark, args.templates, args.cache,
                               progress=not args.no_progress)  # fmt: skip
        result.stats.update({f"control.{k}": v for k, v in control.stats.items() if k in ("rows", "budget.spent_usd")})
    wall = st.seconds()

    # save
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_parquet(out / "trajectories.parquet", index=False)
    if control is not None:
        control.table[control.table["split"] == "train"].to_parquet(out / "control.parquet", index=False)
    (out / "biases.json").write_text(json.dumps(named_biases(params.teachers), indent=1, sort_keys=True) + "\n")
    prov = st.save(out, rows=len(result.table), skipped_quarantined=result.skipped, not_asked=result.not_asked,
                   budget=result.stable_budget())
    # asked in this run, and what earlier runs had spent: they depend on the cache, not on the inputs
    st.note(requested=result.requested, budget_spent_before_usd=result.budget.get("spent_before_usd"))

    # log
    st.finish({**result.stats, "wall_s": wall}, artifacts=[write_stats(args.stats, result.stats), prov])
    n = result.table["status"].value_counts().to_dict()
    print(f"teachers: {len(result.table)} rows ({n}), {sum(result.requested.values())} asked now, "
          f"${result.stats['cost_usd']:.4f} stored answers' cost, {wall:.1f} s")
    if result.stopped or (control is not None and control.stopped):  # the outputs record the stop; a non-zero exit keeps DVC from taking them as complete
        print(f"error: {(result if result.stopped else control).stop_message()}", file=sys.stderr)
        return 4
    return 0


def write_stats(path: str, stats: dict) -> Path:
    from apodistill.teachers.stats import dumps

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(stats))
    return out


def import_released(args: argparse.Namespace, st: Stage) -> int:
    """`fetch.source: cxr_max`: the released trajectories are the teachers' answers; no teacher is asked."""
    import pandas as pd

    src = Path(args.benchmark) / "trajectories.parquet"
    if not src.is_file():
        print(f"error: {src} missing: the cxr_max fetch writes the released trajectories there", file=sys.stderr)
        return 2
    table = pd.read_parquet(src)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "trajectories.parquet", index=False)
    prov = st.save(out, rows=len(table), imported_from=str(src))
    counts = table.groupby(["teacher", "status"]).size()
    stats = {f"{t}.{s}": int(n) for (t, s), n in counts.items()}
    st.finish(stats, artifacts=[write_stats(args.stats, stats), prov])
    print(f"teachers: imported {len(table)} released CXR-MAX trajectories, no teacher asked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
