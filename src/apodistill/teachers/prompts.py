"""Prompt templates and the requests built from the benchmark tables.

Templates are files (``templates/teachers/<task>_<mode>.txt``, a DVC dependency of the
stage), filled with :class:`string.Template` placeholders:

- ``$findings``: the findings to answer, comma-separated display names;
- ``$values``: the allowed values of the task (``yes, no or uncertain``);
- ``$answer_format``: one ``finding: <value>`` line per finding, the expected answer block;
- ``$known``: label-conditioned only, the study's known answers, one per line.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from string import Template

import pandas as pd

from apodistill.findings import TASKS, display, values_for
from apodistill.teachers.backends import Request
from apodistill.teachers.simulated import conditioned_value

MODES = ("blind", "label_conditioned")


def template_name(task: str, mode: str) -> str:
    return f"{task}_{mode}.txt"


def load_templates(folder: str | Path) -> dict[str, str]:
    """Every template the stage may use, by file name; a missing one fails with its path."""
    folder = Path(folder)
    out = {}
    for task in TASKS:
        for mode in MODES:
            path = folder / template_name(task, mode)
            if not path.is_file():
                raise FileNotFoundError(f"prompt template {path} is missing (expected one per task x prompt mode)")
            out[path.name] = path.read_text()
    return out


def render(template_text: str, task: str, findings: list[str] | tuple[str, ...], known: dict[str, str] | None = None) -> str:
    """Fill a template; ``known`` (finding -> value) is required by label-conditioned ones."""
    values = values_for(task)
    fields = {
        "findings": ", ".join(display(f) for f in findings),
        "values": ", ".join(values[:-1]) + " or " + values[-1],
        "answer_format": "\n".join(f"{display(f)}: <{'|'.join(values)}>" for f in findings),
        "known": "\n".join(f"{display(f)}: {known[f]}" for f in findings) if known else "",
    }
    return Template(template_text).substitute(fields).strip() + "\n"


def resolve_image(benchmark_dir: str | Path, image_path: str) -> str:
    """Benchmark convention: relative paths are relative to the benchmark folder."""
    return image_path if os.path.isabs(image_path) else os.path.join(str(benchmark_dir), image_path)


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


_FEATURE_PREFIXES = ("severity_", "prior_severity_", "current_severity_", "image_noise", "current_image_noise")


def _features(row: dict) -> dict:
    """What the image shows beyond its labels, where the benchmark knows it (synthetic):
    every severity, the film's grain, each finding's side and the consolidated zone. The
    simulated backend's errors and reasoning read it; real backends never see it."""
    out: dict = {}
    for k, v in row.items():
        if k.startswith(_FEATURE_PREFIXES) and _num(v) is not None and v != 0:
            out[k] = round(float(v), 4)
        elif k.startswith(("side_", "zone_")) and isinstance(v, str) and v:
            out[k] = v
    return out


def _single_truth(row: dict, findings) -> dict:
    return {
        "label": {f: _num(row.get(f"label_{f}")) for f in findings},
        "severity": {f: _num(row.get(f"severity_{f}")) for f in findings if f"severity_{f}" in row},
        "features": _features(row),
    }


def _pair_truth(row: dict, findings) -> dict:
    prog = {}
    for f in findings:
        v = row.get(f"progression_{f}")
        prog[f] = v if isinstance(v, str) else None
    return {"progression": prog, "features": _features(row)}


def prevalence(studies: pd.DataFrame, findings) -> dict[str, float]:
    """P(label == 1) per finding over the whole benchmark (the simulated teachers' reference)."""
    return {f: float((studies[f"label_{f}"] == 1.0).mean()) if f"label_{f}" in studies else 0.5 for f in findings}


def build_requests(
    teacher: str,
    prompt_mode: str,
    task: str,
    table: pd.DataFrame,
    benchmark_dir: str | Path,
    templates: dict[str, str],
    findings: list[str],
    drift_at: float | None,
) -> list[Request]:
    """One request per row of ``table`` (studies for ``single``, pairs for ``pair``)."""
    name = template_name(task, prompt_mode)
    text = templates[name]
    stream_len = int(table["stream_index"].max()) + 1 if len(table) else 1
    blind_prompt = render(text, task, findings) if prompt_mode == "blind" else None
    out = []
    for r in table.to_dict("records"):
        truth = _pair_truth(r, findings) if task == "pair" else _single_truth(r, findings)
        if task == "pair":
            images = (resolve_image(benchmark_dir, r["prior_image_path"]),
                      resolve_image(benchmark_dir, r["current_image_path"]))
            study, prior = str(r["current_study_id"]), str(r["prior_study_id"])
        else:
            images = (resolve_image(benchmark_dir, r["image_path"]),)
            study, prior = str(r["study_id"]), None
        stream_index = int(r["stream_index"])
        req = Request(
            teacher=teacher, task=task, prompt_mode=prompt_mode, template=name, prompt="",
            image_paths=images, study_id=study, prior_study_id=prior, split=str(r["split"]),
            stream_index=stream_index,
            post_drift=drift_at is not None and stream_index / stream_len >= drift_at,
            truth=truth,
        )
        prompt = blind_prompt or render(text, task, findings, {f: conditioned_value(task, req, f) for f in findings})
        out.append(replace(req, prompt=prompt))
    return out
