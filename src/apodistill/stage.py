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
