"""The whole ``validate`` stage as one function of data and config (no file writes except
Data Docs, which GX builds itself): quality gate, teacher weights, drift."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from apodistill.config import ValidateConfig
from apodistill.validation.agreement import long_labels, loo_agreement
from apodistill.validation.drift import DriftResult, measure_drift
from apodistill.validation.gate import GateResult, expectation_counts, run_gate, threshold_violations
from apodistill.validation.suite import load_suite_spec, suite_path
from apodistill.validation.weights import teacher_weights


@dataclass
class ValidationOutcome:
    gate: GateResult
    weights: dict[str, Any]
    drift: DriftResult
    violations: list[str]
    metrics: dict[str, float]


def benchmark_splits(studies: pd.DataFrame) -> dict[str, str]:
    """study_id -> split from the benchmark's studies table."""
    return dict(zip(studies["study_id"].astype(str), studies["split"].astype(str)))


def validate_trajectories(
    table: pd.DataFrame,
    studies: pd.DataFrame,
    findings: list[str],
    cfg: ValidateConfig,
    weights_spec: str | dict[str, float],
    suites_dir: str | Path,
    docs_dir: str | Path | None,
) -> ValidationOutcome:
    """Gate the trajectory table, set teacher weights, measure drift, collect metrics.

    Threshold violations are returned, not raised, so the caller can still write the
    quarantine table and reports that explain them before failing.
    """
    spec = load_suite_spec(suite_path(suites_dir, cfg.suite))
    gate = run_gate(table, findings, cfg, spec, suites_dir, docs_dir, benchmark_splits(studies))
    teachers = sorted(gate.rows["teacher"].unique())
    weights = teacher_weights(weights_spec, gate.passed, findings, teachers)

    clean = gate.rows.loc[gate.rows["failed_expectations"] == ""]
    scored = loo_agreement(long_labels(clean, findings))
    drift = measure_drift(gate.rows, scored, cfg.drift_window, cfg.detector, cfg.detector_params)
    violations = threshold_violations(gate.per_teacher, cfg.max_quarantine_fraction)
    return ValidationOutcome(gate, weights, drift, violations, flat_metrics(gate, weights, drift))


def flat_metrics(gate: GateResult, weights: dict[str, Any], drift: DriftResult) -> dict[str, float]:
    """``reports/validate.json``: flat keys, numbers only (DVC and MLflow read them)."""
    total = gate.per_teacher.sum()
    m: dict[str, float] = {
        "rows": float(total["rows"]),
        "validated.rows": float(len(gate.passed)),
        "quarantine.rows": float(total["quarantined"]),
        "quarantine.fraction": float(total["quarantined"] / total["rows"]) if total["rows"] else 0.0,
    }
    for teacher, r in gate.per_teacher.iterrows():
        m[f"quarantine.{teacher}.rows"] = float(r["quarantined"])
        m[f"quarantine.{teacher}.fraction"] = float(r["fraction"])
    for name, n in expectation_counts(gate).items():
        m[f"quarantine.expectation.{name}"] = float(n)
    for teacher, w in weights["weights"].items():
        m[f"weights.{teacher}"] = float(w)
    for teacher, a in weights.get("agreement", {}).items():
        m[f"agreement.train.{teacher}"] = float(a)
    m.update(drift.summary())
    return m
