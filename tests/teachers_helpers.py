"""Tiny benchmark folders in the fetch stage's contract, for the teachers tests and bench.

The real benchmark comes from the data stage; these tables carry the same columns with
random labels and small unique PNG images, so the teachers stage can be tested alone.
"""

from __future__ import annotations

import contextlib
import gc
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from apodistill.data.sources import source_record, write_source_record
from apodistill.findings import CHEXPERT_14, MS_CXR_T_5

@contextlib.contextmanager
def gc_held():
    """Hold the garbage collector for a timed teachers run: a full collection in a test worker
    that has loaded torch can stall the event loop past a short deadline or hedge threshold,
    so a normal answer would be timed out or duplicated."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


ROSTER = ("gpt5", "gemini25", "sonnet4", "qwen_vl_max", "grok4", "glm45v", "moonshot")


def make_benchmark(folder: str | Path, n_patients: int = 10, studies_per_patient: int = 2, seed: int = 0,
                   prevalence: float = 0.3, image_size: int = 8, source: str = "synthetic", radiographs: bool = False) -> Path:
    """Write studies.parquet, pairs.parquet, image_quarantine.parquet, source.json (``source``'s
    licence record) and PNGs under ``folder`` (flat gray squares, or rendered chest radiographs
    with ``radiographs``, e.g. for a served student whose input check refuses anything else)."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = n_patients * studies_per_patient
    order = rng.permutation(n)  # stream order differs from patient order
    rows = []
    for i in range(n):
        pid, k = divmod(i, studies_per_patient)
        sid = f"s{i:05d}"
        path = f"images/{sid}.png"
        if radiographs:
            from apodistill.data import render_study_image

            render_study_image({}, image_size, seed * 100_000 + i).save(folder / path)
        else:
            px = np.full((image_size, image_size), i % 251, dtype=np.uint8)
            px[0, :4] = [i & 255, (i >> 8) & 255, (i >> 16) & 255, 7]  # unique bytes per study
            Image.fromarray(px, mode="L").save(folder / path)
        split = ("train", "train", "train", "val", "test")[pid % 5]
        row = {"patient_id": f"p{pid:04d}", "study_id": sid, "split": split, "image_path": path,
               "view": "PA", "report": "", "study_index": k, "stream_index": int(order[i])}
        for f in CHEXPERT_14:
            pos = rng.random() < prevalence
            row[f"label_{f}"] = 1.0 if pos else (0.0 if rng.random() < 0.7 else float("nan"))
            row[f"severity_{f}"] = float(rng.uniform(0.2, 1.0)) if pos else 0.0
        rows.append(row)
    studies = pd.DataFrame(rows)
    studies.to_parquet(folder / "studies.parquet", index=False)
    pairs = []
    for pid in range(n_patients):
        for k in range(1, studies_per_patient):
            prior = studies.iloc[pid * studies_per_patient + k - 1]
            cur = studies.iloc[pid * studies_per_patient + k]
            pair = {"pair_id": f"{prior.study_id}-{cur.study_id}", "patient_id": cur.patient_id, "split": cur.split,
                    "prior_study_id": prior.study_id, "current_study_id": cur.study_id,
                    "prior_image_path": prior.image_path, "current_image_path": cur.image_path,
                    "stream_index": len(pairs)}
            for f in MS_CXR_T_5:
                d = cur[f"severity_{f}"] - prior[f"severity_{f}"]
                pair[f"progression_{f}"] = "worsening" if d > 0.1 else ("improving" if d < -0.1 else "stable")
            pairs.append(pair)
    pd.DataFrame(pairs).to_parquet(folder / "pairs.parquet", index=False)
    pd.DataFrame({"image_path": pd.Series([], dtype=str), "study_id": pd.Series([], dtype=str),
                  "reason": pd.Series([], dtype=str)}).to_parquet(folder / "image_quarantine.parquet", index=False)
    write_source_record(folder, source_record(source, list(studies["image_path"])))  # as the fetch stage does
    return folder


def simulated_roster(**overrides) -> list[dict]:
    return [{"name": n, "backend": "simulated", "model": n, "profile": n, **overrides} for n in ROSTER]


def teachers_params(roster: list[dict], tasks=("single",), **extra) -> dict:
    return {"roster": roster, "weights": "auto", "tasks": list(tasks), **extra}
