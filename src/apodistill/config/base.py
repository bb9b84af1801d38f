"""``base:`` section: values shared by several stages."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from apodistill.config._base import Section
from apodistill.config.files import known
from apodistill.findings import CHEXPERT_14, MS_CXR_T_5


class BaseConfig(Section):
    seed: int = Field(description="Seed for python, numpy and torch in every stage.")
    findings: list[str] = Field(
        description="Findings that trajectories answer and metrics score (CheXpert names).",
    )
    mlflow_experiment: str = Field(description="MLflow experiment that every stage logs to.")
    accelerate: str = Field(
        pattern=r"^[a-z0-9_]+$",
        description="Accelerate config for training stages: pipeline/accelerate/<name>.yaml (cpu, multi_cpu, single_gpu, multi_gpu, deepspeed_zero2, fsdp).",
    )

    @field_validator("findings")
    @classmethod
    def _known_findings(cls, v: list[str]) -> list[str]:
        unknown = [f for f in v if f not in CHEXPERT_14]
        if unknown:
            raise ValueError(f"unknown findings {unknown}; known: {', '.join(CHEXPERT_14)}")
        if len(set(v)) != len(v) or not v:
            raise ValueError("findings must be a non-empty list without repeats")
        return v

    @field_validator("accelerate")
    @classmethod
    def _launcher_exists(cls, name: str, info: ValidationInfo) -> str:
        repo = (info.context or {}).get("repo")
        if repo is not None and repo.accelerate is not None:
            known(name, repo.accelerate_names(), "launcher config", repo.where(repo.accelerate.parent))
        return name
