"""``teachers:`` section: the roster of teachers and how they are asked.  Owned by the teachers module.

``teachers.defaults`` holds every per-teacher setting once; each roster entry starts from it
and overrides what it names, so the values live in params.yaml and nowhere else.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from apodistill.config._base import Section

#: The only split whose studies teachers may be asked label-conditioned (docs/method.md, CXR-MAX).
CONDITIONABLE = ("train",)


class TeacherOptions(Section):
    """The per-teacher settings that ``teachers.defaults`` gives every roster entry."""

    profile: str | None = Field(description="Simulated backend: which calibrated profile to play.")
    base_url: str | None = Field(description="openai backend: base URL of the OpenAI-compatible endpoint.")
    api_key_env: str | None = Field(description="Name of the environment variable that holds the key (never the key).")
    prompt_mode: Literal["blind", "label_conditioned"] = Field(description="blind: diagnose; label_conditioned: explain known labels (the paper).")
    concurrency: int = Field(gt=0, description="Requests in flight at once (hf: prompts per generate batch).")
    rpm: float = Field(gt=0, description="Requests-per-minute limit.")
    phi_approved: bool = Field(description="True only for endpoints contracted not to retain data (PhysioNet licence).")
    timeout_s: float = Field(gt=0, description="Total deadline of one attempt (connect + send + wait + read), seconds.")
    connect_timeout_s: float = Field(gt=0, description="Deadline for opening the TCP (and TLS) connection of one attempt.")
    read_idle_timeout_s: float | None = Field(
        gt=0,
        description="Longest silence while waiting for response bytes within one attempt; null: only timeout_s applies "
        "(a non-streamed completion sends nothing until it is done, so this is its time to first byte).",
    )
    hedge_factor: float | None = Field(
        gt=0,
        description="An attempt running longer than hedge_factor x the teacher's observed p95 latency is hedged: a duplicate "
        "starts, the slow attempt stops counting against `concurrency` (first answer wins, the other is cancelled). null: never.",
    )
    hedge_min_s: float = Field(ge=0, description="Never hedge an attempt younger than this (a tiny early p95 would hedge everything).")
    hedge_initial_s: float | None = Field(
        gt=0,
        description="Hedge threshold until hedge_min_samples latencies are known (this run, or this teacher's earlier answers "
        "in the cache): it only governs a run's first answers, so it costs at most `concurrency` duplicates. null: no hedging before then.",
    )
    hedge_min_samples: int = Field(ge=1, description="Answers timed before the observed p95 sets the hedge threshold.")
    usd_per_1m_input: float | None = Field(
        ge=0, description="Price per 1M prompt tokens (USD) for cost accounting and teachers.budget_usd; null: free "
        "(simulated, hf), or unknown (openai: then no budget can be set).",
    )
    usd_per_1m_output: float | None = Field(ge=0, description="Price per 1M completion tokens (USD); null as usd_per_1m_input.")
    max_retries: int = Field(ge=0, description="Retries on 429, 5xx and timeouts (exponential backoff with jitter).")
    backoff_s: float = Field(gt=0, description="First retry waits up to this long, doubling per retry (full jitter), never less than Retry-After.")
    max_backoff_s: float = Field(gt=0, description="Longest wait between retries.")
    max_tokens: int = Field(gt=0, description="Completion length limit (openai: max_tokens; hf: max_new_tokens).")
    temperature: float | None = Field(ge=0, description="Sampling temperature sent to the model; null: the provider's default (GPT-5 accepts only its default).")
    image_size: int = Field(ge=28, description="hf: side in px images are resized to before the processor (a tiny student folder: its spd.image_size, e.g. 64).")
    drift_at: float | None = Field(
        ge=0, le=1,
        description="Simulated: stream fraction (stream_index / stream length) where the profile's model update lands; null: the profile's default; 1: never.",
    )


class TeacherSpec(TeacherOptions):
    """One roster entry: ``teachers.defaults`` overlaid with the entry's own keys."""

    name: str = Field(pattern=r"^[a-z0-9_]+$", description="Short id used in tables, weights and metrics keys.")
    backend: str = Field(description="Registered backend: simulated | openai | hf.")
    model: str = Field(description="Model id sent to the backend (or the simulated profile's model name).")

    @model_validator(mode="after")
    def _check_backend(self) -> "TeacherSpec":
        # Imported here: the teachers package imports this module.
        from apodistill.teachers import BACKENDS
        from apodistill.teachers.profiles import PROFILES

        BACKENDS.check(self.backend)
        if self.backend == "simulated" and (self.profile or self.name) not in PROFILES:
            raise ValueError(
                f"simulated teacher {self.name!r} needs `profile:` naming one of {', '.join(PROFILES)}"
            )
        if self.backend == "openai" and not self.base_url:
            raise ValueError(f"openai teacher {self.name!r} needs `base_url:` (e.g. https://api.openai.com/v1)")
        return self


class TeachersConfig(Section):
    defaults: TeacherOptions = Field(description="Settings every roster entry starts from; an entry's own keys win.")
    roster: list[TeacherSpec] = Field(min_length=1, description="The teachers, in order.")
    weights: Literal["auto"] | dict[str, float] = Field(
        description="w_u per teacher name (every roster name exactly once), or 'auto' to set them from agreement on the train split.",
        json_schema_extra={"keyed_by": "teacher"},
    )
    tasks: list[Literal["single", "pair"]] = Field(min_length=1, description="Which prompts teachers answer.")
    conditioned_splits: list[Literal["train", "val", "test"]] = Field(
        description="Splits on which every teacher is asked label-conditioned (explain the study's known labels), as in the paper's "
        "CXR-MAX training data; other splits use each teacher's prompt_mode. Only train: val chooses the best teacher and "
        "test compares the teachers, so both must stay blind.",
    )
    retry_errors: bool = Field(description="A rerun asks again for answers that ended in error (refusals and ok answers are kept).")
    budget_usd: float | None = Field(
        ge=0,
        description="Stop sending new requests once the cost of this benchmark's stored answers (all runs, all teachers, at "
        "the roster's prices) reaches this; in-flight ones finish (overshoot <= one request per worker). The stage then "
        "records the stop and exits 4; a rerun with a higher budget asks only for what is missing. null: no limit.",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_roster(cls, data: Any) -> Any:
        """Each roster entry = ``defaults`` overlaid with the entry's own keys."""
        if isinstance(data, dict) and isinstance(data.get("defaults"), dict) and isinstance(data.get("roster"), list):
            data = {**data, "roster": [{**data["defaults"], **e} if isinstance(e, dict) else e for e in data["roster"]]}
        return data

    @field_validator("roster")
    @classmethod
    def _unique_names(cls, roster: list[TeacherSpec]) -> list[TeacherSpec]:
        names = [t.name for t in roster]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"teacher names repeated in roster: {dup}")
        return roster

    @field_validator("weights")
    @classmethod
    def _weights_name_the_roster(cls, weights: Any, info: ValidationInfo) -> Any:
        if not isinstance(weights, dict) or "roster" not in info.data:
            return weights
        names = [t.name for t in info.data["roster"]]
        extra = sorted(set(weights) - set(names))
        missing = [n for n in names if n not in weights]
        if extra or missing:
            raise ValueError(
                "must name every roster teacher exactly once: "
                + (f"not in roster: {extra}; " if extra else "")
                + (f"missing: {missing}; " if missing else "")
                + f"roster: {', '.join(names)}"
            )
        bad = {k: v for k, v in weights.items() if not v >= 0}
        if bad:
            raise ValueError(f"must be >= 0: {bad}")
        if sum(weights.values()) <= 0:
            raise ValueError("weights sum to 0")
        return weights

    @field_validator("tasks")
    @classmethod
    def _no_repeats(cls, tasks: list[str]) -> list[str]:
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"repeated task in {tasks}")
        return tasks

    @field_validator("budget_usd")
    @classmethod
    def _budget_needs_prices(cls, budget: float | None, info: ValidationInfo) -> float | None:
        if budget is None or "roster" not in info.data:
            return budget
        from apodistill.teachers import BACKENDS

        unpriced = [t.name for t in info.data["roster"] if BACKENDS.get(t.backend).sends_images_off_machine
                    and (t.usd_per_1m_input is None or t.usd_per_1m_output is None)]
        if unpriced:
            raise ValueError(f"needs usd_per_1m_input and usd_per_1m_output on every paid teacher; missing on: {unpriced}")
        return budget

    @field_validator("conditioned_splits")
    @classmethod
    def _only_train(cls, splits: list[str]) -> list[str]:
        bad = [s for s in splits if s not in CONDITIONABLE]
        if bad:
            raise ValueError(
                f"{bad} may not be label-conditioned: val chooses the best teacher and test compares the teachers, so "
                f"teachers must be blind there; allowed: {list(CONDITIONABLE)} or []"
            )
        return splits

    @model_validator(mode="after")
    def _templates_exist(self, info: ValidationInfo) -> "TeachersConfig":
        repo = (info.context or {}).get("repo")
        if repo is not None:
            missing, present = repo.missing_templates(self.tasks, self.prompt_modes())
            if missing:
                from apodistill.config import keyed_error

                raise keyed_error("teachers.tasks", f"{self.tasks} (prompt modes {sorted(self.prompt_modes())}) need templates "
                                  f"{missing} in {repo.where(repo.teacher_templates)}; there: {', '.join(present) or '(none)'}")
        return self

    def names(self) -> list[str]:
        return [t.name for t in self.roster]

    def prompt_modes(self) -> set[str]:
        """Every prompt mode some teacher is asked in (roster modes, plus label_conditioned when a split is)."""
        return {t.prompt_mode for t in self.roster} | ({"label_conditioned"} if self.conditioned_splits else set())
