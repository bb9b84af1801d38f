"""``validate:`` section: the trajectory quality gate and drift measurement.  Owned by the validation module."""

from __future__ import annotations

from pydantic import Field

from apodistill.config._base import Section


class ValidateConfig(Section):
    max_quarantine_fraction: float = Field(0.5, ge=0, le=1, description="Fail when a teacher loses more than this share of its rows.")
    min_think_chars: int = Field(10, ge=0, description="Shorter reasoning counts as empty/truncated.")
    max_chars: int = Field(4000, gt=0, description="Longer trajectories are quarantined (runaway generations).")
    drift_window: int = Field(100, gt=0, description="Studies per window of the stream for drift measurement.")
