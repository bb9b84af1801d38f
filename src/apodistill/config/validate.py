"""``validate:`` section: the trajectory quality gate and drift measurement.  Owned by the validation module."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator, model_validator

from apodistill.config._base import Section
from apodistill.config.files import known


class ValidateConfig(Section):
    suite: str = Field(
        pattern=r"^[a-z0-9_]+$",
        description="Expectation suite to run: <suites>/expectations/<suite>.yaml (hand-maintained, a DVC dep).",
    )
    max_quarantine_fraction: float = Field(
        ge=0, le=1, description="Fail when a teacher loses more than this share of its rows."
    )
    min_think_chars: int = Field(ge=0, description="Shorter reasoning counts as empty/truncated.")
    max_chars: int = Field(gt=0, description="Longer trajectories are quarantined (runaway generations).")
    min_length_ratio: float = Field(
        gt=0, description="A trajectory shorter than this times its teacher's median length is quarantined (cut off)."
    )
    max_length_ratio: float = Field(
        gt=0, description="A trajectory longer than this times its teacher's median length is quarantined (rambling)."
    )
    drift_window: int = Field(gt=0, description="Studies per window of the stream for drift measurement.")
    detector: str = Field(
        description="Registered change-point detector run on each teacher's per-row agreement stream: adwin | page_hinkley (river).",
    )
    detector_params: dict[str, float | int] = Field(
        description="Keyword arguments of the detector's river class (e.g. ADWIN delta, PageHinkley threshold).",
    )

    @field_validator("suite")
    @classmethod
    def _suite_exists(cls, name: str, info: ValidationInfo) -> str:
        repo = (info.context or {}).get("repo")
        if repo is not None and repo.suites is not None:
            known(name, repo.suite_names(), "expectation suite", repo.where(repo.suites / "expectations"))
        return name

    @field_validator("detector")
    @classmethod
    def _registered(cls, detector: str) -> str:
        from apodistill.validation.drift import DETECTORS  # river itself is imported only when a detector is built

        return DETECTORS.check(detector)

    @model_validator(mode="after")
    def _check(self) -> "ValidateConfig":
        if self.min_length_ratio >= self.max_length_ratio:
            raise ValueError(
                f"min_length_ratio ({self.min_length_ratio}) must be below max_length_ratio ({self.max_length_ratio})"
            )
        return self
