"""Phrase rules of the report labeler: mentions per CheXpert observation, and context cues.

Data, not code: every rule is a regular expression over lower-cased text. The choices follow the
CheXpert labeler's published phrase lists and patterns where we know them (docs/metrics.md lists
the conventions and where we differ). A mention rule may name a group ``m``: only that span is
the mention, so a cue inside the surrounding phrase ("heart size is *not* enlarged") still
counts as preceding it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Words allowed between an anatomical subject and its state ("heart size is mildly enlarged"):
# up to five plain words, never across punctuation or a clause change.
_GAP = r"(?:\s+(?!(?:there|with|but|however|although|though|which|while|whereas)\b)[\w/-]+){0,5}?\s+"

_HEART = r"(?:heart size|heart|cardiac silhouette|cardiac size|cardiac shadow|cardiac contours?|size of the heart)"
_MEDIASTINUM = (
    r"(?:cardiomediastinal silhouette|cardiomediastinal contours?|cardiomediastinum|mediastinal contours?"
    r"|mediastinal silhouette|mediastinum)"
)
_NORMAL = r"(?:normal|within normal limits|unremarkable|upper limits? of normal|top[- ]normal)"
_STABLE = r"(?:stable|unchanged|similar)"


@dataclass(frozen=True)
class MentionRule:
    """``value``: label of an affirmed mention (1, or -1 for phrases CheXpert calls uncertain
    by themselves). ``fixed``: the phrase already states its polarity ("heart size is normal"),
    so cues around it are ignored."""

    finding: str
    pattern: str
    value: float = 1.0
    fixed: bool = False


def _m(finding: str, *patterns: str, value: float = 1.0, fixed: bool = False) -> list[MentionRule]:
    return [MentionRule(finding, p, value, fixed) for p in patterns]


# "other" stands for abnormalities outside the 14 that still rule out No Finding (CheXpert does the same).
MENTIONS: list[MentionRule] = [
    *_m("cardiomegaly", r"\bcardiomegaly\b", r"\bcardiac enlargement\b",
        r"\benlarge(?:d|ment of the)\s+(?:heart|cardiac silhouette|cardiac shadow)\b",
        rf"\b{_HEART}{_GAP}(?P<m>enlarged|enlargement|large|prominent|increased in size)\b"),
    *_m("cardiomegaly", rf"\b{_HEART}{_GAP}(?P<m>{_NORMAL})", rf"\b(?P<m>normal)(?:\s+\w+)?\s+{_HEART}\b",
        value=0.0, fixed=True),
    *_m("cardiomegaly", rf"\b{_HEART}{_GAP}(?P<m>{_STABLE}|borderline)\b", rf"\b(?P<m>borderline|{_STABLE})\s+{_HEART}\b",
        value=-1.0, fixed=True),
    # CheXpert: "chf" / "heart failure" also make cardiomegaly uncertain.
    *_m("cardiomegaly", r"\bchf\b", r"\b(?:congestive )?heart failure\b", value=-1.0),
    *_m("enlarged_cardiomediastinum",
        r"\b(?:widened|widening of the|enlarged|enlargement of the)\s+(?:cardio)?mediastin(?:um|al silhouette|al contours?)\b",
        r"\bmediastinal (?:widening|enlargement)\b",
        rf"\b{_MEDIASTINUM}{_GAP}(?P<m>enlarged|widened|wide|prominent|enlargement)\b"),
    *_m("enlarged_cardiomediastinum", rf"\b{_MEDIASTINUM}{_GAP}(?P<m>{_NORMAL})",
        rf"\b(?P<m>normal|unremarkable)\s+{_MEDIASTINUM}\b", value=0.0, fixed=True),
    *_m("enlarged_cardiomediastinum", rf"\b{_MEDIASTINUM}{_GAP}(?P<m>{_STABLE})\b",
        rf"\b(?P<m>{_STABLE})\s+{_MEDIASTINUM}\b", value=-1.0, fixed=True),
    *_m("lung_opacity", r"\bopaci(?:ty|ties|fication|fications|fied)\b", r"\binfiltrat(?:e|es|ion|ions|ive)\b",
        r"\bair[- ]?space (?:disease|opacit\w*|opacification)\b",
        r"\binterstitial (?:markings?|opacit\w*|pattern|prominence)\b"),
    *_m("lung_lesion", r"\bnodul(?:e|es|ar)\b", r"\bmass(?:es)?\b(?!\s+effect)", r"\blesions?\b", r"\btumou?rs?\b",
        r"\bneoplasms?\b", r"\bcarcinoma\b"),
    *_m("edema", r"\b(?:o)?edema(?:tous)?\b", r"\bchf\b", r"\b(?:congestive )?heart failure\b"),
    # CheXpert labels congestion / vascular prominence as *uncertain* edema.
    *_m("edema", r"\b(?:pulmonary )?(?:vascular|venous|pulmonary) congestion\b",
        r"\bvascular (?:prominence|engorgement|indistinctness)\b", value=-1.0),
    # "airspace opacity" is consolidation too (and lung opacity); "airspace disease" is lung opacity only (CheXpert).
    *_m("consolidation", r"\bconsolidat(?:ion|ions|ive|ed)\b", r"\bair[- ]?space (?:opacit\w*|opacification)\b"),
    *_m("pneumonia", r"\b(?:broncho)?pneumoni(?:a|as|c)\b", r"\binfecti(?:on|ons|ous process|ous)\b"),
    *_m("atelectasis", r"\batelecta(?:sis|ses|tic)\b", r"\bcollapsed?\b"),
    *_m("pneumothorax", r"\b(?:hydro)?pneumothora(?:x|ces)\b", r"\bptx\b"),
    *_m("pleural_effusion", r"(?<!pericardial )\beffusions?\b", r"\bpleural fluid\b", r"\bhydro(?:pneumo)?thorax\b"),
    # CheXpert: blunted costophrenic angles are an *uncertain* effusion; sharp angles exclude one.
    *_m("pleural_effusion",
        r"\bblunt(?:ing|ed)(?:\s+of)?(?:\s+the)?(?:\s+(?:left|right|bilateral|both))?\s+costophrenic\b",
        r"\bcostophrenic (?:angles?|sulc[iu]s?)(?:\s+(?:is|are|remains?|appears?))?\s+(?:\w+\s+)?blunted\b",
        value=-1.0),
    *_m("pleural_effusion",
        r"\bcostophrenic (?:angles?|sulc[iu]s?)(?:\s+(?:is|are|remain|remains|appear|appears))?\s+(?P<m>sharp|clear|preserved|normal)\b",
        r"\b(?P<m>sharp)\s+costophrenic\b", value=0.0, fixed=True),
    *_m("pleural_other", r"\bpleural (?:thickening|plaques?|scar(?:ring|s)?|calcifications?)\b", r"\bfibrothorax\b",
        r"\bpleuro-?parenchymal (?:scar(?:ring|s)?|thickening)\b"),
    *_m("fracture", r"\bfractur(?:e|es|ed)\b", r"\bfx\b"),
    *_m("support_devices", r"\btubes?\b", r"\bcatheters?\b", r"\bpicc\b",
        r"\b(?:central|venous|arterial|jugular|subclavian|dialysis|swan[- ]ganz|midline|support) lines?\b",
        r"\blines and tubes\b", r"\bpace(?:maker|r)s?\b", r"\b(?:a?icd|defibrillator)\b",
        r"\b(?:pacing|pacer|pacemaker|icd) (?:leads?|wires?)\b", r"\b(?:sternotomy|sternal) wires\b",
        r"\bstents?\b", r"\bdrains?\b", r"\bport-?a-?cath\b", r"\bmediport\b", r"\bhardware\b", r"\bdevices?\b",
        r"\bvalve replacement\b", r"\b(?:prosthetic|mechanical) valves?\b", r"\bcannula\b"),
    *_m("other", r"\bemphysema\w*\b", r"\bhyperinflat\w*\b", r"\bhyperexpan\w*\b", r"\bscoliosis\b",
        r"\bkyphosis\b", r"\bgranulomas?\b", r"\bcalcifi\w*\b", r"\bhernia\b", r"\bpneumomediastinum\b",
        r"\bpneumoperitoneum\b", r"\bfree air\b", r"\bcopd\b", r"\bbronchiectasis\b", r"\bfibrosis\b",
        r"\bscarring\b", r"\bmetasta\w+\b", r"\bdeformit(?:y|ies)\b", r"\bdegenerative\b",
        r"\belevat(?:ed|ion of the) (?:left |right )?hemidiaphragm\b", r"\bpericardial effusion\b"),
]

# Cue kinds: neg (negation), unc (uncertainty), unc_pre (uncertainty that wins over negation,
# CheXpert's "pre-negation uncertainty": "cannot exclude"), pseudo (looks like a cue, is not:
# "no change"), ignore (consumed, inert, not a scope end), conj ("X or Y", "X versus Y": both uncertain unless negated), term (ends scopes).
# Directions: fwd (applies to mentions after it), bwd (before it), both.


@dataclass(frozen=True)
class CueRule:
    kind: str
    direction: str
    pattern: str


def _c(kind: str, direction: str, *patterns: str) -> list[CueRule]:
    return [CueRule(kind, direction, p) for p in patterns]


_SEEN = r"(?:seen|visualized|identified|appreciated|evident|demonstrated|present|visible|noted|detected|apparent)"
_END = r"(?=\s*(?:[.,;:]|$))"  # a backward cue that closes its clause

CUES: list[CueRule] = [
    *_c("unc_pre", "fwd", r"\bcan ?not (?:exclude|rule out)\b", r"\bunable to (?:exclude|rule out)\b", r"\bno new\b"),
    *_c("unc_pre", "bwd", r"\b(?:is |are )?not (?:be )?(?:entirely |completely |totally )?(?:excluded|ruled out)\b",
        r"\bcan ?not (?:be )?(?:entirely |completely )?(?:excluded|ruled out)\b",
        r"\b(?:is |are )?not (?:well|clearly|adequately) (?:seen|visualized|evaluated|assessed)\b",
        r"\b(?:is |are )?not (?:evaluated|assessed)\b",
        r"\b(?:is |are )?(?:poorly|incompletely) (?:evaluated|assessed|visualized)\b"),
    *_c("neg", "fwd", r"\bno\b", r"\bnot\b", r"\bwithout\b", r"\bfree of\b", r"\bnegative for\b", r"\babsence of\b",
        r"\babsent\b", r"\bno (?:radiographic |definite )?(?:evidence|signs?|findings?) (?:of|for|to suggest)\b",
        r"\b(?:interval )?(?:resolution|removal|clearing|disappearance) of\b", r"\bclear of\b",
        r"\brather than\b", r"\bneither\b", r"\bnor\b", r"\bhistory of\b"),
    *_c("neg", "bwd", rf"\b(?:is |are |was |were )?(?:not|no longer) {_SEEN}\b",
        r"\b(?:has |have )?(?:resolved|cleared)\b", r"\b(?:is |are )?(?:absent|gone)\b",
        r"\b(?:has |have )?(?:been )?removed\b", r"\bnone\b"),
    *_c("neg", "both", r"\bno longer\b", r"\b(?:been )?ruled out\b"),
    *_c("unc", "fwd", r"\bpossibl[ey]\b", r"\bprobabl[ey]\b", r"\bquestionabl[ey]\b", r"\bquestion of\b",
        r"\bsuspici(?:ous|on) (?:for|of)\b", r"\bsuspect(?:ed)?\b", r"\bconcern(?:ing)? for\b", r"\bworrisome for\b",
        r"\bsuggestive of\b", r"\bsuggest(?:s|ing)?\b", r"\bmay\b", r"\bmight\b", r"\bcould\b", r"\bwould\b",
        r"\bmaybe\b", r"\bpresum(?:ed|ably|ptive)\b", r"\bdifferential (?:diagnosis )?(?:includes?|of)\b",
        r"\b(?:less likely|unlikely)\b", r"\bequivocal\b", r"\bborderline\b", r"\bto (?:rule out|exclude)\b",
        r"\brule out\b", r"\br/o\b", r"\b(?:evaluate|evaluation|assess|assessment) for\b", r"\bcannot be determined\b"),
    *_c("unc", "bwd", rf"\b(?:is |are )?(?:possible|suspected|questioned|less likely|unlikely|a consideration|considered){_END}",
        rf"\b(?:may|might|could) (?:be )?(?:present|seen|exist){_END}", rf"\bnot excluded{_END}"),
    *_c("pseudo", "both", r"\bno (?:significant |substantial |appreciable |definite )?(?:interval )?(?:change|increase|decrease|worsening|improvement|progression)\b",
        r"\bnot (?:significantly |substantially )?(?:changed|increased|decreased|worsened|improved)\b",
        r"\bwithout (?:significant |interval )?change\b", r"\bnot only\b", r"\bno other\b(?=\s+(?:change|interval))"),
    # Consumed so that its words fire no other cue, otherwise inert: "no consolidation *to suggest* pneumonia".
    *_c("ignore", "both", r"\bto (?:suggest|explain)\b"),
    *_c("conj", "both", r"\bversus\b", r"\bvs\.?(?=\s)", r"\band/or\b", r"\bor\b"),
    *_c("term", "both", r"\bbut\b", r"\bhowever\b", r"\balthough\b", r"\bthough\b", r"\bexcept\b",
        r"\b(?:aside|apart) from\b", r"\bother than\b", r"\bwhereas\b", r"\bwhile\b", r"\bwhich\b",
        r"\bwith the exception of\b", r"\band (?:the|there|a|an)\b", r",\s+(?=(?:the|there|it)\b)",
        r"\bthere (?:is|are)\b", r"\b(?:seen|identified|present|noted|visualized|evident)\s*,"),
]
