"""Open the GX Data Docs in a headless Chromium and save a screenshot of the validation page.

A documented check that the HTML renders and shows the suite's results:

    python -m apodistill.validation.screenshot reports/validation reports/validation_screenshot.png

Chromium is a system package (Debian: ``apt-get install -y chromium``); without it the
check says so and exits 3. The Data Docs pull their CSS from CDNs, so offline the page
is unstyled but complete.
"""

from __future__ import annotations

import sys
from pathlib import Path

from apodistill.browser import BROWSERS, find_browser, headless_command, screenshot

__all__ = ["BROWSERS", "find_browser", "headless_command", "screenshot", "validation_pages", "main"]


def validation_pages(docs_dir: str | Path) -> list[Path]:
    """The validation-result pages of a Data Docs site, oldest first."""
    return sorted((Path(docs_dir) / "validations").rglob("*.html"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m apodistill.validation.screenshot DOCS_DIR OUT.png", file=sys.stderr)
        return 2
    pages = validation_pages(args[0])
    if not pages:
        print(f"error: no validation pages under {args[0]}/validations (run the validate stage first)", file=sys.stderr)
        return 1
    if find_browser() is None:
        print("skipped: no Chromium on PATH (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 3
    print(screenshot(pages[-1], args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
