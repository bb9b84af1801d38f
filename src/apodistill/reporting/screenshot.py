"""Render reports/index.html in headless Chromium: a screenshot, and the rendered DOM's text.

The documented check that the report renders and shows every system row (docs/evaluation.md):

    python -m apodistill.reporting.screenshot reports/index.html reports/index.png

Exit 0 with the PNG written; 1 when the page is missing or lacks a row; 3 when no Chromium is
installed (Debian: ``apt-get install -y chromium``). The page is self-contained (inline CSS and
base64 images), so an offline browser shows it complete.
"""

from __future__ import annotations

import sys
from pathlib import Path

from apodistill.browser import find_browser, rendered_text, screenshot


def missing_rows(text: str, rows: list[str]) -> list[str]:
    return [r for r in rows if r not in text]


# What the rendered page must show (issue 7: every system of the comparison; issue 11: the mean
# teacher and the control arm, a row even when not run).
REQUIRED_ROWS = ["Majority vote of the teachers", "Mean teacher", "Best single teacher", "SPD only", "SPD + pairwise DPO", "SPD + consensus + APO",
                 "Control arm (gold labels reach training)", "(published)"]  # fmt: skip


def check_report(page: str | Path, out: str | Path, rows: list[str] = REQUIRED_ROWS) -> list[str]:
    """The rows the rendered page lacks; when none, the screenshot is written to ``out``."""
    missing = missing_rows(rendered_text(page), rows)
    if not missing:
        screenshot(page, out)
    return missing


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m apodistill.reporting.screenshot REPORT.html OUT.png", file=sys.stderr)
        return 2
    page, out = Path(args[0]), Path(args[1])
    if not page.is_file():
        print(f"error: {page} not found (run the evaluate stage first: dvc repro evaluate)", file=sys.stderr)
        return 1
    if find_browser() is None:
        print("skipped: no Chromium on PATH (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 3
    missing = check_report(page, out)
    if missing:
        print(f"error: the rendered page lacks rows {missing}", file=sys.stderr)
        return 1
    print(f"{out}: renders, with every row of the comparison ({', '.join(REQUIRED_ROWS)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
