"""The trajectory quality gate: derive columns, run the suite's checkpoint, split the table.

A row that fails any expectation goes to the quarantine table with the names of every
expectation it failed; the others pass on with their parsed ``answer_<finding>`` labels.
Nothing is dropped silently: each row ends up in exactly one of the two tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from apodistill.config import ValidateConfig
from apodistill.validation.derive import derive_columns
from apodistill.validation.suite import SuiteRun, SuiteSpec, run_suite

#: The expectation whose failures count as refusals in the drift measures, besides status "refused".
REFUSAL_EXPECTATION = "no_refusal_phrase"


@dataclass
class GateResult:
    """``rows``: every input row with derived columns and ``failed_expectations`` ("" if none);
    ``passed`` / ``quarantine``: the output tables; ``per_teacher``: counts and fractions."""

    rows: pd.DataFrame
    passed: pd.DataFrame
    quarantine: pd.DataFrame
    per_teacher: pd.DataFrame
    suite: SuiteRun


def suite_parameters(spec: SuiteSpec, cfg: ValidateConfig) -> dict[str, Any]:
    """Values for the suite's ``{$param: key}`` references, read from the validate section."""
    values = cfg.model_dump()
    unknown = sorted(k for k in spec.param_keys() if k not in values)
    if unknown:
        raise KeyError(f"suite {spec.name} refers to unknown validate params {unknown}; known: {', '.join(sorted(values))}")
    return {k: values[k] for k in sorted(spec.param_keys())}


def run_gate(
    table: pd.DataFrame,
    findings: list[str],
    cfg: ValidateConfig,
    spec: SuiteSpec,
    suites_dir: str | Path,
    docs_dir: str | Path | None,
    benchmark_splits: dict[str, str],
) -> GateResult:
    """Validate ``table`` (the teachers stage's trajectory table) against ``spec``."""
    columns = list(table.columns)
    rows = derive_columns(table, findings, benchmark_splits)
    run = run_suite(rows, spec, suite_parameters(spec, cfg), suites_dir, docs_dir)
    failed: dict[int, list[str]] = {}
    for name in spec.names():  # suite order, so the reason string is stable
        for row_id in run.failures[name]:
            failed.setdefault(row_id, []).append(name)
    rows["failed_expectations"] = rows["row_id"].map(lambda i: ",".join(failed.get(i, [])))
    rows["refused"] = (rows["status"] == "refused") | rows["row_id"].isin(run.failures.get(REFUSAL_EXPECTATION, []))

    bad = rows["failed_expectations"] != ""
    answers = [f"answer_{f}" for f in findings]
    passed = rows.loc[~bad, columns + answers].reset_index(drop=True)
    quarantine = rows.loc[bad, columns + ["failed_expectations"]].reset_index(drop=True)

    per_teacher = rows.groupby("teacher").agg(
        rows=("row_id", "size"), quarantined=("failed_expectations", lambda s: int((s != "").sum()))
    )
    per_teacher["fraction"] = per_teacher["quarantined"] / per_teacher["rows"]
    return GateResult(rows=rows, passed=passed, quarantine=quarantine, per_teacher=per_teacher, suite=run)


def threshold_violations(per_teacher: pd.DataFrame, max_fraction: float) -> list[str]:
    """One message per teacher that lost more than ``max_fraction`` of its rows."""
    return [
        f"teacher {t}: {int(r.quarantined)} of {int(r.rows)} trajectories quarantined "
        f"({r.fraction:.1%}) > validate.max_quarantine_fraction {max_fraction:.1%}"
        for t, r in per_teacher.iterrows()
        if r.fraction > max_fraction
    ]


def expectation_counts(result: GateResult) -> dict[str, int]:
    """Rows failing each expectation (a row failing several counts once for each)."""
    return {name: len(ids) for name, ids in result.suite.failures.items()}
