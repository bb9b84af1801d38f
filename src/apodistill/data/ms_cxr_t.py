"""MS-CXR-T reader (source ``ms_cxr_t``): temporal image classification pairs on MIMIC-CXR-JPG.

MS-CXR-T 1.0.0 (PhysioNet) ships ``MS_CXR_T_temporal_image_classification_v1.0.0.csv``,
one row per (prior, current) image pair: ``dicom_id``, ``previous_dicom_id`` (path-like ids,
``p10/p10002428/s55758034/<hash>``, i.e. the JPG path under ``files/`` without ``.jpg``),
``subject_id``, ``study_id``, ``previous_study_id``, ``<finding>_progression``
(improving / stable / worsening, empty when not graded) and ``<finding>_label_quality``
for consolidation, edema, pleural_effusion, pneumonia and pneumothorax.
Images, labels, reports and the split come from the MIMIC-CXR-JPG tree at ``fetch.root``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from apodistill.data.mimic import EXPECTED, find_table, read_labels, read_metadata, read_report, reports_folder
from apodistill.data.sources import SOURCES, DataError, SourceTables, finish_pairs, finish_tables, require_root
from apodistill.data.split import assign_splits, stratified_subset
from apodistill.findings import CHEXPERT_14, MS_CXR_T_5

CSV_NAME = "MS_CXR_T_temporal_image_classification_v1.0.0.csv"
REQUIRED = ["dicom_id", "previous_dicom_id", "subject_id", "study_id", "previous_study_id"] + [f"{f}_progression" for f in MS_CXR_T_5]
CLASSES = {"improving", "stable", "worsening"}


def find_csv(annotations: str | None) -> Path:
    if annotations is None:
        raise DataError(f"fetch.annotations is not set: source 'ms_cxr_t' needs the MS-CXR-T folder holding {CSV_NAME}")
    path = Path(annotations).expanduser()
    if path.is_dir():
        hits = sorted(path.rglob("MS_CXR_T_temporal_image_classification*.csv"))
        if not hits:
            raise DataError(f"fetch.annotations {str(path)!r} holds no {CSV_NAME} (MS-CXR-T temporal image classification file)")
        path = hits[0]
    if not path.is_file():
        raise DataError(f"fetch.annotations {str(path)!r} does not exist: it should be the MS-CXR-T folder or {CSV_NAME}")
    return path


def jpg_path(root: Path, dicom: str, subject_id: int, study_id: int) -> str:
    """Path-like ids name the file directly; a bare hash is placed in its subject/study folder."""
    dicom = str(dicom).strip()
    if "/" in dicom:
        return str(root / "files" / (dicom.removeprefix("files/").removesuffix(".jpg") + ".jpg"))
    s = str(subject_id)
    return str(root / "files" / f"p{s[:2]}" / f"p{s}" / f"s{study_id}" / f"{dicom}.jpg")


def read_pairs(csv: Path, root: Path) -> pd.DataFrame:
    raw = pd.read_csv(csv, dtype={"dicom_id": str, "previous_dicom_id": str})
    missing = [c for c in REQUIRED if c not in raw]
    if missing:
        raise DataError(f"{csv}: missing columns {missing}; MS-CXR-T's file has {', '.join(REQUIRED)}")
    rows = []
    for r in raw.itertuples(index=False):
        row = {
            "patient_id": str(r.subject_id),
            "prior_study_id": str(r.previous_study_id),
            "current_study_id": str(r.study_id),
            "prior_image_path": jpg_path(root, r.previous_dicom_id, r.subject_id, r.previous_study_id),
            "current_image_path": jpg_path(root, r.dicom_id, r.subject_id, r.study_id),
        }
        row["pair_id"] = f"{row['prior_study_id']}__{row['current_study_id']}__{Path(row['current_image_path']).stem[:8]}"
        for f in MS_CXR_T_5:
            v = getattr(r, f"{f}_progression")
            v = str(v).strip().lower() if isinstance(v, str) else None
            if v is not None and v not in CLASSES:
                raise DataError(f"{csv}: {f}_progression value {v!r} is not one of {sorted(CLASSES)}")
            row[f"progression_{f}"] = v
            q = getattr(r, f"{f}_label_quality", None)
            row[f"label_quality_{f}"] = q if isinstance(q, str) else None
        rows.append(row)
    return pd.DataFrame(rows)


@SOURCES.register("ms_cxr_t")
def build_ms_cxr_t(params, out_dir: Path) -> SourceTables:
    """Pairs from the MS-CXR-T CSV; studies = every prior/current study, with MIMIC labels and reports."""
    cfg, seed = params.fetch, params.base.seed
    root = require_root(cfg.root, "ms_cxr_t", EXPECTED + " (MS-CXR-T pairs point into it)")
    pairs = read_pairs(find_csv(cfg.annotations), root)

    # one study row per study id, using the image the pairs use for it
    ends = pd.concat(
        [
            pairs[["patient_id", "prior_study_id", "prior_image_path"]].set_axis(["patient_id", "study_id", "image_path"], axis=1),
            pairs[["patient_id", "current_study_id", "current_image_path"]].set_axis(["patient_id", "study_id", "image_path"], axis=1),
        ]
    ).drop_duplicates("study_id")
    meta_file = find_table(root, "metadata", required=False)
    if meta_file is not None:
        meta = read_metadata(root)
        ends["dicom_id"] = [Path(p).stem for p in ends["image_path"]]
        ends = ends.merge(meta[["dicom_id", "ViewPosition", "StudyDate", "StudyTime"]], on="dicom_id", how="left").drop(columns="dicom_id")
    else:
        ends["ViewPosition"], ends["StudyDate"], ends["StudyTime"] = "", 0, 0.0
    ends = ends.rename(columns={"ViewPosition": "view"})
    ends["view"] = ends["view"].fillna("")
    # order: time where metadata gives it, else the prior-before-current order of the pairs
    ends = ends.sort_values(["StudyDate", "StudyTime", "patient_id", "study_id"], kind="stable", na_position="last")
    ends["study_index"] = ends.groupby("patient_id").cumcount()

    if find_table(root, cfg.label_source, required=False):
        labels = read_labels(root, cfg.label_source, cfg.uncertain_labels)
        labels["study_id"] = labels["study_id"].astype(str)
        ends = ends.merge(labels.drop(columns="subject_id"), on="study_id", how="left")
    else:
        for f in CHEXPERT_14:
            ends[f"label_{f}"] = float("nan")
    folder = reports_folder(root, cfg.reports_root)
    ends["report"] = [read_report(folder, int(p), int(s)) for p, s in zip(ends["patient_id"], ends["study_id"])]

    split_file = find_table(root, "split", required=False)
    if split_file is not None:  # MIMIC's official split is patient-level
        split = pd.read_csv(split_file)[["subject_id", "split"]].drop_duplicates("subject_id")
        official = dict(zip(split["subject_id"].astype(str), split["split"].map({"validate": "val"}).fillna(split["split"])))
        ends["split"] = ends["patient_id"].map(official)
    else:
        ends["split"] = None
    missing = ends["split"].isna()
    if missing.any():  # patients the official split does not list: our stratified patient split
        prog = pairs.groupby("patient_id")[[f"progression_{f}" for f in MS_CXR_T_5]].agg(lambda c: float(c.notna().any()))
        strat = prog.rename(columns=lambda c: "label_" + c.removeprefix("progression_")).reset_index()
        own = assign_splits(strat, list(MS_CXR_T_5), cfg.val_fraction, cfg.test_fraction, seed)
        ends.loc[missing, "split"] = ends.loc[missing, "patient_id"].map(own)

    keep = stratified_subset(ends, sorted(set(MS_CXR_T_5) | set(params.base.findings)), cfg.fraction, seed)
    studies = finish_tables(ends[ends["patient_id"].isin(keep)].drop(columns=["StudyDate", "StudyTime"]))
    stream = dict(zip(studies["study_id"], studies["stream_index"]))
    split_of = dict(zip(studies["study_id"], studies["split"]))
    pairs = pairs[pairs["patient_id"].isin(keep)].copy()
    pairs["split"] = pairs["current_study_id"].map(split_of)
    pairs["stream_index"] = pairs["current_study_id"].map(stream).astype("int64")
    return SourceTables(studies=studies, pairs=finish_pairs(pairs))
