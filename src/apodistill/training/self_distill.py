"""Stage 2 driver: one consensus per training study, by the configured method."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from apodistill.config.train import SelfDistillConfig
from apodistill.consensus import IN_CONTEXT, METHODS, Consensus, TeacherAnswer, format_context, from_generation
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
    }


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
    """Consensus table: one row per study key (columns: task, study_id, prior_study_id, text,
    method, fallback, agreeing, n_teachers). ``in_context`` needs the SPD model and processor;
    any other ``cfg.method`` is looked up in :data:`apodistill.consensus.METHODS`."""
    from tqdm.auto import tqdm

    keys = sorted(groups, key=str)
    rows: list[dict[str, Any]] = []
    if cfg.method != IN_CONTEXT:
        method = METHODS.get(cfg.method)
        for k in tqdm(keys, desc=cfg.method):
            rows.append(_row(k, method(groups[k], weights, findings, k[0]), len(groups[k])))
        return pd.DataFrame(rows)

    from apodistill.student import generate

    for i in tqdm(range(0, len(keys), cfg.batch_size), desc="consensus", unit_scale=cfg.batch_size):
        batch = keys[i : i + cfg.batch_size]
        prompts = [consensus_prompt(templates_dir, k[0], findings, format_context(groups[k], findings, cfg.context)) for k in batch]
        imgs = [[images.get(p) for p in images_for(k, image_of)] for k in batch]
        texts = generate(model, processor, imgs, prompts, cfg.max_new_tokens, cfg.do_sample, cfg.temperature, cfg.top_p)
        for k, text in zip(batch, texts):
            c = from_generation(text, groups[k], weights, findings, k[0], cfg.fallback)
            if c is not None:
                rows.append(_row(k, c, len(groups[k])))
    return pd.DataFrame(rows)
