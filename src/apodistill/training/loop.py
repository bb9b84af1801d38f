"""The training loop shared by SPD and APO.

Why not a Trainer: APO scores N+1 candidates per prompt in one forward and reads cached
reference log-probs, which no TRL trainer does for vision inputs; SPD needs per-example
teacher weights. The loop is small and does what both need:

- gradient accumulation that is exact: each step's loss is a *sum* divided by the number
  of units (weighted tokens, prompts) in the whole accumulation window, so 4 x 2 equals 1 x 8;
- resumable checkpoints (``accelerator.save_state``) keyed by a hash of the config and data,
  so a rerun after a crash continues from the last one and a changed config starts fresh;
- deterministic batch order from the seed, so a resumed run sees the same batches;
- data parallel on P processes: the plan is global (P x micro-batch x accumulation examples
  per optimizer step, the effective batch) and process r trains on its share of each step,
  so P processes train what one process with P times the accumulation trains; the lr
  schedule advances once per optimizer step and logged losses and metrics are reduced
  across processes (the checkpoint's metadata and the curve are written by the main one).
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
LENGTH_GROUP_BATCHES = 50  # micro-batches per length-sorted run (HF's LengthGroupedSampler uses 50 too)


def batch_plan(
    n_examples: int,
    cfg: OptimConfig,
    seed: int,
    groups: Sequence[int] | None = None,
    processes: int = 1,
    lengths: Sequence[int] | None = None,
) -> list[list[list[int]]]:
    """Indices for every optimizer step: ``plan[step][micro] -> example indices``.

    Each step holds ``processes * grad_accum`` micro-batches of ``batch_size`` (one effective
    batch); process r trains on ``local_window(plan[step], r, processes)``. The plan depends
    only on (n, cfg, seed, groups, lengths) and the product processes * grad_accum, so P
    processes with accumulation A see the same micro-batches as one process with
    accumulation P * A. Epochs are fresh seeded permutations. With ``groups`` (a group id per
    example), every micro-batch holds one group only, so long prompts (consensus-format
    examples) are not padded together with short ones. With ``lengths`` (and
    ``cfg.group_by_length``), each run of 50 micro-batches' worth of a shuffled epoch is
    sorted by length before it is cut, so a micro-batch holds examples of similar length and
    little padding; the micro-batches are then shuffled (HF's LengthGroupedSampler, per group).
    """
    if n_examples <= 0:
        raise ValueError("no training examples")
    per_step = cfg.grad_accum * processes  # micro-batches per optimizer step
    steps = total_steps(n_examples, cfg, processes)
    rng = np.random.default_rng(seed)
    by_length = cfg.group_by_length and lengths is not None
    micro: list[list[int]] = []
    if groups is None and not by_length:
        order: list[int] = []
        while len(order) < steps * per_step * cfg.batch_size:
            order.extend(rng.permutation(n_examples).tolist())
        micro = [order[i : i + cfg.batch_size] for i in range(0, steps * per_step * cfg.batch_size, cfg.batch_size)]
    else:
        g = np.asarray(groups) if groups is not None else np.zeros(n_examples, dtype=int)
        mega = cfg.batch_size * LENGTH_GROUP_BATCHES
        while len(micro) < steps * per_step:
            epoch: list[list[int]] = []
            for gid in np.unique(g):
                members = rng.permutation(np.flatnonzero(g == gid)).tolist()
                if by_length:
                    members = [i for k in range(0, len(members), mega) for i in sorted(members[k : k + mega], key=lambda i: -lengths[i])]
                epoch += [members[i : i + cfg.batch_size] for i in range(0, len(members), cfg.batch_size)]
            micro += [epoch[i] for i in rng.permutation(len(epoch))]
    return [micro[s * per_step : (s + 1) * per_step] for s in range(steps)]


def local_window(window: list[list[int]], rank: int, processes: int) -> list[list[int]]:
    """Process ``rank``'s micro-batches of one step of a ``batch_plan`` built for ``processes``."""
    if len(window) % processes:
        raise ValueError(f"a plan step of {len(window)} micro-batches cannot be split over {processes} processes")
    k = len(window) // processes
    return window[rank * k : (rank + 1) * k]


def total_steps(n_examples: int, cfg: OptimConfig, processes: int = 1) -> int:
    """Optimizer steps: ``cfg.steps``, or ``ceil(epochs * n / effective batch)`` when epochs is set."""
    if cfg.epochs is not None:
        return max(1, math.ceil(cfg.epochs * n_examples / effective_batch(cfg, processes)))
    return cfg.steps


def effective_batch(cfg: OptimConfig, processes: int = 1) -> int:
    """Examples per optimizer step: processes x micro-batch x accumulation."""
    return processes * cfg.batch_size * cfg.grad_accum


def batch_record(accelerator: Any, cfg: OptimConfig) -> dict[str, int]:
    """The effective batch and its factors, for the metrics, MLflow and provenance.json."""
    return {
        "processes": accelerator.num_processes,
        "micro_batch": cfg.batch_size,
        "grad_accum": cfg.grad_accum,
        "effective_batch": effective_batch(cfg, accelerator.num_processes),
    }


def make_optimizer(params: Sequence[Any], cfg: OptimConfig, steps: int):
    import torch
    from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    sched = get_cosine_with_min_lr_schedule_with_warmup(
        opt, num_warmup_steps=int(round(cfg.warmup_ratio * steps)), num_training_steps=steps, min_lr_rate=cfg.min_lr_ratio
    )
    return opt, sched


def prepare(accelerator: Any, model: Any, optimizer: Any, scheduler: Any, cfg: OptimConfig):
    """``accelerator.prepare`` for the loop. DeepSpeed reads the micro-batch from a dataloader,
    and the loop has none, so it is given ``cfg.batch_size`` (as accelerate's error asks)."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None and plugin.deepspeed_config.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.batch_size
    return accelerator.prepare(model, optimizer, scheduler)


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

    ``plan`` is the global plan of ``batch_plan(..., processes=accelerator.num_processes)``;
    this process trains on its ``local_window`` of each step. ``units_fn(indices)`` counts a
    micro-batch's units without a forward pass, so the window total over all processes is
    known before the first backward (exact accumulation, also across processes).
    ``stop_after`` ends early after that many steps (used by tests to simulate a crash).
    """
    import torch
    from tqdm.auto import tqdm

    ckpt_dir = Path(ckpt_dir)
    processes, rank = accelerator.num_processes, accelerator.process_index
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
            accelerator.wait_for_everyone()  # every process has read them before the main one removes them
            if accelerator.is_main_process:
                shutil.rmtree(ckpt_dir)
    accelerator.wait_for_everyone()
    resumed_from = start
    steps = len(plan)
    bar = tqdm(total=steps, initial=start, desc=desc, disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    model.train()
    for step in range(start, steps):
        window = local_window(plan[step], rank, processes)
        if len(window) != cfg.grad_accum:
            raise ValueError(f"plan has {len(plan[step])} micro-batches per step; expected {cfg.grad_accum} x {processes} processes")
        units = torch.tensor(float(sum(units_fn(mb) for mb in window)), device=accelerator.device)
        units = accelerator.reduce(units, reduction="sum")
        # DDP averages gradients over processes: scaling by P / (window units over all
        # processes) makes the update the gradient of (sum of losses) / units.
        scale = processes / max(units.item(), 1e-12)
        loss_local = 0.0
        agg: dict[str, float] = {}
        for i, mb in enumerate(window):
            sync = i == len(window) - 1
            # DeepSpeed steps its engine inside backward() when gradients sync: only at the
            # end of the window (accelerate's accumulate() sets the same flag).
            accelerator.gradient_state._set_sync_gradients(sync)
            with accelerator.no_sync(model) if not sync else _null():
                with accelerator.autocast():
                    out = step_fn(model, mb)
                accelerator.backward(out.loss_sum * scale)
            loss_local += float(out.loss_sum.detach()) * scale / processes
            for k, v in out.metrics.items():
                agg[k] = agg.get(k, 0.0) + float(v) / len(window)
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        advance_schedule(scheduler)
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if done % cfg.log_every == 0 or done == steps:
            loss_total, metrics = _reduce_logged(accelerator, loss_local, agg)
            gn = float(grad_norm) if grad_norm is not None else float("nan")
            row = {"step": done, "loss": loss_total, "lr": scheduler.get_last_lr()[0], "grad_norm": gn, **metrics}
            rows.append(row)
            bar.set_postfix(loss=f"{loss_total:.4f}", refresh=False)  # redraws follow tqdm's mininterval, not every log step
        bar.update(1)
        if done % cfg.checkpoint_every == 0 and done < steps:
            _save(accelerator, ckpt_dir, done, run_key, rows)
        if stop_after is not None and done >= stop_after:
            break
    bar.close()
    if curve_path is not None and accelerator.is_main_process:
        write_curve(curve_path, rows)
    return LoopResult(steps=steps, resumed_from=resumed_from, rows=rows)


def advance_schedule(scheduler: Any) -> None:
    """Advance the lr schedule by exactly one optimizer step, whatever the number of processes.

    accelerate's ``AcceleratedScheduler.step()`` steps the wrapped schedule num_processes
    times (unless batches are split), because it assumes every process's dataloader walked
    its own batch; here one optimizer step consumes one effective batch over all processes,
    so a plain ``step()`` would run a cosine schedule P times too fast (and back up again).
    DeepSpeed's engine steps its schedule itself in ``backward()``.
    """
    if type(scheduler).__name__ == "DeepSpeedSchedulerWrapper":
        return
    if any(getattr(o, "step_was_skipped", False) for o in getattr(scheduler, "optimizers", ())):
        return  # fp16 overflow: accelerate skips the schedule with the optimizer
    getattr(scheduler, "scheduler", scheduler).step()


def _reduce_logged(accelerator: Any, loss_local: float, agg: dict[str, float]) -> tuple[float, dict[str, float]]:
    """The step's loss summed over processes and the metrics averaged (each process's mean
    is over the same number of micro-batches, so this is the mean over all of them)."""
    if accelerator.num_processes == 1:
        return loss_local, agg
    import torch

    keys = sorted(agg)
    t = torch.tensor([loss_local] + [agg[k] for k in keys], dtype=torch.float64, device=accelerator.device)
    t = accelerator.reduce(t, reduction="sum")
    vals = t.tolist()
    return vals[0], {k: v / accelerator.num_processes for k, v in zip(keys, vals[1:])}


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
