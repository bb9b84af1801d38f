"""reports/index.html renders in headless Chromium: every comparison row is in the rendered DOM
and a screenshot is written. Skips when no Chromium is installed (Debian: apt-get install -y chromium)."""

from __future__ import annotations

import pytest
from PIL import Image

from apodistill.reporting import screenshot as shot
from evaluate_helpers import ROW_LABELS, build_report

needs_browser = pytest.mark.skipif(shot.find_browser() is None, reason="no Chromium on PATH (apt-get install -y chromium)")


@needs_browser
def test_report_renders_with_every_row(tmp_path):
    _, _, written = build_report(tmp_path)
    png = tmp_path / "reports" / "index.png"
    assert shot.check_report(written["html"], png, ROW_LABELS + shot.REQUIRED_ROWS) == []  # what main() runs
    with Image.open(png) as img:
        assert img.size == (1500, 3000)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # drawn tables and charts, not a blank page


@needs_browser
def test_check_fails_on_a_page_without_the_rows(tmp_path, capsys):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><table><tr><td>gpt5</td></tr></table></body></html>")
    assert shot.main([str(bad), str(tmp_path / "bad.png")]) == 1
    assert "lacks rows" in capsys.readouterr().err and not (tmp_path / "bad.png").exists()


def test_check_command_without_page_or_browser(tmp_path, monkeypatch):
    assert shot.main([str(tmp_path / "missing.html"), str(tmp_path / "x.png")]) == 1
    page = tmp_path / "page.html"
    page.write_text("<html></html>")
    monkeypatch.setattr(shot, "find_browser", lambda: None)
    assert shot.main([str(page), str(tmp_path / "x.png")]) == 3
    assert shot.main([]) == 2
