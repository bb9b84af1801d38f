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
from apodistill.training.loop import StepOutput, batch_plan, make_optimizer, prepare, total_steps, train_loop

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
    negatives: str = "all",
) -> list[CandidateSet]:
    """One candidate set per consensus row. ``negatives``: ``all`` (the paper: every teacher
    trajectory is a negative, except one identical to the consensus) or ``disagreeing`` (a
    variant: a teacher whose answers equal the consensus on every finding is masked too, so the
    preference only contrasts answers that differ)."""
    from apodistill.findings import try_parse

    if negatives not in ("all", "disagreeing"):
        raise ValueError(f"unknown negatives {negatives!r}; known: all, disagreeing")
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
        if negatives == "disagreeing":
            agreed = {f: getattr(c, f"answer_{f}", None) for f in findings}
            parsed = [try_parse(x, findings, c.task) if x else None for x in rejected]
            mask = tuple(m and not (p is not None and all(p.labels[f] == agreed[f] for f in findings)) for m, p in zip(mask, parsed))
        out.append(
            CandidateSet(key, images_for(key, image_of), prompts[c.task], c.text, rejected, mask, tuple(float(weights.get(t, 1.0)) for t in roster))
        )
    return out


def score_sets(model: Any, processor: Any, images: ImageStore, sets: Sequence[CandidateSet], max_length: int, device: Any,
               with_tokens: bool = False):
    """Sequence log-probs of every valid candidate in one forward: (chosen (B,), rejected (B, N)),
    and with ``with_tokens`` the chosen sequences' target token counts (B,).

    Only the chosen and the valid rejected sequences are encoded; absent slots stay 0 and
    are masked out of the loss.
    """
    import torch

    from apodistill.student import encode
    from apodistill.training.scoring import target_logps

    exs, where = [], []
    for b, s in enumerate(sets):
        exs.append(Example(s.images, s.prompt, s.chosen))
        where.append((b, -1))
        for u, (text, ok) in enumerate(zip(s.rejected, s.mask)):
            if ok:
                exs.append(Example(s.images, s.prompt, text))
                where.append((b, u))
    enc = encode(processor, images.batch(exs), [e.prompt for e in exs], [e.target for e in exs], max_length).to(device)
    tok, mask = target_logps(model, enc)
    logps = tok.sum(dim=1)
    tokens = mask.sum(dim=1).to(logps.dtype)
    n = len(sets[0].rejected)
    chosen = torch.zeros(len(sets), dtype=logps.dtype, device=logps.device)
    rejected = torch.zeros(len(sets), n, dtype=logps.dtype, device=logps.device)
    rows = torch.tensor([b for b, _ in where], device=logps.device)
    cols = torch.tensor([u for _, u in where], device=logps.device)
    is_c = cols < 0
    chosen = chosen.index_put((rows[is_c],), logps[is_c])
    rejected = rejected.index_put((rows[~is_c], cols[~is_c]), logps[~is_c])
    if with_tokens:
        return chosen, rejected, tokens[is_c]
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
    accelerator: Any = None,
):
    """Reference (SPD) log-probs for every candidate, from the cache when its key matches.

    Returns (chosen (M,), rejected (M, N) tensors, cache_hit), the same on every process.
    With an ``accelerator`` of P processes, process r scores every P-th prompt from r, the
    rows are gathered to all, and only the main process writes the cache (the others wait
    for it).
    """
    import torch

    from apodistill.student import load_student

    cache_dir = Path(cache_dir)
    key = ref_key(ref_model_dir, sets, max_length)
    key_file, table = cache_dir / REF_KEY, cache_dir / REF_FILE
    hit = key_file.is_file() and table.is_file() and json.loads(key_file.read_text()).get("key") == key
    processes, rank = (accelerator.num_processes, accelerator.process_index) if accelerator is not None else (1, 0)
    if processes > 1:
        from accelerate.utils import broadcast_object_list

        hit = broadcast_object_list([hit])[0]  # one decision for all, whatever each saw on disk
    if hit:
        df = pd.read_parquet(table)
        return torch.tensor(df["chosen"].to_numpy(np.float32)), torch.tensor(np.stack(df["rejected"].to_numpy()).astype(np.float32)), True
    model, processor = load_student(ref_model_dir)
    device = accelerator.device if accelerator is not None else device
    model.to(device).eval()
    mine = list(range(rank, len(sets), processes))
    rows = _score_rows(model, processor, images, sets, mine, max_length, batch_size, device, show=rank == 0)
    if processes > 1:
        from accelerate.utils import gather_object

        rows = gather_object(rows)
    rows.sort(key=lambda r: r[0])
    c = torch.tensor([r[1] for r in rows], dtype=torch.float32)
    r = torch.tensor([r[2] for r in rows], dtype=torch.float32).reshape(len(sets), -1)
    if accelerator is None or accelerator.is_main_process:
        write_ref_cache(cache_dir, sets, c, r, key, ref_model_dir, max_length)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return c, r, False


def _score_rows(model, processor, images, sets, indices, max_length, batch_size, device, show: bool):
    """[(index, chosen logp, [rejected logps])] for the given prompts, without gradients."""
    import torch
    from tqdm.auto import tqdm

    rows = []
    with torch.no_grad():
        for i in tqdm(range(0, len(indices), batch_size), desc="reference log-probs", disable=not show):
            idx = indices[i : i + batch_size]
            c, r = score_sets(model, processor, images, [sets[j] for j in idx], max_length, device)
            rows += [(j, float(cj), rj.tolist()) for j, cj, rj in zip(idx, c.float().cpu(), r.float().cpu())]
    return rows


def write_ref_cache(cache_dir: Path, sets: Sequence[CandidateSet], chosen: Any, rejected: Any, key: str, ref_model_dir: Any, max_length: int) -> None:
    """The reference log-prob table and its key (written by one process)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "task": [s.key[0] for s in sets],
            "study_id": [s.key[1] for s in sets],
            "prior_study_id": [s.key[2] for s in sets],
            "chosen": chosen.numpy(),
            "rejected": [row.tolist() for row in rejected],
        }
    ).to_parquet(cache_dir / REF_FILE, index=False)
    (cache_dir / REF_KEY).write_text(json.dumps({"key": key, "reference": str(ref_model_dir), "max_length": max_length}) + "\n")


def run_key(cfg: ApoConfig, ref: str, seed: int, processes: int = 1) -> str:
    h = hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode())
    h.update(f"{ref}:{seed}".encode())
    if processes != 1:
        h.update(f"processes={processes}".encode())
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

    from apodistill.losses import apo_loss, chosen_nll
    from apodistill.student import apply_lora, load_student

    model, processor = load_student(policy_dir)
    if cfg.lora.enabled:
        model = apply_lora(model, cfg.lora)
    processes = accelerator.num_processes
    steps = total_steps(len(sets), cfg.optim, processes)
    opt, sched = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg.optim, steps)
    model, opt, sched = prepare(accelerator, model, opt, sched, cfg.optim)
    device = accelerator.device

    def step(m: Any, idx: list[int]) -> StepOutput:
        batch = [sets[i] for i in idx]
        pc, pr, n_tok = score_sets(m, processor, images, batch, cfg.max_length, device, with_tokens=True)
        w = torch.tensor([s.weights for s in batch], device=device) if cfg.weight_negatives else None
        mask = torch.tensor([s.mask for s in batch], device=device)
        loss, met = apo_loss(
            pc.float(), pr.float(), ref_chosen[idx].to(device), ref_rejected[idx].to(device),
            beta=cfg.beta, weights=w, kind=cfg.loss, rejected_mask=mask,
        )
        if cfg.sft_weight > 0:
            anchor = chosen_nll(pc.float(), n_tok)
            loss = loss + cfg.sft_weight * anchor
            met["chosen_nll"] = anchor.detach()
        return StepOutput(loss * len(idx), float(len(idx)), {k: float(v) for k, v in met.items()})

    result = train_loop(
        accelerator=accelerator,
        model=model,
        optimizer=opt,
        scheduler=sched,
        plan=batch_plan(
            len(sets), cfg.optim, seed, processes=processes,
            lengths=[len(s.prompt) + max(len(t) for t in (s.chosen, *s.rejected)) for s in sets],  # the widest candidate pads the rest
        ),
        units_fn=len,
        step_fn=step,
        cfg=cfg.optim,
        ckpt_dir=ckpt_dir,
        run_key=run_key(cfg, ref_cache_key, seed, processes),
        curve_path=curve_path,
        desc="apo",
        stop_after=stop_after,
    )
    return accelerator.unwrap_model(model), processor, result
