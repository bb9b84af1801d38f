"""CXR-MAX importer (source ``cxr_max``): released teacher trajectories -> our trajectory table.

CXR-MAX (huggingface.co/datasets/MiaoMiaoYang/CXR-MAX, CC BY-NC-SA 4.0) holds 170,982
reasoning trajectories of seven MLLMs (GPT-5, Gemini-2.5, Sonnet-4, Grok-4, Qwen-VL-Max,
GLM-4.5V, Moonshot-v1) on MIMIC-CXR images, 14 CheXpert findings. Its card and the APO
repository (which trains on it with ms-swift ``--dataset SPD.json``) do not document the
per-record fields, so this reader accepts the layouts such a release can take (docs/data.md):

- JSON (a list) or JSON Lines files anywhere under ``fetch.annotations``;
- ms-swift records ``{"messages": [..., {"role": "assistant", "content": TEXT}], "images": [PATH]}``
  or flat records with an image (``image`` / ``image_path`` / ``images`` / ``dicom_id``),
  a text (``response`` / ``output`` / ``trajectory`` / ``text`` / ``answer``) and optionally
  a teacher (``model`` / ``teacher`` / ``source``; default: the file name) and ``labels``.

Image paths are MIMIC-CXR paths (``files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom>.jpg`` or a suffix
of one); studies, labels and the split come from the MIMIC-CXR-JPG tree at ``fetch.root``
when given, else from the records. Trajectories go to ``trajectories.parquet`` next to the
benchmark tables, in the teachers stage's schema.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd

from apodistill.data.mimic import consecutive_pairs, read_studies
from apodistill.data.sources import SOURCES, DataError, DropCounts, SourceTables, finish_tables
from apodistill.data.split import assign_splits, stratified_subset
from apodistill.findings import CHEXPERT_14, MS_CXR_T_5, format_answer, try_parse

# CXR-MAX model names -> the roster names of params.yaml
TEACHER_NAMES = {
    "gpt5": "gpt5",
    "gpt": "gpt5",
    "gemini": "gemini25",
    "sonnet": "sonnet4",
    "claude": "sonnet4",
    "qwen": "qwen_vl_max",
    "grok": "grok4",
    "glm": "glm45v",
    "moonshot": "moonshot",
    "kimi": "moonshot",
}
TEXT_KEYS = ("response", "output", "trajectory", "text", "answer", "completion")
IMAGE_KEYS = ("image", "image_path", "images", "img", "dicom_id", "path")
TEACHER_KEYS = ("model", "teacher", "source", "model_name")
_IDS = re.compile(r"p(\d{8})/s(\d{8})/([^/]+?)(?:\.jpg)?$")
_NEGATION = re.compile(r"\b(no|not|without|absent|negative for|free of|clear of|resolved|unremarkable|rule out)\b", re.I)
SYNONYMS = {
    "pleural_effusion": ("pleural effusion", "effusion"),
    "pneumothorax": ("pneumothorax",),
    "consolidation": ("consolidation",),
    "pneumonia": ("pneumonia",),
    "edema": ("edema", "oedema"),
}


def teacher_name(raw: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", raw.lower())
    for k, v in TEACHER_NAMES.items():
        if key.startswith(k):
            return v
    return re.sub(r"[^a-z0-9_]", "_", raw.lower()).strip("_") or "unknown"


def _records(path: Path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                yield i, line
        return
    data = json.loads(text)
    for i, rec in enumerate(data if isinstance(data, list) else data.get("data", [data])):
        yield i, rec


def _field(rec: dict, keys: tuple[str, ...]):
    for k in keys:
        if rec.get(k) not in (None, "", []):
            v = rec[k]
            return v[0] if isinstance(v, list) else v
    return None


def parse_record(rec: dict, default_teacher: str) -> dict:
    """Image, teacher, text and labels of one record; raises ValueError naming what is missing."""
    text = _field(rec, TEXT_KEYS)
    if text is None and isinstance(rec.get("messages"), list):
        said = [m.get("content", "") for m in rec["messages"] if m.get("role") == "assistant"]
        text = said[-1] if said else None
    image = _field(rec, IMAGE_KEYS)
    if image is None:
        raise ValueError("no image reference")
    if isinstance(image, dict):
        image = image.get("path") or image.get("image")
    m = _IDS.search(str(image).replace("\\", "/"))
    if m is None:
        raise ValueError(f"image {image!r} is not a MIMIC-CXR path (pXXXXXXXX/sXXXXXXXX/<dicom>.jpg)")
    labels = rec.get("labels") if isinstance(rec.get("labels"), dict) else None
    return {
        "teacher_raw": str(_field(rec, TEACHER_KEYS) or default_teacher),
        "patient_id": str(int(m.group(1))),
        "study_id": str(int(m.group(2))),
        "dicom_id": m.group(3),
        "image": str(image),
        "text": text if isinstance(text, str) else "",
        "labels": labels,
    }


def answer_from_text(text: str, findings: list[str]) -> dict[str, str]:
    """yes for a finding named in a sentence without a negation cue, else no (free-text trajectories)."""
    sentences = re.split(r"(?<=[.!?\n])\s+", text)
    out = {}
    for f in findings:
        names = SYNONYMS.get(f, (f.replace("_", " "),))
        hit = [s for s in sentences if any(n in s.lower() for n in names)]
        out[f] = "yes" if any(not _NEGATION.search(s) for s in hit) else "no"
    return out


def to_trajectory(text: str, labels: dict | None, findings: list[str]) -> tuple[str, str]:
    """Our ``<think>/<answer>`` text and how the answer was obtained."""
    if try_parse(text, findings) is not None:
        return text, "as_released"
    if labels:
        norm = {k.lower().replace(" ", "_"): v for k, v in labels.items()}
        vals = {f: {1: "yes", 1.0: "yes", "1": "yes", -1: "uncertain", -1.0: "uncertain"}.get(norm.get(f), "no") for f in findings}
        return f"<think>{text.strip()}</think>\n" + format_answer(vals, findings), "record_labels"
    return f"<think>{text.strip()}</think>\n" + format_answer(answer_from_text(text, findings), findings), "text_mentions"


def read_records(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = sorted(p for p in ([folder] if folder.is_file() else folder.rglob("*")) if p.suffix in (".json", ".jsonl"))
    if not files:
        raise DataError(f"fetch.annotations {str(folder)!r} holds no .json / .jsonl files: expected the CXR-MAX release (huggingface.co/datasets/MiaoMiaoYang/CXR-MAX)")
    good, bad = [], []
    for path in files:
        for i, rec in _records(path):
            where = f"{path.name}:{i + 1}"
            try:
                rec = json.loads(rec) if isinstance(rec, str) else rec
                row = parse_record(rec, path.stem)
            except (ValueError, json.JSONDecodeError, AttributeError) as err:
                bad.append({"image_path": where, "study_id": "", "reason": f"cxr_max record unreadable: {err}"})
                continue
            row["where"] = where
            good.append(row)
    return pd.DataFrame(good), pd.DataFrame(bad, columns=["image_path", "study_id", "reason"])


@SOURCES.register("cxr_max")
def build_cxr_max(params, out_dir: Path) -> SourceTables:
    """Studies of the records' images plus their trajectories (``extra['trajectories']``)."""
    cfg, seed = params.fetch, params.base.seed
    if cfg.annotations is None:
        raise DataError("fetch.annotations is not set: source 'cxr_max' needs the folder of the CXR-MAX release (JSON / JSONL trajectory files)")
    folder = Path(cfg.annotations).expanduser()
    if not folder.exists():
        raise DataError(f"fetch.annotations {str(folder)!r} does not exist: it should hold the CXR-MAX release (JSON / JSONL trajectory files)")
    recs, quarantine = read_records(folder)
    counts = DropCounts(rows_read=len(recs) + len(quarantine), unreadable_rows=len(quarantine))
    if recs.empty:
        raise DataError(f"{folder}: no readable CXR-MAX record ({len(quarantine)} unreadable)")
    strat = sorted(set(MS_CXR_T_5) | set(params.base.findings))

    if cfg.root:  # the MIMIC-CXR-JPG tree gives images, labels, reports and the official split
        root = Path(cfg.root).expanduser()
        if not root.is_dir():
            raise DataError(f"fetch.root {str(root)!r} does not exist: for cxr_max it is the optional MIMIC-CXR-JPG folder; set it to null to use the records alone")
        studies, dropped = read_studies(root, cfg, seed, strat, study_ids={int(s) for s in recs["study_id"]}, counts=counts)
        quarantine = pd.concat([quarantine, dropped], ignore_index=True)
    else:  # the records alone: images relative to the release folder, labels from the records
        first = recs.drop_duplicates("study_id")
        base = folder if folder.is_dir() else folder.parent
        studies = pd.DataFrame(
            {
                "patient_id": first["patient_id"],
                "study_id": first["study_id"],
                "image_path": [str(p if Path(p).is_absolute() else base / p) for p in first["image"]],
                "view": "",
                "report": "",
            }
        )
        merged: dict[str, dict] = {}  # a study's labels, from whichever of its records carries them
        for sid, lab in zip(recs["study_id"], recs["labels"]):
            for k, v in (lab or {}).items():
                merged.setdefault(sid, {}).setdefault(k.lower().replace(" ", "_"), v)
        for f in CHEXPERT_14:
            studies[f"label_{f}"] = [float({1: 1.0, 0: 0.0, -1: -1.0}.get(merged.get(sid, {}).get(f), "nan")) for sid in studies["study_id"]]
        studies = studies.sort_values(["patient_id", "study_id"])
        studies["study_index"] = studies.groupby("patient_id").cumcount()
        studies["split"] = studies["patient_id"].map(assign_splits(studies, strat, cfg.val_fraction, cfg.test_fraction, seed))
    keep = stratified_subset(studies, strat, cfg.fraction, seed)
    studies = studies[studies["patient_id"].isin(keep)]
    studies = finish_tables(studies.drop(columns=[c for c in ("subject_id", "dicom_id", "StudyDate", "StudyTime") if c in studies]))

    info = studies.set_index("study_id")
    recs = recs[recs["study_id"].isin(info.index)]
    findings = list(params.base.findings)
    rows = []
    for r in recs.itertuples():
        text, how = to_trajectory(r.text, r.labels, findings) if r.text.strip() else ("", "empty")
        rows.append(
            {
                "record_id": hashlib.sha256(f"cxr_max|{r.where}|{r.teacher_raw}|{r.study_id}".encode()).hexdigest()[:24],
                "teacher": teacher_name(r.teacher_raw),
                "model": r.teacher_raw,
                "backend": "cxr_max",
                "task": "single",
                "study_id": r.study_id,
                "prior_study_id": None,
                "split": info.at[r.study_id, "split"],
                "stream_index": int(info.at[r.study_id, "stream_index"]),
                "prompt_mode": "label_conditioned" if how == "record_labels" else "blind",
                "template": f"cxr_max:{how}",
                "text": text,
                "status": "ok" if text else "error",
                "reason": None if text else "empty response in release",
                "latency_s": float("nan"),
                "prompt_tokens": 0,
                "completion_tokens": 0,
            }
        )
    traj = pd.DataFrame(rows).sort_values(["stream_index", "teacher", "record_id"]).reset_index(drop=True)
    return SourceTables(studies=studies, pairs=consecutive_pairs(studies), quarantine=quarantine, extra={"trajectories": traj},
                        dropped=counts)
