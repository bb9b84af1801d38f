"""The model card logged with every registered student (markdown).

It states what the model was trained on, by which teachers and in which setting (which
splits the teachers saw labels on, the consensus method), how it scored, and the paper's
published numbers beside ours, so a reader never takes a synthetic-data score for a
clinical one. Built from the resolved params (never a roster default) and the evaluate
stage's flat metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from apodistill.findings import display
from apodistill.setting import prompt_on, training_setting

# arXiv 2510.04142 v2, MS-CXR-T top-1 accuracy (improving / stable / worsening).
PAPER_STUDENT = {"consolidation": 0.84, "pleural_effusion": 0.67, "pneumonia": 0.78, "pneumothorax": 0.96, "edema": 0.65}
PAPER_STUDENT_MEAN = 0.78
PAPER_TEACHERS = {"gpt5": ("GPT-5", 0.75), "glm45v": ("GLM-4.5V", 0.69), "qwen_vl_max": ("Qwen-VL-Max", 0.64),
                  "grok4": ("Grok-4", 0.56), "gemini25": ("Gemini-2.5", 0.53), "moonshot": ("Moonshot-v1", 0.48),
                  "sonnet4": ("Sonnet-4", 0.47)}

LIMITS = """\
- **Research use only. Not for clinical decisions.** Not a medical device; nothing it writes
  has been checked by a radiologist. Do not use it to diagnose, triage or treat anyone.
- On the embedded default the student, its teachers and its test set are all synthetic
  (procedurally rendered images, simulated teachers): its accuracy says the pipeline works,
  not that the model reads real chest X-rays.
- The paper's numbers are MS-CXR-T prior/current accuracy of a 7B student on real MIMIC-CXR
  images; they are printed beside ours for orientation only. Only `pair_acc` measured on
  MS-CXR-T is the same protocol.
- It answers only the findings listed above, for one frontal image (or a prior/current
  pair); other findings, views and modalities are out of scope. The reasoning text is
  generated, may be wrong even when the labels are right, and is not an explanation.
- Teachers' biases (refusals, hedging, hallucinated findings, drift) can survive distillation.
"""


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) and v == v else "—"


def describe_student(folder: str | Path) -> str:
    """What the registered folder holds (its own config, not the params that may have changed)."""
    folder = Path(folder)
    info = json.loads((folder / "student.json").read_text()) if (folder / "student.json").is_file() else {}
    size = f", {info['image_size']} px input" if info.get("image_size") else ""
    if info.get("kind") == "lora":
        return f"Qwen2.5-VL `{info.get('base')}` + LoRA adapter{size}"
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        return f"Qwen2.5-VL{size}"
    cfg = json.loads(cfg_file.read_text())
    if info.get("merged_from"):
        size += f"; LoRA adapter merged into its base `{info['merged_from'].get('base')}` at registration"
    text, vision = cfg.get("text_config", cfg), cfg.get("vision_config", {})
    return (f"Qwen2.5-VL (text hidden {text.get('hidden_size')}, {text.get('num_hidden_layers')} layers, "
            f"vision hidden {vision.get('hidden_size')}, depth {vision.get('depth')}, vocab {text.get('vocab_size')}){size}")


def model_card(
    *,
    model_name: str,
    system: str,
    student: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    data: Mapping[str, Any],
) -> str:
    """Markdown card. ``student`` describes the weights (:func:`describe_student`); ``metrics``
    are the evaluate stage's flat keys (``<system>.acc.mean``, ...)."""
    findings = list(params.get("base", {}).get("findings", PAPER_STUDENT))
    apo = params.get("apo", {})
    lines = [
        f"# {model_name}: model card",
        "",
        "> **Research use only. Not for clinical decisions.**",
        "",
        "## Model",
        f"- Student: {student}.",
        f"- Training: SPD (weighted SFT on pooled teacher trajectories) -> self-distillation "
        f"(consensus, {params.get('self_distill', {}).get('method', '?')}) -> APO "
        f"({apo.get('loss', '?')} loss, beta {apo.get('beta', '?')}), reference = the SPD student.",
        f"- Evaluated system: `{system}`; git revision `{tags.get('git_revision', 'unknown')}`, "
        f"DVC experiment `{tags.get('dvc_experiment', 'unknown')}`.",
        "- Input: one chest X-ray (or prior + current), as a path, base64 or data URL; output: a "
        "`<think>...</think><answer>...</answer>` trajectory and one label per finding.",
        "",
        "## Data",
        f"- Source: `{params.get('fetch', {}).get('source', '?')}`; data hash `{tags.get('data_hash', 'unknown')}`.",
    ]
    if data.get("splits"):
        lines.append("- Studies per split: " + ", ".join(f"{k} {v}" for k, v in sorted(data["splits"].items())) + ".")
    if data.get("pairs"):
        lines.append(f"- Prior/current pairs: {data['pairs']}.")
    teachers = params.get("teachers", {})
    split = params.get("evaluate", {}).get("split", "test")
    lines += [f"- Findings: {', '.join(display(f) for f in findings)}.", "", "## Training setting", "",
              *(f"- {label}: {text}." for label, text in training_setting(params)), "", "## Teachers", "",
              f"| teacher | backend | model | prompt on train | prompt on {split} | acc (ours) | pair acc (ours) | paper MS-CXR-T (v2) |",
              "|---|---|---|---|---|---|---|---|"]
    for t in teachers.get("roster", []):
        name = t.get("name", "?")
        paper = PAPER_TEACHERS.get(t.get("profile") or name)
        lines.append(f"| {name} | {t.get('backend')} | {t.get('model')} | {prompt_on('train', t, teachers)} | "
                     f"{prompt_on(split, t, teachers)} | "
                     f"{_fmt(metrics.get(f'teacher.{name}.acc.mean'))} | {_fmt(metrics.get(f'teacher.{name}.pair_acc.mean'))} | "
                     f"{f'{paper[0]} {paper[1]:.2f}' if paper else '—'} |")
    lines += ["", "## Evaluation (held-out split)", "",
              f"| finding | `{system}` acc | `{system}` pair acc | best teacher acc | paper student (MS-CXR-T v2) |",
              "|---|---|---|---|---|"]
    for f in findings:
        lines.append(f"| {display(f)} | {_fmt(metrics.get(f'{system}.acc.{f}'))} | {_fmt(metrics.get(f'{system}.pair_acc.{f}'))} | "
                     f"{_fmt(metrics.get(f'best_teacher.acc.{f}'))} | {_fmt(PAPER_STUDENT.get(f))} |")
    lines.append(f"| **mean** | {_fmt(metrics.get(f'{system}.acc.mean'))} | {_fmt(metrics.get(f'{system}.pair_acc.mean'))} | "
                 f"{_fmt(metrics.get('best_teacher.acc.mean'))} | {_fmt(PAPER_STUDENT_MEAN)} |")
    extra = {k: metrics[k] for k in (f"{system}.single_wellformed", f"{system}.pair_wellformed", "spd.acc.mean",
                                     "majority_vote.acc.mean", f"{system}.vs_best_teacher.acc.diff") if k in metrics}
    if extra:
        lines += [""] + [f"- `{k}`: {_fmt(v)}" for k, v in extra.items()]
    lines += ["", "## Intended use and limits", "", LIMITS]
    return "\n".join(lines)
