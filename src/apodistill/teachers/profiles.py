"""The seven simulated teacher profiles, calibrated to the paper's per-teacher accuracies.

Each profile answers *blind* with a per-finding accuracy table whose mean is the paper's
MS-CXR-T average for that teacher (docs/method.md): GPT-5 .75, GLM-4.5V .69, Qwen-VL-Max .64,
Grok-4 .56, Gemini-2.5 .53, Moonshot .48, Sonnet-4 .47.

What "accuracy" means here:
- task ``single`` (one study, yes/no per finding): the probability that the answer line is
  the right yes/no. "uncertain" counts as wrong (the hedger turns some errors into it).
  The ``bias`` of a finding moves errors between misses and over-calls without changing
  the accuracy at the benchmark's prevalence (see :func:`sens_spec`): -1 = as many misses
  as possible, +1 = as many over-calls as possible, 0 = sensitivity = specificity.
- task ``pair`` (prior/current, improving/stable/worsening): the probability of the right
  class, for every true class; a wrong answer prefers the profile's ``pair_bias`` class.

Rows that are refused or whose format breaks have no answer; refusals and format breaks
are drawn independently of correctness, so accuracy over the answered rows is unchanged.

Errors are partly systematic: every teacher reads the same per-(study, finding) difficulty
draw ``u`` (shared by all teachers), and errs when ``u`` (plus a small teacher-specific
jitter) falls inside its own window starting at ``offset``. Windows of different teachers
start at different offsets, so teachers err on different studies: they disagree, and the
majority of seven beats any one of them, as the paper's consensus step assumes. Per finding
the windows are packed end to end around the circle in ``rank`` order (each starts where the
previous one's pre-drift error ends, :func:`window_start`), so the number of teachers wrong
together stays near the average (2.9 of 7) instead of piling up; jitter 0.05 keeps part of
the errors independent.
Findings outside the MS-CXR-T five get the profile's mean accuracy and no bias.

Calibrated blind accuracy (pre-drift; bias in brackets, + over-calls, - misses):

| teacher     | consolidation | effusion     | pneumonia    | pneumothorax | edema        | mean | style |
|-------------|---------------|--------------|--------------|--------------|--------------|------|-------|
| gpt5        | .78           | .80          | .72          | .70          | .75          | .75  | verbose |
| glm45v      | .72           | .76          | .66          | .62          | .69 (+.5)    | .69  | breaks format 8% |
| qwen_vl_max | .66           | .72          | .60          | .58 (-.5)    | .64          | .64  | misses pneumothorax |
| grok4       | .60           | .62          | .54          | .50          | .54          | .56  | drifts at 0.5 of the stream to .64/.64/.58/.44 (-.4)/.50 (+.6) |
| gemini25    | .56           | .50          | .55          | .52          | .52          | .53  | hedges: half its errors say "uncertain" |
| moonshot    | .50           | .52          | .46 (+.5)    | .44          | .48          | .48  | invents findings: 10% extra answer line, 25% in <think> |
| sonnet4     | .50           | .48 (+.6)    | .46          | .42          | .49          | .47  | refuses 20% |
"""

from __future__ import annotations

from dataclasses import dataclass, field

_F = ("consolidation", "pleural_effusion", "pneumonia", "pneumothorax", "edema")


def _table(*values: float) -> dict[str, float]:
    return dict(zip(_F, values, strict=True))


@dataclass(frozen=True)
class Phase:
    """Error behaviour of a profile over one stretch of the stream."""

    accuracy: dict[str, float]
    bias: dict[str, float] = field(default_factory=dict)
    pair_bias: str = "stable"

    def acc(self, finding: str) -> float:
        if finding in self.accuracy:
            return self.accuracy[finding]
        return sum(self.accuracy.values()) / len(self.accuracy)

    def bias_of(self, finding: str) -> float:
        return self.bias.get(finding, 0.0)


@dataclass(frozen=True)
class Profile:
    """A simulated teacher: accuracy, error structure, style and drift."""

    name: str
    paper_accuracy: float  # the paper's MS-CXR-T average; mean of `before.accuracy`
    rank: int  # position of its error window on the shared difficulty circle (see window_start)
    before: Phase
    after: Phase | None = None  # the "updated provider model" after drift
    drift_at: float | None = None  # stream fraction where `after` takes over
    jitter: float = 0.05  # sd of the teacher's own noise on the shared difficulty
    refusal_rate: float = 0.01  # "As an AI, I cannot..." -> status refused
    hedge_rate: float = 0.0  # share of single-task errors answered "uncertain"
    hallucinate_line_rate: float = 0.0  # adds an answer line outside the vocabulary
    hallucinate_think_rate: float = 0.0  # mentions an unsupported finding in <think>
    format_break_rate: float = 0.0  # drops </think>, the answer block or </answer>
    verbosity: int = 1  # 1 terse .. 3 wordy reasoning
    latency_s: float = 4.0  # median simulated latency (no real waiting)

    def phase(self, post_drift: bool) -> Phase:
        return self.after if (post_drift and self.after is not None) else self.before


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        # The strongest teacher: balanced errors, verbose reasoning.
        Profile(
            "gpt5", 0.75, rank=0,
            before=Phase(_table(0.78, 0.80, 0.72, 0.70, 0.75)),
            refusal_rate=0.005, verbosity=3, latency_s=9.0,
        ),
        # Over-calls edema; sometimes breaks the output format.
        Profile(
            "glm45v", 0.69, rank=1,
            before=Phase(_table(0.72, 0.76, 0.66, 0.62, 0.69), {"edema": 0.5}, pair_bias="worsening"),
            format_break_rate=0.08, latency_s=5.0,
        ),
        # Misses pneumothorax: the thin pleural rim is its blind spot.
        Profile(
            "qwen_vl_max", 0.64, rank=2,
            before=Phase(_table(0.66, 0.72, 0.60, 0.58, 0.64), {"pneumothorax": -0.5}),
            latency_s=3.5,
        ),
        # Drifts: a provider update at mid-stream trades consolidation skill for
        # pneumothorax misses and edema over-calls (same average, different errors).
        Profile(
            "grok4", 0.56, rank=3,
            before=Phase(_table(0.60, 0.62, 0.54, 0.50, 0.54)),
            after=Phase(
                _table(0.64, 0.64, 0.58, 0.44, 0.50),
                {"pneumothorax": -0.4, "edema": 0.6},
                pair_bias="improving",
            ),
            drift_at=0.5, latency_s=6.0,
        ),
        # Hedges: half its errors become "uncertain", reasoning full of "may".
        Profile(
            "gemini25", 0.53, rank=4,
            before=Phase(_table(0.56, 0.50, 0.55, 0.52, 0.52)),
            hedge_rate=0.5, latency_s=7.0,
        ),
        # Hallucinates: over-calls pneumonia, invents findings outside the vocabulary.
        Profile(
            "moonshot", 0.48, rank=5,
            before=Phase(_table(0.50, 0.52, 0.46, 0.44, 0.48), {"pneumonia": 0.5}),
            hallucinate_line_rate=0.10, hallucinate_think_rate=0.25, latency_s=4.0,
        ),
        # Refuses often; over-calls pleural effusion when it does answer.
        Profile(
            "sonnet4", 0.47, rank=6,
            before=Phase(_table(0.50, 0.48, 0.46, 0.42, 0.49), {"pleural_effusion": 0.6}),
            refusal_rate=0.20, latency_s=5.5,
        ),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown simulated profile {name!r}; known: {', '.join(PROFILES)}") from None


def window_start(profile: Profile, finding: str) -> float:
    """Where the profile's error window starts on the shared difficulty circle for a finding."""
    before = [p for p in PROFILES.values() if p.rank < profile.rank]
    return sum(1.0 - p.before.acc(finding) for p in before) % 1.0


def sens_spec(accuracy: float, bias: float, prevalence: float) -> tuple[float, float]:
    """Sensitivity and specificity whose accuracy at ``prevalence`` is exactly ``accuracy``.

    bias 0 gives sens = spec = accuracy (right for any prevalence); bias -1 / +1 moves
    sensitivity to the lowest / highest value that keeps specificity within [0, 1].
    """
    pi = min(max(prevalence, 0.0), 1.0)
    if pi <= 0.0 or pi >= 1.0 or bias == 0.0:
        return accuracy, accuracy
    lo = max(0.0, 1.0 - (1.0 - accuracy) / pi)
    hi = min(1.0, accuracy / pi)
    sens = accuracy + bias * ((accuracy - lo) if bias < 0 else (hi - accuracy))
    spec = (accuracy - pi * sens) / (1.0 - pi)
    return sens, min(max(spec, 0.0), 1.0)
