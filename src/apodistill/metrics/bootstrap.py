"""Paired bootstrap interval for the difference in mean accuracy of two systems.

Both systems are scored on the same examples, so the examples are resampled once and the same
resample is applied to both (paired): the interval then reflects the uncertainty of the
*difference*, which is much narrower than the two separate intervals suggest.
"""

from __future__ import annotations

import numpy as np


def _mean_accuracy(weights: np.ndarray, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean over findings of per-finding accuracy, for each row of resample multiplicities.

    weights (B, n) counts of each example in each resample; values (n, f) correctness with NaN
    replaced by 0; valid (n, f) 1 where gold exists. A finding with no valid example in a resample
    is left out of that resample's mean, like ``acc.mean`` does.
    """
    hits = weights @ values
    counts = weights @ valid
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = hits / counts
    acc[counts == 0] = np.nan
    finite = np.isfinite(acc)
    return np.where(finite, acc, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)


def paired_bootstrap(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    chunk: int = 200,
) -> tuple[float, float, float]:
    """``(diff, lo, hi)``: mean accuracy of a minus b, with a 95% percentile interval.

    ``correct_a`` / ``correct_b`` are (n examples, f findings) arrays of 1/0 with NaN where gold
    leaves an example out (:func:`apodistill.metrics.correctness`); a 1-D array is one finding.
    The NaN patterns must match (same examples, same gold). Resamples are drawn as multinomial
    counts and processed ``chunk`` at a time, so memory stays O(chunk * n) for any n.
    ``n_resamples=0`` returns ``(diff, nan, nan)``.
    """
    a = np.asarray(correct_a, dtype=float)
    b = np.asarray(correct_b, dtype=float)
    if a.ndim == 1:
        a, b = a[:, None], b.reshape(-1, 1)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"correct_a {a.shape} and correct_b {b.shape} must be the same (n, f) shape")
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        raise ValueError("correct_a and correct_b leave out different examples: they are not paired")
    n = a.shape[0]
    if n == 0:
        raise ValueError("no examples to bootstrap")
    valid = (~np.isnan(a)).astype(float)
    va, vb = np.nan_to_num(a), np.nan_to_num(b)
    ones = np.ones((1, n))
    diff = float(_mean_accuracy(ones, va, valid)[0] - _mean_accuracy(ones, vb, valid)[0])
    if n_resamples <= 0:
        return diff, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(float)
        diffs.append(_mean_accuracy(w, va, valid) - _mean_accuracy(w, vb, valid))
    lo, hi = np.percentile(np.concatenate(diffs), [2.5, 97.5])
    return diff, float(lo), float(hi)
