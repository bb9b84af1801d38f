"""``evaluate:`` and ``register:`` sections."""

from __future__ import annotations

from pydantic import Field

from apodistill.config._base import Section


class EvaluateConfig(Section):
    split: str = Field("test", description="Split to evaluate on (never used for training or weights).")
    max_new_tokens: int = Field(96, gt=0, description="Generation length limit for students.")
    batch_size: int = Field(64, gt=0, description="Studies generated at once.")
    bootstrap: int = Field(1000, ge=0, description="Paired bootstrap resamples for 95% intervals (0: off).")


class RegisterConfig(Section):
    model_name: str = Field("apodistill-student", description="MLflow registered model name.")
    alias: str = Field("challenger", description="Alias given to the new version.")
