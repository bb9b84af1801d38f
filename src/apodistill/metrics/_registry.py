"""The ``METRICS`` registry, kept apart so every metric module can register without import cycles."""

from __future__ import annotations

from typing import Callable

from apodistill.registry import Registry

# Two call shapes live here, both returning a flat ``{key: float}`` dict:
#   table metrics   f(pred: DataFrame, gold: DataFrame, findings, key=...)   "accuracy", "prf"
#   text metrics    f(refs: list[str], hyps: list[str])                      "report", "chexpert_f1"
METRICS: Registry[Callable[..., dict]] = Registry("metric")
