"""Where an output came from, split in two by whether it may change a DVC hash.

- Stable facts (:func:`record`): the params the stage read, seeds, package versions and
  the stage's own deterministic facts. They go into ``provenance.json`` inside each output
  folder, so they are part of the output's hash: they change only when the result may.
- Volatile facts (:func:`volatile`): git revision, DVC experiment, start time, host, argv,
  wall seconds, cache hits. They go to MLflow tags and to a sidecar JSON outside every
  hashed output (``reports/provenance/<stage>.json``, declared ``cache: false`` in
  dvc.yaml, depended on by no stage). A commit that changes no code or data, or a rerun
  that produces the same bytes, then leaves every downstream stage up to date.
"""

from __future__ import annotations

import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("apodistill", "torch", "transformers", "peft", "accelerate", "mlflow", "great_expectations", "dvc", "numpy", "pandas")
FILE = "provenance.json"


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


def seed_everything(seed: int, torch: bool = False) -> dict[str, int]:
    """Seed python and numpy, and torch when ``torch`` (importing it); return what was seeded."""
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    seeded = {"python": seed, "numpy": seed}
    if torch:
        import torch as _torch

        _torch.manual_seed(seed)
        seeded["torch"] = seed
    return seeded


def record(stage: str, config: dict[str, Any], seeds: dict[str, int] | None = None, **facts: Any) -> dict[str, Any]:
    """The stable record written inside an output: nothing here may vary between two runs of
    the same code, params and data on one machine."""
    return {"stage": stage, "config": config, "seeds": seeds or {}, "versions": package_versions(), **facts}


def volatile(stage: str, started: float | None = None, **facts: Any) -> dict[str, Any]:
    """The facts that differ from run to run: for MLflow tags and the sidecar, never for outputs."""
    out = {
        "stage": stage,
        "git_revision": git_revision(),
        "dvc_experiment": experiment_name(),
        "host": socket.gethostname(),
        "argv": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if started is not None:
        out["wall_seconds"] = round(time.time() - started, 2)
    return {**out, **facts}


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """``data`` as sorted, indented JSON at ``path`` (a folder gets ``provenance.json``)."""
    path = Path(path)
    if path.suffix != ".json":
        path = path / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return path
