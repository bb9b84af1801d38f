"""Where an output came from: resolved config, git revision, seeds and package versions.

Every stage writes ``provenance.json`` next to its outputs and logs the same to MLflow.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("apodistill", "torch", "transformers", "trl", "peft", "accelerate", "mlflow", "great_expectations", "dvc", "numpy", "pandas")


def git_revision(cwd: str | Path = ".") -> str:
    """HEAD's commit (with ``-dirty`` when the tree has changes); ``unknown`` outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def experiment_name() -> str | None:
    """The DVC experiment being run, when `dvc exp run` set it."""
    return os.environ.get("DVC_EXP_NAME")


def seed_everything(seed: int) -> dict[str, int]:
    """Seed python, numpy and (if imported) torch; return what was seeded for the record."""
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
    return {"python": seed, "numpy": seed, "torch": seed}


def provenance(stage: str, config: dict[str, Any], seeds: dict[str, int] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "stage": stage,
        "config": config,
        "git_revision": git_revision(),
        "dvc_experiment": experiment_name(),
        "seeds": seeds or {},
        "versions": package_versions(),
        "argv": sys.argv,
        **extra,
    }


def write_provenance(path: str | Path, record: dict[str, Any]) -> Path:
    path = Path(path)
    if path.suffix != ".json":
        path = path / "provenance.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path
