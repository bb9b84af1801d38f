"""The training loop shared by SPD and APO.

Why not a Trainer: APO scores N+1 candidates per prompt in one forward and reads cached
reference log-probs, which no TRL trainer does for vision inputs; SPD needs per-example
teacher weights. The loop is small and does what both need:

- gradient accumulation that is exact: each step's loss is a *sum* divided by the number
  of units (weighted tokens, prompts) in the whole accumulation window, so 4 x 2 equals 1 x 8;
- resumable checkpoints (``accelerator.save_state``) keyed by a hash of the config and data,
  so a rerun after a crash continues from the last one and a changed config starts fresh;
- deterministic batch order from the seed, so a resumed run sees the same batches.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from apodistill.config.train import OptimConfig

META = "meta.json"


def batch_plan(n_examples: int, cfg: OptimConfig, seed: int, groups: Sequence[int] | None = None) -> list[list[list[int]]]:
    """Indices for every optimizer step: ``plan[step][micro] -> example indices``.

    Epochs are fresh seeded permutations; the plan depends only on (n, cfg, seed, groups).
    With ``groups`` (a group id per example), every micro-batch holds one group only, so
    long prompts (consensus-format examples) are not padded together with short ones.
    """
    if n_examples <= 0:
        raise ValueError("no training examples")
    per_step = cfg.batch_size * cfg.grad_accum
    steps = total_steps(n_examples, cfg)
    rng = np.random.default_rng(seed)
    micro: list[list[int]] = []
    if groups is None:
        order: list[int] = []
        while len(order) < steps * per_step:
            order.extend(rng.permutation(n_examples).tolist())
        micro = [order[i : i + cfg.batch_size] for i in range(0, steps * per_step, cfg.batch_size)]
    else:
        g = np.asarray(groups)
        while len(micro) < steps * cfg.grad_accum:
            epoch: list[list[int]] = []
            for gid in np.unique(g):
                members = rng.permutation(np.flatnonzero(g == gid)).tolist()
                epoch += [members[i : i + cfg.batch_size] for i in range(0, len(members), cfg.batch_size)]
            micro += [epoch[i] for i in rng.permutation(len(epoch))]
    return [micro[s * cfg.grad_accum : (s + 1) * cfg.grad_accum] for s in range(steps)]


def total_steps(n_examples: int, cfg: OptimConfig) -> int:
    if cfg.epochs is not None:
        return max(1, math.ceil(cfg.epochs * n_examples / (cfg.batch_size * cfg.grad_accum)))
    return cfg.steps


def make_optimizer(params: Sequence[Any], cfg: OptimConfig, steps: int):
    import torch
    from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    sched = get_cosine_with_min_lr_schedule_with_warmup(
        opt, num_warmup_steps=int(round(cfg.warmup_ratio * steps)), num_training_steps=steps, min_lr_rate=cfg.min_lr_ratio
    )
    return opt, sched


@dataclass
class StepOutput:
    """What a step function returns for one micro-batch."""

    loss_sum: Any  # a scalar tensor: the loss summed over the micro-batch's units
    units: float  # how many units the sum covers (weighted tokens, prompts)
    metrics: dict[str, float] = field(default_factory=dict)  # per-micro-batch means, for curves


@dataclass
class LoopResult:
    steps: int
    resumed_from: int
    rows: list[dict[str, float]]


def _checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    if not ckpt_dir.is_dir():
        return []
    out = []
    for p in ckpt_dir.glob("checkpoint-*"):
        if (p / META).is_file():
            out.append((int(p.name.split("-")[1]), p))
    return sorted(out)


def train_loop(
    *,
    accelerator: Any,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    plan: list[list[list[int]]],
    units_fn: Callable[[list[int]], float],
    step_fn: Callable[[Any, list[int]], StepOutput],
    cfg: OptimConfig,
    ckpt_dir: str | Path,
    run_key: str,
    curve_path: str | Path | None = None,
    desc: str = "train",
    stop_after: int | None = None,
) -> LoopResult:
    """Run ``len(plan)`` optimizer steps. ``model``/``optimizer``/``scheduler`` are already prepared.

    ``units_fn(indices)`` counts a micro-batch's units without a forward pass, so the window
    total is known before the first backward (exact accumulation, also across processes).
    ``stop_after`` ends early after that many steps (used by tests to simulate a crash).
    """
    import torch
    from tqdm.auto import tqdm

    ckpt_dir = Path(ckpt_dir)
    rows: list[dict[str, float]] = []
    start = 0
    existing = _checkpoints(ckpt_dir)
    if existing:
        step, path = existing[-1]
        meta = json.loads((path / META).read_text())
        if meta.get("run_key") == run_key:
            accelerator.load_state(str(path))
            start, rows = step, meta.get("rows", [])
            accelerator.print(f"{desc}: resuming from {path} (step {step})")
        else:
            accelerator.print(f"{desc}: checkpoints in {ckpt_dir} belong to another config; starting fresh")
            if accelerator.is_main_process:
                shutil.rmtree(ckpt_dir)
    resumed_from = start
    steps = len(plan)
    bar = tqdm(total=steps, initial=start, desc=desc, disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    model.train()
    for step in range(start, steps):
        window = plan[step]
        units = torch.tensor(float(sum(units_fn(mb) for mb in window)), device=accelerator.device)
        units = accelerator.reduce(units, reduction="sum")
        scale = accelerator.num_processes / max(units.item(), 1e-12)
        loss_total = 0.0
        agg: dict[str, float] = {}
        for i, mb in enumerate(window):
            sync = i == len(window) - 1
            ctx = accelerator.no_sync(model) if not sync else _null()
            with ctx:
                with accelerator.autocast():
                    out = step_fn(model, mb)
                accelerator.backward(out.loss_sum * scale)
            loss_total += float(out.loss_sum.detach()) * scale / accelerator.num_processes
            for k, v in out.metrics.items():
                agg[k] = agg.get(k, 0.0) + float(v) / len(window)
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if done % cfg.log_every == 0 or done == steps:
            row = {"step": done, "loss": loss_total, "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm), **agg}
            rows.append(row)
            bar.set_postfix(loss=f"{loss_total:.4f}")
        bar.update(1)
        if done % cfg.checkpoint_every == 0 and done < steps:
            _save(accelerator, ckpt_dir, done, run_key, rows)
        if stop_after is not None and done >= stop_after:
            break
    bar.close()
    if curve_path is not None and accelerator.is_main_process:
        write_curve(curve_path, rows)
    return LoopResult(steps=steps, resumed_from=resumed_from, rows=rows)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def _save(accelerator: Any, ckpt_dir: Path, step: int, run_key: str, rows: list[dict]) -> None:
    path = ckpt_dir / f"checkpoint-{step}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / META).write_text(json.dumps({"step": step, "run_key": run_key, "rows": rows}))
        for _, old in _checkpoints(ckpt_dir)[:-2]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def write_curve(path: str | Path, rows: list[dict[str, float]]) -> None:
    """Curves as CSV for ``dvc plots`` (one row per logged step)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys or ["step", "loss"])
        w.writeheader()
        w.writerows(rows)


def clear_checkpoints(ckpt_dir: str | Path) -> None:
    """Remove checkpoints once the final model is saved (they are only for crash recovery).

    The folder itself stays, with a note, because it is a declared (persistent) DVC output.
    """
    ckpt_dir = Path(ckpt_dir)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    (ckpt_dir / "STATUS").write_text("finished: checkpoints removed after the final model was saved\n")
