"""Headless Chromium for the documented render checks (Data Docs, the evaluation report).

Chromium is a system package (Debian: ``apt-get install -y chromium``; the Makefile installs it
when missing). Flags suit a root, offline machine: no sandbox (root), no GPU, and every host
name resolving to nothing, so CDN assets fail at once instead of timing out.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """Path of the first Chromium-family browser on PATH, or None."""
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    return None


def headless_command(browser: str, *args: str) -> list[str]:
    return [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND", *args]  # fmt: skip


def run_headless(args: list[str], timeout_s: float = 120) -> subprocess.CompletedProcess:
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError(f"no headless browser found (tried {', '.join(BROWSERS)}); apt-get install -y chromium")
    proc = subprocess.run(headless_command(browser, *args), capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{browser} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def screenshot(page: str | Path, out: str | Path, width: int = 1500, height: int = 3000, timeout_s: float = 120) -> Path:
    """Write a PNG of ``page`` as Chromium renders it."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    run_headless([f"--window-size={width},{height}", f"--screenshot={out}", Path(page).resolve().as_uri()], timeout_s)
    if not out.is_file():
        raise RuntimeError(f"the browser exited cleanly but wrote no {out}")
    return out


def rendered_text(page: str | Path, timeout_s: float = 120) -> str:
    """The text of the DOM after Chromium parsed and laid out the page (tags stripped)."""
    html = run_headless(["--dump-dom", Path(page).resolve().as_uri()], timeout_s).stdout
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
