"""Stage `summary`: the headline numbers of a run for `dvc exp show`, and its timings apart.

    python pipeline/summary.py --params params.yaml --report fetch=reports/fetch.json ... \\
        --report evaluate=reports/metrics.json --headline reports/headline.json --timing reports/timing.json

Reads every stage's report (all its numbers) and writes the ~20 headline keys, chosen by
pattern in `apodistill.headline`, to the run's only DVC metrics file (in that order, which
`dvc exp show` keeps), and every `*_seconds` to --timing. The headline also goes to MLflow,
so each experiment's run list ends with its summary. Reads no params; about a second.
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
    ap.add_argument("--timing", required=True, help="timings JSON to write (<stage>.<key>_seconds)")
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
        head, timing = summarize(named)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write(args.headline, head)
    write(args.timing, timing, sort=True)
    st.finish(head)
    print(f"summary: {len(head)} headline metrics -> {args.headline}, {len(timing)} timings -> {args.timing}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
