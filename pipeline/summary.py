"""Stage `summary`: the headline numbers of a run, the only thing `dvc exp show` lists.

    python pipeline/summary.py --params params.yaml --report validate=reports/validate.json \\
        --report self_distill=reports/self_distill.json --report evaluate=reports/metrics.json \\
        --headline reports/headline.json

Reads the stage reports that hold results (no timings: a rerun that computes the same
results leaves them byte-identical, so this stage does not rerun) and writes the ~20
headline keys, chosen by pattern in `apodistill.headline`, to the run's only DVC metrics
file, in that order (which `dvc exp show` keeps). The headline also goes to MLflow, so each
experiment's run list ends with its summary. Reads no params; about a second.
"""

from __future__ import annotations

import argparse
import sys

from apodistill.stage import Stage, stage_parser

READS = ()  # no params: its inputs are the stage reports


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__)
    ap.add_argument("--report", action="append", required=True, metavar="STAGE=FILE",
                    help="a stage's report JSON (flat keys); repeat for every stage")
    ap.add_argument("--headline", required=True, help="headline metrics JSON to write (the DVC metrics file)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    named = dict(r.split("=", 1) for r in args.report if "=" in r)
    if len(named) != len(args.report):
        print(f"error: --report takes STAGE=FILE, got {args.report}", file=sys.stderr)
        return 2
    st = Stage.begin("summary", args, READS)

    from apodistill.headline import summarize, write

    try:
        head = summarize(named)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write(args.headline, head)
    st.finish(head)
    print(f"summary: {len(head)} headline metrics -> {args.headline}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
