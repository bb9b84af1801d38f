"""The seeds table (`make seeds`): means, sds and which claims hold, from hand-made runs."""

from __future__ import annotations

import pytest

from apodistill.reporting.seeds import markdown, summarise


def _run(seed: int, apo: float, spd: float, diff: float, lo: float, hi: float) -> dict:
    return {"params.base.seed": seed, "params.self_distill.method": "dawid_skene",
            "apo.pair_acc.mean": apo, "spd.pair_acc.mean": spd,
            "apo.vs_spd.pair_acc.diff": diff, "apo.vs_spd.pair_acc.ci_low": lo, "apo.vs_spd.pair_acc.ci_high": hi,
            "apo.acc.mean": apo + 0.4, "spd.acc.mean": spd + 0.4, "best_teacher.acc.mean": 0.75, "mean_teacher.acc.mean": 0.55,
            "self_distill.acc.dawid_skene.single": 0.72, "self_distill.acc.vote.single": 0.70 - 0.01 * seed}  # fmt: skip


def test_means_sds_and_which_claims_hold():
    runs = {"s1": _run(1, 0.40, 0.30, 0.10, 0.05, 0.15), "s2": _run(2, 0.32, 0.34, -0.02, -0.06, 0.02), "s3": _run(3, 0.36, 0.32, 0.04, 0.0, 0.08)}
    out = summarise(runs)
    apo = next(r for r in out["numbers"] if r["key"] == "apo.pair_acc.mean")
    assert apo["mean"] == pytest.approx(0.36) and apo["sd"] == pytest.approx(0.04) and apo["values"] == [0.40, 0.32, 0.36]
    claims = {c["label"]: c for c in out["claims"]}
    pair = claims["APO > SPD only (pairs)"]
    assert pair["mean"] == pytest.approx(0.04) and pair["holds"] is False  # seed 2 goes the other way
    single = claims["APO > SPD only (single studies)"]
    assert single["diffs"] == pytest.approx([0.10, -0.02, 0.04]) and single["holds"] is False
    best = claims["APO >= best single teacher (single studies)"]
    assert best["diffs"] == pytest.approx([0.05, -0.03, 0.01]) and best["holds"] is False
    assert claims["SPD only > mean teacher (single studies)"]["holds"] is True
    consensus = claims["chosen consensus > plain vote (train) (dawid_skene, single)"]
    assert consensus["diffs"] == pytest.approx([0.03, 0.04, 0.05]) and consensus["holds"] is True
    text = markdown(out)
    assert "| APO > SPD only (pairs) | **no** | +0.040 ± 0.060 | +0.100 [+0.050, +0.150] |" in text
    assert "| SPD only > mean teacher (single studies) | yes |" in text
