"""``simulated`` backend: calibrated, drifting, stylised teachers that need no network.

It reads what the benchmark knows about the study (``label_*``, ``progression_*`` and, on the
synthetic benchmark, every severity, the film's grain and each finding's side) and answers
like the profile in :mod:`apodistill.teachers.profiles` would: wrong with a probability that
depends on what the image shows and on the profile's named biases, calibrated to the
profile's accuracy; in the profile's style (refusals, hedges, hallucinations, broken format,
verbosity). Its reasoning states what it answered, with the true side and size where it saw a
finding. Every draw is a pure function of (base.seed, teacher, record), so a rerun gives the
same text byte for byte.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from apodistill.findings import PAIR_VALUES, display, format_trajectory
from apodistill.teachers import phrases
from apodistill.teachers.backends import BACKENDS, Backend, Request, Result, RunContext, Sink
from apodistill.teachers.profiles import Profile, error_logit, get_profile, intercepts, sigmoid

_IMAGE_TOKENS = 256  # what a 2x2-merged ViT charges for one image, roughly
_BREAKS = ("no_think_close", "no_answer", "no_answer_close", "bad_line")


def simulator_digest() -> str:
    """A digest of the code that writes a simulated answer: this module, the phrases, the
    profiles and the trajectory format. It is the simulator's "weights" (as the hf backend's
    folder fingerprint is) and part of every cache key, so an edited simulator never reuses the
    answers of an earlier one. A hand-bumped version number did not: answers cached before a
    wording change were reused, and the committed reports could not be reproduced from the code."""
    from pathlib import Path

    from apodistill import findings
    from apodistill.teachers import profiles

    h = hashlib.sha256()
    for path in sorted({__file__, phrases.__file__, profiles.__file__, findings.__file__}):
        h.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes())
    return h.hexdigest()[:16]


SIMULATOR_CODE = simulator_digest()


def _hash_int(*parts: Any) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def shared_latent(seed: int, req: Request, finding: str) -> float:
    """N(0, 1) per (image or pair, finding), the same for every teacher: how ambiguous this
    film is for this finding. Teachers err together where it is high."""
    return float(np.random.default_rng(_hash_int(seed, "latent", req.task, req.study_id, req.prior_study_id, finding)).normal())


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


def _wrong_pair(truth: str, preferred: str, named: bool, rng: np.random.Generator) -> str:
    """A wrong class: a named miss says stable; otherwise the profile's preferred class, or a neighbour."""
    if named and truth != "stable":
        return "stable"
    if preferred != truth and rng.random() < 0.6:
        return preferred
    if truth == "stable":
        return ("improving", "worsening")[int(rng.random() < 0.5)]
    return "stable" if rng.random() < 0.6 else ("improving" if truth == "worsening" else "worsening")


def blind_answers(profile: Profile, req: Request, ctx: RunContext, rng: np.random.Generator) -> tuple[dict[str, str], dict[str, bool]]:
    """One answer per finding and whether the teacher *saw* it (a right answer about a present
    finding or change: its reasoning then states the true side and size)."""
    post = bool(req.post_drift and profile.after is not None)
    phase = profile.phase(post)
    x = req.truth.get("features", {})
    out: dict[str, str] = {}
    saw: dict[str, bool] = {}
    for f in ctx.findings:
        draw, hedge_draw, side_draw = rng.random(), rng.random(), rng.random()
        latent = shared_latent(ctx.seed, req, f)
        icpt = intercepts(profile.name, post, f)
        if req.task == "pair":
            truth = req.truth.get("progression", {}).get(f)
            if truth not in PAIR_VALUES:  # absent from both films: unscored, mostly "stable"
                out[f] = phase.pair_bias if side_draw < 0.03 and phase.pair_bias != "stable" else "stable"
                saw[f] = False
                continue
            z, named = error_logit(phase, icpt.pair, "pair", f, True, x, latent)
            wrong = draw < sigmoid(z)
            out[f] = _wrong_pair(truth, phase.pair_bias, named is not None and named.kind == "miss", rng) if wrong else truth
            saw[f] = not wrong and truth != "stable"
            continue
        positive = truth_single(req.truth.get("label", {}).get(f))
        z, _ = error_logit(phase, icpt.miss if positive else icpt.overcall, "single", f, positive, x, latent)
        wrong = draw < sigmoid(z)
        if not wrong:
            out[f] = "yes" if positive else "no"
        elif hedge_draw < profile.hedge_rate:
            out[f] = "uncertain"
        else:
            out[f] = "no" if positive else "yes"
        saw[f] = positive and not wrong
    return out, saw


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
        saw = {f: answers[f] in ("yes", "uncertain", "improving", "worsening") for f in ctx.findings}
    else:
        answers, saw = blind_answers(profile, req, ctx, rng)
    invent_line = rng.random() < profile.hallucinate_line_rate
    invent_think = rng.random() < profile.hallucinate_think_rate
    break_draw = rng.random()
    hedge = profile.hedge_rate > 0
    invented = phrases.INVENTED_THINK[int(rng.integers(len(phrases.INVENTED_THINK)))] if invent_think else None
    seen = phrases.Seen.from_features(req.truth.get("features", {}), saw, req.task)
    if req.task == "pair":
        think = phrases.pair_think(answers, seen, rng, profile.verbosity, hedge, invented)
    else:
        think = phrases.single_think(answers, seen, rng, profile.verbosity, hedge, invented)
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
        return {
            "simulator": SIMULATOR_CODE,
            "profile": self.profile.name,
            "seed": self.ctx.seed,
            "post_drift": request.post_drift,
            "truth": request.truth,
        }

    async def run(self, requests: list[Request], sink: Sink) -> None:
        for req in requests:
            sink(req, simulate(self.profile, req, self.ctx))
