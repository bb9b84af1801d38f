"""Stage 3, Autonomous Preference Optimization (APO, "critique").

Per prompt the consensus t+ must beat every raw teacher trajectory at once (Plackett-Luce
top-1 over N+1 candidates, docs/method.md stage 3). Cost: the N+1 candidate sequences of a prompt go
through the policy in one batched forward, the chosen one once (not once per pair), and
the reference (SPD) log-probs are computed once, stored, and reused while their inputs
are unchanged (e.g. by every `dvc exp` that only changes apo.beta or the learning rate).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from apodistill.config.train import ApoConfig
from apodistill.training.data import Example, ImageStore, StudyKey, images_for, key_of, study_images, task_prompt
from apodistill.training.loop import StepOutput, batch_plan, make_optimizer, total_steps, train_loop

REF_FILE = "ref_logps.parquet"
REF_KEY = "key.json"


@dataclass(frozen=True)
class CandidateSet:
    """One prompt with its consensus (chosen) and one slot per roster teacher (rejected)."""

    key: StudyKey
    images: tuple[str, ...]
    prompt: str
    chosen: str
    rejected: tuple[str, ...]  # one per roster teacher, "" where absent
    mask: tuple[bool, ...]  # False: absent, quarantined, or identical to the chosen text
    weights: tuple[float, ...]  # w_u per slot


def build_candidates(
    consensus: pd.DataFrame,
    trajectories: pd.DataFrame,
    studies: pd.DataFrame,
    roster: Sequence[str],
    weights: dict[str, float],
    findings: Sequence[str],
    templates_dir: str,
) -> list[CandidateSet]:
    image_of = study_images(studies)
    by_key: dict[StudyKey, dict[str, str]] = {}
    for r in trajectories.itertuples(index=False):
        by_key.setdefault(key_of(r), {})[r.teacher] = r.text
    prompts: dict[str, str] = {}
    out = []
    for c in consensus.itertuples(index=False):
        key = key_of(c)
        if c.task not in prompts:
            prompts[c.task] = task_prompt(templates_dir, c.task, findings)
        texts = by_key.get(key, {})
        rejected = tuple(texts.get(t, "") for t in roster)
        mask = tuple(bool(x) and x.strip() != c.text.strip() for x in rejected)
        out.append(
            CandidateSet(key, images_for(key, image_of), prompts[c.task], c.text, rejected, mask, tuple(float(weights.get(t, 1.0)) for t in roster))
        )
    return out


def score_sets(model: Any, processor: Any, images: ImageStore, sets: Sequence[CandidateSet], max_length: int, device: Any):
    """Sequence log-probs of every valid candidate in one forward: (chosen (B,), rejected (B, N)).

    Only the chosen and the valid rejected sequences are encoded; absent slots stay 0 and
    are masked out of the loss.
    """
    import torch

    from apodistill.losses import sequence_logps
    from apodistill.student import encode

    exs, where = [], []
    for b, s in enumerate(sets):
        exs.append(Example(s.images, s.prompt, s.chosen))
        where.append((b, -1))
        for u, (text, ok) in enumerate(zip(s.rejected, s.mask)):
            if ok:
                exs.append(Example(s.images, s.prompt, text))
                where.append((b, u))
    enc = encode(processor, images.batch(exs), [e.prompt for e in exs], [e.target for e in exs], max_length).to(device)
    logps = sequence_logps(model(**enc.model_inputs()).logits, enc.labels)
    n = len(sets[0].rejected)
    chosen = torch.zeros(len(sets), dtype=logps.dtype, device=logps.device)
    rejected = torch.zeros(len(sets), n, dtype=logps.dtype, device=logps.device)
    rows = torch.tensor([b for b, _ in where], device=logps.device)
    cols = torch.tensor([u for _, u in where], device=logps.device)
    is_c = cols < 0
    chosen = chosen.index_put((rows[is_c],), logps[is_c])
    rejected = rejected.index_put((rows[~is_c], cols[~is_c]), logps[~is_c])
    return chosen, rejected


def _hash_files(folder: str | Path) -> str:
    """Content hash of a model folder (large shards: name, size and mtime, to stay fast)."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.name != "provenance.json":
            h.update(p.relative_to(folder).as_posix().encode())
            st = p.stat()
            if st.st_size > 512 * 2**20:
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
            else:
                h.update(p.read_bytes())
    return h.hexdigest()


def ref_key(ref_model_dir: str | Path, sets: Sequence[CandidateSet], max_length: int) -> str:
    h = hashlib.sha256(_hash_files(ref_model_dir).encode())
    h.update(str(max_length).encode())
    for s in sets:
        h.update(repr((s.key, s.images, s.prompt, s.chosen, s.rejected, s.mask)).encode())
    return h.hexdigest()


def reference_logps(
    ref_model_dir: str | Path,
    sets: Sequence[CandidateSet],
    images: ImageStore,
    cache_dir: str | Path,
    max_length: int,
    batch_size: int,
    device: Any = "cpu",
):
    """Reference (SPD) log-probs for every candidate, from the cache when its key matches.

    Returns (chosen (M,), rejected (M, N) tensors, cache_hit).
    """
    import torch
    from tqdm.auto import tqdm

    from apodistill.student import load_student

    cache_dir = Path(cache_dir)
    key = ref_key(ref_model_dir, sets, max_length)
    key_file, table = cache_dir / REF_KEY, cache_dir / REF_FILE
    if key_file.is_file() and table.is_file() and json.loads(key_file.read_text()).get("key") == key:
        df = pd.read_parquet(table)
        return torch.tensor(df["chosen"].to_numpy(np.float32)), torch.tensor(np.stack(df["rejected"].to_numpy()).astype(np.float32)), True
    model, processor = load_student(ref_model_dir)
    model.to(device).eval()
    chosen, rejected = [], []
    with torch.no_grad():
        for i in tqdm(range(0, len(sets), batch_size), desc="reference log-probs"):
            c, r = score_sets(model, processor, images, sets[i : i + batch_size], max_length, device)
            chosen.append(c.float().cpu())
            rejected.append(r.float().cpu())
    c, r = torch.cat(chosen), torch.cat(rejected)
    cache_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "task": [s.key[0] for s in sets],
            "study_id": [s.key[1] for s in sets],
            "prior_study_id": [s.key[2] for s in sets],
            "chosen": c.numpy(),
            "rejected": [row.tolist() for row in r],
        }
    ).to_parquet(table, index=False)
    key_file.write_text(json.dumps({"key": key, "reference": str(ref_model_dir), "max_length": max_length}) + "\n")
    return c, r, False


def run_key(cfg: ApoConfig, ref: str, seed: int) -> str:
    h = hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode())
    h.update(f"{ref}:{seed}".encode())
    return h.hexdigest()[:16]


def train_apo(
    cfg: ApoConfig,
    sets: Sequence[CandidateSet],
    ref_chosen: Any,
    ref_rejected: Any,
    policy_dir: str | Path,
    images: ImageStore,
    accelerator: Any,
    ckpt_dir: str,
    curve_path: str | None,
    seed: int,
    ref_cache_key: str,
    stop_after: int | None = None,
):
    """Train the policy (initialised from the SPD student) with the APO loss."""
    import torch

    from apodistill.losses import apo_loss
    from apodistill.student import apply_lora, load_student

    model, processor = load_student(policy_dir)
    if cfg.lora.enabled:
        model = apply_lora(model, cfg.lora)
    steps = total_steps(len(sets), cfg.optim)
    opt, sched = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg.optim, steps)
    model, opt, sched = accelerator.prepare(model, opt, sched)
    device = accelerator.device

    def step(m: Any, idx: list[int]) -> StepOutput:
        batch = [sets[i] for i in idx]
        pc, pr = score_sets(m, processor, images, batch, cfg.max_length, device)
        w = torch.tensor([s.weights for s in batch], device=device) if cfg.weight_negatives else None
        mask = torch.tensor([s.mask for s in batch], device=device)
        loss, met = apo_loss(
            pc.float(), pr.float(), ref_chosen[idx].to(device), ref_rejected[idx].to(device),
            beta=cfg.beta, weights=w, kind=cfg.loss, rejected_mask=mask,
        )
        return StepOutput(loss * len(idx), float(len(idx)), {k: float(v) for k, v in met.items()})

    result = train_loop(
        accelerator=accelerator,
        model=model,
        optimizer=opt,
        scheduler=sched,
        plan=batch_plan(len(sets), cfg.optim, seed),
        units_fn=len,
        step_fn=step,
        cfg=cfg.optim,
        ckpt_dir=ckpt_dir,
        run_key=run_key(cfg, ref_cache_key, seed),
        curve_path=curve_path,
        desc="apo",
        stop_after=stop_after,
    )
    return accelerator.unwrap_model(model), processor, result
