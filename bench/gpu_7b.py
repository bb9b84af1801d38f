"""GPU check of the real student's path: Qwen2.5-VL-7B architecture in bf16 with the paper's
LoRA (r=8, alpha=32, all linear layers), random weights (no download), one SPD step and one
APO step (1 consensus + 7 teacher sequences in one forward) timed.

    python bench/gpu_7b.py --config bench/qwen2_5_vl_7b_config.json          # on a GPU
    python bench/gpu_7b.py --tiny --device cpu                                 # the same code, tiny, on CPU

Prints one JSON line of figures (recorded in bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build(args):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if args.tiny:
        from apodistill.config import load_params
        from apodistill.student import build_tiny_student, train_tokenizer

        tok = train_tokenizer(["<think>a</think> yes no"] * 20, 300)
        model = build_tiny_student(load_params(REPO / "params.yaml").spd.model, tok)
        cfg = model.config
    else:
        raw = json.load(open(args.config))
        raw.pop("_comment", None)
        cfg = Qwen2_5_VLConfig(**{k: v for k, v in raw.items() if k not in ("architectures", "model_type")})
        with torch.device(args.device):
            model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16)
    return model.to(args.device), cfg


def batch(cfg, n_seq: int, image_px: int, text_tokens: int, target_tokens: int, device: str, dtype):
    """Input ids laid out as the processor would: vision_start, image pads, vision_end, text."""
    import torch

    patch, merge, tp = 14, 2, 2
    grid = image_px // patch
    n_img_tokens = (grid // merge) ** 2
    vocab = cfg.text_config.vocab_size
    g = torch.Generator().manual_seed(0)
    text = torch.randint(10, min(vocab, 150000), (n_seq, text_tokens), generator=g)  # clear of special ids
    head = torch.tensor([cfg.vision_start_token_id] + [cfg.image_token_id] * n_img_tokens + [cfg.vision_end_token_id])
    ids = torch.cat([head.expand(n_seq, -1), text], dim=1)
    labels = torch.full_like(ids, -100)
    labels[:, -target_tokens:] = ids[:, -target_tokens:]
    pixel_values = torch.randn(n_seq * grid * grid, 3 * tp * patch * patch, generator=g)
    thw = torch.tensor([[1, grid, grid]] * n_seq)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "pixel_values": pixel_values.to(device, dtype),
        "image_grid_thw": thw.to(device),
    }, labels.to(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="bench/qwen2_5_vl_7b_config.json")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--image-px", type=int, default=448, help="448 px -> 256 visual tokens")
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()

    import torch

    from apodistill.config import load_params
    from apodistill.losses import apo_loss, sequence_logps, weighted_sft_loss
    from apodistill.student import apply_lora

    out: dict = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu", "torch": torch.__version__}
    if args.device == "cuda":
        out["bf16_supported"] = torch.cuda.is_bf16_supported()
    t0 = time.time()
    model, cfg = build(args)
    out["build_seconds"] = round(time.time() - t0, 1)
    out["parameters_b"] = round(sum(p.numel() for p in model.parameters()) / 1e9, 3)
    model = apply_lora(model, load_params(REPO / "profiles" / "qwen2.5-vl-7b.yaml").spd.lora)  # the paper's LoRA
    out["trainable_m"] = round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 2)
    model.gradient_checkpointing_enable() if not args.tiny else None
    model.enable_input_require_grads() if not args.tiny else None
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    px = args.image_px if not args.tiny else 56

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    # SPD: micro-batch 4 sequences (image + 320 text tokens, 256 supervised), as in the paper's effective batch 32 = 4 x 8 accumulation.
    inputs, labels = batch(cfg, 4, px, 320, 256, args.device, dtype)
    times = []
    for i in range(args.steps + 1):
        sync(); t = time.time()
        with torch.autocast(args.device, dtype=dtype, enabled=args.device == "cuda"):
            logits = model(**inputs).logits
        loss, _ = weighted_sft_loss(logits, labels, torch.ones(4, device=args.device))
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        sync()
        if i:
            times.append(time.time() - t)
    n_tok = inputs["input_ids"].numel()
    out["spd_step_s"] = round(sum(times) / len(times), 3)
    out["spd_tokens_per_s"] = round(n_tok / out["spd_step_s"])
    out["spd_examples_per_s"] = round(4 / out["spd_step_s"], 2)
    if args.device == "cuda":
        out["spd_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        torch.cuda.reset_peak_memory_stats()

    # APO: 1 prompt, N = 7 teachers: the chosen and 7 rejected sequences in one forward.
    inputs, labels = batch(cfg, 8, px, 320, 256, args.device, dtype)
    ref_c, ref_r = torch.zeros(1, device=args.device), torch.zeros(1, 7, device=args.device)
    times = []
    for i in range(args.steps + 1):
        sync(); t = time.time()
        with torch.autocast(args.device, dtype=dtype, enabled=args.device == "cuda"):
            logits = model(**inputs).logits
        lp = sequence_logps(logits, labels)
        loss, _ = apo_loss(lp[:1], lp[1:].unsqueeze(0), ref_c, ref_r, beta=0.1)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        sync()
        if i:
            times.append(time.time() - t)
    out["apo_step_s"] = round(sum(times) / len(times), 3)
    out["apo_prompts_per_s"] = round(1 / out["apo_step_s"], 2)
    if args.device == "cuda":
        out["apo_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
