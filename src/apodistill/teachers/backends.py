"""What every teacher backend receives and returns, and the registry they join by name.

A backend turns :class:`Request` objects (one prompt about one study or prior/current pair)
into :class:`Result` objects and hands each to a ``sink`` as soon as it exists, so the
cache stores it at once and a killed run loses nothing already answered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from apodistill.config.teachers import TeacherSpec
from apodistill.registry import Registry

STATUSES = ("ok", "refused", "error")


@dataclass(frozen=True)
class Request:
    """One prompt for one teacher. ``truth`` is read by the simulated backend only."""

    teacher: str
    task: str  # single | pair
    prompt_mode: str  # blind | label_conditioned
    template: str  # template file name
    prompt: str  # rendered prompt text
    image_paths: tuple[str, ...]  # resolved paths; pairs: (prior, current)
    study_id: str
    prior_study_id: str | None
    split: str
    stream_index: int
    post_drift: bool  # past the teacher's drift point in the stream (simulated)
    truth: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    key: str = ""  # cache key, filled in by the runner


@dataclass
class Result:
    """The outcome of one request: exactly one of ok / refused / error, never dropped."""

    text: str
    status: str
    reason: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    raw: str = ""  # the backend's raw response (HTTP body, generated text)
    attempts: int = 1

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not in {STATUSES}")
        if self.status != "ok" and not self.reason:
            raise ValueError(f"a {self.status} result needs a reason")


class TeacherSetupError(RuntimeError):
    """A teacher cannot be used as configured (e.g. its key variable is not set); raised before any request."""


Sink = Callable[[Request, Result], None]


def cost_usd(spec: TeacherSpec, prompt_tokens: int, completion_tokens: int) -> float:
    """What an answer cost at the roster's prices (an unset price counts as free)."""
    return (prompt_tokens * (spec.usd_per_1m_input or 0.0) + completion_tokens * (spec.usd_per_1m_output or 0.0)) / 1e6


def is_free(spec: TeacherSpec) -> bool:
    """No price set (or both 0): the budget never holds this teacher back."""
    return not (spec.usd_per_1m_input or spec.usd_per_1m_output)


@dataclass
class Budget:
    """``teachers.budget_usd`` shared by every teacher of a run: new requests start only while
    ``spent_usd`` is below ``limit_usd``; answers in flight finish and are charged."""

    limit_usd: float | None = None
    spent_usd: float = 0.0  # stored answers of earlier runs (this benchmark's requests) + this run's
    stopped: bool = False  # a request was held back because the budget was spent

    def allows_new(self, free: bool = False) -> bool:
        """Whether a new request may start: always for a ``free`` teacher (its answers cost
        nothing), else only until the budget is spent (remembered as stopped)."""
        if free:
            return True
        if self.limit_usd is not None and self.spent_usd >= self.limit_usd:
            self.stopped = True
        return not self.stopped

    def charge(self, usd: float) -> None:
        self.spent_usd += usd


@dataclass(frozen=True)
class RunContext:
    """What backends share: seed, findings, benchmark-level facts, progress display, budget."""

    seed: int
    findings: tuple[str, ...]
    prevalence: dict[str, float] = field(default_factory=dict)  # P(label == 1) per finding
    progress: bool = True
    budget: Budget = field(default_factory=Budget)


class Backend:
    """Base class: subclasses implement :meth:`run` (and :meth:`answer_params`)."""

    #: True when images leave the machine (the PHI guard applies).
    sends_images_off_machine: ClassVar[bool] = False
    #: Answers stored per cache commit: 1 for paid answers; more for free, fast ones.
    commit_every: ClassVar[int] = 1
    #: True when :meth:`run` itself checks ``ctx.budget`` before each new request; otherwise the
    #: runner hands it ``concurrency`` requests at a time and checks between batches.
    honours_budget: ClassVar[bool] = False

    def __init__(self, spec: TeacherSpec, ctx: RunContext):
        self.spec = spec
        self.ctx = ctx
        self.history: list[float] = []  # this teacher's earlier answer latencies (cache), for hedging

    def drift_at(self) -> float | None:
        """Stream fraction where a simulated model update lands (real backends: None)."""
        return None

    def answer_params(self, request: Request) -> dict[str, Any]:
        """Everything besides prompt and images that changes the answer (part of the cache key)."""
        return {}

    async def run(self, requests: list[Request], sink: Sink) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (models, clients)."""


BACKENDS: Registry[type[Backend]] = Registry("teacher backend")

_REFUSAL = re.compile(
    r"(?i)\b(as an ai\b|i cannot (provide|diagnose|interpret|help)|i can't (provide|diagnose|interpret|help)"
    r"|i am unable|i'm unable|i'm sorry, but|not able to provide (a )?(medical )?diagnos|consult a (qualified )?(radiologist|physician|doctor))"
)


def is_refusal(text: str) -> bool:
    """A response without an answer block that declines the task."""
    return "<answer>" not in (text or "") and bool(_REFUSAL.search(text or ""))


def scrub(text: str, secrets: list[str]) -> str:
    """Remove secret values (API keys) from a string before it is stored or logged."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text

