"""Reference radiology reports written from a synthetic study's findings.

Why varied: report metrics (BLEU-4, ROUGE-L) and the teachers' reasoning are only
meaningful if references are not one fixed sentence per label. Each positive finding is
described with a severity word, a side and one of several phrasings; absent findings are
sometimes negated ("No pneumothorax."), as radiologists do for the findings that matter
clinically; a hedged finding is written with uncertainty ("Possible small left effusion.")
and labelled -1 like the CheXpert labeler would; follow-up studies compare with the prior.
"""

from __future__ import annotations

import numpy as np

_SIDE = {-1: "right", 1: "left", 0: "bilateral"}
_ZONE = {0.0: "upper lobe", 0.38: "middle lobe", 0.55: "lower lobe"}

_SIZE = ("small", "moderate", "large")
_GRADE = ("mild", "moderate", "severe")

_POSITIVE: dict[str, tuple[str, ...]] = {
    "pleural_effusion": (
        "{size} {side} pleural effusion.",
        "There is a {size} {side} pleural effusion.",
        "{Size} {side} effusion with blunting of the costophrenic angle.",
    ),
    "consolidation": (
        "Dense {side} {zone} consolidation.",
        "{Grade} consolidation of the {side} {zone}.",
        "Homogeneous opacity filling the {side} {zone}, consistent with consolidation.",
    ),
    "pneumonia": (
        "Patchy multifocal opacities concerning for pneumonia.",
        "{Grade} multifocal airspace disease, compatible with pneumonia.",
        "Scattered patchy opacities in both lungs, likely pneumonia.",
    ),
    "pneumothorax": (
        "{Size} {side} pneumothorax.",
        "There is a {size} {side} apical pneumothorax with a visible pleural line.",
        "{Side} pneumothorax, {size} in size.",
    ),
    "edema": (
        "{Grade} pulmonary edema.",
        "Perihilar haziness consistent with {grade} interstitial edema.",
        "Bilateral perihilar opacities compatible with {grade} pulmonary edema.",
    ),
    "cardiomegaly": (
        "The heart is enlarged.",
        "{Grade} cardiomegaly.",
        "Cardiac silhouette is {grade}ly enlarged.",
    ),
    "atelectasis": (
        "Plate-like atelectasis at the {side} base.",
        "{Side} basilar atelectasis.",
        "Linear opacity at the {side} base, likely subsegmental atelectasis.",
    ),
    "support_devices": (
        "Support devices are in standard position.",
        "Lines and tubes are unchanged in position.",
        "Endotracheal tube and central line in place.",
    ),
}
_NEGATIVE: dict[str, tuple[str, ...]] = {
    "pleural_effusion": ("No pleural effusion.", "No effusion.", "Costophrenic angles are sharp."),
    "consolidation": ("No focal consolidation.", "No consolidation."),
    "pneumonia": ("No evidence of pneumonia.",),
    "pneumothorax": ("No pneumothorax.", "There is no pneumothorax.", "No evidence of pneumothorax."),
    "edema": ("No pulmonary edema.", "No edema.", "Pulmonary vasculature is normal."),
    "cardiomegaly": ("Heart size is normal.", "The cardiac silhouette is not enlarged."),
    "atelectasis": ("No atelectasis.",),
}
_HEDGE: dict[str, tuple[str, ...]] = {
    "pleural_effusion": ("Possible small {side} effusion.", "Questionable trace {side} pleural effusion."),
    "consolidation": ("Possible early consolidation in the {side} {zone}.",),
    "pneumonia": ("Faint patchy opacities; pneumonia cannot be excluded.",),
    "pneumothorax": ("Possible tiny {side} apical pneumothorax.",),
    "edema": ("Possible mild interstitial edema.", "Vascular congestion, cannot exclude mild edema."),
    "cardiomegaly": ("Borderline heart size.",),
    "atelectasis": ("Possible minimal {side} basilar atelectasis.",),
}
_CHANGE = {1: ("increased", "worsened", "progressed"), -1: ("decreased", "improved", "partially resolved"), 0: ("unchanged", "stable")}
_NORMAL = ("The lungs are clear.", "No acute cardiopulmonary process.", "Normal chest radiograph.")


def _words(severity: float) -> dict[str, str]:
    k = 0 if severity < 0.4 else (1 if severity < 0.75 else 2)
    return {"size": _SIZE[k], "grade": _GRADE[k]}


def _fill(template: str, words: dict[str, str]) -> str:
    full = dict(words)
    full.update({k.capitalize(): v.capitalize() for k, v in words.items()})
    text = template.format(**full)
    return text[0].upper() + text[1:]


def write_report(
    severities: dict[str, float],
    hedged: dict[str, bool],
    places: dict[str, dict[str, str]],
    prior: dict[str, float] | None,
    rng: np.random.Generator,
    negate_rate: float = 0.6,
) -> str:
    """A FINDINGS / IMPRESSION report for one study.

    ``places`` gives each finding's side / zone words; ``prior`` the previous study's
    severities (None for a first study), used for comparison sentences.
    """
    findings: list[str] = []
    impression: list[str] = []
    for f, sev in severities.items():
        words = dict(_words(sev), **places.get(f, {}))
        if sev > 0 and hedged.get(f):
            findings.append(_fill(str(rng.choice(_HEDGE[f])), words))
        elif sev > 0:
            sentence = _fill(str(rng.choice(_POSITIVE[f])), words)
            findings.append(sentence)
            if prior is not None and f != "support_devices":
                delta = sev - prior.get(f, 0.0)
                trend = 1 if delta >= 0.15 else (-1 if delta <= -0.15 else 0)
                if prior.get(f, 0.0) == 0:
                    impression.append(f"New {f.replace('_', ' ')}.")
                else:
                    impression.append(f"{f.replace('_', ' ').capitalize()} has {rng.choice(_CHANGE[trend])} since the prior study.")
            elif f != "support_devices":
                impression.append(sentence)
        elif f in _NEGATIVE and rng.random() < negate_rate:
            findings.append(str(rng.choice(_NEGATIVE[f])))
        if prior is not None and sev == 0 and prior.get(f, 0.0) > 0 and f in _NEGATIVE:
            impression.append(f"Interval resolution of {f.replace('_', ' ')}.")
    order = rng.permutation(len(findings))
    body = " ".join(findings[i] for i in order) or str(rng.choice(_NORMAL))
    if not impression:
        impression.append(str(rng.choice(_NORMAL)))
    return f"FINDINGS: {body}\nIMPRESSION: {' '.join(impression)}"


def place_words(side_by_finding: dict[str, int], zone: tuple[float, float]) -> dict[str, dict[str, str]]:
    """Side / zone words for each finding, from the renderer's patient placement."""
    out = {f: {"side": _SIDE[s]} for f, s in side_by_finding.items()}
    zone_word = _ZONE.get(zone[0], "lower lobe")
    if zone_word == "middle lobe" and side_by_finding.get("consolidation") == 1:
        zone_word = "lingula"  # the left lung has no middle lobe
    out.setdefault("consolidation", {})["zone"] = zone_word
    return out
