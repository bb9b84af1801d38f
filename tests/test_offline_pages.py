"""`dvc plots show` charts render with the network off (the Data Docs: test_validation_docs.py).

Headless Chromium with every host name resolving to nothing (apodistill.browser) stands in
for an offline machine. Each check renders the page twice, with the CDN links and with the
vendored assets, and measures the screenshot: the CDN version is the failure the test guards
against (a blank chart, an unstyled page), so the test can fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apodistill.browser import find_browser, run_headless
from apodistill.offline import dvc_template

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(find_browser() is None, reason="no Chromium on PATH (apt-get install -y chromium)")


def shot(page: Path, out: Path, width: int, height: int) -> np.ndarray:
    # virtual time lets vega-embed's asynchronous rendering finish before the screenshot
    run_headless([f"--window-size={width},{height}", "--virtual-time-budget=10000", f"--screenshot={out}", page.resolve().as_uri()])
    return np.asarray(Image.open(out).convert("RGB"), dtype=int)


def colored(pixels: np.ndarray) -> int:
    """Pixels with a clear hue (chart marks, bootstrap buttons); text and rules are grey."""
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())


def test_dvc_plots_render_offline(vendor, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "curve.csv").write_text("step,loss\n" + "".join(f"{i},{1 / (1 + i)}\n" for i in range(40)))
    (repo / "dvc.yaml").write_text("plots:\n  - curve.csv:\n      x: step\n      y: loss\n")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
    template = dvc_template(vendor, tmp_path / "template.html")
    subprocess.run([*dvc, "plots", "show", "-o", "cdn"], cwd=repo, check=True, capture_output=True)
    subprocess.run([*dvc, "plots", "show", "--html-template", str(template), "-o", "local"], cwd=repo, check=True, capture_output=True)
    assert "cdn.jsdelivr.net" not in (repo / "local" / "index.html").read_text()
    blank = shot(repo / "cdn" / "index.html", tmp_path / "cdn.png", 700, 500)
    chart = shot(repo / "local" / "index.html", tmp_path / "local.png", 700, 500)
    assert colored(blank) == 0  # DVC's own page offline: Vega never loads, nothing is drawn
    assert colored(chart) > 300  # the line and legend mark
    assert (chart.min(axis=2) < 100).sum() > 2000  # axes, ticks and labels
