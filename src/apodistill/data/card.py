"""Data card (Markdown) and the synthetic contact sheet.

Why a contact sheet: "each finding has a visible signature" is a claim about pixels; the
sheet shows every rendered finding at increasing severity beside the same patient's
normal image, so anyone can check it by eye.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image, ImageDraw

from apodistill.data.render import RENDERED, render_study_image
from apodistill.findings import CHEXPERT_14, MS_CXR_T_5

SEVERITIES = (0.25, 0.5, 0.75, 1.0)


def contact_sheet(path: str | Path, size: int, seed: int, patients: int = 2, scale: int = 2) -> Path:
    """Rows: findings; columns per patient: normal, then each of :data:`SEVERITIES`."""
    label_w, head_h = 130, 16
    cell = size * scale
    cols = patients * (1 + len(SEVERITIES))
    sheet = Image.new("L", (label_w + cols * cell, head_h + len(RENDERED) * cell), 255)
    draw = ImageDraw.Draw(sheet)
    for j in range(cols):
        sev = "normal" if j % (1 + len(SEVERITIES)) == 0 else f"sev {SEVERITIES[j % (1 + len(SEVERITIES)) - 1]:.2f}"
        draw.text((label_w + j * cell + 2, 2), sev, fill=0)
    for r, finding in enumerate(RENDERED):
        draw.text((4, head_h + r * cell + cell // 2 - 6), finding, fill=0)
        for k in range(patients):
            pseed = seed * 1000 + k
            row = [render_study_image({}, size, pseed)] + [render_study_image({finding: s}, size, pseed) for s in SEVERITIES]
            for j, im in enumerate(row):
                x = label_w + (k * (1 + len(SEVERITIES)) + j) * cell
                sheet.paste(im.resize((cell, cell), Image.NEAREST), (x, head_h + r * cell))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def image_sheet(path: str | Path, images: list[Path], size: int = 96, per_row: int = 8) -> Path:
    """Real sources: the first studies' images side by side (a quick look that the paths are right)."""
    rows = max(1, -(-len(images) // per_row))
    sheet = Image.new("L", (per_row * size, rows * size), 255)
    for i, p in enumerate(images):
        with Image.open(p) as im:
            im.draft("L", (size, size))
            sheet.paste(im.convert("L").resize((size, size)), ((i % per_row) * size, (i // per_row) * size))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def drop_section(summary: dict[str, Any]) -> list[str]:
    """The "what the readers dropped" table: every count, zero included, so silence means zero."""
    if "dropped.rows_read" not in summary:
        return []

    def share(n: int, of: int) -> str:
        return f"{n / of:.2%}" if of else "-"

    d = {k.removeprefix("dropped."): v for k, v in summary.items() if k.startswith("dropped.")}
    rows = [
        ["missing report file", d["missing_reports"], d["reports_expected"] or "n/a (no report files read)", share(d["missing_reports"], d["reports_expected"])],
        ["report without FINDINGS / IMPRESSION", d["reports_without_sections"], d["reports_expected"] or "-", share(d["reports_without_sections"], d["reports_expected"])],
        ["missing image file", d["missing_images"], summary.get("images_checked", 0), share(d["missing_images"], summary.get("images_checked", 0))],
        ["unreadable annotation row", d["unreadable_rows"], d["rows_read"] or "-", share(d["unreadable_rows"], d["rows_read"])],
        ["unjoined MS-CXR-T row", d["unjoined_rows"], d["rows_read"] or "-", share(d["unjoined_rows"], d["rows_read"])],
    ]
    return ["## What the readers dropped", "",
            "Counted, never silent; the stage fails past `fetch.max_dropped_fraction` (reports, rows) or "
            "`fetch.max_bad_fraction` (images). Dropped rows are in `image_quarantine.parquet` with their reason.", "",
            _table(["what", "count", "of", "share"], rows), ""]


def data_card(studies: pd.DataFrame, pairs: pd.DataFrame, quarantine: pd.DataFrame, summary: dict[str, Any], source: str, contact_sheet_name: str | None) -> str:
    """The Markdown data card: counts per split and finding, pairs per progression class."""
    splits = ("train", "val", "test")
    parts = [
        f"# Benchmark data card ({source})",
        "",
        "Written by the `fetch` stage (`pipeline/fetch.py`); see docs/data.md for sources and columns.",
        "",
        "## Counts per split",
        "",
        _table(
            ["split", "patients", "studies", "pairs"],
            [[s, summary[f"patients_{s}"], summary[f"studies_{s}"], summary[f"pairs_{s}"]] for s in splits]
            + [["all", summary["patients"], summary["studies"], summary["pairs"]]],
        ),
        "",
        "## Study labels per finding",
        "",
        "Positive (1) / uncertain (-1) / negative (0) / not mentioned (NaN) studies, per split.",
        "",
    ]
    rows = []
    for f in CHEXPERT_14:
        col = f"label_{f}"
        row = [f]
        for s in splits:
            v = studies.loc[studies["split"] == s, col]
            row.append(f"{(v == 1).sum()} / {(v == -1).sum()} / {(v == 0).sum()} / {v.isna().sum()}")
        row.append(f"{(studies[col] == 1).mean():.1%}" if len(studies) else "-")
        rows.append(row)
    parts += [_table(["finding", *splits, "positive rate"], rows), ""]
    parts += ["## Pairs per progression class", ""]
    prow = []
    for f in MS_CXR_T_5:
        col = pairs[f"progression_{f}"]
        prow.append([f, *((col == c).sum() for c in ("improving", "stable", "worsening")), int(col.isna().sum())])
    parts += [_table(["finding", "improving", "stable", "worsening", "not labelled"], prow), ""]
    parts += [
        "## Image checks",
        "",
        f"{summary['images_checked']} images checked, {summary['bad_images']} unusable "
        f"({summary['bad_image_fraction']:.2%}); {summary['quarantined_rows']} rows in `image_quarantine.parquet`.",
        "",
    ]
    if len(quarantine):
        reasons = quarantine["reason"].value_counts()
        parts += [_table(["reason", "images"], [[r, n] for r, n in reasons.items()]), ""]
    parts += drop_section(summary)
    if contact_sheet_name:
        parts += ["## Contact sheet", "", f"![each rendered finding at increasing severity]({contact_sheet_name})", ""]
    return "\n".join(parts)
