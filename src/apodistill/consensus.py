"""Self-distillation ("compare"): one consensus trajectory per study from all its teachers.

Two steps. First the consensus *answers* (one per finding), by a method registered in
:data:`METHODS` and looked up by ``self_distill.method``:

- ``vote``: plurality of the teachers' answers, each teacher counted once;
- ``weighted_vote``: each teacher counted w_u times (``teachers.weights``, fixed or ``auto``);
- ``dawid_skene``: per finding, each teacher's confusion matrix and the true answer estimated
  together by EM over all training studies (Dawid & Skene 1979, via crowd-kit). A teacher that
  over-calls effusion everywhere then carries little weight on effusion; no label is read;
- ``in_context`` (the paper): the SPD student reads the teachers' trajectories and writes the
  consensus itself (:mod:`apodistill.training.self_distill`).

Then the consensus *text* (:func:`compose`): the reasoning is put together, finding by finding,
from sentences of teachers that gave the consensus answer (the most reliable of them first), so
the reasoning supports the answers it comes with. Each consensus keeps its provenance: method,
which teachers agreed per finding, fallback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping, Sequence

from apodistill.findings import ParsedTrajectory, display, format_trajectory, parse_trajectory, values_for
from apodistill.registry import Registry

StudyKey = tuple[str, str, str | None]  # (task, study_id, prior_study_id)
Labels = dict[str, str]


@dataclass(frozen=True)
class TeacherAnswer:
    teacher: str
    text: str
    parsed: ParsedTrajectory


@dataclass(frozen=True)
class Consensus:
    text: str
    labels: dict[str, str]
    agreeing: dict[str, list[str]]  # finding -> teachers whose answer matches the consensus
    method: str
    fallback: bool = False

    def provenance(self) -> str:
        return json.dumps(self.agreeing, sort_keys=True)


Groups = Mapping[StudyKey, Sequence[TeacherAnswer]]
#: name -> fn(groups, weights, findings) -> {key: labels}. Label-only methods; ``in_context``
#: generates text and lives in training.self_distill.
METHODS: Registry[Callable[[Groups, Mapping[str, float], Sequence[str]], dict[StudyKey, Labels]]] = Registry("consensus method")
IN_CONTEXT = "in_context"  # the paper's method: the student writes the consensus (not a label method)


def vote_labels(answers: Sequence[TeacherAnswer], weights: Mapping[str, float], findings: Sequence[str], task: str) -> Labels:
    """w_u-weighted plurality per finding; ties go to the earlier value of the task vocabulary
    (``yes`` before ``no``; ``improving`` before ``stable``), which is deterministic."""
    order = values_for(task)
    out = {}
    for f in findings:
        score = {v: 0.0 for v in order}
        for a in answers:
            score[a.parsed.labels[f]] += weights.get(a.teacher, 1.0)
        out[f] = max(order, key=lambda v: (score[v], -order.index(v)))
    return out


def agreeing(answers: Sequence[TeacherAnswer], labels: Labels) -> dict[str, list[str]]:
    return {f: [a.teacher for a in answers if a.parsed.labels[f] == v] for f, v in labels.items()}


@METHODS.register("vote")
def plain_vote(groups: Groups, weights: Mapping[str, float], findings: Sequence[str]) -> dict[StudyKey, Labels]:
    """Every teacher counts once (``weights`` ignored): the usual baseline."""
    return {k: vote_labels(a, {}, findings, k[0]) for k, a in groups.items() if a}


@METHODS.register("weighted_vote")
def weighted_vote(groups: Groups, weights: Mapping[str, float], findings: Sequence[str]) -> dict[StudyKey, Labels]:
    """Each teacher counts w_u times."""
    return {k: vote_labels(a, weights, findings, k[0]) for k, a in groups.items() if a}


_EPS = 1e-10  # crowd-kit's floor for error rates and priors


def dawid_skene_proba(items: Sequence[int], workers: Sequence[int], labels: Sequence[int], n_classes: int,
                      n_iter: int = 100, tol: float = 1e-5):
    """Dawid & Skene's EM on integer-coded answers: ``(probas (n_items, K), errors (n_workers, K, K))``.

    The same algorithm, initialisation (majority-vote shares), floors and stopping rule (change of
    the per-answer evidence lower bound below ``tol``) as crowd-kit's ``DawidSkene``, which a test
    checks it against; written with numpy because crowd-kit's pandas version took ~10 s per finding
    on the default benchmark and this stage runs in every `dvc repro`.
    ``errors[j, l, k]`` = P(worker j answers l | true class k).
    """
    import numpy as np

    i, j, l = (np.asarray(a, dtype=np.int64) for a in (items, workers, labels))
    n, m, K = int(i.max()) + 1, int(j.max()) + 1, n_classes
    probas = np.zeros((n, K))
    np.add.at(probas, (i, l), 1.0)
    probas /= probas.sum(axis=1, keepdims=True)

    def m_step(t):
        err = np.zeros((m, K, K))
        np.add.at(err, (j, l), t[i])
        err = np.clip(err, _EPS, None)
        return err / err.sum(axis=1, keepdims=True)

    priors, errors, loss = probas.mean(axis=0), m_step(probas), -np.inf
    for _ in range(n_iter):
        log_lik = np.log2(np.clip(priors, _EPS, None))[None, :].repeat(n, axis=0)
        np.add.at(log_lik, i, np.log2(errors[j, l]))
        scaled = np.exp2(log_lik - log_lik.max(axis=1, keepdims=True))
        probas = scaled / scaled.sum(axis=1, keepdims=True)
        priors, errors = probas.mean(axis=0), m_step(probas)
        joint = (probas[i] * (np.log(errors[j, l]) + np.log(np.clip(priors, _EPS, None)))).sum()
        entropy = -(np.log(np.clip(probas, _EPS, None)) * np.clip(probas, _EPS, None)).sum()
        new_loss = (joint + entropy) / len(i)
        if new_loss - loss < tol:
            break
        loss = new_loss
    return probas, errors


@METHODS.register("dawid_skene")
def dawid_skene(groups: Groups, weights: Mapping[str, float], findings: Sequence[str]) -> dict[StudyKey, Labels]:
    """Dawid-Skene per task and finding: a confusion matrix per teacher, EM over all studies.

    The answer is the most probable *decisive* class (a single study's ``uncertain`` is kept as
    evidence but never chosen: a consensus commits). ``weights`` are not used: reliability is
    estimated, not given.
    """
    import numpy as np

    out: dict[StudyKey, Labels] = {k: {} for k, a in groups.items() if a}
    teachers = sorted({a.teacher for answers in groups.values() for a in answers})
    for task in sorted({k[0] for k in out}):
        keys = [k for k in out if k[0] == task]
        classes = list(values_for(task))
        decisive = np.array([c != "uncertain" for c in classes])
        for f in findings:
            obs = [(n, teachers.index(a.teacher), classes.index(a.parsed.labels[f])) for n, k in enumerate(keys) for a in groups[k]]
            probas, _ = dawid_skene_proba(*zip(*obs), n_classes=len(classes))
            best = np.where(decisive[None, :], probas, -1.0).argmax(axis=1)
            for n, k in enumerate(keys):
                out[k][f] = classes[best[n]]
    return out


def aggregate(method: str, groups: Groups, weights: Mapping[str, float], findings: Sequence[str]) -> dict[StudyKey, Labels]:
    """Consensus answers of a label method, looked up by name (unknown names list the known)."""
    return METHODS.get(method)(groups, weights, findings)


def reliability(groups: Groups, labels: Mapping[StudyKey, Labels], findings: Sequence[str]) -> dict[str, float]:
    """Each teacher's agreement with the consensus answers (used to pick whose sentences to keep)."""
    hit: dict[str, list[int]] = {}
    for k, answers in groups.items():
        if k not in labels:
            continue
        for a in answers:
            hit.setdefault(a.teacher, [0, 0])
            hit[a.teacher][0] += sum(a.parsed.labels[f] == labels[k][f] for f in findings)
            hit[a.teacher][1] += len(findings)
    return {t: h / max(n, 1) for t, (h, n) in hit.items()}


@lru_cache(maxsize=65536)
def _sentences_by_finding(think: str, findings: tuple[str, ...]) -> dict[str, list[str]]:
    """The reasoning's sentences that speak of exactly one of ``findings`` (by the offline labeler)."""
    from apodistill.metrics.labeler import label_report, split_sentences

    out: dict[str, list[str]] = {}
    for s in split_sentences(think):
        named = [f for f, v in label_report(s).items() if f in findings and v == v]
        if len(named) == 1:
            out.setdefault(named[0], []).append(s)
    return out


def compose(answers: Sequence[TeacherAnswer], labels: Labels, findings: Sequence[str], rank: Mapping[str, float], method: str) -> Consensus:
    """The consensus trajectory: for each finding, the sentences of the most reliable teacher
    that gave the consensus answer; a plain statement where no agreeing teacher wrote one."""
    by_rank = sorted(answers, key=lambda a: -rank.get(a.teacher, 0.0))
    parts: list[str] = []
    for f in findings:  # the first sentence about f of the most reliable agreeing teacher that wrote one
        said = next((s[f][0] for a in by_rank if a.parsed.labels[f] == labels[f]
                     for s in [_sentences_by_finding(a.parsed.think, tuple(findings))] if f in s), None)
        parts.append(said or f"{display(f).capitalize()}: {labels[f]}.")
    text = format_trajectory(" ".join(parts), labels, findings)
    return Consensus(text=text, labels=labels, agreeing=agreeing(answers, labels), method=method)


def vote(answers: Sequence[TeacherAnswer], weights: Mapping[str, float], findings: Sequence[str], task: str) -> Consensus:
    """Weighted vote of one study with composed reasoning (SPD's consensus-format targets, fallback)."""
    if not answers:
        raise ValueError("vote needs at least one parsed teacher trajectory")
    labels = vote_labels(answers, weights, findings, task)
    return compose(answers, labels, findings, weights, "vote")


def format_context(answers: Sequence[TeacherAnswer], findings: Sequence[str], context: str) -> str:
    """The teachers' trajectories as the student reads them: ``full`` text, or ``answers``
    (each teacher's answer lines only: short enough for a tiny student's context)."""
    parts = []
    for i, a in enumerate(answers, 1):
        if context == "full":
            body = a.text.strip()
        elif context == "answers":
            body = "; ".join(f"{display(f)}: {a.parsed.labels[f]}" for f in findings)
        else:
            raise ValueError(f"unknown context {context!r}; known: full, answers")
        parts.append(f"Teacher {i}: {body}")
    return "\n".join(parts)


def from_generation(
    text: str,
    answers: Sequence[TeacherAnswer],
    weights: Mapping[str, float],
    findings: Sequence[str],
    task: str,
    fallback: str,
) -> Consensus | None:
    """Turn a generated consensus into a :class:`Consensus`; unparseable -> vote or None."""
    try:
        parsed = parse_trajectory(text, findings, task)
    except ValueError:
        if fallback == "vote":
            v = vote(answers, weights, findings, task)
            return Consensus(v.text, v.labels, v.agreeing, method="in_context", fallback=True)
        return None
    clean = format_trajectory(parsed.think, parsed.labels, findings)
    return Consensus(clean, parsed.labels, agreeing(answers, parsed.labels), method="in_context")
