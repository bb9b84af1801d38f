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
    concurrency: int = Field(4, gt=0, description="Requests in flight at once (hf: prompts per generate batch).")
    rpm: float = Field(600, gt=0, description="Requests-per-minute limit.")
    phi_approved: bool = Field(False, description="True only for endpoints contracted not to retain data (PhysioNet licence).")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(6, ge=0, description="Retries on 429, 5xx and timeouts (exponential backoff with jitter).")
    backoff_s: float = Field(1.0, gt=0, description="First retry waits up to this long, doubling per retry (full jitter), never less than Retry-After.")
    max_backoff_s: float = Field(60.0, gt=0, description="Longest wait between retries.")
    max_tokens: int = Field(512, gt=0, description="Completion length limit (openai: max_tokens; hf: max_new_tokens).")
    temperature: float | None = Field(None, ge=0, description="Sampling temperature sent to the model; null: the provider's default (GPT-5 accepts only its default).")
    image_size: int = Field(448, ge=28, description="hf: side in px images are resized to before the processor (a tiny student folder: its spd.image_size, e.g. 64).")
    drift_at: float | None = Field(
        None, ge=0, le=1,
        description="Simulated: stream fraction (stream_index / stream length) where the profile's model update lands; null: the profile's default; 1: never.",
    )

    @model_validator(mode="after")
    def _check_backend(self) -> "TeacherSpec":
        # Imported here: the teachers package imports this module.
        from apodistill.teachers import BACKENDS
        from apodistill.teachers.profiles import PROFILES

        if self.backend not in BACKENDS:
            raise ValueError(f"unknown teacher backend {self.backend!r}; known: {', '.join(BACKENDS.names())}")
        if self.backend == "simulated" and (self.profile or self.name) not in PROFILES:
            raise ValueError(
                f"simulated teacher {self.name!r} needs `profile:` naming one of {', '.join(PROFILES)}"
            )
        if self.backend == "openai" and not self.base_url:
            raise ValueError(f"openai teacher {self.name!r} needs `base_url:` (e.g. https://api.openai.com/v1)")
        return self


class TeachersConfig(Section):
    roster: list[TeacherSpec] = Field(..., min_length=1, description="The teachers, in order.")
    weights: Literal["auto"] | dict[str, float] = Field(
        "auto",
        description="w_u per teacher name (every roster name exactly once), or 'auto' to set them from agreement on the train split.",
    )
    tasks: list[Literal["single", "pair"]] = Field(default_factory=lambda: ["single"], description="Which prompts teachers answer.")
    conditioned_splits: list[Literal["train", "val", "test"]] = Field(
        default_factory=list,
        description="Splits on which every teacher is asked label-conditioned (explain the study's known labels), as in the paper's "
        "CXR-MAX training data; other splits use each teacher's prompt_mode. Never put test here: teachers are compared on it.",
    )
    retry_errors: bool = Field(True, description="A rerun asks again for answers that ended in error (refusals and ok answers are kept).")

    @model_validator(mode="after")
    def _check(self) -> "TeachersConfig":
        names = [t.name for t in self.roster]
        if len(set(self.tasks)) != len(self.tasks) or not self.tasks:
            raise ValueError(f"teachers.tasks must be a non-empty list without repeats, got {self.tasks}")
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
