"""GX Data Docs open in a headless Chromium and show the suite's results.
Skips cleanly where no Chromium is installed (Debian: apt-get install -y chromium)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from validation_helpers import FINDINGS, plant, roster_table

from params_helpers import section
from apodistill.validation import validate_trajectories
from apodistill.validation.screenshot import find_browser, headless_command, screenshot, validation_pages

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(find_browser() is None, reason="no Chromium on PATH (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    table, studies = roster_table(n_studies=40, seed=8, drift_teacher=None)
    table, studies, _ = plant(table, studies)
    out = tmp_path_factory.mktemp("docs")
    validate_trajectories(table, studies, FINDINGS, section("validate", drift_window=10), "auto", REPO / "validation", out)
    return out


def test_browser_renders_the_validation_page_with_every_expectation(docs):
    (page,) = validation_pages(docs)
    command = headless_command(find_browser(), "--dump-dom", page.resolve().as_uri())
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert "Expectation Validation Result" in dom and "Unsuccessful Expectations" in dom
    for name in ("status_ok", "answer_parseable", "labels_match_task", "unique_teacher_prompt", "split_matches_benchmark"):
        assert name in dom, name


def test_screenshot_is_a_rendered_page(docs, tmp_path):
    (page,) = validation_pages(docs)
    png = screenshot(page, tmp_path / "shot.png", width=1000, height=1400)
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.shape == (1400, 1000)
    assert pixels.std() > 5  # text on a page, not a blank or error screen


def test_validation_page_is_styled_offline(docs, vendor, tmp_path):
    """With the network off (browser.py maps every host to nothing) the page is unstyled until
    apodistill.offline.localize swaps its CDN links for the vendored copies."""
    from test_offline_pages import colored, shot

    from apodistill.offline import localize

    site = tmp_path / "docs"
    shutil.copytree(docs, site)
    (page,) = validation_pages(site)
    unstyled = shot(page, tmp_path / "cdn.png", 1000, 900)
    assert localize(site, vendor) == {}  # every CDN asset of the site has a local copy
    assert "https://" not in "".join(line for line in page.read_text().splitlines() if "<script" in line or "stylesheet" in line)
    styled = shot(page, tmp_path / "local.png", 1000, 900)
    # Bootstrap fills panels, table headers and buttons; unstyled, the page is text on white.
    ink = [int((p.min(axis=2) < 250).sum()) for p in (unstyled, styled)]
    assert ink[1] > 4 * ink[0], ink
    assert colored(styled) > colored(unstyled)  # the blue filter buttons
