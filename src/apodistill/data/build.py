"""Build the benchmark folder: run the chosen source, check images, count what was dropped,
write the tables and the source record, all or nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
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
    source_record,
    write_source_record,
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
        dropped=tables.dropped,
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


def drop_counts(tables: SourceTables, bad: dict[str, str]) -> dict[str, Any]:
    """What was lost on the way, over the final tables: missing reports (of the kept studies),
    missing and unusable images, unreadable and unjoined annotation rows."""
    d, kept = tables.dropped, set(tables.studies["study_id"].astype(str))
    out: dict[str, Any] = {
        "rows_read": d.rows_read,
        "unreadable_rows": d.unreadable_rows,
        "unjoined_rows": d.unjoined_rows,
        "missing_images": sum(1 for r in bad.values() if r == "missing file"),
        "reports_expected": len(kept) if d.has_reports else 0,
        "missing_reports": len(kept & d.missing_report_ids) if d.has_reports else 0,
        "reports_without_sections": len(kept & d.no_section_ids) if d.has_reports else 0,
    }
    out["missing_report_fraction"] = out["missing_reports"] / out["reports_expected"] if out["reports_expected"] else 0.0
    lost_rows = out["unreadable_rows"] + out["unjoined_rows"]
    out["dropped_row_fraction"] = lost_rows / out["rows_read"] if out["rows_read"] else 0.0
    return out


def check_drops(drops: dict[str, Any], tables: SourceTables, cfg) -> None:
    """Fail past ``fetch.max_dropped_fraction`` with the numbers; an unset reports_root that
    found no report at all fails whatever the fraction, naming where it looked."""
    d, limit = tables.dropped, cfg.max_dropped_fraction
    n, miss = drops["reports_expected"], drops["missing_reports"]
    places = ", ".join(d.report_places) or "(no folder: fetch.root is not set)"
    if drops["dropped_row_fraction"] > limit:
        raise DataError(
            f"{drops['unreadable_rows']} unreadable and {drops['unjoined_rows']} unjoined of {drops['rows_read']} annotation "
            f"rows ({drops['dropped_row_fraction']:.2%}), more than fetch.max_dropped_fraction={limit:.2%}; "
            f"first reasons: {_reasons(tables.quarantine, ('unreadable', 'unjoined', 'cxr_max record'))}"
        )
    if n and miss == n and not d.reports_root_set and limit < 1:
        raise DataError(
            f"no report found for any of the {n} studies; looked for files/pXX/pXXXXXXXX/sXXXXXXXX.txt in: {places}. "
            "PhysioNet ships the reports as a separate release (MIMIC-CXR mimic-cxr-reports.zip): set fetch.reports_root "
            "to the unzipped folder, or fetch.max_dropped_fraction: 1.0 to build without reports"
        )
    if drops["missing_report_fraction"] > limit:
        raise DataError(
            f"{miss} of {n} studies ({drops['missing_report_fraction']:.2%}) have no report file, more than "
            f"fetch.max_dropped_fraction={limit:.2%}; looked in: {places}"
        )


def _reasons(quarantine: pd.DataFrame, prefixes: tuple[str, ...] | None = None, k: int = 3) -> str:
    q = quarantine if prefixes is None else quarantine[quarantine["reason"].astype(str).str.startswith(prefixes)]
    counts = q["reason"].astype(str).value_counts().head(k)
    return "; ".join(f"{n} x {r}" for r, n in counts.items()) or "-"


def build(params, out_dir: str | Path) -> dict[str, Any]:
    """Run ``params.fetch.source`` into ``out_dir``; return the summary numbers.

    All or nothing: the tables are written into a temporary sibling folder that replaces
    ``out_dir`` only when every check passed, so a failing fetch leaves no output (and an
    earlier complete one untouched). Fails with :class:`DataError`, with the numbers, when
    more than ``fetch.max_bad_fraction`` of the images cannot be used, or more than
    ``fetch.max_dropped_fraction`` of the reports or annotation rows are missing.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        summary = _build_into(params, tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _build_into(params, out_dir: Path) -> dict[str, Any]:
    source = SOURCES.get(params.fetch.source)
    t0 = time.perf_counter()
    tables = source(params, out_dir)
    t_source = time.perf_counter() - t0

    paths = sorted(set(tables.studies["image_path"]) | set(tables.pairs["prior_image_path"]) | set(tables.pairs["current_image_path"]))
    t1 = time.perf_counter()
    bad = check_images(out_dir, paths)
    t_check = time.perf_counter() - t1
    tables = _drop_bad(tables, bad)

    bad_fraction = len(bad) / len(paths) if paths else 0.0
    if bad_fraction > params.fetch.max_bad_fraction:
        raise DataError(
            f"{len(bad)} of {len(paths)} images ({bad_fraction:.2%}) are unusable, more than "
            f"fetch.max_bad_fraction={params.fetch.max_bad_fraction:.2%}; reasons: "
            f"{_reasons(pd.DataFrame({'reason': list(bad.values())}), k=5)}; "
            f"e.g. {', '.join(list(bad)[:3])}"
        )
    drops = drop_counts(tables, bad)
    check_drops(drops, tables, params.fetch)
    if tables.studies.empty:
        raise DataError(f"source {params.fetch.source!r} produced no usable study; reasons: {_reasons(tables.quarantine, k=5)}")
    tables.quarantine.to_parquet(out_dir / "image_quarantine.parquet", index=False)
    tables.studies.to_parquet(out_dir / "studies.parquet", index=False)
    tables.pairs.to_parquet(out_dir / "pairs.parquet", index=False)
    for name, df in tables.extra.items():
        df.to_parquet(out_dir / f"{name}.parquet", index=False)
    write_source_record(out_dir, source_record(params.fetch.source, paths))

    summary = summarize(tables, len(paths), len(bad))
    summary.update({f"dropped.{k}": v for k, v in drops.items()})
    summary["source_seconds"] = round(t_source, 3)
    summary["image_check_seconds"] = round(t_check, 3)
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in summary.items()}
