"""Reasoning text for simulated teachers: short visual evidence consistent with the answer.

The evidence phrases describe what the synthetic renderer draws (apodistill.data.render):
a basal meniscus for effusion, a filled lobe for consolidation, scattered fuzzy patches for
pneumonia, a dark rim with a pleural line for pneumothorax, a perihilar haze for edema.
Reasoning stays 1-3 sentences (about 40-80 words): the tiny student trains on it.
"""

from __future__ import annotations

import numpy as np

from apodistill.findings import display

YES = {
    "consolidation": ["{sev}homogeneous opacity filling the {side} {zone} lobe, sharp along the fissure",
                      "{sev}dense {side} {zone} airspace opacity with a crisp fissural border"],
    "pleural_effusion": ["{sev}dense {side} basal opacity with a meniscus rising along the lateral wall",
                         "blunting of the {side} costophrenic angle by a {sev}meniscus"],
    "pneumonia": ["{sev}fuzzy mottled patches scattered over both lungs",
                  "several {sev}ill-defined patchy opacities in both lungs"],
    "pneumothorax": ["a {sev}dark avascular band at the {side} apex bounded by a bright pleural line",
                     "a {sev}lucent {side} apical rim without lung markings beyond a pleural line"],
    "edema": ["{sev}symmetric perihilar haze in a butterfly pattern",
              "{sev}bilateral perihilar haziness with indistinct vessels"],
    "cardiomegaly": ["a {sev}widened heart shadow"],
    "atelectasis": ["a plate-like {side} basal band with a raised hemidiaphragm"],
    "support_devices": ["an endotracheal tube and a central line"],
}
NO = {
    "consolidation": ["no lobar opacity", "no focal consolidation"],
    "pleural_effusion": ["sharp costophrenic angles", "no basal meniscus"],
    "pneumonia": ["no patchy airspace disease", "no scattered opacities"],
    "pneumothorax": ["lung markings reach the chest wall", "no apical pleural line"],
    "edema": ["no perihilar haze", "normal vascular markings"],
    "cardiomegaly": ["a normal heart size"],
    "support_devices": ["no lines or tubes"],
}
UNCERTAIN = ["a faint {side} density that could be {name}", "an equivocal appearance for {name}"]
PAIR = {
    "worsening": ["the {name} has increased since the prior", "{name} is larger than on the prior"],
    "improving": ["the {name} has decreased since the prior", "{name} is smaller than before"],
    "stable": ["{name} is unchanged", "no interval change in {name}"],
}
# Findings a hallucinating teacher invents (none is in the default vocabulary).
INVENTED = ["nodule", "rib fracture", "hilar mass", "cardiomegaly", "emphysema"]
INVENTED_THINK = ["a possible {side} rib fracture", "a small nodule in the {side} upper zone",
                  "a suspicious {side} hilar mass"]
REFUSALS = [
    "As an AI, I cannot provide a diagnosis from medical images. Please consult a qualified radiologist.",
    "I'm sorry, but I can't help with interpreting this chest X-ray. Please consult a qualified physician.",
    "As an AI language model, I am unable to give medical diagnoses. A radiologist should review this image.",
]
_SEV = ((0.34, "small "), (0.67, "moderate "), (9.0, "large "))
_ZONES = ("upper", "middle", "lower")


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _sev_word(severity: float | None, rng: np.random.Generator) -> str:
    if severity is None or not np.isfinite(severity) or severity <= 0:
        return _pick(rng, ["", "small ", "moderate "])
    return next(word for edge, word in _SEV if severity < edge)


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def single_think(answers: dict[str, str], severity: dict[str, float], rng: np.random.Generator,
                 verbosity: int = 1, hedge: bool = False, invented: str | None = None,
                 conditioned: bool = False) -> str:
    """1-3 sentences naming the evidence for each yes, the normal sign for each no."""
    def fill(tpl: str, f: str) -> str:
        return tpl.format(sev=_sev_word(severity.get(f), rng), side=_pick(rng, ["left", "right"]),
                          zone=_pick(rng, list(_ZONES)), name=display(f))

    yes = [fill(_pick(rng, YES.get(f, ["{name}"])), f) for f, v in answers.items() if v == "yes"]
    unc = [fill(_pick(rng, UNCERTAIN), f) for f, v in answers.items() if v == "uncertain"]
    no = [fill(_pick(rng, NO.get(f, ["no {name}"])), f) for f, v in answers.items() if v == "no"]
    lead = "The known findings are supported by " if conditioned else ("There may be " if hedge else "There is ")
    sentences = [lead + _join(yes) + "." if yes else
                 ("No acute abnormality is seen." if not conditioned else "The study is known to be clear.")]
    if unc:
        sentences.append(_cap(_join(unc)) + (", possibly." if hedge else ", so it stays uncertain."))
    if no:
        sentences.append(("Otherwise " if yes else "There are ") + _join(no) + ".")
    if invented:
        sentences.append(f"I also note {invented.format(side=_pick(rng, ['left', 'right']))}.")
    if verbosity >= 3:
        named = [display(f) for f, v in answers.items() if v == "yes"]
        sentences.append(
            f"Taken together this is most in keeping with {_join(named)}, and nothing supports the rest."
            if named else "Taken together the film looks normal for these findings."
        )
    return " ".join(sentences)


def pair_think(answers: dict[str, str], rng: np.random.Generator, verbosity: int = 1,
               hedge: bool = False, invented: str | None = None, conditioned: bool = False) -> str:
    """Compare current with prior: what grew, what shrank, what is unchanged."""
    changed = [_pick(rng, PAIR[v]).format(name=display(f)) for f, v in answers.items() if v != "stable"]
    stable = [display(f) for f, v in answers.items() if v == "stable"]
    lead = "The known changes are visible: " if conditioned else "Compared with the prior film, "
    if hedge:
        changed = [c + " (possibly)" for c in changed]
    sentences = [lead + (_join(changed) + "." if changed else "nothing has changed.")]
    if stable and changed:
        sentences.append(_cap(_join(stable)) + (" look" if len(stable) > 1 else " looks") + " the same.")
    if invented:
        sentences.append(f"There is also {invented.format(side=_pick(rng, ['left', 'right']))}.")
    if verbosity >= 3:
        sentences.append("The comparison uses matched positions of the diaphragm and the heart border.")
    return " ".join(sentences)
