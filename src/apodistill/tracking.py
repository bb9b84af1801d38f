"""MLflow tracking: a sqlite file in the repository by default, any server via MLFLOW_TRACKING_URI.

Each stage logs one run tagged with the git revision and the DVC experiment name, so all
runs of one experiment are found with ``tags.dvc_experiment = '<name>'``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

from apodistill.provenance import volatile

DEFAULT_URI = "sqlite:///mlflow.db"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for i, item in enumerate(v):
                out.update(_flatten(item, f"{key}.{item.get('name', i)}."))
        else:
            out[key] = v
    return out


def flatten(d: dict[str, Any]) -> dict[str, Any]:
    """Nested dict -> ``a.b.c`` keys (roster entries keyed by their name)."""
    return _flatten(d)


def setup(experiment: str) -> str:
    """Point MLflow at the configured store and experiment; return the tracking URI."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        location = None
        if uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri:
            location = Path(os.environ.get("APODISTILL_MLFLOW_ARTIFACTS", "mlartifacts")).resolve().as_uri()
        try:
            mlflow.create_experiment(experiment, artifact_location=location)
        except mlflow.exceptions.MlflowException:
            pass  # created meanwhile by a concurrent stage
    mlflow.set_experiment(experiment)
    return uri


def run_tags(stage: str) -> dict[str, str]:
    """The run's volatile provenance (git revision, DVC experiment, host, argv, time) as tags."""
    v = volatile(stage)
    return {
        "stage": stage,
        "git_revision": v["git_revision"],
        "dvc_experiment": v["dvc_experiment"] or "workspace",
        "host": v["host"],
        "argv": " ".join(v["argv"])[:5000],
        "time": v["time"],
    }


@contextlib.contextmanager
def stage_run(stage: str, experiment: str, config: dict[str, Any]) -> Iterator[Any]:
    """An MLflow run for one stage with its resolved params logged first."""
    setup(experiment)
    import mlflow

    with mlflow.start_run(run_name=stage, tags=run_tags(stage)) as run:
        flat = {k: str(v)[:6000] for k, v in flatten(config).items()}
        items = list(flat.items())
        for i in range(0, len(items), 100):
            mlflow.log_params(dict(items[i : i + 100]))
        yield run


def log_curve(rows: list[dict[str, float]], prefix: str) -> None:
    """Per-step training curves (``{"step": n, "loss": ...}`` rows) as MLflow metrics."""
    import mlflow

    for row in rows:
        mlflow.log_metrics({f"{prefix}.{k}": v for k, v in row.items() if k != "step"}, step=int(row["step"]))
