"""``simulated`` backend: calibrated, drifting, stylised teachers that need no network.

It reads the study's ground truth (``label_*``, ``severity_*``, ``progression_*``) and
answers like the profile in :mod:`apodistill.teachers.profiles` would: right with the
calibrated probability, wrong in the profile's systematic direction, in the profile's
style (refusals, hedges, hallucinations, broken format, verbosity). Every draw is a pure
function of (base.seed, teacher, record), so a rerun gives the same text byte for byte.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from apodistill.findings import CHEXPERT_14, PAIR_VALUES, display, format_trajectory
from apodistill.teachers import phrases
from apodistill.teachers.backends import BACKENDS, Backend, Request, Result, RunContext, Sink
from apodistill.teachers.profiles import Profile, get_profile, sens_spec, window_start

_IMAGE_TOKENS = 256  # what a 2x2-merged ViT charges for one image, roughly
_BREAKS = ("no_think_close", "no_answer", "no_answer_close", "bad_line")


def _hash_int(*parts: Any) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43)


def shared_difficulty(seed: int, req: Request, finding: str) -> float:
    """u in [0, 1): how hard this finding is on this record, the same for every teacher.

    A Weyl sequence over the stream (stream_index * frac(sqrt(p)) + a seeded shift, one prime
    p per finding) rather than a hash: its points fill [0, 1) evenly over any stretch of the
    stream, so a teacher's error count over n records is its error rate times n up to a few
    records (an i.i.d. draw would add a sqrt(n) binomial spread), and irrational steps that
    differ per finding keep findings independent of each other.
    """
    p = _PRIMES[CHEXPERT_14.index(finding)] if finding in CHEXPERT_14 else 47
    step = math.sqrt(p) % 1.0
    shift = _hash_int(seed, "u", req.task, finding) / 2**64
    return (req.stream_index * step + shift) % 1.0


def truth_single(label: float | None) -> bool:
    """Positive when the label is 1 (and -1 'uncertain' counts as positive: U-Ones)."""
    return label is not None and not math.isnan(label) and label in (1.0, -1.0)


def truth_pair(progression: str | None) -> str:
    """Unlabelled progressions are treated as stable (they are not scored anyway)."""
    return progression if progression in PAIR_VALUES else "stable"


def conditioned_value(task: str, req: Request, finding: str) -> str:
    """The known label written the way a trajectory answers it (label-conditioned mode)."""
    if task == "pair":
        return truth_pair(req.truth.get("progression", {}).get(finding))
    label = req.truth.get("label", {}).get(finding)
    if label is not None and not math.isnan(label) and label == -1.0:
        return "uncertain"
    return "yes" if truth_single(label) else "no"


def blind_answers(profile: Profile, req: Request, ctx: RunContext, rng: np.random.Generator) -> dict[str, str]:
    """One answer per finding: wrong when the jittered shared difficulty hits the error window."""
    phase = profile.phase(req.post_drift)
    out: dict[str, str] = {}
    for f in ctx.findings:
        u = (shared_difficulty(ctx.seed, req, f) + rng.normal(0.0, profile.jitter)) % 1.0
        hit = (u - window_start(profile, f)) % 1.0
        side_draw, hedge_draw = rng.random(), rng.random()
        acc = phase.acc(f)
        if req.task == "pair":
            truth = truth_pair(req.truth.get("progression", {}).get(f))
            if hit >= 1.0 - acc:
                out[f] = truth
            else:
                others = [v for v in PAIR_VALUES if v != truth]
                preferred = phase.pair_bias if phase.pair_bias in others else None
                if preferred is not None and side_draw < 0.7:
                    out[f] = preferred
                else:
                    others = [v for v in others if v != preferred] or others
                    out[f] = others[int(side_draw * 1e6) % len(others)]
            continue
        positive = truth_single(req.truth.get("label", {}).get(f))
        sens, spec = sens_spec(acc, phase.bias_of(f), ctx.prevalence.get(f, 0.5))
        wrong = hit < (1.0 - sens if positive else 1.0 - spec)
        if not wrong:
            out[f] = "yes" if positive else "no"
        elif hedge_draw < profile.hedge_rate:
            out[f] = "uncertain"
        else:
            out[f] = "no" if positive else "yes"
    return out


def _break_format(text: str, mode: str, answers: dict[str, str]) -> str:
    if mode == "no_think_close":
        return text.replace("</think>", "", 1)
    if mode == "no_answer":
        return text.split("\n<answer>", 1)[0]
    if mode == "no_answer_close":
        return text.replace("\n</answer>", "")
    return text.replace(": ", " - ")  # answer lines without "finding: value"


def simulate(profile: Profile, req: Request, ctx: RunContext) -> Result:
    """The profile's answer to one request (pure: same inputs, same result)."""
    rng = np.random.default_rng(_hash_int(ctx.seed, req.teacher, req.task, req.prompt_mode,
                                          req.study_id, req.prior_study_id))
    latency = round(profile.latency_s * math.exp(0.35 * rng.normal()), 3)
    prompt_tokens = math.ceil(len(req.prompt) / 4) + _IMAGE_TOKENS * len(req.image_paths)
    if rng.random() < profile.refusal_rate:
        text = phrases.REFUSALS[int(rng.integers(len(phrases.REFUSALS)))]
        return Result(text, "refused", "refusal", latency, prompt_tokens, math.ceil(len(text) / 4), raw=text)

    conditioned = req.prompt_mode == "label_conditioned"
    if conditioned:
        answers = {f: conditioned_value(req.task, req, f) for f in ctx.findings}
    else:
        answers = blind_answers(profile, req, ctx, rng)
    invent_line = rng.random() < profile.hallucinate_line_rate
    invent_think = rng.random() < profile.hallucinate_think_rate
    break_draw = rng.random()
    hedge = profile.hedge_rate > 0
    invented = phrases.INVENTED_THINK[int(rng.integers(len(phrases.INVENTED_THINK)))] if invent_think else None
    if req.task == "pair":
        think = phrases.pair_think(answers, rng, profile.verbosity, hedge, invented, conditioned)
    else:
        think = phrases.single_think(answers, req.truth.get("severity", {}), rng, profile.verbosity,
                                     hedge, invented, conditioned)
    text = format_trajectory(think, answers, list(ctx.findings))
    if invent_line:
        extra = [n for n in phrases.INVENTED if n not in {display(f) for f in ctx.findings}]
        value = "worsening" if req.task == "pair" else "yes"
        text = text.replace("\n</answer>", f"\n{extra[int(rng.integers(len(extra)))]}: {value}\n</answer>")
    if break_draw < profile.format_break_rate:
        text = _break_format(text, _BREAKS[int(rng.integers(len(_BREAKS)))], answers)
    return Result(text, "ok", None, latency, prompt_tokens, math.ceil(len(text) / 4), raw=text)


@BACKENDS.register("simulated")
class SimulatedBackend(Backend):
    """Plays a calibrated profile (``profile:`` in the roster entry, default: the teacher name)."""

    commit_every = 500  # free to recompute: a killed run loses at most 500 simulated answers

    def __init__(self, spec, ctx: RunContext):
        super().__init__(spec, ctx)
        self.profile = get_profile(spec.profile or spec.name)

    def drift_at(self) -> float | None:
        """The stream fraction where the profile's update lands (params override the profile)."""
        if self.spec.drift_at is not None:
            return self.spec.drift_at
        return self.profile.drift_at if self.profile.after is not None else None

    def answer_params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {
            "profile": self.profile.name,
            "seed": self.ctx.seed,
            "post_drift": request.post_drift,
            "truth": request.truth,
        }
        if request.task == "single" and request.prompt_mode == "blind":
            params["prevalence"] = {f: round(self.ctx.prevalence.get(f, 0.5), 4) for f in self.ctx.findings}
        return params

    async def run(self, requests: list[Request], sink: Sink) -> None:
        for req in requests:
            sink(req, simulate(self.profile, req, self.ctx))
