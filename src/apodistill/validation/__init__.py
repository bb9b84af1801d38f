"""Trajectory quality gate (Great Expectations) and teacher drift measurement.

``validate_trajectories`` runs the whole ``validate`` stage on in-memory tables; the
pieces (derived columns, suite files, leave-one-out agreement, weights, drift, plots)
live in their own modules so each can be tested alone.
"""

from apodistill.validation.agreement import long_labels, loo_agreement, teacher_agreement
from apodistill.validation.drift import DETECTORS, DriftResult, measure_drift
from apodistill.validation.gate import GateResult, run_gate, threshold_violations
from apodistill.validation.run import ValidationOutcome, flat_metrics, validate_trajectories
from apodistill.validation.suite import SuiteError, SuiteSpec, load_suite_spec, run_suite
from apodistill.validation.weights import teacher_weights

__all__ = [
    "DETECTORS",
    "DriftResult",
    "GateResult",
    "SuiteError",
    "SuiteSpec",
    "ValidationOutcome",
    "flat_metrics",
    "load_suite_spec",
    "long_labels",
    "loo_agreement",
    "measure_drift",
    "run_gate",
    "run_suite",
    "teacher_agreement",
    "teacher_weights",
    "threshold_violations",
    "validate_trajectories",
]
