"""Log a trained student to MLflow as a pyfunc model and register it under an alias."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import apodistill


def log_and_register(
    student_dir: str | Path,
    prompts: dict[str, str],
    findings: list[str],
    metrics: dict[str, float],
    model_name: str,
    alias: str,
    tags: dict[str, str],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Log the student (weights, processor, prompts, metrics) and register a new version."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from apodistill.serving.pyfunc import StudentModel
    from apodistill.student import student_info

    info = student_info(student_dir)
    meta = {"findings": findings, "prompts": prompts, "image_size": info.get("image_size"), "max_new_tokens": 96}
    with tempfile.TemporaryDirectory() as tmp:
        meta_path = Path(tmp) / "meta.json"
        meta_path.write_text(json.dumps(meta, indent=2))
        params_path = Path(tmp) / "params.json"
        params_path.write_text(json.dumps(params, indent=2, default=str))
        example_in = pd.DataFrame({"image": ["<path, base64 or data URL>"], "prior_image": [""], "prompt": [""]})
        example_out = pd.DataFrame({"trajectory": ["<think>...</think>"], "wellformed": [True], **{f"answer_{f}": ["no"] for f in findings}})
        signature = infer_signature(example_in, example_out)
        logged = mlflow.pyfunc.log_model(
            name="student",
            python_model=StudentModel(),
            artifacts={"student": str(student_dir), "meta": str(meta_path), "params": str(params_path)},
            code_paths=[str(Path(apodistill.__file__).parent)],
            signature=signature,
            registered_model_name=model_name,
        )
    mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v == v})
    client = mlflow.MlflowClient()
    version = str(logged.registered_model_version)
    for k, v in tags.items():
        client.set_model_version_tag(model_name, version, k, v)
    client.set_model_version_tag(model_name, version, "metrics", json.dumps({k: v for k, v in metrics.items() if "acc.mean" in k}))
    client.set_registered_model_alias(model_name, alias, version)
    return {"model_name": model_name, "version": version, "alias": alias, "model_uri": f"models:/{model_name}@{alias}", "run_id": logged.run_id}
