"""An offline CheXpert-style report labeler and the clinical F1 built on it.

Why our own: medspacy (the kept library with ConText rules) pins ``spacy<3.8`` on Python 3.11,
which would downgrade the shared environment's numpy 2.4 to 1.26, and ``import medspacy``
imports QuickUMLS (medspacy_unqlite, pysimstring) even for ConText alone. The CheXpert labeler
itself needs a downloaded parsing model. So this is a small NegEx/ConText-style labeler: the
rules are data in :mod:`apodistill.metrics.labeler_rules`, the algorithm is here.

Per sentence: find mentions of each observation, find cues (negation, uncertainty, pseudo-cues,
scope terminators), and give each mention the cues whose scope reaches it. A scope runs from the
cue in its direction to the sentence end, a terminator ("but", "however", "which"...) or a cue of
another kind ("no effusion, possible consolidation" keeps "no" off consolidation). Then, as
CheXpert does: pre-negation uncertainty ("cannot exclude") > negation > uncertainty; per report a
positive mention beats an uncertain one, which beats a negative one; No Finding is 1 when no
observation other than Support Devices is positive or uncertain.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import pandas as pd

from apodistill.findings import CHEXPERT_14, MS_CXR_T_5
from apodistill.metrics.labeler_rules import CUES, MENTIONS, CueRule, MentionRule

_SENTENCE_END = re.compile(r"(?<!\svs\.)(?<=[.!?;])\s+|\n+")
_WORD = re.compile(r"[\w/-]+")
# Observations that rule out No Finding when positive or uncertain (Support Devices does not).
_PATHOLOGY = tuple(f for f in CHEXPERT_14 if f not in ("no_finding", "support_devices")) + ("other",)


@dataclass(frozen=True)
class Span:
    start: int
    end: int


@dataclass(frozen=True)
class Mention(Span):
    rule: MentionRule


@dataclass(frozen=True)
class Cue(Span):
    rule: CueRule


@dataclass(frozen=True)
class MentionLabel:
    """One labelled mention, for reading why a report got its labels (:func:`explain`)."""

    finding: str
    text: str
    sentence: str
    value: float
    cues: tuple[str, ...]


@lru_cache(maxsize=1)
def _compiled() -> tuple[list[tuple[MentionRule, re.Pattern]], list[tuple[CueRule, re.Pattern]]]:
    # MULTILINE: a backward cue may close a clause at a line break ("$").
    return (
        [(r, re.compile(r.pattern)) for r in MENTIONS],
        [(r, re.compile(r.pattern, re.MULTILINE)) for r in CUES],
    )


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, ended by . ! ? ; or a line break (not "vs."). A colon does
    not end one, so "Pneumothorax: none." stays together."""
    bounds, pos = [], 0
    for m in _SENTENCE_END.finditer(text):
        bounds.append((pos, m.start()))
        pos = m.end()
    bounds.append((pos, len(text)))
    spans = []
    for start, end in bounds:
        piece = text[start:end]
        if piece.strip():
            spans.append((start + len(piece) - len(piece.lstrip()), start + len(piece.rstrip())))
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences the labeler works on (see :func:`_sentence_spans`)."""
    text = text or ""
    return [text[a:b] for a, b in _sentence_spans(text)]


def _dedupe_mentions(found: list[Mention]) -> list[Mention]:
    """The same observation matched twice over one phrase ("air space opacity" / "opacity"): keep the longest."""
    found = sorted(found, key=lambda x: (x.start - x.end, x.start))
    kept: list[Mention] = []
    for m in found:
        if not any(k.rule.finding == m.rule.finding and k.start < m.end and m.start < k.end for k in kept):
            kept.append(m)
    return sorted(kept, key=lambda x: x.start)


def _resolve_cues(found: list[Cue]) -> list[Cue]:
    """Longest cue wins an overlap: "cannot be excluded" is not a negation, "no change" is not one either."""
    found = sorted((c for c in found if c.end > c.start), key=lambda c: (c.start - c.end, c.start))
    kept: list[Cue] = []
    for c in found:
        if not any(k.start < c.end and c.start < k.end for k in kept):
            kept.append(c)
    return sorted(kept, key=lambda c: c.start)


def _scan(text: str, spans: list[tuple[int, int]]) -> tuple[list[list[Mention]], list[list[Cue]]]:
    """Mentions and cues per sentence. Each rule runs once over the whole report (one regex call
    per rule, not per sentence: 4x faster); a match crossing a sentence end is dropped."""
    starts = [a for a, _ in spans]
    mentions: list[list[Mention]] = [[] for _ in spans]
    cues: list[list[Cue]] = [[] for _ in spans]

    def sentence_of(a: int, b: int) -> int | None:
        k = bisect_right(starts, a) - 1
        return k if k >= 0 and b <= spans[k][1] else None

    mention_rules, cue_rules = _compiled()
    for rule, rx in mention_rules:
        for m in rx.finditer(text):
            k = sentence_of(*m.span())
            if k is not None:
                mentions[k].append(Mention(*(m.span("m") if "m" in rx.groupindex else m.span()), rule))
    for rule, rx in cue_rules:
        for m in rx.finditer(text):
            k = sentence_of(*m.span())
            if k is not None:
                cues[k].append(Cue(*m.span(), rule))
    return [_dedupe_mentions(x) for x in mentions], [_resolve_cues(x) for x in cues]


def _family(kind: str) -> str:
    return "unc" if kind in ("unc", "unc_pre") else kind


def _reaches(cue: Cue, mention: Mention, cues: list[Cue], mentions: list[Mention], text: str) -> bool:
    """Whether ``cue``'s scope covers ``mention`` (direction, terminators, other cues, conj adjacency)."""
    direction = cue.rule.direction
    if cue.end <= mention.start and direction in ("fwd", "both"):
        lo, hi = cue.end, mention.start
    elif cue.start >= mention.end and direction in ("bwd", "both"):
        lo, hi = mention.end, cue.start
    else:
        return False
    for other in cues:
        if other is cue or other.start < lo or other.end > hi:
            continue
        if other.rule.kind == "term":
            return False
        if other.rule.kind not in ("conj", "ignore") and _family(other.rule.kind) != _family(cue.rule.kind):
            return False
    if cue.rule.kind == "conj":
        # "atelectasis or pneumonia": only the nearest mention on each side, a few words away.
        if any(lo <= m.start and m.end <= hi and m.rule.finding != mention.rule.finding for m in mentions):
            return False
        return len(_WORD.findall(text[lo:hi])) <= 4
    return True


def _label_text(text: str) -> list[tuple[Mention, float, tuple[str, ...], tuple[int, int]]]:
    """(mention, value, cue kinds that reached it, its sentence span) for every mention in ``text``."""
    spans = _sentence_spans(text)
    out = []
    for span, mentions, cues in zip(spans, *_scan(text, spans)):
        for m in mentions:
            if m.rule.fixed:
                out.append((m, m.rule.value, (), span))
                continue
            kinds = {
                c.rule.kind
                for c in cues
                if c.rule.kind not in ("term", "pseudo", "ignore") and _reaches(c, m, cues, mentions, text)
            }
            if "unc_pre" in kinds:
                value = -1.0
            elif "neg" in kinds:
                value = 0.0
            elif kinds & {"unc", "conj"}:
                value = -1.0
            else:
                value = m.rule.value
            out.append((m, value, tuple(sorted(kinds)), span))
    return out


def _aggregate(values: list[float]) -> float:
    """CheXpert's rule for several mentions of one observation: 1 > -1 > 0."""
    if 1.0 in values:
        return 1.0
    if -1.0 in values:
        return -1.0
    return 0.0


def label_report(text: str | None) -> dict[str, float]:
    """Labels of the 14 CheXpert observations: 1 positive, 0 negative, -1 uncertain, NaN not mentioned.

    An empty or missing report gets NaN everywhere (it says nothing, not "normal"); otherwise
    ``no_finding`` is 1 when no pathology is positive or uncertain and NaN when one is.
    """
    return dict(zip(CHEXPERT_14, _label_cached(text or "")))


@lru_cache(maxsize=65536)
def _label_cached(text: str) -> tuple[float, ...]:
    """Pure in ``text``; templated and generated reports repeat a lot, so memoise."""
    out = {f: float("nan") for f in CHEXPERT_14}
    if not text.strip():
        return tuple(out.values())
    per_finding: dict[str, list[float]] = {}
    for mention, value, _, _ in _label_text(text.lower()):
        per_finding.setdefault(mention.rule.finding, []).append(value)
    for finding, values in per_finding.items():
        if finding in out:
            out[finding] = _aggregate(values)
    found = any(_aggregate(per_finding[f]) in (1.0, -1.0) for f in _PATHOLOGY if f in per_finding)
    out["no_finding"] = float("nan") if found else 1.0
    return tuple(out[f] for f in CHEXPERT_14)


def explain(text: str) -> list[MentionLabel]:
    """Every mention with its value and the cue kinds that reached it (for debugging rules)."""
    lower = (text or "").lower()
    return [
        MentionLabel(m.rule.finding, lower[m.start : m.end], lower[a:b], value, kinds)
        for m, value, kinds, (a, b) in _label_text(lower)
    ]


def label_reports(texts: Sequence[str | None]) -> pd.DataFrame:
    """One row per text, columns ``label_<finding>`` (the ``studies.parquet`` convention)."""
    rows = [label_report(t) for t in texts]
    return pd.DataFrame({f"label_{f}": [r[f] for r in rows] for f in CHEXPERT_14})


def _binary(labels: pd.DataFrame, findings: Sequence[str], uncertain: str) -> np.ndarray:
    values = labels[[f"label_{f}" for f in findings]].to_numpy(dtype=float)
    positive = values == 1.0
    if uncertain == "positive":
        positive |= values == -1.0
    return positive


def chexpert_f1_from_labels(
    ref_labels: pd.DataFrame, hyp_labels: pd.DataFrame, uncertain: str = "negative"
) -> dict[str, float]:
    """Micro / macro F1 of hypothesis labels against reference labels (``label_<finding>`` columns).

    Label the references once with :func:`label_reports` and reuse them for every system.
    """
    if uncertain not in ("negative", "positive"):
        raise ValueError(f"uncertain must be 'negative' or 'positive', got {uncertain!r}")
    if len(ref_labels) != len(hyp_labels):
        raise ValueError(f"{len(ref_labels)} reference rows but {len(hyp_labels)} hypothesis rows")
    out: dict[str, float] = {}
    for name, findings in (("14", CHEXPERT_14), ("5", MS_CXR_T_5)):
        y = _binary(ref_labels, findings, uncertain)
        p = _binary(hyp_labels, findings, uncertain)
        tp = (y & p).sum(axis=0)
        fp = (~y & p).sum(axis=0)
        fn = (y & ~p).sum(axis=0)
        denom = 2 * tp + fp + fn
        per = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        micro_denom = denom.sum()
        out[f"chexpert_f1.micro_{name}"] = float(2 * tp.sum() / micro_denom) if micro_denom else 0.0
        out[f"chexpert_f1.macro_{name}"] = float(per.mean())
    return out


def chexpert_f1(refs: Sequence[str], hyps: Sequence[str], uncertain: str = "negative") -> dict[str, float]:
    """Clinical efficacy F1 (the F1-CheXbert protocol, with this labeler instead of CheXbert).

    Both reports are labelled; an observation is positive when labelled 1 (``uncertain=
    "negative"``, the default: -1, 0 and not mentioned are all negative; ``"positive"`` counts -1
    as positive too). Keys ``chexpert_f1.{micro,macro}_{14,5}``: over the 14 observations
    (No Finding included) and over the 5 MS-CXR-T findings. A finding with no positive in either
    reports or hypotheses has F1 0 in the macro mean (sklearn's zero_division=0).
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    return chexpert_f1_from_labels(label_reports(refs), label_reports(hyps), uncertain)
