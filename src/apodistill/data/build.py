"""Build the benchmark folder: run the chosen source, check images, write the tables."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from apodistill.data.images import check_images
from apodistill.data.sources import (
    QUARANTINE_COLUMNS,
    SOURCES,
    DataError,
    SourceTables,
    finish_pairs,
    finish_tables,
)
from apodistill.findings import CHEXPERT_14, MS_CXR_T_5


def _drop_bad(tables: SourceTables, bad: dict[str, str]) -> SourceTables:
    studies, pairs = tables.studies, tables.pairs
    bad_rows = studies[studies["image_path"].isin(bad)]
    found = pd.DataFrame(
        {"image_path": bad_rows["image_path"], "study_id": bad_rows["study_id"], "reason": bad_rows["image_path"].map(bad)}
    )
    # pair-only images (ms_cxr_t) that are not in the studies table
    in_studies = set(bad_rows["image_path"])
    pair_bad = [
        (p, sid)
        for col, sid_col in (("prior_image_path", "prior_study_id"), ("current_image_path", "current_study_id"))
        for p, sid in zip(pairs[col], pairs[sid_col])
        if p in bad and p not in in_studies
    ]
    if pair_bad:
        extra = pd.DataFrame(pair_bad, columns=["image_path", "study_id"]).drop_duplicates()
        extra["reason"] = extra["image_path"].map(bad)
        found = pd.concat([found, extra], ignore_index=True)
    quarantine = pd.concat([tables.quarantine, found], ignore_index=True)[QUARANTINE_COLUMNS]
    studies = studies[~studies["image_path"].isin(bad)].sort_values("stream_index")
    studies["study_index"] = studies.groupby("patient_id").cumcount()  # order among the kept studies
    pairs = pairs[~(pairs["prior_image_path"].isin(bad) | pairs["current_image_path"].isin(bad))]
    studies = finish_tables(studies)
    extra = {}
    for name, df in tables.extra.items():  # per-study tables (cxr_max trajectories) follow the kept studies
        if {"study_id", "stream_index"} <= set(df.columns):
            stream = dict(zip(studies["study_id"], studies["stream_index"]))
            df = df[df["study_id"].isin(stream)].copy()
            df["stream_index"] = df["study_id"].map(stream).astype("int64")
        extra[name] = df.reset_index(drop=True)
    return SourceTables(
        studies=studies,
        pairs=finish_pairs(pairs),
        quarantine=quarantine.astype(str).reset_index(drop=True),
        extra=extra,
    )


def summarize(tables: SourceTables, n_images: int, n_bad: int) -> dict[str, Any]:
    """Flat numbers for reports/fetch.json and the data card."""
    s, p = tables.studies, tables.pairs
    out: dict[str, Any] = {
        "patients": int(s["patient_id"].nunique()),
        "studies": int(len(s)),
        "pairs": int(len(p)),
        "images_checked": int(n_images),
        "bad_images": int(n_bad),
        "bad_image_fraction": float(n_bad / n_images) if n_images else 0.0,
        "quarantined_rows": int(len(tables.quarantine)),
    }
    for split in ("train", "val", "test"):
        out[f"patients_{split}"] = int(s.loc[s["split"] == split, "patient_id"].nunique())
        out[f"studies_{split}"] = int((s["split"] == split).sum())
        out[f"pairs_{split}"] = int((p["split"] == split).sum())
    for f in CHEXPERT_14:
        col = s[f"label_{f}"]
        out[f"positive_rate_{f}"] = float((col == 1).mean()) if len(s) else 0.0
        out[f"uncertain_{f}"] = int((col == -1).sum())
    for f in MS_CXR_T_5:
        for cls in ("improving", "stable", "worsening"):
            out[f"pairs_{f}_{cls}"] = int((p[f"progression_{f}"] == cls).sum())
    return out


def build(params, out_dir: str | Path) -> dict[str, Any]:
    """Run ``params.fetch.source`` into ``out_dir``; return the summary numbers.

    Fails with :class:`DataError` when more than ``fetch.max_bad_fraction`` of the images
    cannot be used (the quarantine table is written first, so the user can look at it).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = SOURCES.get(params.fetch.source)
    t0 = time.perf_counter()
    tables = source(params, out_dir)
    t_source = time.perf_counter() - t0

    paths = sorted(set(tables.studies["image_path"]) | set(tables.pairs["prior_image_path"]) | set(tables.pairs["current_image_path"]))
    t1 = time.perf_counter()
    bad = check_images(out_dir, paths)
    t_check = time.perf_counter() - t1
    tables = _drop_bad(tables, bad)

    tables.quarantine.to_parquet(out_dir / "image_quarantine.parquet", index=False)
    bad_fraction = len(bad) / len(paths) if paths else 0.0
    if bad_fraction > params.fetch.max_bad_fraction:
        raise DataError(
            f"{len(bad)} of {len(paths)} images ({bad_fraction:.2%}) are unusable, more than "
            f"fetch.max_bad_fraction={params.fetch.max_bad_fraction:.2%}; reasons are in {out_dir / 'image_quarantine.parquet'}"
        )
    if tables.studies.empty:
        raise DataError(f"source {params.fetch.source!r} produced no usable study; see {out_dir / 'image_quarantine.parquet'}")
    tables.studies.to_parquet(out_dir / "studies.parquet", index=False)
    tables.pairs.to_parquet(out_dir / "pairs.parquet", index=False)
    for name, df in tables.extra.items():
        df.to_parquet(out_dir / f"{name}.parquet", index=False)

    summary = summarize(tables, len(paths), len(bad))
    summary["source_seconds"] = round(t_source, 3)
    summary["image_check_seconds"] = round(t_check, 3)
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in summary.items()}
