"""Examples for the student stages, built from the benchmark and validated trajectory tables."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from apodistill.consensus import StudyKey, TeacherAnswer
from apodistill.findings import display, parse_trajectory
from apodistill.student.encode import load_template, prepare_image, render_template

TASK_TEMPLATES = {"single": "single.txt", "pair": "pair.txt"}
CONSENSUS_TEMPLATE = "consensus.txt"



@dataclass(frozen=True)
class Example:
    """One prompt: image keys (paths into an :class:`ImageStore`), the prompt text, a target."""

    images: tuple[str, ...]
    prompt: str
    target: str = ""
    weight: float = 1.0
    group: int = 0  # batches hold one group (0: plain prompts, 1: consensus-format prompts)


def task_prompt(templates_dir: str | Path, task: str, findings: Sequence[str]) -> str:
    return render_template(load_template(templates_dir, TASK_TEMPLATES[task]), findings=", ".join(display(f) for f in findings))


def consensus_prompt(templates_dir: str | Path, task: str, findings: Sequence[str], teachers_block: str) -> str:
    tmpl = load_template(templates_dir, CONSENSUS_TEMPLATE)
    return render_template(tmpl, task_prompt=task_prompt(templates_dir, task, findings), teachers=teachers_block)


class ImageStore:
    """Prepared (resized, RGB) images by path, loaded once."""

    def __init__(self, benchmark_dir: str | Path, size: int):
        self.root = Path(benchmark_dir)
        self.size = size
        self._cache: dict[str, Any] = {}

    def path(self, image_path: str) -> Path:
        p = Path(image_path)
        return p if p.is_absolute() else self.root / p

    def get(self, image_path: str):
        if image_path not in self._cache:
            self._cache[image_path] = prepare_image(self.path(image_path), self.size)
        return self._cache[image_path]

    def batch(self, examples: Sequence[Example]) -> list[list[Any]]:
        return [[self.get(k) for k in ex.images] for ex in examples]


def study_images(studies: pd.DataFrame) -> dict[str, str]:
    return dict(zip(studies["study_id"], studies["image_path"]))


def images_for(key: StudyKey, image_of: dict[str, str]) -> tuple[str, ...]:
    task, study, prior = key
    return (image_of[prior], image_of[study]) if task == "pair" else (image_of[study],)


def key_of(row: Any) -> StudyKey:
    prior = row.prior_study_id if isinstance(row.prior_study_id, str) and row.prior_study_id else None
    return (row.task, row.study_id, prior)


def group_answers(trajectories: pd.DataFrame, findings: Sequence[str], roster: Sequence[str]) -> dict[StudyKey, list[TeacherAnswer]]:
    """Validated trajectories grouped by study, each list in roster order."""
    rank = {t: i for i, t in enumerate(roster)}
    groups: dict[StudyKey, list[TeacherAnswer]] = defaultdict(list)
    for row in trajectories.itertuples(index=False):
        parsed = parse_trajectory(row.text, findings, row.task)
        groups[key_of(row)].append(TeacherAnswer(row.teacher, row.text, parsed))
    for answers in groups.values():
        answers.sort(key=lambda a: rank.get(a.teacher, len(rank)))
    return dict(groups)
