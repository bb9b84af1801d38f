"""MIMIC-CXR-JPG 2.x reader (source ``mimic_cxr``) and the helpers MS-CXR-T and CXR-MAX share.

The tree PhysioNet ships (mimic-cxr-jpg 2.0.0 / 2.1.0)::

    <root>/mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id, PerformedProcedureStepDescription,
                                             ViewPosition, Rows, Columns, StudyDate, StudyTime, ...
    <root>/mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split (train|validate|test)
    <root>/mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id, Atelectasis, ..., Support Devices
    <root>/mimic-cxr-2.0.0-negbio.csv.gz     same columns, NegBio labeler
    <root>/files/p10/p10000032/s50414267/02aa804e-....jpg

Free-text reports come from MIMIC-CXR (not -JPG): ``mimic-cxr-reports.zip`` unpacks to
``files/p10/p10000032/s50414267.txt``; the FINDINGS and IMPRESSION sections are kept.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from apodistill.data.sources import (
    PAIR_COLUMNS, QUARANTINE_COLUMNS, SOURCES, DataError, DropCounts, SourceTables, finish_pairs, finish_tables, require_root,
)
from apodistill.data.split import assign_splits, stratified_subset
from apodistill.findings import CHEXPERT_14, MS_CXR_T_5

EXPECTED = (
    "MIMIC-CXR-JPG 2.x: mimic-cxr-2.0.0-metadata.csv.gz, mimic-cxr-2.0.0-split.csv.gz, "
    "mimic-cxr-2.0.0-chexpert.csv.gz (or -negbio.csv.gz) and files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg"
)
# CheXpert column names as the labeler writes them -> our snake_case names
LABEL_COLUMNS = {f.replace("_", " ").title(): f for f in CHEXPERT_14}  # "Pleural Effusion" -> pleural_effusion
SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}
_SECTION = re.compile(r"^\s*([A-Z][A-Z /&-]{2,40}):", re.M)


def find_table(root: Path, kind: str, required: bool = True) -> Path | None:
    """``mimic-cxr-2.0.0-<kind>.csv.gz`` (or any 2.x version, or an unzipped .csv) under ``root``."""
    for pattern in (f"mimic-cxr-2.0.0-{kind}.csv.gz", f"mimic-cxr-2.*-{kind}.csv.gz", f"mimic-cxr-2.*-{kind}.csv"):
        hits = sorted(root.glob(pattern))
        if hits:
            return hits[0]
    if required:
        raise DataError(f"{root} has no mimic-cxr-2.0.0-{kind}.csv.gz; the folder should hold {EXPECTED}")
    return None


def image_path(root: Path, subject_id: int, study_id: int, dicom_id: str) -> Path:
    s = str(subject_id)
    return root / "files" / f"p{s[:2]}" / f"p{s}" / f"s{study_id}" / f"{dicom_id}.jpg"


def extract_sections(text: str) -> str:
    """``FINDINGS: ...\\nIMPRESSION: ...`` from a MIMIC-CXR report; "" when it has neither section."""
    heads = list(_SECTION.finditer(text))
    parts = []
    for name in ("FINDINGS", "IMPRESSION"):
        for i, m in enumerate(heads):
            if m.group(1).strip() == name:
                end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
                body = " ".join(text[m.end() : end].split())
                if body:
                    parts.append(f"{name}: {body}")
                break
    return "\n".join(parts)


_META_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime")


def read_metadata(root: Path, counts: DropCounts | None = None) -> pd.DataFrame:
    """The metadata table with its column names as in the release (matched case-insensitively).

    Rows whose ids do not parse are left out; with ``counts`` they are counted there and kept
    (with the reason) in ``meta.attrs["unreadable"]`` for the quarantine.
    """
    path = find_table(root, "metadata")
    meta = pd.read_csv(path, dtype={"dicom_id": str, "subject_id": str, "study_id": str})
    meta = meta.rename(columns={c: k for c in meta.columns for k in _META_COLUMNS if c.lower() == k.lower()})
    missing = [c for c in _META_COLUMNS if c not in meta]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; MIMIC-CXR-JPG's metadata has {', '.join(_META_COLUMNS)}, ...")
    why = unreadable_ids(meta, ("subject_id", "study_id"), ("dicom_id",))
    bad = meta[why != ""]
    meta = meta[why == ""].copy()
    for c in ("subject_id", "study_id"):
        meta[c] = pd.to_numeric(meta[c]).astype("int64")
    if counts is not None:
        counts.rows_read += len(meta) + len(bad)
        counts.unreadable_rows += len(bad)
    meta.attrs["unreadable"] = pd.DataFrame(
        {"image_path": f"{path.name} row " + (bad.index + 2).astype(str), "study_id": bad["study_id"].astype(str),
         "reason": why[why != ""]}, columns=QUARANTINE_COLUMNS,
    )
    return meta


def report_candidates(root: Path | None, reports_root: str | None) -> list[Path]:
    """Where reports are looked for: ``fetch.reports_root`` alone when set; else inside the
    tree (``<root>/mimic-cxr-reports``, ``<root>``) and beside it (``<root>/../mimic-cxr-reports``,
    as when PhysioNet's two releases are unpacked side by side)."""
    if reports_root:
        return [Path(reports_root).expanduser()]
    if root is None:
        return []
    return [root / "mimic-cxr-reports", root, root.parent / "mimic-cxr-reports"]


def report_path(folder: Path, subject_id: int, study_id: int) -> Path:
    s = str(subject_id)
    return folder / "files" / f"p{s[:2]}" / f"p{s}" / f"s{study_id}.txt"


def reports_folder(root: Path | None, reports_root: str | None, ids: list[tuple[int, int]] | None = None) -> Path | None:
    """The first candidate folder (:func:`report_candidates`) holding a report of one of ``ids``
    (any ``files/`` folder when ``ids`` is None); None when none does."""
    for c in report_candidates(root, reports_root):
        if not (c / "files").is_dir():
            continue
        if ids is None or any(report_path(c, subj, study).is_file() for subj, study in ids):
            return c
    if reports_root:
        folder = Path(reports_root).expanduser()
        if not (folder / "files").is_dir():
            raise DataError(f"fetch.reports_root {reports_root!r} has no files/ folder; it should hold mimic-cxr-reports' files/pXX/pXXXXXXXX/sXXXXXXXX.txt")
    return None


def read_report(folder: Path | None, subject_id: int, study_id: int) -> str | None:
    """FINDINGS / IMPRESSION of a study's report; None when there is no report file."""
    if folder is None:
        return None
    path = report_path(folder, subject_id, study_id)
    return extract_sections(path.read_text(errors="replace")) if path.is_file() else None


def read_reports(root: Path | None, reports_root: str | None, ids: list[tuple[int, int]], counts: DropCounts) -> list[str]:
    """The report text of each (subject_id, study_id); every missing one is counted in ``counts``."""
    folder = reports_folder(root, reports_root, ids)
    counts.has_reports = True
    counts.reports_root_set = bool(reports_root)
    counts.report_places = [str(c / "files") for c in report_candidates(root, reports_root)]
    out = []
    for subj, study in tqdm(ids, desc="reports", unit="study", mininterval=2):
        text = read_report(folder, subj, study)
        if text is None:
            counts.missing_report_ids.add(str(study))
        elif not text:
            counts.no_section_ids.add(str(study))
        out.append(text or "")
    return out


def unreadable_ids(df: pd.DataFrame, int_cols: tuple[str, ...], str_cols: tuple[str, ...] = ()) -> pd.Series:
    """Per row, why its ids do not parse ("" when they do): integer ids must be whole numbers,
    string ids non-empty."""
    reasons = pd.Series("", index=df.index, dtype=object)
    for c in int_cols:
        v = pd.to_numeric(df[c], errors="coerce")
        bad = v.isna() | (v % 1 != 0)
        reasons[bad & (reasons == "")] = [f"unreadable row: {c} {x!r} is not a whole number" for x in df.loc[bad & (reasons == ""), c]]
    for c in str_cols:
        bad = df[c].isna() | (df[c].astype(str).str.strip() == "")
        reasons[bad & (reasons == "")] = f"unreadable row: empty {c}"
    return reasons


def read_labels(root: Path, source: str, uncertain: str) -> pd.DataFrame:
    """One row per (subject_id, study_id) with ``label_<finding>`` columns, -1 handled per ``uncertain``."""
    raw = pd.read_csv(find_table(root, source))
    unknown = [c for c in raw.columns if c not in ("subject_id", "study_id") and c not in LABEL_COLUMNS]
    if unknown:
        raise DataError(f"{find_table(root, source)}: unexpected label columns {unknown}; expected the 14 CheXpert observations")
    out = raw.rename(columns={c: f"label_{LABEL_COLUMNS[c]}" for c in raw.columns if c in LABEL_COLUMNS})
    cols = [c for c in out.columns if c.startswith("label_")]
    if uncertain in ("positive", "negative"):
        out[cols] = out[cols].replace(-1.0, 1.0 if uncertain == "positive" else 0.0)
    return out


def read_studies(root: Path, cfg, seed: int, findings: list[str], study_ids: set[int] | None = None,
                 counts: DropCounts | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Studies (one frontal image each, preferred view first) and the rows dropped on the way;
    unreadable metadata rows and missing reports are counted in ``counts``."""
    counts = counts if counts is not None else DropCounts()
    meta = read_metadata(root, counts)
    unreadable = meta.attrs.pop("unreadable")
    if study_ids is not None:
        meta = meta[meta["study_id"].isin(study_ids)]
    meta["ViewPosition"] = meta["ViewPosition"].fillna("").astype(str).str.upper()
    rank = {v.upper(): i for i, v in enumerate(cfg.views)}
    meta["_rank"] = meta["ViewPosition"].map(rank)
    frontal = meta[meta["_rank"].notna()]
    dropped = meta[~meta["study_id"].isin(frontal["study_id"])].drop_duplicates("study_id")
    quarantine = pd.DataFrame(
        {
            "image_path": [str(image_path(root, r.subject_id, r.study_id, r.dicom_id)) for r in dropped.itertuples()],
            "study_id": dropped["study_id"].astype(str),
            "reason": [f"no {'/'.join(cfg.views)} view in study (has {v or 'no ViewPosition'})" for v in dropped["ViewPosition"]],
        },
        columns=QUARANTINE_COLUMNS,
    )
    quarantine = pd.concat([unreadable, quarantine], ignore_index=True) if len(unreadable) else quarantine
    best = frontal.sort_values(["study_id", "_rank", "StudyDate", "StudyTime", "dicom_id"]).drop_duplicates("study_id")

    split_file = find_table(root, "split", required=False)
    studies = best[["subject_id", "study_id", "dicom_id", "ViewPosition", "StudyDate", "StudyTime"]].copy()
    if split_file is not None:
        split = pd.read_csv(split_file, dtype={"dicom_id": str})[["study_id", "split"]].drop_duplicates("study_id")
        studies = studies.merge(split, on="study_id", how="left")
        studies["split"] = studies["split"].map(SPLIT_NAMES)
    labels = read_labels(root, cfg.label_source, cfg.uncertain_labels) if find_table(root, cfg.label_source, required=False) else None
    if labels is not None:
        studies = studies.merge(labels.drop(columns="subject_id"), on="study_id", how="left")

    studies["report"] = read_reports(root, cfg.reports_root, list(zip(studies["subject_id"], studies["study_id"])), counts)
    studies["image_path"] = [str(image_path(root, r.subject_id, r.study_id, r.dicom_id)) for r in studies.itertuples()]
    studies = studies.rename(columns={"ViewPosition": "view"})
    studies["patient_id"] = studies["subject_id"].astype(str)
    studies["study_id"] = studies["study_id"].astype(str)
    studies = studies.sort_values(["StudyDate", "StudyTime", "patient_id", "study_id"], kind="stable")
    studies["study_index"] = studies.groupby("patient_id").cumcount()
    if "split" not in studies or studies["split"].isna().any():
        missing = studies["split"].isna() if "split" in studies else pd.Series(True, index=studies.index)
        own = assign_splits(studies[missing], findings, cfg.val_fraction, cfg.test_fraction, seed)
        studies.loc[missing, "split"] = studies.loc[missing, "patient_id"].map(own)
    return studies, quarantine


def consecutive_pairs(studies: pd.DataFrame) -> pd.DataFrame:
    """Prior/current pairs of consecutive studies of a patient, unlabelled (MIMIC-CXR has no progression labels)."""
    rows = []
    for pid, g in studies.sort_values(["patient_id", "study_index"]).groupby("patient_id", sort=False):
        recs = g.to_dict("records")
        for a, b in zip(recs, recs[1:]):
            rows.append(
                {
                    "pair_id": f"{a['study_id']}__{b['study_id']}",
                    "patient_id": pid,
                    "split": b["split"],
                    "prior_study_id": a["study_id"],
                    "current_study_id": b["study_id"],
                    "prior_image_path": a["image_path"],
                    "current_image_path": b["image_path"],
                    "stream_index": b["stream_index"],
                    **{f"progression_{f}": None for f in MS_CXR_T_5},
                }
            )
    return finish_pairs(pd.DataFrame(rows, columns=PAIR_COLUMNS))


@SOURCES.register("mimic_cxr")
def build_mimic(params, out_dir: Path) -> SourceTables:
    """Frontal studies of a local MIMIC-CXR-JPG tree with labels, reports and the official split."""
    cfg = params.fetch
    strat = sorted(set(MS_CXR_T_5) | set(params.base.findings))
    if cfg.download and cfg.root:
        from apodistill.data.download import download_mimic

        download_mimic(Path(cfg.root).expanduser(), cfg, params.base.seed, strat)
    root = require_root(cfg.root, "mimic_cxr", EXPECTED)
    counts = DropCounts()
    studies, quarantine = read_studies(root, cfg, params.base.seed, strat, counts=counts)
    keep = stratified_subset(studies, strat, cfg.fraction, params.base.seed)
    studies = finish_tables(studies[studies["patient_id"].isin(keep)].drop(columns=["subject_id", "dicom_id", "StudyDate", "StudyTime"]))
    return SourceTables(studies=studies, pairs=consecutive_pairs(studies), quarantine=quarantine, dropped=counts)
