"""Helpers shared by the thin stage scripts in pipeline/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from apodistill.config import Params, ParamsError, load_params


def quiet_env() -> None:
    """Analytics off, offline hubs: set before heavy imports in every stage."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_or_exit(path: str | Path) -> Params:
    """Load params.yaml or exit 2 with the message that names each bad key (nothing written)."""
    quiet_env()
    try:
        return load_params(path)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def write_metrics(path: str | Path, metrics: dict) -> None:
    """Flat JSON metrics (for ``dvc metrics`` / ``dvc exp show``)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float) + "\n")


def make_accelerator(bf16: bool):
    """The accelerate ``Accelerator`` configured by `accelerate launch --config_file ...`."""
    from accelerate import Accelerator

    return Accelerator(mixed_precision="bf16" if bf16 else "no")


def read_weights(validated_dir: str | Path) -> dict[str, float]:
    """w_u as resolved by the validate stage (fixed from params, or `auto` from agreement)."""
    import json

    path = Path(validated_dir) / "weights.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run the validate stage first (dvc repro validate)")
    return {k: float(v) for k, v in json.loads(path.read_text())["weights"].items()}
