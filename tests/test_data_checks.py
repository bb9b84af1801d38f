"""Image checks, quarantine, the bad-fraction gate, the data card and the fetch stage script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from params_helpers import DEFAULT, section
from apodistill.data import SOURCES, DataError, build, render_study_image
from apodistill.data.images import check_image
from apodistill.data.sources import SourceTables, finish_tables, pairs_from_studies
from apodistill.findings import CHEXPERT_14

REPO = Path(__file__).resolve().parents[1]
N_GOOD = 20


@SOURCES.register("test_bad_images")
def _bad_images_source(params, out_dir: Path) -> SourceTables:
    """20 good PNGs plus, per ``params.fetch.n_patients`` - 20, one broken image of each kind."""
    (out_dir / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(params.fetch.n_patients):
        rel = f"img/{i}.png"
        if i < N_GOOD:
            render_study_image({}, 48, i).save(out_dir / rel)
        else:
            kind = (i - N_GOOD) % 4
            if kind == 0:
                (out_dir / rel).write_bytes(b"")
            elif kind == 1:
                (out_dir / rel).write_bytes(b"not an image at all")
            elif kind == 2:
                Image.new("L", (8, 8)).save(out_dir / rel)
            # kind 3: never written (missing file)
        rows.append(
            {"patient_id": f"P{i}", "study_id": f"S{i}", "split": ["train", "val", "test"][i % 3], "image_path": rel,
             "view": "PA", "report": "", "study_index": 0, **{f"label_{f}": 0.0 for f in CHEXPERT_14},
             **{f"severity_{f}": 0.0 for f in CHEXPERT_14}}  # fmt: skip
        )
    studies = finish_tables(pd.DataFrame(rows))
    return SourceTables(studies=studies, pairs=pairs_from_studies(studies, 0.15))


def params(**fetch) -> SimpleNamespace:
    return SimpleNamespace(base=DEFAULT.base, fetch=section("fetch", **fetch))


def test_bad_images_are_quarantined_with_reasons_not_a_crash(tmp_path):
    summary = build(params(source="test_bad_images", n_patients=N_GOOD + 4, max_bad_fraction=0.2), tmp_path)
    q = pd.read_parquet(tmp_path / "image_quarantine.parquet").set_index("study_id")
    assert summary["bad_images"] == 4 and summary["studies"] == N_GOOD
    assert q.at[f"S{N_GOOD}", "reason"] == "empty file"
    assert "not an image" in q.at[f"S{N_GOOD + 1}", "reason"]
    assert "implausible size 8x8" in q.at[f"S{N_GOOD + 2}", "reason"]
    assert q.at[f"S{N_GOOD + 3}", "reason"] == "missing file"
    studies = pd.read_parquet(tmp_path / "studies.parquet")
    assert studies["stream_index"].tolist() == list(range(N_GOOD))


def test_too_many_bad_images_fail_naming_the_numbers(tmp_path):
    with pytest.raises(DataError) as err:
        build(params(source="test_bad_images", n_patients=N_GOOD + 4, max_bad_fraction=0.1), tmp_path)
    msg = str(err.value)
    assert "4 of 24 images" in msg and "16.67%" in msg and "fetch.max_bad_fraction=10.00%" in msg
    assert "1 x empty file" in msg and "1 x missing file" in msg  # the reasons travel in the message ...
    assert list(tmp_path.iterdir()) == []  # ... since a failing fetch leaves nothing behind
    assert not [p for p in tmp_path.parent.iterdir() if ".tmp-" in p.name]


def test_check_image_accepts_real_kinds(tmp_path):
    Image.new("I;16", (64, 80)).save(tmp_path / "a.png")
    Image.new("RGB", (40, 40)).save(tmp_path / "b.jpg")
    Image.new("CMYK", (40, 40)).save(tmp_path / "c.jpg")
    assert check_image(tmp_path / "a.png") is None
    assert check_image(tmp_path / "b.jpg") is None
    assert "unexpected mode CMYK" in check_image(tmp_path / "c.jpg")


def test_unknown_source_lists_the_known_ones(tmp_path):
    from apodistill.config import ParamsError
    from apodistill.data import SOURCES

    with pytest.raises(ParamsError, match=r"fetch\.source: unknown data source 'mimc_cxr'; known: .*mimic_cxr.*synthetic"):
        params(source="mimc_cxr")  # refused when the params are read
    with pytest.raises(KeyError, match="mimic_cxr.*synthetic"):
        SOURCES.get("mimc_cxr")  # and by the registry build() looks it up in


def test_contact_sheet_shows_each_finding_unlike_normal(tmp_path):
    from apodistill.data.card import SEVERITIES, contact_sheet
    from apodistill.data.render import RENDERED

    path = contact_sheet(tmp_path / "sheet.png", 32, seed=1, patients=1, scale=1)
    sheet = np.asarray(Image.open(path), dtype=float)
    head, label_w, cell = 16, 130, 32
    for r, _ in enumerate(RENDERED):
        row = sheet[head + r * cell : head + (r + 1) * cell, label_w:]
        normal, most = row[:, :cell], row[:, len(SEVERITIES) * cell : (len(SEVERITIES) + 1) * cell]
        assert np.abs(most - normal).sum() > 255 * 3


def test_fetch_stage_script_writes_every_output(tmp_path):
    """The dvc.yaml command on a small synthetic config, MLflow into a temporary sqlite store."""
    cfg = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg["fetch"].update(n_patients=30, image_size=32)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # a worktree's src/ before the installed one
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "APODISTILL_MLFLOW_ARTIFACTS": str(tmp_path / "mlartifacts"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "HOME": str(tmp_path),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # a worktree's src/ when set, else the installed package
    }
    cmd = [sys.executable, str(REPO / "pipeline" / "fetch.py"), "--params", "params.yaml", "--out", "data/benchmark",
           "--card", "reports/data.md", "--contact-sheet", "reports/contact_sheet.png", "--metrics", "reports/fetch.json"]  # fmt: skip
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    bench = tmp_path / "data" / "benchmark"
    for name in ("studies.parquet", "pairs.parquet", "image_quarantine.parquet", "provenance.json"):
        assert (bench / name).is_file(), name
    metrics = json.loads((tmp_path / "reports" / "fetch.json").read_text())
    assert metrics["studies"] == 90 and metrics["pairs"] == 60 and metrics["bad_images"] == 0
    assert all(isinstance(v, (int, float)) for v in metrics.values())  # flat numbers for dvc metrics
    card = (tmp_path / "reports" / "data.md").read_text()
    assert "| train |" in card and "pleural_effusion" in card and "contact_sheet.png" in card
    prov = json.loads((bench / "provenance.json").read_text())
    assert prov["stage"] == "fetch" and prov["config"]["fetch"]["n_patients"] == 30 and prov["seeds"]["numpy"] == 42
    assert (tmp_path / "mlflow.db").is_file()


def test_fetch_stage_fails_cleanly_on_a_missing_root(tmp_path):
    cfg = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg["fetch"].update(source="mimic_cxr", root=str(tmp_path / "nope"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, str(REPO / "pipeline" / "fetch.py"), "--params", "params.yaml", "--out", "b",
           "--card", "d.md", "--contact-sheet", "c.png", "--metrics", "m.json", "--no-mlflow"]  # fmt: skip
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert str(tmp_path / "nope") in res.stderr and "mimic-cxr-2.0.0-metadata.csv.gz" in res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no output folder, card or metrics
