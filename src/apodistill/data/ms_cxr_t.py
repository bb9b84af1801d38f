"""MS-CXR-T reader (source ``ms_cxr_t``): temporal image classification pairs on MIMIC-CXR-JPG.

MS-CXR-T 1.0.0 (PhysioNet) ships ``MS_CXR_T_temporal_image_classification_v1.0.0.csv``,
one row per (prior, current) image pair: ``dicom_id``, ``previous_dicom_id`` (path-like ids,
``p10/p10002428/s55758034/<hash>``, i.e. the JPG path under ``files/`` without ``.jpg``),
``subject_id``, ``study_id``, ``previous_study_id``, ``<finding>_progression``
(improving / stable / worsening, empty when not graded) and ``<finding>_label_quality``
for consolidation, edema, pleural_effusion, pneumonia and pneumothorax.
Images, labels, reports and the split come from the MIMIC-CXR-JPG tree at ``fetch.root``.
The column list is taken from public loaders, not confirmed against the release, so
``previous_study_id`` may be absent: it is then derived from ``previous_dicom_id`` (MIMIC
metadata, else the ``s<study>`` folder of a path-like id). Rows that do not parse or do not
join MIMIC's metadata are counted and quarantined with their reason, never dropped silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from apodistill.data.mimic import EXPECTED, find_table, read_labels, read_metadata, read_reports
from apodistill.data.sources import (
    QUARANTINE_COLUMNS, SOURCES, DataError, DropCounts, SourceTables, finish_pairs, finish_tables, require_root,
)
from apodistill.data.split import assign_splits, stratified_subset
from apodistill.findings import CHEXPERT_14, MS_CXR_T_5

CSV_NAME = "MS_CXR_T_temporal_image_classification_v1.0.0.csv"
REQUIRED = ["dicom_id", "previous_dicom_id", "subject_id", "study_id"] + [f"{f}_progression" for f in MS_CXR_T_5]
# previous_study_id is optional: the real column list is unconfirmed, and the prior's study is
# known from its image (MIMIC metadata, or the study folder in a path-like id).
OPTIONAL = ["previous_study_id"]
CLASSES = {"improving", "stable", "worsening"}
_STUDY_IN_PATH = re.compile(r"(?:^|/)s(\d+)/[^/]+$")


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


def _whole(value) -> int | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if f == f and f.is_integer() else None


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def dicom_stem(dicom: str) -> str:
    """``p10/p10002428/s55758034/<hash>`` (or ``<hash>.jpg``) -> ``<hash>``."""
    return dicom.rstrip("/").rsplit("/", 1)[-1].removesuffix(".jpg")


def prior_study(prev_dicom: str, study_of: dict[str, int]) -> int | None:
    """The prior's study id from MIMIC metadata, else from the study folder of a path-like id."""
    stem = dicom_stem(prev_dicom)
    if stem in study_of:
        return int(study_of[stem])
    m = _STUDY_IN_PATH.search(prev_dicom.removesuffix(".jpg"))
    return int(m.group(1)) if m else None


def read_pairs(csv: Path, root: Path, meta: pd.DataFrame | None = None,
               counts: DropCounts | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The CSV's pairs and the rows it could not use (quarantine rows, reason each).

    A row is *unreadable* when an id or a progression value does not parse, *unjoined* when
    ``meta`` (MIMIC-CXR-JPG metadata) is given and one of its images is not in it; both are
    counted in ``counts``. Without ``previous_study_id`` the prior's study comes from
    :func:`prior_study`.
    """
    counts = counts if counts is not None else DropCounts()
    raw = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in raw]
    if missing:
        raise DataError(f"{csv}: missing columns {missing}; MS-CXR-T's file has {', '.join(REQUIRED)} (and optionally {', '.join(OPTIONAL)})")
    has_prev_study = "previous_study_id" in raw
    study_of = dict(zip(meta["dicom_id"], meta["study_id"])) if meta is not None else {}
    rows, dropped = [], []
    counts.rows_read += len(raw)
    for i, r in enumerate(raw.to_dict("records")):
        where = f"{csv.name} row {i + 2}"
        subj, study = _whole(r["subject_id"]), _whole(r["study_id"])
        cur, prev = _text(r["dicom_id"]), _text(r["previous_dicom_id"])
        bad = next((f"unreadable row: {name} {r[col]!r} is not a whole number" for name, col, v in
                    (("subject_id", "subject_id", subj), ("study_id", "study_id", study)) if v is None), None)
        bad = bad or next((f"unreadable row: empty {c}" for c, v in (("dicom_id", cur), ("previous_dicom_id", prev)) if not v), None)
        prog: dict[str, str | None] = {}
        for f in MS_CXR_T_5:
            v = _text(r[f"{f}_progression"]).lower() or None
            if v is not None and v not in CLASSES and bad is None:
                bad = f"unreadable row: {f}_progression {v!r} is not one of {sorted(CLASSES)}"
            prog[f] = v
        prev_study = None
        if bad is None:
            if has_prev_study and _text(r["previous_study_id"]):
                prev_study = _whole(r["previous_study_id"])
                if prev_study is None:
                    bad = f"unreadable row: previous_study_id {r['previous_study_id']!r} is not a whole number"
            else:
                prev_study = prior_study(prev, study_of)
        if bad is not None:
            counts.unreadable_rows += 1
            dropped.append((where, str(study or ""), bad))
            continue
        absent = [d for d in (prev, cur) if meta is not None and dicom_stem(d) not in study_of]
        if prev_study is None or absent:
            counts.unjoined_rows += 1
            why = (f"image(s) {', '.join(absent)} not in MIMIC-CXR-JPG metadata" if absent
                   else f"no previous_study_id and the prior's study cannot be told from {prev!r}")
            dropped.append((where, str(study), f"unjoined row: {why}"))
            continue
        row = {
            "patient_id": str(subj),
            "prior_study_id": str(prev_study),
            "current_study_id": str(study),
            "prior_image_path": jpg_path(root, prev, subj, prev_study),
            "current_image_path": jpg_path(root, cur, subj, study),
        }
        row["pair_id"] = f"{row['prior_study_id']}__{row['current_study_id']}__{Path(row['current_image_path']).stem[:8]}"
        for f in MS_CXR_T_5:
            row[f"progression_{f}"] = prog[f]
            row[f"label_quality_{f}"] = _text(r.get(f"{f}_label_quality")) or None
        rows.append(row)
    return pd.DataFrame(rows), pd.DataFrame(dropped, columns=QUARANTINE_COLUMNS)


@SOURCES.register("ms_cxr_t")
def build_ms_cxr_t(params, out_dir: Path) -> SourceTables:
    """Pairs from the MS-CXR-T CSV; studies = every prior/current study, with MIMIC labels and reports."""
    cfg, seed = params.fetch, params.base.seed
    root = require_root(cfg.root, "ms_cxr_t", EXPECTED + " (MS-CXR-T pairs point into it)")
    counts = DropCounts()
    meta_file = find_table(root, "metadata", required=False)
    meta = read_metadata(root) if meta_file is not None else None  # its own bad rows only fail joins here
    csv = find_csv(cfg.annotations)
    pairs, quarantine = read_pairs(csv, root, meta, counts)
    if pairs.empty:
        raise DataError(f"{csv}: none of its {counts.rows_read} rows is usable ({counts.unreadable_rows} unreadable, "
                        f"{counts.unjoined_rows} not joined to {root}); first reasons: {list(quarantine['reason'][:3])}")

    # one study row per study id, using the image the pairs use for it
    ends = pd.concat(
        [
            pairs[["patient_id", "prior_study_id", "prior_image_path"]].set_axis(["patient_id", "study_id", "image_path"], axis=1),
            pairs[["patient_id", "current_study_id", "current_image_path"]].set_axis(["patient_id", "study_id", "image_path"], axis=1),
        ]
    ).drop_duplicates("study_id")
    if meta is not None:
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
    ends["report"] = read_reports(root, cfg.reports_root, [(int(p), int(s)) for p, s in zip(ends["patient_id"], ends["study_id"])], counts)

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
    return SourceTables(studies=studies, pairs=finish_pairs(pairs), quarantine=quarantine, dropped=counts)
