"""Stage `fetch`: build the benchmark folder from the source named by ``fetch.source``.

    python pipeline/fetch.py --params params.yaml --out data/benchmark \
        --card reports/data.md --contact-sheet reports/contact_sheet.png --metrics reports/fetch.json

Writes studies / pairs / image_quarantine Parquet tables and provenance.json into --out,
the data card, the contact sheet (synthetic: each finding by severity; real sources: the first
images) and flat metrics; logs to MLflow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", required=True, help="params.yaml")
    ap.add_argument("--out", required=True, help="benchmark folder to write")
    ap.add_argument("--card", required=True, help="Markdown data card to write")
    ap.add_argument("--contact-sheet", required=True, help="PNG contact sheet of the synthetic findings")
    ap.add_argument("--metrics", required=True, help="flat JSON metrics to write")
    ap.add_argument("--no-mlflow", action="store_true", help="skip MLflow logging (tests)")
    args = ap.parse_args(argv)

    # setup
    from apodistill.stage import load_or_exit

    params = load_or_exit(args.params)
    from apodistill.provenance import provenance, seed_everything, write_provenance

    seeds = seed_everything(params.base.seed)
    config = {"base": params.base.model_dump(mode="json"), "fetch": params.fetch.model_dump(mode="json")}

    # work
    import pandas as pd

    from apodistill.data import DataError, build, resolve_image
    from apodistill.data.card import contact_sheet, data_card, image_sheet

    out = Path(args.out)
    t0 = time.perf_counter()
    try:
        summary = build(params, out)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    summary["build_seconds"] = round(time.perf_counter() - t0, 3)

    # save
    sheet = Path(args.contact_sheet)
    studies = pd.read_parquet(out / "studies.parquet")
    if params.fetch.source == "synthetic":
        contact_sheet(sheet, params.fetch.image_size, params.base.seed)
    else:
        image_sheet(sheet, [resolve_image(out, p) for p in studies["image_path"].head(16)])
    card = Path(args.card)
    card.parent.mkdir(parents=True, exist_ok=True)
    rel_sheet = os.path.relpath(sheet, card.parent)
    card.write_text(
        data_card(
            studies,
            pd.read_parquet(out / "pairs.parquet"),
            pd.read_parquet(out / "image_quarantine.parquet"),
            summary,
            params.fetch.source,
            rel_sheet,
        )
    )
    metrics = Path(args.metrics)
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    write_provenance(out, provenance("fetch", config, seeds, summary=summary))
    print(
        f"fetch: {summary['studies']} studies, {summary['pairs']} pairs, {summary['bad_images']} bad images "
        f"in {summary['build_seconds']:.1f} s -> {out}"
    )

    if not args.no_mlflow:
        import mlflow

        from apodistill.tracking import stage_run

        with stage_run("fetch", params.base.mlflow_experiment, config):
            mlflow.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, (int, float))})
            mlflow.log_artifact(str(card))
            mlflow.log_artifact(str(sheet))
            mlflow.log_artifact(str(out / "provenance.json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
