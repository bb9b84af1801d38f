"""Cache keys, reruns, error retries, quarantine, config checks and the stage script."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from teachers_helpers import make_benchmark, simulated_roster, teachers_params

from apodistill.config import ParamsError, load_params
from apodistill.config import parse_params
from params_helpers import section, teachers_config
from apodistill.teachers.prompts import load_templates, render
from apodistill.teachers.runner import TRAJECTORY_COLUMNS, run_teachers

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates/teachers"


def _run(tmp_path, cfg, bench, templates=TEMPLATES, seed=42, cache="c.sqlite"):
    return run_teachers(cfg, section("base", seed=seed), "synthetic", bench, templates, tmp_path / cache, progress=False)


@pytest.fixture
def setup(tmp_path):
    bench = make_benchmark(tmp_path / "b", n_patients=10, studies_per_patient=2)
    roster = simulated_roster()[:3]
    return bench, teachers_config(**teachers_params(roster))


def test_rerun_asks_nothing_and_gives_the_same_table(tmp_path, setup):
    bench, cfg = setup
    first = _run(tmp_path, cfg, bench)
    assert sum(first.requested.values()) == 60
    again = _run(tmp_path, cfg, bench)
    assert sum(again.requested.values()) == 0
    assert again.table.equals(first.table)
    assert list(first.table.columns) == list(TRAJECTORY_COLUMNS)
    assert first.stats["gpt5.cached"] == 0 and again.stats["gpt5.cached"] == 20


def test_key_changes_only_with_what_changes_the_answer(tmp_path, setup):
    bench, cfg = setup
    base = _run(tmp_path, cfg, bench).table
    # new image bytes for one study: only that study is asked again, by each teacher
    path = bench / "images/s00003.png"
    path.write_bytes(path.read_bytes() + b"\0")
    out = _run(tmp_path, cfg, bench)
    assert out.requested == {"gpt5": 1, "gemini25": 1, "sonnet4": 1}
    # another seed changes simulated answers: all asked again
    assert sum(_run(tmp_path, cfg, bench, seed=7).requested.values()) == 60
    # template text changes the prompt: all asked again
    tdir = tmp_path / "templates"
    shutil.copytree(TEMPLATES, tdir)
    (tdir / "single_blind.txt").write_text((tdir / "single_blind.txt").read_text() + "\nBe brief.\n")
    assert sum(_run(tmp_path, cfg, bench, templates=tdir).requested.values()) == 60
    # weights do not change answers; a new roster member is the only one asked
    more = teachers_config(**teachers_params(simulated_roster()[:4], weights={"gpt5": 2, "gemini25": 1, "sonnet4": 1, "qwen_vl_max": 1}))
    out = _run(tmp_path, more, bench)
    assert out.requested == {"gpt5": 0, "gemini25": 0, "sonnet4": 0, "qwen_vl_max": 20}
    unchanged = base[base.study_id != "s00003"].record_id
    assert set(unchanged) <= set(out.table.record_id)


def test_an_edited_simulator_never_reuses_the_old_answers(tmp_path, setup, monkeypatch):
    """The simulated backend's key holds a digest of its code (as the hf backend's holds its
    weights): answers cached before an edit of the simulator are asked again, not reused."""
    from apodistill.teachers import simulated

    bench, cfg = setup
    assert simulated.SIMULATOR_CODE == simulated.simulator_digest() and len(simulated.SIMULATOR_CODE) == 16
    assert sum(_run(tmp_path, cfg, bench).requested.values()) == 60
    assert sum(_run(tmp_path, cfg, bench).requested.values()) == 0
    monkeypatch.setattr(simulated, "SIMULATOR_CODE", "edited-phrases")  # what an edit of phrases.py does to it
    assert sum(_run(tmp_path, cfg, bench).requested.values()) == 60


def test_unreadable_image_is_an_error_row_and_is_retried(tmp_path, setup):
    bench, cfg = setup
    img = bench / "images/s00004.png"
    saved = img.read_bytes()
    img.unlink()
    out = _run(tmp_path, cfg, bench)
    bad = out.table[out.table.study_id == "s00004"]
    assert len(out.table) == 60 and (bad.status == "error").all()
    assert bad.reason.str.startswith("image_unreadable").all()
    assert out.stats["gpt5.error_reason.image_unreadable"] == 1
    no_retry = teachers_config(**teachers_params(simulated_roster()[:3], retry_errors=False))
    assert sum(_run(tmp_path, no_retry, bench).requested.values()) == 0
    img.write_bytes(saved)
    out = _run(tmp_path, cfg, bench)
    assert out.requested == {"gpt5": 1, "gemini25": 1, "sonnet4": 1}
    assert (out.table[out.table.study_id == "s00004"].status != "error").all()


def test_quarantined_images_are_left_out_and_counted(tmp_path, setup):
    bench, cfg = setup
    pd.DataFrame({"image_path": ["images/s00001.png"], "study_id": ["s00001"], "reason": ["decode"]}).to_parquet(
        bench / "image_quarantine.parquet", index=False)
    out = _run(tmp_path, cfg, bench)
    assert "s00001" not in set(out.table.study_id) and len(out.table) == 57
    assert out.stats["skipped_quarantined.single"] == 1


def test_templates_load_and_render():
    templates = load_templates(TEMPLATES)
    assert set(templates) == {"single_blind.txt", "single_label_conditioned.txt", "pair_blind.txt", "pair_label_conditioned.txt"}
    findings = ["pleural_effusion", "edema"]
    blind = render(templates["single_blind.txt"], "single", findings)
    assert "pleural effusion: <yes|no|uncertain>" in blind and "$" not in blind
    known = render(templates["pair_label_conditioned.txt"], "pair", findings, {"pleural_effusion": "worsening", "edema": "stable"})
    assert "pleural effusion: worsening" in known and "improving|stable|worsening" in known


def test_config_checks_name_the_problem():
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    for change, needle in [
        ({"backend": "carrier_pigeon"}, "unknown teacher backend 'carrier_pigeon'"),
        ({"profile": "nobody"}, "needs `profile:`"),
        ({"backend": "openai", "base_url": None}, "needs `base_url:`"),
        ({"drift_at": 1.5}, "drift_at"),
    ]:
        bad = yaml.safe_load(yaml.safe_dump(data))
        bad["teachers"]["roster"][0].update(change)
        with pytest.raises(ParamsError, match="teachers.roster.0") as err:
            parse_params(bad)
        assert needle in str(err.value), str(err.value)
    assert load_params(REPO / "params.yaml").teachers.roster[4].drift_at == 0.5
