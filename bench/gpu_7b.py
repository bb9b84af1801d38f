"""GPU check of the real student's training path: the Qwen2.5-VL-7B architecture in bf16 with
the paper's LoRA (the 7B profile's: r=8, alpha=32, the language model's linear layers, the
vision tower frozen as ms-swift does by default), random weights (nothing downloaded), SDPA
attention. Times SPD and APO steps and writes the figures as JSON.

Variants, each timed after one untimed step, peak memory per variant:
- ``before``: what bench/README.md measured first: gradient checkpointing on, the model's
  full (B, T, V) logits, then ``token_logps`` row by row in float32;
- ``after``: training's path now: no gradient checkpointing (an H200 holds the activations),
  ``apodistill.training.scoring.target_logps`` (output layer as identity, chunked log-probs on the
  label positions only);
- ``after`` with a larger micro-batch (SPD 8 sequences, APO 2 prompts): same path, more
  tokens per kernel (micro-batch x accumulation is the effective batch, so this is free
  to choose per GPU).

SPD: 4 sequences per step, each a 448 px image (256 visual tokens) + 320 text tokens, 256 of
them supervised (``weighted_sft_from_logps``). APO: 1 prompt with its consensus and 7 teacher
trajectories, 8 sequences in one forward (``apo_loss``). A short torch.profiler pass lists
the ops that take the most GPU time in the ``after`` SPD step.

    python bench/gpu_7b.py                                  # one GPU -> bench/results/gpu_7b.json
    torchrun --nproc_per_node 2 bench/gpu_7b.py --ddp        # DDP on 2 GPUs -> gpu_7b_ddp.json
    python bench/gpu_7b.py --tiny --device cpu --steps 1     # the same code, tiny model, on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
H200_BF16_DENSE_TFLOPS = 989.0  # datasheet peak (dense); the measured matmul rate is recorded beside it


def build(args):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from apodistill.student.model import ATTENTION

    if args.tiny:
        from apodistill.config import load_params
        from apodistill.student import build_tiny_student, train_tokenizer

        tok = train_tokenizer(["<think>a</think> yes no"] * 20, 300)
        model = build_tiny_student(load_params(REPO / "params.yaml").spd.model, tok)  # the embedded default's tiny student
    else:
        raw = json.loads(Path(args.config).read_text())
        raw.pop("_comment", None)
        cfg = Qwen2_5_VLConfig(**{k: v for k, v in raw.items() if k not in ("architectures", "model_type")})
        with torch.device(args.device):
            model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16, attn_implementation=ATTENTION)
    return model.to(args.device)


def make_batch(cfg, n_seq: int, image_px: int, text_tokens: int, target_tokens: int, device: str, dtype):
    """An ``Encoded`` batch laid out as the processor would: vision_start, image pads, vision_end, text."""
    import torch

    from apodistill.student import Encoded

    patch, merge, tp = 14, 2, 2
    grid = image_px // patch
    n_img_tokens = (grid // merge) ** 2
    vocab = cfg.text_config.vocab_size
    g = torch.Generator().manual_seed(0)
    special = {cfg.vision_start_token_id, cfg.vision_end_token_id, cfg.image_token_id, cfg.video_token_id}
    text = torch.randint(10, min(vocab, 150000), (n_seq, text_tokens), generator=g)
    for s in special:  # clear of special ids (the tiny vocabulary has them low)
        text[text == s] = 10 + (s % 7) if 10 + (s % 7) not in special else 9
    head = torch.tensor([cfg.vision_start_token_id] + [cfg.image_token_id] * n_img_tokens + [cfg.vision_end_token_id])
    ids = torch.cat([head.expand(n_seq, -1), text], dim=1)
    labels = torch.full_like(ids, -100)
    labels[:, -target_tokens:] = ids[:, -target_tokens:]
    pixel_values = torch.randn(n_seq * grid * grid, 3 * tp * patch * patch, generator=g)
    thw = torch.tensor([[1, grid, grid]] * n_seq)
    return Encoded(ids, torch.ones_like(ids), labels, pixel_values.to(dtype), thw).to(device)


def step_fn(kind: str, path: str, model, enc, opt, n_prompts: int):
    """One optimizer step of SPD (``kind='spd'``) or APO on ``enc``, by the ``before`` or ``after`` path."""
    import torch

    from apodistill.losses import apo_loss, token_logps, weighted_sft_from_logps
    from apodistill.training.scoring import target_logps

    def run():
        if path == "before":
            logps, mask = token_logps(model(**enc.model_inputs()).logits, enc.labels)
        else:
            logps, mask = target_logps(model, enc)
        if kind == "spd":
            w = torch.ones(enc.input_ids.shape[0], device=logps.device)
            loss, _ = weighted_sft_from_logps(logps, mask, w)
        else:
            seq = logps.sum(1).view(n_prompts, -1)  # per prompt: chosen, then 7 rejected
            zeros = torch.zeros_like(seq)
            loss, _ = apo_loss(seq[:, 0], seq[:, 1:], zeros[:, 0], zeros[:, 1:], beta=0.1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return run


def set_checkpointing(model, on: bool) -> None:
    if on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    else:
        model.gradient_checkpointing_disable()
        model.disable_input_require_grads()


def timed(run, steps: int, device: str) -> dict:
    import torch

    cuda = device.startswith("cuda")
    run()  # untimed: first-call costs
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        run()
    if cuda:
        torch.cuda.synchronize()
    out = {"step_s": round((time.perf_counter() - t0) / steps, 4)}
    if cuda:
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def matmul_tflops(device: str) -> float | None:
    """Measured bf16 matmul rate (8192^3, mean of 10 after 3 warm-ups): the practical ceiling."""
    import torch

    if not device.startswith("cuda"):
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return round(2 * 8192**3 * 10 / (time.perf_counter() - t0) / 1e12, 1)


def profile_top(run, device: str, k: int = 25) -> list[dict]:
    """The ops that take the most device time in two steps (self time, as torch.profiler counts it)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=acts) as prof:
        for _ in range(2):
            run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    attr = "self_device_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, attr, 0), reverse=True)[:k]
    return [{"op": e.key[:80], "calls": e.count, "ms_per_step": round(getattr(e, attr, 0) / 1000 / 2, 2)} for e in events]


def write(out: dict, args, main_proc: bool) -> None:
    if not main_proc:
        return
    name = "gpu_7b" + ("_ddp" if args.ddp else "") + ("_tiny" if args.tiny else "")
    path = Path(args.out or Path(__file__).parent / "results" / f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="bench/qwen2_5_vl_7b_config.json")
    ap.add_argument("--tiny", action="store_true", help="tiny student, for a CPU run of the same code")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--image-px", type=int, default=448, help="448 px -> 256 visual tokens")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per variant")
    ap.add_argument("--ddp", action="store_true", help="under torchrun: DDP over the processes (the after path only)")
    ap.add_argument("--skip-before", action="store_true", help="do not time the before path")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/gpu_7b[_ddp][_tiny].json)")
    args = ap.parse_args()

    import torch

    from apodistill.config import load_params
    from apodistill.student import apply_lora

    acc = None
    if args.ddp:
        from accelerate import Accelerator

        acc = Accelerator(cpu=args.device == "cpu")
        args.device = str(acc.device)
    main_proc = acc is None or acc.is_main_process
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    out: dict = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "gpus": torch.cuda.device_count() if cuda else 0,
        "processes": acc.num_processes if acc else 1,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "model": "tiny" if args.tiny else "Qwen2.5-VL-7B architecture (bench/qwen2_5_vl_7b_config.json), random weights",
        "dtype": str(dtype).replace("torch.", ""),
    }
    t0 = time.time()
    model = build(args)
    out["attention"] = model.config._attn_implementation
    out["build_s"] = round(time.time() - t0, 1)
    out["parameters_b"] = round(sum(p.numel() for p in model.parameters()) / 1e9, 3)
    lora = load_params(REPO / "profiles" / "qwen2.5-vl-7b.yaml").spd.lora  # the paper's LoRA
    out["lora"] = lora.model_dump(mode="json")
    model = apply_lora(model, lora)
    out["trainable_m"] = round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 2)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if acc is not None:
        model, opt = acc.prepare(model, opt)
    cfg = (model.module if hasattr(model, "module") else model).config
    px = args.image_px if not args.tiny else 56
    out["matmul_bf16_tflops_measured"] = matmul_tflops(args.device) if main_proc else None

    plan = [  # (name, kind, prompts, sequences, path, checkpointing)
        ("spd_before", "spd", 1, 4, "before", True),
        ("spd_after", "spd", 1, 4, "after", False),
        ("spd_after_mb8", "spd", 1, 8, "after", False),
        ("spd_after_mb16", "spd", 1, 16, "after", False),
        ("apo_before", "apo", 1, 8, "before", True),
        ("apo_after", "apo", 1, 8, "after", False),
        ("apo_after_2prompts", "apo", 2, 16, "after", False),
    ]
    if args.ddp or args.skip_before:
        plan = [p for p in plan if p[4] == "after"]
    results = {}
    n_params = out["parameters_b"] * 1e9
    for name, kind, prompts, seqs, path, ckpt in plan:
        set_checkpointing(model.module if hasattr(model, "module") else model, ckpt)
        enc = make_batch(cfg, seqs, px, 320, 256, args.device, dtype)
        run = step_fn(kind, path, model, enc, opt, prompts)
        try:
            r = timed(run, args.steps, args.device)
        except torch.cuda.OutOfMemoryError as err:  # a larger micro-batch may not fit: record it and go on
            opt.zero_grad(set_to_none=True)
            results[name] = {"error": f"out of memory: {str(err)[:200]}"}
            del enc, run
            torch.cuda.empty_cache()
            continue
        tokens = enc.input_ids.numel() * out["processes"]
        r.update(sequences=seqs * out["processes"], tokens_per_step=tokens, tokens_per_s=round(tokens / r["step_s"]))
        if kind == "apo":
            r["prompts_per_s"] = round(prompts * out["processes"] / r["step_s"], 3)
        # model FLOPs: 6 x parameters x tokens per step (PaLM's MFU convention; LoRA's own arithmetic is ~4/6 of it)
        r["mfu_6n_vs_datasheet"] = round(6 * n_params * tokens / r["step_s"] / (H200_BF16_DENSE_TFLOPS * 1e12) / out["processes"], 3)
        results[name] = r
        out["variants"] = results
        write(out, args, main_proc)  # after every variant: a part killed at its time limit keeps what it measured
        del enc, run
        if cuda:
            torch.cuda.empty_cache()
    if "step_s" in results.get("spd_before", {}) and "step_s" in results.get("apo_before", {}):
        out["spd_speedup_after_vs_before"] = round(results["spd_before"]["step_s"] / results["spd_after"]["step_s"], 2)
        out["apo_speedup_after_vs_before"] = round(results["apo_before"]["step_s"] / results["apo_after"]["step_s"], 2)
    out["goals"] = {
        "spd_tokens_per_s_goal": 4 * 1199,
        "spd_best_tokens_per_s": max((v["tokens_per_s"] for k, v in results.items() if k.startswith("spd_after") and "error" not in v), default=None),
        "apo_prompts_per_s_goal": round(3 * 0.36, 2),
        "apo_best_prompts_per_s": max((v["prompts_per_s"] for k, v in results.items() if k.startswith("apo_after") and "error" not in v), default=None),
    }
    best = max((v.get("mfu_6n_vs_datasheet", 0) for k, v in results.items() if k.startswith("spd_after")), default=None)
    out["goals"]["spd_best_mfu_6n_vs_datasheet"] = best  # stretch goal: >= 0.35
    if not args.ddp:
        set_checkpointing(model, False)
        enc = make_batch(cfg, 4, px, 320, 256, args.device, dtype)
        out["profile_spd_after"] = profile_top(step_fn("spd", "after", model, enc, opt, 1), args.device)
    write(out, args, main_proc)
    if main_proc:
        print(json.dumps({k: v for k, v in out.items() if k != "profile_spd_after"}, indent=2))
    if acc is not None:
        acc.wait_for_everyone()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
