"""``validate:`` section: the trajectory quality gate and drift measurement.  Owned by the validation module."""

from __future__ import annotations

from pydantic import Field, model_validator

from apodistill.config._base import Section


class ValidateConfig(Section):
    suite: str = Field(
        "trajectory_quality",
        pattern=r"^[a-z0-9_]+$",
        description="Expectation suite to run: <suites>/expectations/<suite>.yaml (hand-maintained, a DVC dep).",
    )
    max_quarantine_fraction: float = Field(
        0.5, ge=0, le=1, description="Fail when a teacher loses more than this share of its rows."
    )
    min_think_chars: int = Field(10, ge=0, description="Shorter reasoning counts as empty/truncated.")
    max_chars: int = Field(4000, gt=0, description="Longer trajectories are quarantined (runaway generations).")
    min_length_ratio: float = Field(
        0.25, gt=0, description="A trajectory shorter than this times its teacher's median length is quarantined (cut off)."
    )
    max_length_ratio: float = Field(
        4.0, gt=0, description="A trajectory longer than this times its teacher's median length is quarantined (rambling)."
    )
    drift_window: int = Field(100, gt=0, description="Studies per window of the stream for drift measurement.")
    detector: str = Field(
        "adwin",
        description="Registered change-point detector run on each teacher's per-row agreement stream: adwin | page_hinkley (river).",
    )
    detector_params: dict[str, float | int] = Field(
        default_factory=lambda: {"delta": 0.005, "clock": 8},
        description="Keyword arguments of the detector's river class (e.g. ADWIN delta, PageHinkley threshold).",
    )

    @model_validator(mode="after")
    def _check(self) -> "ValidateConfig":
        from apodistill.validation.drift import DETECTORS  # river itself is imported only when a detector is built

        if self.detector not in DETECTORS:
            raise ValueError(f"unknown drift detector {self.detector!r}; known: {', '.join(DETECTORS.names())}")
        if self.min_length_ratio >= self.max_length_ratio:
            raise ValueError(
                f"min_length_ratio ({self.min_length_ratio}) must be below max_length_ratio ({self.max_length_ratio})"
            )
        return self
