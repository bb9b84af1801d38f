"""The seven simulated teacher profiles: calibrated accuracy, image-dependent errors, named biases.

Each profile answers *blind* with a per-finding accuracy whose mean is the paper's MS-CXR-T
average for that teacher (docs/method.md): GPT-5 .75, GLM-4.5V .69, Qwen-VL-Max .64, Grok-4 .56,
Gemini-2.5 .53, Moonshot .48, Sonnet-4 .47, on single studies (yes/no) and on prior/current
pairs (improving/stable/worsening) alike.

Why errors depend on the image: a student trained on teachers' trajectories inherits only the
errors it can see coming. Errors drawn at random per study are label noise that pooled training
averages away; errors that follow what the film shows (a faint finding, a grainy film, a mimic
such as basal atelectasis next to an effusion question) are biases a student learns. So each
answer is wrong with probability ``sigmoid(logit)`` where the logit adds up:

- the profile's intercept for that finding (calibrated, see below);
- how faint the finding is (positives: low severity is missed more; pairs: small changes and
  faint findings are misread more), shared by all teachers;
- how grainy the film is (``image_noise``), shared by all teachers;
- the generic mimic of the finding (negatives: atelectasis for effusion, a large heart for
  edema, consolidation for pneumonia, pneumonia or atelectasis for consolidation), shared;
- a latent per (image, finding) shared by every teacher: some films are ambiguous for all
  readers, so teachers err together there and even their vote is wrong;
- the profile's own named :class:`Bias` terms where their condition holds on the image
  (e.g. Qwen-VL-Max misses faint pneumothorax, Sonnet-4 reads basal atelectasis as an effusion).

Calibration: the intercepts are solved (bisection) so that, over a fixed reference population
of the synthetic generator (:func:`apodistill.data.synthetic.reference_population`), the miss
rate and the over-call rate are those of :func:`sens_spec` at the profile's accuracy and
``bias`` (the error split between misses and over-calls), and on pairs the error rate is
1 - accuracy. Named biases therefore move *where* a teacher errs, not how often.
Findings outside the MS-CXR-T five get the profile's mean accuracy and no bias; a benchmark
without severities (real data) leaves only the intercept and the shared latent.

| teacher     | mean | named biases (condition -> error) | style |
|-------------|------|-----------------------------------|-------|
| gpt5        | .75  | faint edema -> missed | verbose |
| glm45v      | .69  | large heart -> edema called | breaks format 8%, pairs lean "worsening" |
| qwen_vl_max | .64  | faint pneumothorax -> missed (also on pairs) | terse |
| grok4       | .56  | after its update at mid-stream: every pneumothorax missed more, large heart -> edema | drifts; pairs lean "improving" after |
| gemini25    | .53  | basal atelectasis -> effusion called | hedges: half its errors say "uncertain" |
| moonshot    | .48  | consolidation -> pneumonia called; basal atelectasis -> effusion called | invents findings |
| sonnet4     | .47  | basal atelectasis -> effusion called | refuses 20% |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import numpy as np

_F = ("consolidation", "pleural_effusion", "pneumonia", "pneumothorax", "edema")

# Shared (teacher-independent) error terms, on the logit scale.
FAINT_W = 0.8  # per unit of faintness (severity 0.6 -> 0, 0.3 -> 1)
SMALL_W = 1.0  # pairs: per unit of closeness of the change to the stable/changed threshold
NOISE_W = 0.3  # per standard deviation of film grain
MIMIC_W = 0.5  # negatives next to the finding's mimic
RHO = 0.4  # sd of the latent shared by all teachers per (image, finding)
NOISE_MEAN, NOISE_SD = 0.026, 0.0081  # of image_noise ~ U(0.012, 0.04)
MIMICS: dict[str, tuple[str, ...]] = {
    "pleural_effusion": ("atelectasis",),
    "edema": ("cardiomegaly",),
    "pneumonia": ("consolidation",),
    "consolidation": ("pneumonia", "atelectasis"),
}
HALLUCINATED_CHANGE = 0.03  # pairs: a finding absent from both films called changed


def _table(*values: float) -> dict[str, float]:
    return dict(zip(_F, values, strict=True))


Features = dict[str, float]  # severity_<f> (single) or prior_/current_severity_<f> (pair), image_noise


def _sev(x: Features, f: str) -> float:
    v = x.get(f"severity_{f}", x.get(f"current_severity_{f}"))
    return 0.0 if v is None or not math.isfinite(v) else float(v)


def _pair_sev(x: Features, f: str) -> tuple[float, float]:
    a, b = x.get(f"prior_severity_{f}"), x.get(f"current_severity_{f}")
    return (0.0 if a is None or not math.isfinite(a) else float(a), 0.0 if b is None or not math.isfinite(b) else float(b))


# Image conditions a bias can name. Each reads the study's features (single) or the pair's
# (current film, and for "faint" the larger of the two severities).
CONDITIONS: dict[str, Callable[[Features, str], bool]] = {
    "always": lambda x, f: True,
    "faint": lambda x, f: 0.0 < max(_sev(x, f), *_pair_sev(x, f)) < 0.45,
    "atelectasis": lambda x, f: _sev(x, "atelectasis") > 0,
    "large_heart": lambda x, f: _sev(x, "cardiomegaly") > 0,
    "consolidation": lambda x, f: _sev(x, "consolidation") > 0,
}


@dataclass(frozen=True)
class Bias:
    """A systematic, image-conditional error of one profile.

    ``kind``: ``miss`` (a present finding answered no; on pairs, a change answered stable) or
    ``overcall`` (an absent finding answered yes; single studies only). ``when`` names a
    :data:`CONDITIONS` entry; ``strength`` is added to the error logit where it holds.
    """

    name: str
    finding: str
    kind: str
    when: str
    strength: float
    tasks: tuple[str, ...] = ("single",)

    def applies(self, task: str, positive: bool, x: Features) -> bool:
        if task not in self.tasks or (self.kind == "miss") != positive:
            return False
        return CONDITIONS[self.when](x, self.finding)


@dataclass(frozen=True)
class Phase:
    """Error behaviour of a profile over one stretch of the stream."""

    accuracy: dict[str, float]
    bias: dict[str, float] = field(default_factory=dict)  # -1 misses .. +1 over-calls (single)
    biases: tuple[Bias, ...] = ()
    pair_bias: str = "stable"  # the class a wrong pair answer prefers

    def acc(self, finding: str) -> float:
        if finding in self.accuracy:
            return self.accuracy[finding]
        return sum(self.accuracy.values()) / len(self.accuracy)

    def bias_of(self, finding: str) -> float:
        return self.bias.get(finding, 0.0)

    def named(self, finding: str) -> tuple[Bias, ...]:
        return tuple(b for b in self.biases if b.finding == finding)


@dataclass(frozen=True)
class Profile:
    """A simulated teacher: accuracy, error structure, style and drift."""

    name: str
    paper_accuracy: float  # the paper's MS-CXR-T average; mean of `before.accuracy`
    before: Phase
    after: Phase | None = None  # the "updated provider model" after drift
    drift_at: float | None = None  # stream fraction where `after` takes over
    refusal_rate: float = 0.01  # "As an AI, I cannot..." -> status refused
    hedge_rate: float = 0.0  # share of single-task errors answered "uncertain"
    hallucinate_line_rate: float = 0.0  # adds an answer line outside the vocabulary
    hallucinate_think_rate: float = 0.0  # mentions an unsupported finding in <think>
    format_break_rate: float = 0.0  # drops </think>, the answer block or </answer>
    verbosity: int = 1  # 1 terse .. 3 wordy reasoning
    latency_s: float = 4.0  # median simulated latency (no real waiting)

    def phase(self, post_drift: bool) -> Phase:
        return self.after if (post_drift and self.after is not None) else self.before


_ATEL_EFFUSION = "reads basal atelectasis as a pleural effusion"
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        # The strongest teacher: balanced errors, verbose reasoning; under-reads faint edema.
        Profile(
            "gpt5", 0.75,
            before=Phase(_table(0.78, 0.80, 0.72, 0.70, 0.75),
                         biases=(Bias("misses faint edema", "edema", "miss", "faint", 1.5),)),
            refusal_rate=0.005, verbosity=3, latency_s=9.0,
        ),
        # Reads a large heart as edema; sometimes breaks the output format.
        Profile(
            "glm45v", 0.69,
            before=Phase(_table(0.72, 0.76, 0.66, 0.62, 0.69), {"edema": 0.5},
                         biases=(Bias("reads a large heart as edema", "edema", "overcall", "large_heart", 3.0),),
                         pair_bias="worsening"),
            format_break_rate=0.08, latency_s=5.0,
        ),
        # Misses faint apical pneumothorax: the thin pleural rim is its blind spot.
        Profile(
            "qwen_vl_max", 0.64,
            before=Phase(_table(0.66, 0.72, 0.60, 0.58, 0.64), {"pneumothorax": -0.5},
                         biases=(Bias("misses faint pneumothorax", "pneumothorax", "miss", "faint", 3.0, ("single", "pair")),)),
            latency_s=3.5,
        ),
        # Drifts: a provider update at mid-stream trades consolidation skill for pneumothorax
        # misses and edema over-calls on large hearts (same average, different errors).
        Profile(
            "grok4", 0.56,
            before=Phase(_table(0.60, 0.62, 0.54, 0.50, 0.54)),
            after=Phase(
                _table(0.64, 0.64, 0.58, 0.44, 0.50),
                {"pneumothorax": -0.4, "edema": 0.6},
                biases=(Bias("misses pneumothorax (after its update)", "pneumothorax", "miss", "always", 2.0, ("single", "pair")),
                        Bias("reads a large heart as edema (after its update)", "edema", "overcall", "large_heart", 3.0)),
                pair_bias="improving",
            ),
            drift_at=0.5, latency_s=6.0,
        ),
        # Hedges: half its errors become "uncertain"; reads basal atelectasis as effusion.
        Profile(
            "gemini25", 0.53,
            before=Phase(_table(0.56, 0.50, 0.55, 0.52, 0.52),
                         biases=(Bias(_ATEL_EFFUSION, "pleural_effusion", "overcall", "atelectasis", 2.5),)),
            hedge_rate=0.5, latency_s=7.0,
        ),
        # Hallucinates: calls consolidation pneumonia, invents findings outside the vocabulary.
        Profile(
            "moonshot", 0.48,
            before=Phase(_table(0.50, 0.52, 0.46, 0.44, 0.48), {"pneumonia": 0.5},
                         biases=(Bias("calls lobar consolidation pneumonia", "pneumonia", "overcall", "consolidation", 3.0),
                                 Bias(_ATEL_EFFUSION, "pleural_effusion", "overcall", "atelectasis", 2.0))),
            hallucinate_line_rate=0.10, hallucinate_think_rate=0.25, latency_s=4.0,
        ),
        # Refuses often; when it answers, a raised, blunted base is an effusion to it.
        Profile(
            "sonnet4", 0.47,
            before=Phase(_table(0.50, 0.48, 0.46, 0.42, 0.49), {"pleural_effusion": 0.6},
                         biases=(Bias(_ATEL_EFFUSION, "pleural_effusion", "overcall", "atelectasis", 3.0),)),
            refusal_rate=0.20, latency_s=5.5,
        ),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown simulated profile {name!r}; known: {', '.join(PROFILES)}") from None


def named_biases(teachers) -> dict[str, list[list[str]]]:
    """Each simulated roster teacher's known biases ``[finding, kind, name]`` (all phases); the
    evaluate stage measures how much of each a student inherits. Real teachers: none known."""
    out: dict[str, list[list[str]]] = {}
    for spec in teachers.roster:
        if spec.backend != "simulated":
            continue
        profile = get_profile(spec.profile or spec.name)
        phases = [profile.before] + ([profile.after] if profile.after else [])
        out[spec.name] = sorted({(b.finding, b.kind, b.name) for ph in phases for b in ph.biases})
    return {k: [list(b) for b in v] for k, v in out.items()}


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


# --------------------------------------------------------------------------- error model


def faintness(severity: float) -> float:
    """0 at severity 0.6, 1 at 0.3, negative for larger findings (clipped)."""
    return float(np.clip((0.6 - severity) / 0.3, -1.0, 1.2))


def closeness(delta: float, threshold: float = 0.15) -> float:
    """Pairs: how close a change is to the stable/changed threshold (1 at 0.05 away, 0 at 0.17, < 0 beyond)."""
    return float(np.clip((0.22 - abs(abs(delta) - threshold)) / 0.17, -1.0, 1.3))


def noise_z(x: Features) -> float:
    v = x.get("image_noise", x.get("current_image_noise"))
    return 0.0 if v is None or not math.isfinite(v) else (float(v) - NOISE_MEAN) / NOISE_SD


def shared_logit(task: str, finding: str, positive: bool, x: Features) -> float:
    """The error logit every teacher shares on this image (without the latent and intercept)."""
    out = NOISE_W * noise_z(x)
    if task == "pair":
        a, b = _pair_sev(x, finding)
        return out + SMALL_W * closeness(b - a) + FAINT_W * 0.5 * faintness(max(a, b))
    if positive:
        return out + FAINT_W * faintness(_sev(x, finding))
    return out + MIMIC_W * any(_sev(x, m) > 0 for m in MIMICS.get(finding, ()))


def bias_logit(phase: Phase, task: str, finding: str, positive: bool, x: Features) -> tuple[float, Bias | None]:
    """Sum of the profile's named bias terms that hold here, and the strongest one (for the record)."""
    hits = [b for b in phase.named(finding) if b.applies(task, positive, x)]
    return sum(b.strength for b in hits), max(hits, key=lambda b: b.strength, default=None)


def error_logit(phase: Phase, intercept: float, task: str, finding: str, positive: bool, x: Features, latent: float) -> tuple[float, Bias | None]:
    extra, named = bias_logit(phase, task, finding, positive, x)
    return intercept + shared_logit(task, finding, positive, x) + RHO * latent + extra, named


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Intercepts:
    miss: float  # single: positives
    overcall: float  # single: negatives
    pair: float  # pairs: labelled findings


@lru_cache(maxsize=1)
def _population() -> dict[str, Any]:
    """Feature rows of the reference population with one latent draw each (fixed seed)."""
    from apodistill.data.synthetic import reference_population

    studies, pairs = reference_population()
    rng = np.random.default_rng(7)
    single = studies.to_dict("records")
    pair_rows = pairs.to_dict("records")
    return {
        "single": single,
        "pair": pair_rows,
        "latent_single": rng.normal(size=(len(single), len(_F))),
        "latent_pair": rng.normal(size=(len(pair_rows), len(_F))),
        "prevalence": {f: float((studies[f"severity_{f}"] > 0).mean()) for f in _F},
    }


def reference_prevalence(finding: str) -> float:
    return _population()["prevalence"].get(finding, 0.3)


def _solve(base: np.ndarray, target: float) -> float:
    """The intercept c with mean(sigmoid(c + base)) == target (bisection)."""
    target = min(max(target, 1e-4), 1 - 1e-4)
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(mid + base)))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@lru_cache(maxsize=None)
def intercepts(profile_name: str, post_drift: bool, finding: str) -> Intercepts:
    """Calibrated intercepts of one profile, phase and finding (cached per process)."""
    phase = get_profile(profile_name).phase(post_drift)
    pop = _population()
    if finding not in _F:
        z = math.log((1 - phase.acc(finding)) / phase.acc(finding)) - RHO**2 / 3
        return Intercepts(z, z, z)
    j = _F.index(finding)
    sens, spec = sens_spec(phase.acc(finding), phase.bias_of(finding), pop["prevalence"][finding])
    pos, neg = [], []
    for x, lat in zip(pop["single"], pop["latent_single"][:, j]):
        positive = x[f"severity_{finding}"] > 0
        (pos if positive else neg).append(error_logit(phase, 0.0, "single", finding, positive, x, lat)[0])
    pairs = [
        error_logit(phase, 0.0, "pair", finding, True, x, lat)[0]
        for x, lat in zip(pop["pair"], pop["latent_pair"][:, j])
        if x[f"progression_{finding}"] is not None
    ]
    return Intercepts(_solve(np.array(pos), 1 - sens), _solve(np.array(neg), 1 - spec), _solve(np.array(pairs), 1 - phase.acc(finding)))
