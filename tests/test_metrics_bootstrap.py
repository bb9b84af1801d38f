"""Paired bootstrap: exact cases, determinism, and width against the analytic standard error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apodistill.metrics import paired_bootstrap


def test_identical_systems_have_a_zero_interval():
    a = np.array([[1, 0], [1, 1], [0, np.nan], [1, 0]], dtype=float)
    assert paired_bootstrap(a, a.copy(), 200, seed=0) == (0.0, 0.0, 0.0)


def test_always_right_against_always_wrong_is_exactly_one():
    a = np.ones((30, 3))
    diff, lo, hi = paired_bootstrap(a, np.zeros((30, 3)), 100, seed=1)
    assert (diff, lo, hi) == (1.0, 1.0, 1.0)


def test_difference_is_the_mean_over_findings_of_per_finding_accuracy():
    # finding 0 over 4 rows: a 3/4, b 1/4; finding 1 over the 2 non-NaN rows: a 1/2, b 2/2
    a = np.array([[1, 1], [1, np.nan], [1, 0], [0, np.nan]], dtype=float)
    b = np.array([[0, 1], [1, np.nan], [0, 1], [0, np.nan]], dtype=float)
    diff, lo, hi = paired_bootstrap(a, b, 500, seed=3)
    assert diff == pytest.approx(((3 / 4 + 1 / 2) - (1 / 4 + 1)) / 2)
    assert lo <= diff <= hi


def test_seeded_and_independent_of_chunking():
    rng = np.random.default_rng(7)
    a = (rng.random((120, 5)) < 0.8).astype(float)
    b = (rng.random((120, 5)) < 0.7).astype(float)
    first = paired_bootstrap(a, b, 300, seed=11)
    assert paired_bootstrap(a, b, 300, seed=11) == first
    assert paired_bootstrap(a, b, 300, seed=11, chunk=7) == pytest.approx(first)
    assert paired_bootstrap(a, b, 300, seed=12) != first


def test_width_matches_the_analytic_standard_error():
    # One finding, n = 2000 paired examples: the percentile interval should be close to
    # diff +- 1.96 * sd(a - b) / sqrt(n).
    rng = np.random.default_rng(0)
    n = 2000
    a = (rng.random(n) < 0.80).astype(float)
    b = np.where(rng.random(n) < 0.7, a, 1 - a)  # correlated with a, as paired systems are
    diff, lo, hi = paired_bootstrap(a, b, 2000, seed=5)
    se = np.std(a - b, ddof=1) / math.sqrt(n)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert (lo + hi) / 2 == pytest.approx(diff, abs=0.25 * se)


def test_unpaired_inputs_are_rejected():
    a = np.array([[1.0, np.nan], [0.0, 1.0]])
    with pytest.raises(ValueError, match="not paired"):
        paired_bootstrap(a, np.array([[1.0, 1.0], [0.0, 1.0]]), 10)
    with pytest.raises(ValueError, match="shape"):
        paired_bootstrap(a, np.ones((3, 2)), 10)


def test_zero_resamples_gives_the_difference_only():
    diff, lo, hi = paired_bootstrap(np.ones(5), np.zeros(5), 0)
    assert diff == 1.0 and math.isnan(lo) and math.isnan(hi)
