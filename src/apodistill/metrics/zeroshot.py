"""Zero-shot test sets read from local copies of CheXpert and Open-I as released, and AUC.

Both readers return ``(studies, quarantine)`` in the benchmark's ``studies.parquet`` layout
(``patient_id, study_id, split, image_path`` (absolute), ``view, report, study_index,
stream_index, label_<finding>`` for the 14 CheXpert observations) so the evaluate stage can run
a student on them exactly as on the synthetic test split. Rows whose image is missing are not
dropped silently: they go to ``quarantine`` with a reason.

Layouts (as downloaded):
- CheXpert (``CheXpert-v1.0`` or ``-small``): ``<root>/train.csv`` / ``valid.csv`` with columns
  ``Path, Sex, Age, Frontal/Lateral, AP/PA`` and the 14 observations (1, 0, -1, blank); ``Path``
  starts with the dataset folder name (``CheXpert-v1.0-small/valid/patient64541/study1/
  view1_frontal.jpg``), i.e. it is relative to ``root``'s parent.
- Open-I (Indiana University): ``<root>/ecgen-radiology/<n>.xml`` reports (``AbstractText
  Label="FINDINGS"|"IMPRESSION"``, ``parentImage id="CXR1_1_IM-0001-3001"``, MeSH terms) and the
  PNGs ``<images_dir>/<parentImage id>.png`` from NLMCXR_png. Open-I has no CheXpert labels:
  they come from our labeler run on FINDINGS + IMPRESSION (the MeSH major terms are kept in
  ``mesh_major`` for reference).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from apodistill.findings import CHEXPERT_14
from apodistill.metrics.labeler import label_report

# CheXpert CSV column for each observation name ("no_finding" -> "No Finding", ...).
CHEXPERT_COLUMNS = {f: f.replace("_", " ").title() for f in CHEXPERT_14}
_META = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
QUARANTINE_COLUMNS = ["image_path", "study_id", "reason"]


def _resolve_chexpert_path(root: Path, rel: str) -> Path:
    """``Path`` is relative to the folder holding the dataset; some repackagings drop that prefix."""
    rel_path = Path(rel)
    for candidate in (root.parent / rel_path, root / Path(*rel_path.parts[1:]), root / rel_path):
        if candidate.is_file():
            return candidate.resolve()
    return (root.parent / rel_path).resolve()


def read_chexpert(root: str | Path, csv_name: str = "valid.csv", frontal_only: bool = True):
    """CheXpert studies from ``<root>/<csv_name>``; one row per study (its first frontal image)
    when ``frontal_only``, else one row per image."""
    root = Path(root)
    table = pd.read_csv(root / csv_name)
    missing = [c for c in (*_META, *CHEXPERT_COLUMNS.values()) if c not in table]
    if missing:
        raise KeyError(f"{root / csv_name} lacks CheXpert columns {missing}")
    parts = table["Path"].str.split("/")
    table["patient_id"] = parts.map(lambda p: next((x for x in p if x.startswith("patient")), ""))
    table["study_id"] = table["patient_id"] + "/" + parts.map(lambda p: next((x for x in p if x.startswith("study")), ""))
    if frontal_only:
        table = table[table["Frontal/Lateral"] == "Frontal"].drop_duplicates("study_id", keep="first")
    paths = [_resolve_chexpert_path(root, p) for p in table["Path"]]
    exists = np.array([p.is_file() for p in paths], dtype=bool)
    studies = pd.DataFrame(
        {
            "patient_id": table["patient_id"].to_numpy(),
            "study_id": table["study_id"].to_numpy(),
            "split": "test",
            "image_path": [str(p) for p in paths],
            "view": np.where(table["Frontal/Lateral"] == "Lateral", "LATERAL", table["AP/PA"].fillna("")),
            "report": "",
            "study_index": table["study_id"].str.extract(r"study(\d+)$")[0].astype(int).to_numpy() - 1,
        }
    )
    for f, col in CHEXPERT_COLUMNS.items():
        studies[f"label_{f}"] = pd.to_numeric(table[col], errors="raise").astype(float).to_numpy()
    quarantine = studies.loc[~exists, ["image_path", "study_id"]].assign(reason="image file not found")
    studies = studies[exists].reset_index(drop=True)
    studies.insert(7, "stream_index", np.arange(len(studies)))
    return studies, quarantine.reset_index(drop=True)[QUARANTINE_COLUMNS]


def _openi_report(path: Path) -> tuple[str, str, list[str], list[str]]:
    """uId, FINDINGS + IMPRESSION text, parentImage ids, MeSH major terms of one XML file."""
    root = ET.parse(path).getroot()
    uid = root.find(".//uId")
    study_id = uid.get("id") if uid is not None and uid.get("id") else path.stem
    sections = {}
    for node in root.iter("AbstractText"):
        sections[(node.get("Label") or "").upper()] = " ".join((node.text or "").split())
    report = " ".join(s for s in (sections.get("FINDINGS", ""), sections.get("IMPRESSION", "")) if s)
    images = [n.get("id") for n in root.iter("parentImage") if n.get("id")]
    mesh = [(m.text or "").strip() for m in root.iter("major")]
    return study_id, report, images, mesh


def read_openi(root: str | Path, images_dir: str | Path | None = None):
    """Open-I studies: one row per report, with its first listed image that exists on disk.

    Open-I does not say which image is frontal (captions describe the whole exam, e.g. "Xray Chest
    PA and Lateral"); the first listed is usually the frontal one, so ``view`` is left empty.
    """
    root = Path(root)
    reports_dir = root / "ecgen-radiology"
    if not reports_dir.is_dir():
        raise FileNotFoundError(f"{reports_dir} not found: expected Open-I's ecgen-radiology/*.xml under {root}")
    if images_dir is None:
        images_dir = root / "NLMCXR_png" if (root / "NLMCXR_png").is_dir() else root
    images_dir = Path(images_dir)
    rows, quarantine = [], []
    files = sorted(reports_dir.glob("*.xml"), key=lambda p: (len(p.stem), p.stem))
    for path in files:
        try:
            study_id, report, images, mesh = _openi_report(path)
        except ET.ParseError as err:
            quarantine.append({"image_path": "", "study_id": path.stem, "reason": f"unreadable XML: {err}"})
            continue
        present = [i for i in images if (images_dir / f"{i}.png").is_file()]
        if not present:
            reason = "report has no image" if not images else "image file not found"
            first = str((images_dir / f"{images[0]}.png").resolve()) if images else ""
            quarantine.append({"image_path": first, "study_id": study_id, "reason": reason})
            continue
        image_id = present[0]
        labels = label_report(report)
        rows.append(
            {
                "patient_id": study_id,  # Open-I is de-identified per report: one study per patient
                "study_id": study_id,
                "split": "test",
                "image_path": str((images_dir / f"{image_id}.png").resolve()),
                "view": "",
                "report": report,
                "study_index": 0,
                "stream_index": len(rows),
                **{f"label_{f}": labels[f] for f in CHEXPERT_14},
                "mesh_major": "; ".join(mesh),
            }
        )
    columns = ["patient_id", "study_id", "split", "image_path", "view", "report", "study_index", "stream_index"]
    columns += [f"label_{f}" for f in CHEXPERT_14] + ["mesh_major"]
    return pd.DataFrame(rows, columns=columns), pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS)


# A parsed answer as a score for AUC; unparsed answers get the uninformative 0.5.
ANSWER_SCORES = {"yes": 1.0, "uncertain": 0.5, "no": 0.0}


def answers_to_scores(pred: pd.DataFrame, findings: Sequence[str]) -> pd.DataFrame:
    """``answer_<f>`` strings -> ``score_<f>`` floats (yes 1, uncertain .5, no 0, unparsed .5)."""
    out = pred.copy()
    for f in findings:
        answers = pred[f"answer_{f}"].map(lambda v: v.strip().lower() if isinstance(v, str) else None)
        out[f"score_{f}"] = answers.map(lambda v: ANSWER_SCORES.get(v, 0.5)).astype(float)
    return out


def auc_per_finding(
    pred: pd.DataFrame, gold: pd.DataFrame, findings: Sequence[str], key: str = "study_id"
) -> dict[str, float]:
    """ROC AUC per finding (``auc.<f>``) and their mean (``auc.mean``).

    ``pred`` holds ``score_<f>`` (a probability) or ``answer_<f>`` (converted by
    :func:`answers_to_scores`). Gold 1 is positive, 0 negative; uncertain (-1) and unlabelled rows
    are left out (U-Ignore). A finding whose gold has one class only is NaN and left out of the mean.
    """
    from sklearn.metrics import roc_auc_score

    if any(f"score_{f}" not in pred for f in findings):
        pred = answers_to_scores(pred, findings)
    merged = pred.merge(gold, on=key, how="inner", validate="one_to_one", suffixes=("", "_gold"))
    if len(merged) != len(pred):
        raise ValueError(f"{len(pred) - len(merged)} predictions have no gold row")
    out: dict[str, float] = {}
    for f in findings:
        y = merged[f"label_{f}"].to_numpy(dtype=float)
        keep = np.isin(y, (0.0, 1.0))
        if len(np.unique(y[keep])) < 2:
            out[f"auc.{f}"] = float("nan")
            continue
        out[f"auc.{f}"] = float(roc_auc_score(y[keep], merged[f"score_{f}"].to_numpy(dtype=float)[keep]))
    finite = [v for v in out.values() if np.isfinite(v)]
    out["auc.mean"] = float(np.mean(finite)) if finite else float("nan")
    out["n"] = float(len(merged))
    return out
