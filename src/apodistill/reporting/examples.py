"""Examples where two students disagree, with their images, for the HTML report.

A reader trusts an accuracy gap more after seeing the cases behind it: the examples shown are
those where the two students' answers differ, the ones where exactly one of them is right first
(the cases that move the paired bootstrap), in a fixed order so reruns show the same studies.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from apodistill.findings import display

THUMBNAIL_PX = 224  # embedded image size: enough to see a signature, small enough to keep the page light


@dataclass
class Example:
    task: str
    study_id: str
    prior_study_id: str
    images: list[str]  # data: URIs (prior first for pairs); empty when the file is missing
    rows: list[dict]  # one per finding: finding, gold, a, b, a_class, b_class (ok | bad | same: not scored)
    think_a: str  # the reasoning; the raw output (cut) when there is no <think>
    think_b: str
    report: str


def image_data_uri(path: str | Path, max_px: int = THUMBNAIL_PX) -> str:
    """A PNG thumbnail as a ``data:`` URI, so the HTML carries its pictures (self-contained)."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("L") if img.mode not in ("L", "RGB") else img
        img.thumbnail((max_px, max_px))
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _verdict(scored: bool, ok: float) -> str:
    return "ok" if scored and ok == 1 else "bad" if scored else "same"


def _shown(row: pd.Series, limit: int = 600) -> str:
    text = row.get("think") or ""
    if not text:
        raw = row.get("text")
        text = f"(no <think>; raw output) {raw}" if isinstance(raw, str) and raw else "(no output)"
    return text if len(text) <= limit else text[:limit] + " …"


def disagreements(
    predictions: pd.DataFrame,
    a: str,
    b: str,
    findings: Sequence[str],
    n: int,
    image_path: Callable[[str], Path | None],
    reports: dict[str, str] | None = None,
) -> list[Example]:
    """Up to ``n`` examples where systems ``a`` and ``b`` answer differently on some finding.

    Order: most findings where exactly one of them is right, then study id. ``image_path`` maps
    a study id to its image file (None when unknown); ``reports`` a study id to its reference report.
    """
    key = ["task", "study_id", "prior_study_id"]
    pa = predictions[predictions["system"] == a].set_index(key)
    pb = predictions[predictions["system"] == b].set_index(key)
    common = pa.index.intersection(pb.index)
    if n <= 0 or common.empty:
        return []
    pa, pb = pa.loc[common], pb.loc[common]
    ans_a = pa[[f"answer_{f}" for f in findings]].fillna("unparsed").to_numpy()
    ans_b = pb[[f"answer_{f}" for f in findings]].fillna("unparsed").to_numpy()
    ok_a = pa[[f"correct_{f}" for f in findings]].to_numpy(dtype=float)
    ok_b = pb[[f"correct_{f}" for f in findings]].to_numpy(dtype=float)
    differ = (ans_a != ans_b).sum(axis=1)
    decisive = np.nansum(np.abs(ok_a - ok_b), axis=1)
    # Two readable answers that differ teach more than a broken output, so those come first.
    both_read = pa["wellformed"].to_numpy(dtype=bool) & pb["wellformed"].to_numpy(dtype=bool)
    order = sorted((i for i in range(len(common)) if differ[i]), key=lambda i: (not both_read[i], -decisive[i], -differ[i], common[i][1], common[i][2]))
    out = []
    for i in order[:n]:
        task, study, prior = common[i]
        paths = [image_path(s) for s in ((prior, study) if task == "pair" else (study,))]
        rows = []
        for j, f in enumerate(findings):
            gold = pa.iloc[i][f"gold_{f}"]
            scored = not np.isnan(ok_a[i, j])  # gold uncertain / unlabelled: not scored, shown grey
            rows.append({"finding": display(f), "gold": gold if isinstance(gold, str) else "not labelled", "a": ans_a[i, j], "b": ans_b[i, j],
                         "a_class": _verdict(scored, ok_a[i, j]), "b_class": _verdict(scored, ok_b[i, j])})  # fmt: skip
        out.append(
            Example(
                task=task,
                study_id=study,
                prior_study_id=prior,
                images=[image_data_uri(p) for p in paths if p is not None and Path(p).is_file()],
                rows=rows,
                think_a=_shown(pa.iloc[i]),
                think_b=_shown(pb.iloc[i]),
                report=(reports or {}).get(study, ""),
            )
        )
    return out
