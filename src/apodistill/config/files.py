"""Params values that name files of the repository, checked against the files that exist.

A params file is checked against the repository it lives in: the nearest folder at or above
it that holds ``dvc.yaml`` (not the working directory). The folders come from dvc.yaml,
where every path is written once:

- ``base.accelerate``: the training stages' ``--config_file <folder>/${base.accelerate}.yaml``;
- ``validate.suite``: the validate stage's ``--suites <folder>`` (``<folder>/expectations/<suite>.yaml``);
- the teacher prompt templates: the teachers stage's ``--templates <folder>`` (``<task>_<mode>.txt``).

A params file outside any repository (a test's temporary copy) gets the other checks only.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

ACCELERATE_VAR = "${base.accelerate}"


def repository_of(params_path: str | Path) -> Path | None:
    """The nearest folder at or above the params file that holds dvc.yaml, or None."""
    folder = Path(params_path).resolve().parent
    for candidate in (folder, *folder.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    return None


def _args(cmd: str) -> dict[str, str]:
    """``--flag value`` pairs of a stage command."""
    words = shlex.split(cmd)
    return {w: v for w, v in zip(words, words[1:]) if w.startswith("--")}


@dataclass(frozen=True)
class RepoFiles:
    """Where the files named by params live in one repository, read from its dvc.yaml."""

    root: Path
    accelerate: Path | None = None  # e.g. <root>/pipeline/accelerate/${base.accelerate}.yaml
    suites: Path | None = None  # the validate stage's --suites folder
    teacher_templates: Path | None = None  # the teachers stage's --templates folder

    @classmethod
    def read(cls, root: str | Path) -> "RepoFiles":
        root = Path(root)
        stages = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages", {})
        args = {name: _args(str(stage.get("cmd", ""))) for name, stage in stages.items()}
        accelerate = next((a["--config_file"] for a in args.values() if ACCELERATE_VAR in a.get("--config_file", "")), None)
        suites = args.get("validate", {}).get("--suites")
        templates = args.get("teachers", {}).get("--templates")
        return cls(root, root / accelerate if accelerate else None, root / suites if suites else None,
                   root / templates if templates else None)  # fmt: skip

    def accelerate_names(self) -> list[str] | None:
        """The launcher configs that exist, by the name base.accelerate uses."""
        if self.accelerate is None:
            return None
        prefix, suffix = self.accelerate.name.split(ACCELERATE_VAR)
        return sorted(p.name[len(prefix) : len(p.name) - len(suffix)] for p in self.accelerate.parent.glob(f"{prefix}*{suffix}"))

    def suite_names(self) -> list[str] | None:
        if self.suites is None:
            return None
        from apodistill.validation.suite import suite_path

        return sorted(p.stem for p in suite_path(self.suites, "x").parent.glob("*.yaml"))

    def missing_templates(self, tasks: list[str], modes: set[str]) -> tuple[list[str], list[str]]:
        """(templates needed but absent, templates present) of the teachers stage."""
        if self.teacher_templates is None:
            return [], []
        from apodistill.teachers.prompts import template_name

        need = [template_name(t, m) for t in tasks for m in sorted(modes)]
        present = sorted(p.name for p in self.teacher_templates.glob("*.txt"))
        return [n for n in need if n not in present], present

    def where(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)


def known(value: str, names: list[str] | None, what: str, where: str) -> None:
    """Raise naming the valid choices when ``value`` is not among the files found."""
    if names is not None and value not in names:
        raise ValueError(f"no {what} {value!r} in {where}; known: {', '.join(names) or '(none)'}")
