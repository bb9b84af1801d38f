"""Stage 2 driver: one consensus per training study by the configured method, and a comparison
of every method's answers against the benchmark's labels on the same training studies.

The labels only *measure* the methods (accuracy per task, written to the stage's report); no
method reads them, and the consensus that APO trains on comes from the configured method alone.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from apodistill.config.train import SelfDistillConfig
from apodistill.consensus import (
    IN_CONTEXT,
    Consensus,
    Labels,
    TeacherAnswer,
    aggregate,
    compose,
    format_context,
    from_generation,
    reliability,
)
from apodistill.training.data import ImageStore, StudyKey, consensus_prompt, images_for


def _row(key: StudyKey, c: Consensus, n: int) -> dict[str, Any]:
    return {
        "task": key[0],
        "study_id": key[1],
        "prior_study_id": key[2],
        "text": c.text,
        "method": c.method,
        "fallback": c.fallback,
        "agreeing": c.provenance(),
        "n_teachers": n,
        **{f"answer_{f}": v for f, v in c.labels.items()},
    }


def in_context(
    cfg: SelfDistillConfig,
    groups: Mapping[StudyKey, Sequence[TeacherAnswer]],
    keys: Sequence[StudyKey],
    weights: Mapping[str, float],
    findings: Sequence[str],
    templates_dir: str,
    image_of: dict[str, str],
    images: ImageStore,
    model: Any,
    processor: Any,
) -> dict[StudyKey, Consensus]:
    """The paper's consensus: the student reads the teachers (``cfg.context``) and the image(s)
    and writes one trajectory; an unparseable one falls back to the vote (or is dropped)."""
    from tqdm.auto import tqdm

    from apodistill.student import generate

    out: dict[StudyKey, Consensus] = {}
    for i in tqdm(range(0, len(keys), cfg.batch_size), desc="consensus", unit_scale=cfg.batch_size):
        batch = keys[i : i + cfg.batch_size]
        prompts = [consensus_prompt(templates_dir, k[0], findings, format_context(groups[k], findings, cfg.context)) for k in batch]
        imgs = [[images.get(p) for p in images_for(k, image_of)] for k in batch]
        texts = generate(model, processor, imgs, prompts, cfg.max_new_tokens, cfg.do_sample, cfg.temperature, cfg.top_p)
        for k, text in zip(batch, texts):
            c = from_generation(text, groups[k], weights, findings, k[0], cfg.fallback)
            if c is not None:
                out[k] = c
    return out


def label_consensus(
    method: str, groups: Mapping[StudyKey, Sequence[TeacherAnswer]], weights: Mapping[str, float], findings: Sequence[str]
) -> dict[StudyKey, Consensus]:
    """A label method's answers, each with reasoning composed from the teachers that gave them."""
    labels = aggregate(method, groups, weights, findings)
    rank = reliability(groups, labels, findings)
    return {k: compose(groups[k], labels[k], findings, rank, method) for k in sorted(labels, key=str)}


def run_self_distill(
    cfg: SelfDistillConfig,
    groups: dict[StudyKey, list[TeacherAnswer]],
    weights: dict[str, float],
    findings: Sequence[str],
    templates_dir: str,
    image_of: dict[str, str],
    images: ImageStore | None = None,
    model: Any = None,
    processor: Any = None,
) -> pd.DataFrame:
    """Consensus table: one row per study key (task, study_id, prior_study_id, text, method,
    fallback, agreeing, n_teachers, answer_<finding>). ``in_context`` needs the SPD model and
    processor; any other ``cfg.method`` is looked up in :data:`apodistill.consensus.METHODS`."""
    keys = sorted(groups, key=str)
    if cfg.method == IN_CONTEXT:
        made = in_context(cfg, groups, keys, weights, findings, templates_dir, image_of, images, model, processor)
    else:
        made = label_consensus(cfg.method, groups, weights, findings)
    return pd.DataFrame([_row(k, made[k], len(groups[k])) for k in keys if k in made])


def gold_answers(studies: pd.DataFrame, pairs: pd.DataFrame | None, findings: Sequence[str]) -> dict[StudyKey, Labels]:
    """The benchmark's labels as answers (single: 1 yes, 0 no; pairs: the progression class),
    keyed like the groups; cells without a label are left out. For measuring only."""
    out: dict[StudyKey, Labels] = {}
    for r in studies.to_dict("records"):
        out[("single", str(r["study_id"]), None)] = {
            f: ("yes" if r[f"label_{f}"] == 1.0 else "no") for f in findings if r.get(f"label_{f}") in (0.0, 1.0)
        }
    if pairs is not None:
        for r in pairs.to_dict("records"):
            out[("pair", str(r["current_study_id"]), str(r["prior_study_id"]))] = {
                f: r[f"progression_{f}"] for f in findings if isinstance(r.get(f"progression_{f}"), str)
            }
    return out


def accuracy(answers: Mapping[StudyKey, Labels], gold: Mapping[StudyKey, Labels], findings: Sequence[str]) -> dict[str, float]:
    """Mean over findings of per-finding accuracy against ``gold``, per task (``single``, ``pair``), and n."""
    out: dict[str, float] = {}
    for task in ("single", "pair"):
        per = {f: [] for f in findings}
        for k, labels in answers.items():
            if k[0] != task or k not in gold:
                continue
            for f, v in gold[k].items():
                if f in labels:
                    per[f].append(labels[f] == v)
        scored = [np.mean(v) for v in per.values() if v]
        if scored:
            out[task] = float(np.mean(scored))
            out[f"{task}_n"] = float(max(len(v) for v in per.values()))
    return out


def compare_methods(
    cfg: SelfDistillConfig,
    groups: dict[StudyKey, list[TeacherAnswer]],
    weights: Mapping[str, Mapping[str, float]],
    gold: Mapping[StudyKey, Labels],
    findings: Sequence[str],
    chosen: pd.DataFrame,
    in_context_fn: Any = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy against the labels of every method in ``cfg.compare`` on the same training studies.

    ``weights`` maps a method to the w_u it uses (``weighted_vote``: the ``auto`` weights).
    ``in_context`` generates, so it runs on a seeded sample of ``cfg.compare_sample`` studies
    (``in_context_fn(keys) -> {key: Consensus}``); its row says how many. The configured
    method's row is read from ``chosen`` (the consensus APO trains on), not recomputed.
    """
    rows = []
    for method in cfg.compare:
        if method == cfg.method:  # a single study's prior is None in the keys; a table may hold NaN there
            answers = {(r["task"], r["study_id"], r["prior_study_id"] if isinstance(r["prior_study_id"], str) else None):
                       {f: r[f"answer_{f}"] for f in findings} for r in chosen.to_dict("records")}  # fmt: skip
        elif method == IN_CONTEXT:
            if in_context_fn is None:
                continue
            keys = sorted(groups, key=str)
            take = np.random.default_rng(seed).permutation(len(keys))[: cfg.compare_sample]
            answers = {k: c.labels for k, c in in_context_fn([keys[i] for i in sorted(take)]).items()}
        else:
            answers = aggregate(method, groups, weights.get(method, {}), findings)
        rows.append({"method": method, "chosen": method == cfg.method, **accuracy(answers, gold, findings)})
    return pd.DataFrame(rows)
