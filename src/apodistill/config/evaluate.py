"""``evaluate:`` and ``register:`` sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from apodistill.config._base import Section


class EvaluateConfig(Section):
    split: Literal["train", "val", "test"] = Field(description="Split to evaluate on: test (never used for training, weights or choices); val or train for diagnostics.")
    max_new_tokens: int = Field(gt=0, description="Generation length limit for students (tokens).")
    batch_size: int = Field(gt=0, description="Studies generated at once.")
    bootstrap: int = Field(ge=0, description="Paired bootstrap resamples for 95% intervals (0: off).")
    clinical_f1_uncertain: Literal["negative", "positive"] = Field(
        description="How the labeler's uncertain (-1) counts in clinical F1: negative (F1-CheXbert's default) or positive.",
    )
    examples: int = Field(ge=0, description="Studies where APO and SPD disagree shown, with their image, in the HTML report.")


class RegisterConfig(Section):
    model_name: str = Field(description="MLflow registered model name.")
    alias: str = Field(description="Alias given to the new version.")
    promote_metric: str | None = Field(
        description="Metric `apodistill promote` compares (the student's own key, e.g. acc.mean, pair_acc.mean, "
        "acc.pneumothorax; higher is better); null: pair_acc.mean when both versions have it, else acc.mean.",
    )
    promote_margin: float = Field(
        ge=0, description="Smallest gain in promote_metric (absolute) that moves `champion` to the challenger.",
    )
