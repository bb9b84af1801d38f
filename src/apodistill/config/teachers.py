"""``teachers:`` section: the roster of teachers and how they are asked.  Owned by the teachers module."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from apodistill.config._base import Section


class TeacherSpec(Section):
    name: str = Field(..., pattern=r"^[a-z0-9_]+$", description="Short id used in tables, weights and metrics keys.")
    backend: str = Field("simulated", description="Registered backend: simulated | openai | hf.")
    model: str = Field(..., description="Model id sent to the backend (or the simulated profile's model name).")
    profile: str | None = Field(None, description="Simulated backend: which calibrated profile to play.")
    base_url: str | None = Field(None, description="openai backend: base URL of the OpenAI-compatible endpoint.")
    api_key_env: str | None = Field(None, description="Name of the environment variable that holds the key (never the key).")
    prompt_mode: Literal["blind", "label_conditioned"] = Field("blind", description="blind: diagnose; label_conditioned: explain known labels (the paper).")
    concurrency: int = Field(4, gt=0, description="Requests in flight at once.")
    rpm: float = Field(600, gt=0, description="Requests-per-minute limit.")
    phi_approved: bool = Field(False, description="True only for endpoints contracted not to retain data (PhysioNet licence).")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(6, ge=0, description="Retries on 429, 5xx and timeouts (exponential backoff with jitter).")


class TeachersConfig(Section):
    roster: list[TeacherSpec] = Field(..., min_length=1, description="The teachers, in order.")
    weights: Literal["auto"] | dict[str, float] = Field(
        "auto",
        description="w_u per teacher name (every roster name exactly once), or 'auto' to set them from agreement on the train split.",
    )
    tasks: list[Literal["single", "pair"]] = Field(default_factory=lambda: ["single"], description="Which prompts teachers answer.")

    @model_validator(mode="after")
    def _check(self) -> "TeachersConfig":
        names = [t.name for t in self.roster]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"teacher names repeated in roster: {dup}")
        if isinstance(self.weights, dict):
            extra = sorted(set(self.weights) - set(names))
            missing = [n for n in names if n not in self.weights]
            if extra or missing:
                raise ValueError(
                    "teachers.weights must name every roster teacher exactly once: "
                    + (f"not in roster: {extra}; " if extra else "")
                    + (f"missing: {missing}" if missing else "")
                )
            bad = {k: v for k, v in self.weights.items() if not v >= 0}
            if bad:
                raise ValueError(f"teachers.weights must be >= 0: {bad}")
            if sum(self.weights.values()) <= 0:
                raise ValueError("teachers.weights sum to 0")
        return self

    def names(self) -> list[str]:
        return [t.name for t in self.roster]
