"""The issue's must-show on the teachers stage's own simulated roster (apodistill.teachers):
the drifting profile is flagged within two windows of its drift point, and no other
teacher is flagged. Uses the default detector from params.yaml."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from apodistill.config import load_params

REPO = Path(__file__).resolve().parents[1]
teachers = pytest.importorskip("apodistill.teachers.runner", reason="teachers stage not available")


def test_simulated_roster_drift_is_flagged_within_two_windows(tmp_path):
    from teachers_helpers import make_benchmark, simulated_roster, teachers_params

    from params_helpers import section, teachers_config
    from apodistill.findings import MS_CXR_T_5
    from apodistill.teachers.profiles import PROFILES
    from apodistill.validation.agreement import long_labels, loo_agreement
    from apodistill.validation.derive import derive_columns
    from apodistill.validation.drift import measure_drift

    cfg = load_params(REPO / "params.yaml").validate_
    bench = make_benchmark(tmp_path / "bench", n_patients=600, studies_per_patient=3, seed=0)
    out = teachers.run_teachers(
        teachers_config(**teachers_params(simulated_roster())), section("base", seed=0), "synthetic",
        bench, REPO / "templates" / "teachers", tmp_path / "cache.sqlite", progress=False,
    )  # fmt: skip
    studies = pd.read_parquet(bench / "studies.parquet")
    findings = list(MS_CXR_T_5)
    rows = derive_columns(out.table, findings, dict(zip(studies["study_id"], studies["split"])))
    rows["refused"] = rows["status"] == "refused"
    scored = loo_agreement(long_labels(rows[(rows["status"] == "ok") & rows["parse_error"].isna()], findings))
    flags = measure_drift(rows, scored, cfg.drift_window, cfg.detector, cfg.detector_params).flags

    drifting = {name: p.drift_at for name, p in PROFILES.items() if p.after is not None and p.drift_at is not None}
    assert drifting, "the simulated roster should plant a drift"
    n = int(studies["stream_index"].max()) + 1
    for name, at in drifting.items():
        point = int(at * n)
        mine = flags[flags["teacher"] == name]
        assert len(mine), f"{name} drifts at stream {point} but was never flagged"
        assert (mine["stream_index"] >= point).all(), mine
        assert mine["window"].min() - point // cfg.drift_window <= 2, mine
    assert flags[~flags["teacher"].isin(list(drifting))].empty, flags
