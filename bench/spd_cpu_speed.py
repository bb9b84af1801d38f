"""SPD optimizer steps per second of the default tiny student on CPU: the scoring path training
used before against the current one, with and without length-grouped batches and torch.compile.

Variants (each its own model from the same seed, optimizer and seeded plan):
- ``logits``: the model's full (B, T, V) logits, then ``weighted_sft_loss`` (training before);
- ``chunked``: ``SftSteps`` as trained now (``target_logps``: label positions only);
- ``chunked+length``: the same with ``optim.group_by_length`` (less padding);
- ``chunked+compile`` (``--compile``): the model through ``torch.compile(dynamic=True)``.

The variants run in turn, a block of steps each (A B C A B C ...), so a machine whose speed
drifts slows all of them alike. Each step is timed in wall seconds and in this process's CPU
seconds; on a shared, loaded machine the CPU-time ratios against ``logits`` with one thread
(``--threads 1``: no spinning worker threads) are the figures to quote: they count the work,
not the waiting. Needs the default data: ``dvc repro validate`` first.

    python bench/spd_cpu_speed.py                      # -> bench/results/spd_cpu_speed.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def load_examples(params_file: str, benchmark: str, validated: str, templates: str):
    import pandas as pd

    from apodistill.config import load_params
    from apodistill.stage import read_weights
    from apodistill.training.spd import build_examples

    p = load_params(params_file)
    studies = pd.read_parquet(Path(benchmark) / "studies.parquet")
    traj = pd.read_parquet(Path(validated) / "trajectories.parquet")
    traj = traj[traj["split"] == "train"].reset_index(drop=True)
    examples, _ = build_examples(traj, studies, read_weights(validated), p.base.findings, p.teachers.names(), templates,
                                 p.spd.consensus_fraction, p.self_distill.context, p.base.seed)
    return p, examples


class LogitsSteps:
    """The step SPD trained with before: full logits, then token_logps row by row."""

    def __init__(self, sft):
        self.sft = sft
        self.units = sft.units

    def step(self, model, idx):
        import torch

        from apodistill.losses import weighted_sft_loss
        from apodistill.training.loop import StepOutput

        sft = self.sft
        enc = (sft._memo.pop(tuple(idx), None) or sft._encode(idx)).to(sft.device)
        logits = model(**enc.model_inputs()).logits
        w = torch.tensor([sft.examples[i].weight for i in idx], dtype=torch.float32)
        loss_sum, m = weighted_sft_loss(logits, enc.labels, w, normalizer=1.0)
        return StepOutput(loss_sum, float(m["weighted_tokens"]), {"ce": float(m["ce"])})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--benchmark", default="data/benchmark")
    ap.add_argument("--validated", default="data/validated")
    ap.add_argument("--templates", default="templates/student")
    ap.add_argument("--steps", type=int, default=60, help="timed steps per variant")
    ap.add_argument("--block", type=int, default=10, help="steps per turn")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (accelerate launch gives the cpu config one per core)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(dynamic=True)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "spd_cpu_speed.json"))
    args = ap.parse_args()

    import numpy as np
    import torch

    from apodistill.training.data import ImageStore
    from apodistill.training.loop import batch_plan, make_optimizer
    from apodistill.training.spd import SftSteps, prepare_student, tokenizer_corpus

    torch.set_num_threads(args.threads)
    params, examples = load_examples(args.params, args.benchmark, args.validated, args.templates)
    cfg = params.spd
    images = ImageStore(args.benchmark, cfg.image_size)
    corpus = tokenizer_corpus(examples)
    groups = [int(e.group) for e in examples]
    lengths = [len(e.prompt) + len(e.target) for e in examples]
    names = ["logits", "chunked", "chunked+length"] + (["chunked+compile"] if args.compile else [])
    runs = {}
    for name in names:
        model, processor, _ = prepare_student(cfg, corpus, params.base.seed)
        optim = cfg.optim.model_copy(update={"group_by_length": name.endswith("+length")})
        opt, _ = make_optimizer(list(model.parameters()), optim, optim.steps)
        sft = SftSteps(examples, images, processor, cfg.max_length, "cpu")
        steps = LogitsSteps(sft) if name == "logits" else sft
        if name.endswith("+compile"):
            model = torch.compile(model, dynamic=True)
        plan = batch_plan(len(examples), optim, params.base.seed, groups=groups, lengths=lengths)
        runs[name] = {"model": model, "opt": opt, "steps": steps, "plan": plan, "next": 0, "seconds": 0.0,
                      "timed": 0, "tokens": 0, "slots": 0, "first_s": None, "cpu_seconds": 0.0}

    def one(r, timed: bool):
        mb = r["plan"][r["next"]][0]
        r["next"] += 1
        t0, c0 = time.perf_counter(), time.process_time()
        units = r["steps"].units(mb)
        enc = r["steps"].sft._memo[tuple(mb)] if isinstance(r["steps"], LogitsSteps) else r["steps"]._memo[tuple(mb)]
        out = r["steps"].step(r["model"], mb)
        (out.loss_sum / units).backward()
        torch.nn.utils.clip_grad_norm_(r["model"].parameters(), cfg.optim.max_grad_norm)
        r["opt"].step()
        r["opt"].zero_grad(set_to_none=True)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if r["first_s"] is None:
            r["first_s"] = dt
        if timed:
            r["seconds"] += dt
            r["cpu_seconds"] += dc
            r["timed"] += 1
            r["tokens"] += int(enc.attention_mask.sum())
            r["slots"] += enc.attention_mask.numel()

    for r in runs.values():
        for _ in range(args.warmup):
            one(r, False)
    while any(r["timed"] < args.steps for r in runs.values()):
        for r in runs.values():
            for _ in range(min(args.block, args.steps - r["timed"])):
                one(r, True)
    base = runs["logits"]["timed"] / runs["logits"]["seconds"]
    base_cpu = runs["logits"]["cpu_seconds"] / runs["logits"]["timed"]
    out = {
        "what": "SPD optimizer steps/s, default tiny student (params.yaml spd), CPU, variants run in turn",
        "threads": args.threads,
        "micro_batch": cfg.optim.batch_size,
        "timed_steps_per_variant": args.steps,
        "load_average_at_end": list(np.round(__import__("os").getloadavg(), 2)),
        "variants": {
            n: {
                "steps_per_s": round(r["timed"] / r["seconds"], 3),
                "ratio_vs_logits": round(r["timed"] / r["seconds"] / base, 3),
                "cpu_s_per_step": round(r["cpu_seconds"] / r["timed"], 3),
                "cpu_time_ratio_vs_logits": round(base_cpu / (r["cpu_seconds"] / r["timed"]), 3),
                "padding_share": round(1 - r["tokens"] / r["slots"], 3),
                "first_step_s": round(r["first_s"], 2),
            }
            for n, r in runs.items()
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
