"""Stage 1, supervised pre-distillation (SPD, "learn").

With black-box teachers, argmin_q sum_u w_u KL(pi_u || q) is fine-tuning on the pooled
teacher trajectories with each teacher's examples weighted by w_u (docs/method.md, stage 1).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

import numpy as np
import pandas as pd

from apodistill.config.train import SpdConfig
from apodistill.consensus import format_context, vote
from apodistill.training.data import (
    Example,
    ImageStore,
    consensus_prompt,
    group_answers,
    images_for,
    key_of,
    study_images,
    task_prompt,
)
from apodistill.training.loop import StepOutput, batch_plan, make_optimizer, prepare, total_steps, train_loop


def build_examples(
    trajectories: pd.DataFrame,
    studies: pd.DataFrame,
    weights: dict[str, float],
    findings: Sequence[str],
    roster: Sequence[str],
    templates_dir: str,
    consensus_fraction: float,
    context: str,
    seed: int,
) -> tuple[list[Example], dict[str, int]]:
    """Pooled teacher examples (weight w_u) plus, optionally, consensus-format examples."""
    image_of = study_images(studies)
    prompts = {task: task_prompt(templates_dir, task, findings) for task in trajectories["task"].unique()}
    examples = [
        Example(images_for(key_of(r), image_of), prompts[r.task], r.text, float(weights[r.teacher]))
        for r in trajectories.itertuples(index=False)
    ]
    counts = {f"examples.{t}": int(n) for t, n in trajectories["teacher"].value_counts().sort_index().items()}
    if consensus_fraction > 0:
        groups = [(k, a) for k, a in sorted(group_answers(trajectories, findings, roster).items(), key=lambda kv: str(kv[0])) if len(a) >= 2]
        n_cons = int(round(consensus_fraction / (1 - consensus_fraction) * len(examples)))
        rng = np.random.default_rng(seed)
        for gi in rng.integers(0, len(groups), size=n_cons):
            key, answers = groups[gi]
            order = rng.permutation(len(answers))
            shown = [answers[i] for i in order]
            target = vote(shown, weights, findings, key[0]).text
            prompt = consensus_prompt(templates_dir, key[0], findings, format_context(shown, findings, context))
            examples.append(Example(images_for(key, image_of), prompt, target, 1.0, group=1))
        counts["examples.consensus_format"] = n_cons
    counts["examples.total"] = len(examples)
    return examples, counts


def tokenizer_corpus(examples: Sequence[Example]) -> list[str]:
    seen: set[str] = set()
    out = []
    for ex in examples:
        for t in (ex.prompt, ex.target):
            if t not in seen:
                seen.add(t)
                out.append(t)
    return out


def prepare_student(cfg: SpdConfig, corpus: Sequence[str], seed: int) -> tuple[Any, Any, str | None]:
    """(model, processor, base reference) before SPD: tiny from config, or pretrained; LoRA if enabled."""
    from apodistill.student import apply_lora, build_processor, build_tiny_student, load_pretrained, train_tokenizer

    if cfg.base_model is None:
        tok = train_tokenizer(corpus, cfg.model.vocab_size)
        processor = build_processor(tok, cfg.image_size)
        model = build_tiny_student(cfg.model, tok, seed=seed)
        base = None
    else:
        model, processor = load_pretrained(cfg.base_model)
        base = cfg.base_model
    if cfg.lora.enabled:
        model = apply_lora(model, cfg.lora)
    return model, processor, base


class SftSteps:
    """Step and unit functions for weighted SFT over a list of examples (encodings memoised per window)."""

    def __init__(self, examples: Sequence[Example], images: ImageStore, processor: Any, max_length: int, device: Any):
        self.examples = examples
        self.images = images
        self.processor = processor
        self.max_length = max_length
        self.device = device
        self._memo: dict[tuple[int, ...], Any] = {}

    def _encode(self, idx: list[int]):
        from apodistill.student import encode

        key = tuple(idx)
        if key not in self._memo:
            if len(self._memo) > 64:
                self._memo.clear()
            exs = [self.examples[i] for i in idx]
            self._memo[key] = encode(self.processor, self.images.batch(exs), [e.prompt for e in exs], [e.target for e in exs], self.max_length)
        return self._memo[key]

    def units(self, idx: list[int]) -> float:
        enc = self._encode(idx)
        n = (enc.labels[:, 1:] != -100).sum(dim=1).float()
        w = np.array([self.examples[i].weight for i in idx], dtype=np.float32)
        return float((n.numpy() * w).sum())

    def step(self, model: Any, idx: list[int]) -> StepOutput:
        import torch

        from apodistill.losses import weighted_sft_from_logps
        from apodistill.training.scoring import target_logps

        enc = self._memo.pop(tuple(idx), None) or self._encode(idx)
        enc = enc.to(self.device)
        logps, mask = target_logps(model, enc)
        w = torch.tensor([self.examples[i].weight for i in idx], dtype=torch.float32, device=logps.device)
        loss_sum, m = weighted_sft_from_logps(logps, mask, w, normalizer=1.0)
        return StepOutput(loss_sum, float(m["weighted_tokens"]), {"ce": float(m["ce"])})


def run_key(cfg: SpdConfig, examples: Sequence[Example], seed: int, processes: int = 1) -> str:
    """Checkpoints resume only under the same config, data, seed and number of processes (the
    plan's steps and the per-process RNG states depend on it)."""
    h = hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode())
    h.update(str(seed).encode())
    if processes != 1:
        h.update(f"processes={processes}".encode())
    for ex in examples:
        h.update(repr((ex.images, ex.prompt, ex.target, ex.weight)).encode())
    return h.hexdigest()[:16]


def train_spd(
    cfg: SpdConfig,
    examples: Sequence[Example],
    images: ImageStore,
    accelerator: Any,
    ckpt_dir: str,
    curve_path: str | None,
    seed: int,
    stop_after: int | None = None,
):
    """Build the student and train it; returns (unwrapped model, processor, base ref, loop result)."""
    model, processor, base = prepare_student(cfg, tokenizer_corpus(examples), seed)
    processes = accelerator.num_processes
    steps = total_steps(len(examples), cfg.optim, processes)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt, sched = make_optimizer(trainable, cfg.optim, steps)
    model, opt, sched = prepare(accelerator, model, opt, sched, cfg.optim)
    sft = SftSteps(examples, images, processor, cfg.max_length, accelerator.device)
    result = train_loop(
        accelerator=accelerator,
        model=model,
        optimizer=opt,
        scheduler=sched,
        plan=batch_plan(
            len(examples), cfg.optim, seed, groups=[int(e.group) for e in examples], processes=processes,
            lengths=[len(e.prompt) + len(e.target) for e in examples],  # characters: a proxy of tokens
        ),
        units_fn=sft.units,
        step_fn=sft.step,
        cfg=cfg.optim,
        ckpt_dir=ckpt_dir,
        run_key=run_key(cfg, examples, seed, processes),
        curve_path=curve_path,
        desc="spd",
        stop_after=stop_after,
    )
    return accelerator.unwrap_model(model), processor, base, result


def run_spd_stage(st: Any, args: Any, trajectories_file: str, extra_metrics: dict[str, float] | None = None) -> int:
    """The body of the `spd` and `control` stages: the same settings (``spd:``) and code, only the
    trajectories differ (the control arm reads the label-conditioned ones). ``st`` is the stage's
    `apodistill.stage.Stage`; ``args`` its parsed flags (benchmark, trajectories, templates, out,
    checkpoints, metrics, curve). Trains on every process; the main process saves the student,
    its provenance (with the effective batch), the metrics, the curve and the MLflow run, then
    clears the checkpoints. Metric keys are prefixed with the stage's name."""
    import time
    from pathlib import Path

    from apodistill.stage import make_accelerator, read_weights
    from apodistill.student import save_student
    from apodistill.training.loop import batch_record, clear_checkpoints

    name, params = st.name, st.params
    cfg, base = params.spd, params.base
    accelerator = make_accelerator(cfg.optim.bf16)

    # data
    studies = pd.read_parquet(Path(args.benchmark) / "studies.parquet")
    traj = pd.read_parquet(Path(args.trajectories) / trajectories_file)
    traj = traj[traj["split"] == "train"].reset_index(drop=True)
    examples, counts = build_examples(
        traj, studies, read_weights(args.trajectories), base.findings, params.teachers.names(), args.templates,
        cfg.consensus_fraction, params.self_distill.context, base.seed,
    )  # fmt: skip
    images = ImageStore(args.benchmark, cfg.image_size)

    # work
    t0 = time.time()
    model, processor, base_ref, result = train_spd(cfg, examples, images, accelerator, args.checkpoints, args.curve, base.seed)
    seconds = round(time.time() - t0, 1)
    if not accelerator.is_main_process:
        return 0

    # save
    save_student(model, processor, args.out, base=base_ref, extra={"stage": name, "image_size": cfg.image_size, "max_length": cfg.max_length})
    batch = batch_record(accelerator, cfg.optim)  # processes x micro-batch x accumulation
    st.save(args.out, **batch)
    st.note(resumed_from_step=result.resumed_from)
    last = result.rows[-1] if result.rows else {}
    metrics = {
        **(extra_metrics or {}),
        f"{name}.steps": result.steps,
        f"{name}.final_loss": float(last.get("loss", float("nan"))),
        f"{name}.train_seconds": seconds,
        f"{name}.parameters": int(sum(p.numel() for p in model.parameters())),
        **{f"{name}.{k}": v for k, v in counts.items()},
        **{f"{name}.{k}": v for k, v in batch.items()},
    }

    # log
    st.finish(metrics, args.metrics, curves={f"{name}.curve": result.rows})
    clear_checkpoints(args.checkpoints)
    return 0
