"""The data-source registry and the table shapes every source returns.

A source is ``fn(params, out_dir) -> SourceTables``; ``fetch.source`` picks it by name.
Sources return tables in the shared contract (see docs/data.md); :func:`apodistill.data.build`
then checks every image, quarantines bad ones and writes the Parquet files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from apodistill.findings import CHEXPERT_14, MS_CXR_T_5
from apodistill.registry import Registry

STUDY_COLUMNS: list[str] = [
    "patient_id",
    "study_id",
    "split",
    "image_path",
    "view",
    "report",
    "study_index",
    "stream_index",
] + [f"label_{f}" for f in CHEXPERT_14]
PAIR_COLUMNS: list[str] = [
    "pair_id",
    "patient_id",
    "split",
    "prior_study_id",
    "current_study_id",
    "prior_image_path",
    "current_image_path",
    "stream_index",
] + [f"progression_{f}" for f in MS_CXR_T_5]
QUARANTINE_COLUMNS: list[str] = ["image_path", "study_id", "reason"]


class DataError(RuntimeError):
    """The data cannot be built; the message says what is wrong and what to do."""


@dataclass
class DropCounts:
    """What a reader could not use, by kind: counted here, reported in the data card and
    ``reports/fetch.json`` and checked against ``fetch.max_dropped_fraction`` by
    :func:`apodistill.data.build.build`. Never silent."""

    rows_read: int = 0  # annotation rows parsed one by one (MS-CXR-T pairs, MIMIC metadata); 0: none
    unreadable_rows: int = 0  # rows with ids or values that do not parse (quarantined with the reason)
    unjoined_rows: int = 0  # MS-CXR-T rows whose images are not in MIMIC-CXR-JPG's metadata (quarantined)
    has_reports: bool = False  # the source reads free-text reports (checked then)
    missing_report_ids: set[str] = field(default_factory=set)  # studies whose report file was not found
    no_section_ids: set[str] = field(default_factory=set)  # report found, but neither FINDINGS nor IMPRESSION
    report_places: list[str] = field(default_factory=list)  # folders searched for reports, in order
    reports_root_set: bool = False  # fetch.reports_root was given (no fallback search)


@dataclass
class SourceTables:
    studies: pd.DataFrame
    pairs: pd.DataFrame
    # rows a reader dropped before image checks (e.g. a study without an image file)
    quarantine: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=QUARANTINE_COLUMNS))
    # extra tables written next to the benchmark (cxr_max: trajectories)
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)
    dropped: DropCounts = field(default_factory=DropCounts)


@dataclass(frozen=True)
class SourceLicence:
    """Whether a source's images are credentialed health data, and under which licence.

    Written into the benchmark folder as ``source.json`` (see :func:`source_record`): the
    stages that send images off the machine check that record, not params.yaml.
    """

    credentialed: bool
    licence: str


_PHYSIONET = "PhysioNet Credentialed Health Data License 1.5.0 (no sharing with third parties, incl. online LLM services that may retain data)"
LICENCES: dict[str, SourceLicence] = {
    "synthetic": SourceLicence(False, "rendered by apodistill from seeded parameters (no patient data)"),
    "mimic_cxr": SourceLicence(True, "MIMIC-CXR-JPG: " + _PHYSIONET),
    "ms_cxr_t": SourceLicence(True, "MS-CXR-T on MIMIC-CXR-JPG images: " + _PHYSIONET),
    # the released trajectories are CC BY-NC-SA 4.0, but they point at MIMIC-CXR images
    "cxr_max": SourceLicence(True, "CXR-MAX (CC BY-NC-SA 4.0) on MIMIC-CXR images: " + _PHYSIONET),
}
SOURCE_RECORD = "source.json"
CREDENTIALED_SOURCES: tuple[str, ...] = tuple(n for n, lic in LICENCES.items() if lic.credentialed)


def licence_of(source: str) -> SourceLicence:
    """A source's licence; an unlisted source counts as credentialed (the safe default)."""
    return LICENCES.get(source, SourceLicence(True, f"unknown: source {source!r} declares no licence, treated as credentialed"))


def source_record(source: str, image_paths: list[str]) -> dict:
    """The benchmark's own provenance of its images: no timestamps or revisions, so its DVC
    hash changes only when the data does. ``image_roots``: the folder(s) holding the images
    (``.`` = inside the benchmark folder)."""
    lic = licence_of(source)
    absolute = sorted({str(Path(p).parent) for p in image_paths if Path(p).is_absolute()})
    roots = ["."] if any(not Path(p).is_absolute() for p in image_paths) else []
    if absolute:
        roots.append(os.path.commonpath(absolute))
    return {"source": source, "credentialed": lic.credentialed, "licence": lic.licence, "image_roots": roots,
            "images": len(image_paths)}


def write_source_record(folder: str | Path, record: dict) -> Path:
    path = Path(folder) / SOURCE_RECORD
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def read_source_record(folder: str | Path) -> dict | None:
    """The record :func:`write_source_record` wrote, or None when the folder has none."""
    path = Path(folder) / SOURCE_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


SOURCES: Registry[Callable[..., SourceTables]] = Registry("data source")


def require_root(root: str | None, source: str, expected: str) -> Path:
    """The local download folder of a real source, or an error saying what belongs there."""
    if root is None:
        raise DataError(f"fetch.root is not set: source {source!r} reads a local download; set fetch.root to the folder holding {expected}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"fetch.root {str(path)!r} does not exist: source {source!r} expects it to hold {expected}")
    return path


def finish_tables(studies: pd.DataFrame) -> pd.DataFrame:
    """Contract column order and dtypes; ``stream_index`` = row order (callers sort by time first)."""
    studies = studies.reset_index(drop=True).copy()
    studies["stream_index"] = np.arange(len(studies), dtype=np.int64)
    studies["study_index"] = studies["study_index"].astype(np.int64)
    for f in CHEXPERT_14:
        col = f"label_{f}"
        studies[col] = studies[col].astype(np.float64) if col in studies else np.nan
    for col in ("patient_id", "study_id", "split", "image_path", "view", "report"):
        studies[col] = studies[col].fillna("").astype(str)
    extra = [c for c in studies.columns if c not in STUDY_COLUMNS]
    return studies[STUDY_COLUMNS + extra]


def progression(delta: float, threshold: float) -> str:
    return "worsening" if delta >= threshold else ("improving" if delta <= -threshold else "stable")


def pairs_from_studies(studies: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Consecutive studies of each patient -> pairs labelled from ``severity_*`` changes.

    A finding absent from both studies is left unlabelled (None), as in MS-CXR-T where a
    finding is only graded when present in the pair.
    """
    rows = []
    ordered = studies.sort_values(["patient_id", "study_index"])
    for pid, g in ordered.groupby("patient_id", sort=False):
        recs = g.to_dict("records")
        for prior, cur in zip(recs, recs[1:]):
            row = {
                "pair_id": f"{prior['study_id']}__{cur['study_id']}",
                "patient_id": pid,
                "split": cur["split"],
                "prior_study_id": prior["study_id"],
                "current_study_id": cur["study_id"],
                "prior_image_path": prior["image_path"],
                "current_image_path": cur["image_path"],
                "stream_index": cur["stream_index"],
            }
            for f in MS_CXR_T_5:
                a, b = prior[f"severity_{f}"], cur[f"severity_{f}"]
                row[f"progression_{f}"] = None if a == 0 and b == 0 else progression(b - a, threshold)
            rows.append(row)
    return finish_pairs(pd.DataFrame(rows, columns=PAIR_COLUMNS))


def finish_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs in stream order with ``stream_index`` renumbered 0..n-1, contract columns first."""
    pairs = pairs.sort_values(["stream_index", "pair_id"]).reset_index(drop=True).copy()
    pairs["stream_index"] = np.arange(len(pairs), dtype=np.int64)
    for f in MS_CXR_T_5:
        col = f"progression_{f}"
        pairs[col] = pairs[col].astype(object).where(pairs[col].notna(), None)
    extra = [c for c in pairs.columns if c not in PAIR_COLUMNS]  # e.g. MS-CXR-T label quality
    return pairs[PAIR_COLUMNS + extra]
