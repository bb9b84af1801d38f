"""Stage `fetch`: build the benchmark folder from the source named by ``fetch.source``.

    python pipeline/fetch.py --params params.yaml --out data/benchmark \\
        --card reports/data.md --contact-sheet reports/contact_sheet.png --metrics reports/fetch.json

Writes studies / pairs / image_quarantine Parquet tables, source.json (source, licence, whether
the images are credentialed: what the teachers stage's PHI guard reads) and provenance.json into
--out, all or nothing; the data card (with what the readers dropped), the contact sheet
(synthetic: each finding by severity; real sources: the first images) and flat metrics; logs to MLflow.
Exits 1 when the data cannot be built (nothing is written then).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from apodistill.stage import Stage, stage_parser

READS = ("base.seed", "base.findings", "fetch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__)
    ap.add_argument("--out", required=True, help="benchmark folder to write")
    ap.add_argument("--card", required=True, help="Markdown data card to write")
    ap.add_argument("--contact-sheet", required=True, help="PNG contact sheet of the findings")
    ap.add_argument("--metrics", required=True, help="flat JSON metrics to write")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    st = Stage.begin("fetch", args, READS)
    params = st.params
    import pandas as pd

    from apodistill.data import DataError, build, resolve_image
    from apodistill.data.card import contact_sheet, data_card, image_sheet

    # work
    out = Path(args.out)
    t0 = time.perf_counter()
    try:
        summary = build(params, out)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    summary["build_seconds"] = round(time.perf_counter() - t0, 3)
    timings = {k: v for k, v in summary.items() if k.endswith("_seconds")}  # volatile: not in provenance.json
    st.note(**timings)

    # save
    sheet, card = Path(args.contact_sheet), Path(args.card)
    studies = pd.read_parquet(out / "studies.parquet")
    if params.fetch.source == "synthetic":
        contact_sheet(sheet, params.fetch.image_size, params.base.seed)
    else:
        image_sheet(sheet, [resolve_image(out, p) for p in studies["image_path"].head(16)])
    card.parent.mkdir(parents=True, exist_ok=True)
    tables = [pd.read_parquet(out / f"{name}.parquet") for name in ("pairs", "image_quarantine")]
    card.write_text(data_card(studies, *tables, summary, params.fetch.source, os.path.relpath(sheet, card.parent)))
    prov = st.save(out, summary={k: v for k, v in summary.items() if k not in timings})
    print(f"fetch: {summary['studies']} studies, {summary['pairs']} pairs, {summary['bad_images']} bad images "
          f"in {summary['build_seconds']:.1f} s -> {out}")  # fmt: skip

    # log
    st.finish(summary, args.metrics, artifacts=[card, sheet, prov])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
