"""Open the GX Data Docs in a headless Chromium and save a screenshot of the validation page.

A documented check that the HTML renders and shows the suite's results:

    python -m apodistill.validation.screenshot reports/validation reports/validation_screenshot.png

Chromium is a system package (Debian: ``apt-get install -y chromium``); without it the
check says so and exits 3. The Data Docs pull their CSS from CDNs, so offline the page
is unstyled but complete.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """Path of the first Chromium-family browser on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def headless_command(browser: str, *args: str) -> list[str]:
    """Chromium headless flags for a root, offline machine: no sandbox (root), no GPU, and
    every host name resolving to nothing, so the CDN assets fail at once instead of timing out."""
    return [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND", *args]  # fmt: skip


def validation_pages(docs_dir: str | Path) -> list[Path]:
    """The validation-result pages of a Data Docs site, oldest first."""
    return sorted((Path(docs_dir) / "validations").rglob("*.html"))


def screenshot(page: str | Path, out: str | Path, width: int = 1400, height: int = 2400, timeout_s: float = 120) -> Path:
    """Render ``page`` headless and write a PNG to ``out``; raise if the browser fails."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError(f"no headless browser found (tried {', '.join(BROWSERS)}); apt-get install -y chromium")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = headless_command(browser, f"--window-size={width},{height}", f"--screenshot={out}", Path(page).resolve().as_uri())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"{browser} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return out


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
