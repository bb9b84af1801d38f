"""Log a trained student to MLflow as a pyfunc model and register it under an alias.

A version is only registered with its evaluation: the student's metrics become version tags
``eval.<key>`` (``eval.acc.mean``, ``eval.pair_acc.mean``, ...), the promotion gate reads
them, and a student without them is refused here rather than at promotion time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import apodistill

EVAL_TAG = "eval."
# What loading the pyfunc imports; pinned to the versions it was logged with. Listed by hand
# because letting MLflow infer them loads the model in a subprocess (slow, and it guesses).
_REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "peft", "pillow", "pandas", "numpy", "pydantic", "pyyaml")


class MissingEvaluation(ValueError):
    """The metrics hold no accuracy for the student being registered."""


def student_evaluation(metrics: Mapping[str, Any], system: str) -> dict[str, float]:
    """The ``<system>.*`` metrics with the prefix removed (finite numbers only).

    Raises :class:`MissingEvaluation` when neither ``acc.mean`` nor ``pair_acc.mean`` is there.
    """
    prefix = f"{system}."
    ev = {k[len(prefix):]: float(v) for k, v in metrics.items()
          if k.startswith(prefix) and isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
    if "acc.mean" not in ev and "pair_acc.mean" not in ev:
        known = sorted({k.split(".", 1)[0] for k in metrics if k.endswith(".acc.mean")})
        raise MissingEvaluation(
            f"no evaluation for student {system!r}: metrics lack {prefix}acc.mean and {prefix}pair_acc.mean "
            f"(systems with acc.mean: {', '.join(known) or 'none'}). Run the evaluate stage first; "
            "a student is never registered without its evaluation."
        )
    return ev


def data_fingerprint(benchmark_dir: str | Path) -> tuple[str, dict[str, Any]]:
    """sha256 of the benchmark's studies.parquet (+ pairs.parquet) and a summary for the card."""
    import pandas as pd

    folder = Path(benchmark_dir)
    h = hashlib.sha256()
    for name in ("studies.parquet", "pairs.parquet"):
        path = folder / name
        if path.is_file():
            h.update(name.encode())
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        elif name == "studies.parquet":
            raise FileNotFoundError(f"{path} not found: --benchmark must be the fetch stage's output folder")
    studies = pd.read_parquet(folder / "studies.parquet", columns=["split"])
    info: dict[str, Any] = {"splits": {str(k): int(v) for k, v in studies["split"].value_counts().items()}}
    if (folder / "pairs.parquet").is_file():
        info["pairs"] = len(pd.read_parquet(folder / "pairs.parquet", columns=["pair_id"]))
    return "sha256:" + h.hexdigest()[:16], info


def self_contained(student_dir: str | Path, workdir: str | Path) -> Path:
    """The folder to log: the student itself, or, for a LoRA adapter whose base is a local
    folder (e.g. APO with LoRA on the SPD student), the merged full model.

    The registered model must load anywhere, and a local base path would not travel with it.
    An adapter on a hub model (``Qwen/Qwen2.5-VL-7B-Instruct``) is kept as base + adapter:
    copying 7B base weights into every version is what the hub cache avoids.
    """
    from apodistill.student import load_student, save_student, student_info

    info = student_info(student_dir)
    if info.get("kind") != "lora" or not info.get("base") or not Path(info["base"]).is_dir():
        return Path(student_dir)
    model, processor = load_student(student_dir, merge=True)
    out = Path(workdir) / "student"
    extra = {k: v for k, v in info.items() if k not in ("kind", "base")}
    save_student(model, processor, out, extra={**extra, "merged_from": {"adapter": str(student_dir), "base": info["base"]}})
    return out


def pip_requirements() -> list[str]:
    out = []
    for name in _REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def signature(findings: list[str], max_new_tokens: int = 96):
    """Input: image (+ optional prior_image, prompt) as strings; output: trajectory and labels."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("string", "image"), ColSpec("string", "prior_image", required=False),
                     ColSpec("string", "prompt", required=False)])
    outputs = Schema([ColSpec("string", "trajectory"), ColSpec("string", "task"), ColSpec("boolean", "wellformed")]
                     + [ColSpec("string", f"answer_{f}", required=False) for f in findings])
    return ModelSignature(inputs=inputs, outputs=outputs, params=ParamSchema([ParamSpec("max_new_tokens", "long", max_new_tokens)]))


def log_and_register(
    student_dir: str | Path,
    prompts: dict[str, str],
    findings: list[str],
    metrics: dict[str, float],
    model_name: str,
    alias: str,
    tags: dict[str, str],
    params: dict[str, Any],
    system: str = "apo",
    data: dict[str, Any] | None = None,
    max_new_tokens: int = 96,
    input_profile: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Log the student (weights, processor, prompts, params, metrics, card, the training images'
    ``input_profile`` from :func:`apodistill.serving.input_check.build_profile`), register a new
    version of ``model_name`` with ``tags`` and ``eval.*`` tags, and point ``alias`` at it.

    Runs inside the active MLflow run (the register stage's), or a new one. Returns the
    name, version, URI, run id, headline evaluation and the model card text.
    """
    evaluation = student_evaluation(metrics, system)  # before anything is logged
    import mlflow

    from apodistill.serving.card import describe_student, model_card
    from apodistill.student import student_info

    own_run = mlflow.active_run() is None
    with (mlflow.start_run(run_name="register") if own_run else contextlib.nullcontext()), tempfile.TemporaryDirectory() as tmp:
        folder = self_contained(student_dir, tmp)
        meta = {"findings": findings, "prompts": prompts, "image_size": student_info(folder).get("image_size"),
                "max_new_tokens": max_new_tokens, "system": system,
                "input_profile": input_profile}  # training image statistics: predict / serve refuse far-off images
        card = model_card(model_name=model_name, system=system, student=describe_student(folder), params=params,
                          metrics=metrics, tags=tags, data=data or {})
        artifacts = {"student": str(folder)}
        for name, obj in {"meta": meta, "params": params, "metrics": metrics}.items():
            (Path(tmp) / f"{name}.json").write_text(json.dumps(obj, indent=2, default=str) + "\n")
            artifacts[name] = str(Path(tmp) / f"{name}.json")
        (Path(tmp) / "model_card.md").write_text(card)
        artifacts["model_card"] = str(Path(tmp) / "model_card.md")
        logged = mlflow.pyfunc.log_model(
            name="student",
            python_model=str(Path(__file__).with_name("model_code.py")),  # models from code: no pickle
            artifacts=artifacts,
            code_paths=[str(Path(apodistill.__file__).parent)],
            signature=signature(findings, max_new_tokens),
            pip_requirements=pip_requirements(),
            registered_model_name=model_name,
        )
        mlflow.log_text(card, "model_card.md")
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and v == v})
        mlflow.set_tags({**tags, "system": system})
    client = mlflow.MlflowClient()
    version = str(logged.registered_model_version)
    for k, v in {**tags, "system": system, **{EVAL_TAG + k: repr(v) for k, v in evaluation.items()}}.items():
        client.set_model_version_tag(model_name, version, k, str(v))
    headline = ", ".join(f"{k} {evaluation[k]:.3f}" for k in ("pair_acc.mean", "acc.mean") if k in evaluation)
    client.update_model_version(model_name, version, description=f"{system} student ({headline}); see model_card.md. Research use only.")
    client.set_registered_model_alias(model_name, alias, version)
    return {"model_name": model_name, "version": version, "alias": alias, "model_uri": f"models:/{model_name}@{alias}",
            "run_id": logged.run_id, "evaluation": {k: evaluation[k] for k in ("acc.mean", "pair_acc.mean") if k in evaluation},
            "data_hash": tags.get("data_hash", "unknown"), "model_card": card}
