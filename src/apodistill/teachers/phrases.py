"""Reasoning text for simulated teachers: one sentence per finding, in radiologists' words.

Why one sentence per finding, in the order of the answer block: a student that writes its
reasoning first decides each answer at that finding's sentence. When reasoning opened with a
summary ("There is ..." / "No acute abnormality"), greedy decoding of a student trained on
seven noisy teachers committed at the first words to "something is present" (most teachers
call at least one finding on a normal film) and then named whatever was most likely: the
student over-called. Radiologists' structured reports are written finding by finding too.

What the sentences say agrees with the teacher's own answers, wrong answers included; where
the teacher *saw* a finding (answered it right while it is present) the side and the size are
the true ones, otherwise (an over-call) they are made up. The wording comes from several
phrasings per finding and answer, in the words the offline CheXpert-style labeler
(:mod:`apodistill.metrics.labeler`) reads, so clinical F1 and the faithfulness measure score
what the reasoning claims.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from apodistill.findings import display

SIZE = ("small", "moderate", "large")
GRADE = ("mild", "moderate", "severe")
SIDES = ("left", "right")
ZONES = ("upper lobe", "middle lobe", "lower lobe")

YES: dict[str, tuple[str, ...]] = {
    "consolidation": ("{Size} {side} {zone} consolidation.", "{Size} consolidation of the {side} {zone}.",
                      "{Size} {side} {zone} airspace consolidation."),
    "pleural_effusion": ("{Size} {side} pleural effusion.", "{Size} {side} pleural effusion with a meniscus.",
                         "There is a {size} {side} pleural effusion."),
    "pneumonia": ("{Grade} multifocal pneumonia in both lungs.", "{Grade} patchy bilateral pneumonia.",
                  "Patchy opacities in both lungs, {grade} pneumonia."),
    "pneumothorax": ("{Size} {side} apical pneumothorax.", "{Size} {side} pneumothorax with a pleural line.",
                     "There is a {size} {side} pneumothorax."),
    "edema": ("{Grade} pulmonary edema.", "{Grade} perihilar interstitial edema.", "{Grade} bilateral pulmonary edema."),
}
NO: dict[str, tuple[str, ...]] = {
    "consolidation": ("No focal consolidation.", "No lobar consolidation is seen."),
    "pleural_effusion": ("No pleural effusion.", "The costophrenic angles are sharp."),
    "pneumonia": ("No findings of pneumonia.", "No multifocal pneumonia."),
    "pneumothorax": ("No pneumothorax.", "Lung markings extend to the chest wall without pneumothorax."),
    "edema": ("No pulmonary edema.", "Normal pulmonary vascularity without edema."),
}
UNCERTAIN: tuple[str, ...] = ("Possible {size} {side} {name}.", "Equivocal appearance; {name} cannot be excluded.")
HEDGED_YES = "Probable {lower}"  # a hedging teacher's yes: "Probable small left pleural effusion ..."
PAIR: dict[str, tuple[str, ...]] = {
    "worsening": ("The {side} {name} has increased from {before} to {after} since the prior study.",
                  "{Side} {name}, {before} on the prior study, is now {after} and larger."),
    "improving": ("The {side} {name} has decreased from {before} to {after} since the prior study.",
                  "{Side} {name}, {before} on the prior study, is now {after} and smaller."),
    "stable": ("Unchanged {after} {side} {name}.", "The {after} {side} {name} is stable compared with the prior study."),
    "absent": ("No {name} on either study.", "No {name} on the current or the prior study."),
    "new": ("New {after} {side} {name} since the prior study.",),
    "resolved": ("The {side} {name} seen on the prior study has resolved.",),
}
# Findings a hallucinating teacher invents in its reasoning (none is in the default vocabulary).
INVENTED = ["nodule", "rib fracture", "hilar mass", "cardiomegaly", "emphysema"]
INVENTED_THINK = ["I also note a possible {side} rib fracture.", "There is a small nodule in the {side} upper zone.",
                  "A suspicious {side} hilar mass is noted."]
REFUSALS = [
    "As an AI, I cannot provide a diagnosis from medical images. Please consult a qualified radiologist.",
    "I'm sorry, but I can't help with interpreting this chest X-ray. Please consult a qualified physician.",
    "As an AI language model, I am unable to give medical diagnoses. A radiologist should review this image.",
]


def size_index(severity: float) -> int:
    """Severity -> 0 small/mild, 1 moderate, 2 large/severe (the bins the reports use)."""
    return 0 if severity < 0.4 else (1 if severity < 0.75 else 2)


@dataclass(frozen=True)
class Seen:
    """Side, zone and size per finding as the teacher states them: true where it saw the finding."""

    features: dict
    saw: dict[str, bool]
    task: str

    @classmethod
    def from_features(cls, features: dict, saw: dict[str, bool], task: str) -> "Seen":
        return cls(features, saw, task)

    def words(self, finding: str, rng: np.random.Generator) -> dict[str, str]:
        x = self.features
        key = f"current_severity_{finding}" if self.task == "pair" else f"severity_{finding}"
        true_sev = float(x.get(key, x.get(f"prior_severity_{finding}", 0.0)) or 0.0)
        true_side = x.get(f"side_{finding}")
        if self.saw.get(finding) and true_sev > 0 and true_side:
            k, side, zone = size_index(true_sev), true_side, x.get("zone_consolidation", ZONES[2])
        else:  # not seen: an over-call or a guess states a made-up side and size
            k = int(rng.integers(2))
            side = "bilateral" if finding in ("pneumonia", "edema") else SIDES[int(rng.integers(2))]
            zone = ZONES[int(rng.integers(3))]
        if finding == "consolidation" and zone == "middle lobe" and side == "left":
            zone = "lingula"
        if finding in ("pneumonia", "edema"):
            side = "bilateral"
        return {"size": SIZE[k], "grade": GRADE[k], "side": side, "zone": zone, "name": _name(finding, side)}


def _name(finding: str, side: str) -> str:
    if finding == "pleural_effusion" and side == "bilateral":
        return "pleural effusions"
    return display(finding)


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _fill(template: str, words: dict[str, str]) -> str:
    full = dict(words)
    full.update({k.capitalize(): v.capitalize() for k, v in words.items()})
    text = template.format(**full).replace("bilateral pleural effusion,", "bilateral pleural effusions,")
    return text[:1].upper() + text[1:]


def single_sentence(finding: str, answer: str, seen: Seen, rng: np.random.Generator, hedge: bool = False) -> str:
    """The sentence about one finding that supports ``answer`` (yes / no / uncertain)."""
    words = seen.words(finding, rng)
    if answer == "yes":
        text = _fill(_pick(rng, YES.get(finding, ("{Name} is present.",))), words)
        return HEDGED_YES.format(lower=text[:1].lower() + text[1:]) if hedge else text
    if answer == "uncertain":
        return _fill(_pick(rng, UNCERTAIN), words)
    return _pick(rng, NO.get(finding, (f"No {display(finding)}.",)))


def single_think(answers: dict[str, str], seen: Seen, rng: np.random.Generator, verbosity: int = 1,
                 hedge: bool = False, invented: str | None = None) -> str:
    """One sentence per finding in answer order; verbose teachers add an impression."""
    sentences = [single_sentence(f, v, seen, rng, hedge and v == "yes") for f, v in answers.items()]
    if invented:
        sentences.append(invented.format(side=_pick(rng, SIDES)))
    if verbosity >= 3:
        named = [display(f) for f, v in answers.items() if v == "yes"]
        sentences.append(f"Impression: {_join(named)}." if named else "Impression: no acute cardiopulmonary abnormality.")
    return " ".join(sentences)


def pair_levels(finding: str, answer: str, seen: Seen) -> tuple[int, int]:
    """The (prior, current) size levels (0 absent .. 3 large) a reading states: the true ones where
    the teacher saw the change; otherwise the nearest levels that agree with its answer."""
    from apodistill.data.synthetic import level_of

    x = seen.features
    before = level_of(float(x.get(f"prior_severity_{finding}", 0.0) or 0.0))
    after = level_of(float(x.get(f"current_severity_{finding}", 0.0) or 0.0))
    agrees = {"stable": before == after, "worsening": after > before, "improving": after < before}[answer]
    if seen.saw.get(finding) and agrees:
        return before, after
    if answer == "stable":
        k = after or before
        return k, k
    if answer == "worsening":  # grew: current at least one level above the prior, both within 0..3
        after = min(max(after, before + 1, 1), 3)
        return min(before, after - 1), after
    before = min(max(before, after + 1, 1), 3)  # shrank: prior at least one level above the current
    return before, min(after, before - 1)


def pair_sentence(finding: str, answer: str, seen: Seen, rng: np.random.Generator, hedge: bool = False) -> str:
    """The sentence about one finding's change that supports ``answer``, naming its size on each film."""
    words = seen.words(finding, rng)
    before, after = pair_levels(finding, answer, seen)
    scale = GRADE if finding in ("pneumonia", "edema") else SIZE
    words.update(before=scale[before - 1] if before else "absent", after=scale[after - 1] if after else "absent")
    if before == 0 and after == 0:
        kind = "absent"
    elif answer == "worsening" and before == 0:
        kind = "new"
    elif answer == "improving" and after == 0:
        kind = "resolved"
    else:
        kind = answer
    text = _fill(_pick(rng, PAIR[kind]), words)
    if hedge and kind in ("worsening", "improving", "new"):
        text = text[:-1] + ", possibly."
    return text


def pair_think(answers: dict[str, str], seen: Seen, rng: np.random.Generator, verbosity: int = 1,
               hedge: bool = False, invented: str | None = None) -> str:
    """Compare current with prior, one sentence per finding in answer order."""
    sentences = [pair_sentence(f, v, seen, rng, hedge) for f, v in answers.items()]
    if invented:
        sentences.append(invented.format(side=_pick(rng, SIDES)))
    if verbosity >= 3:
        changed = [f"{display(f)} {v}" for f, v in answers.items() if v != "stable"]
        sentences.append(f"Impression: {_join(changed)}." if changed else "Impression: no interval change.")
    return " ".join(sentences)


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]
