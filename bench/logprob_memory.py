"""Peak memory of token log-probs (forward + backward) for Qwen2.5's 152k vocabulary, 4 x 578 tokens.

Two paths from the same last hidden states h (4, 578, H) and output layer W (V, H):

- ``logits``: the path training used before: ``token_logps(h @ W.T, labels)`` (the model's
  full (B, T, V) logits, then log-softmax row by row in float32);
- ``chunked``: ``linear_token_logps(h, W, labels)``: label positions only, chunk by chunk,
  recomputed in the backward pass.

On CPU each path runs in a fresh subprocess; the figure is the peak minus what was allocated before
the call (h, W and the labels are excluded): process RSS high-water mark on CPU,
``torch.cuda.max_memory_allocated`` on GPU. W is frozen (LoRA: the output layer does not
train); h requires gradients. Two label layouts: ``spd`` (the SPD step of bench/gpu_7b.py:
256 of 578 tokens supervised, the end of each row) and ``all`` (every position a label: the
chunking alone, no positions skipped).

    python bench/logprob_memory.py                       # CPU, H = 256, float32 -> bench/results/logprob_memory_cpu.json
    python bench/logprob_memory.py --device cuda --hidden 3584 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

VOCAB = 152064  # Qwen2.5-VL-7B's vocabulary (bench/qwen2_5_vl_7b_config.json)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(path: str, layout: str, args) -> dict:
    """Run one path in this process and return its peak and time."""
    import torch

    from apodistill.losses import linear_token_logps, token_logps

    dtype = getattr(torch, args.dtype)
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(args.batch, args.tokens, args.hidden, generator=g).to(dev, dtype).requires_grad_(True)
    w = (torch.randn(VOCAB, args.hidden, generator=g) / args.hidden**0.5).to(dev, dtype)
    labels = torch.randint(0, VOCAB, (args.batch, args.tokens), generator=g).to(dev)
    if layout == "spd":
        labels[:, : args.tokens - args.targets] = -100
    # warm the kernels on a small slice so one-off allocations do not count
    linear_token_logps(h[:1, -8:], w, labels[:1, -8:])[0].sum().backward()
    token_logps(h[:1, -8:] @ w.T, labels[:1, -8:])[0].sum().backward()
    h.grad = None
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_bytes()
    t0 = time.perf_counter()
    if path == "logits":
        logps, _ = token_logps(h @ w.T, labels)
    else:
        logps, _ = linear_token_logps(h, w, labels)
    logps.sum().backward()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"path": path, "layout": layout, "peak_bytes": peak - before, "seconds": round(time.perf_counter() - t0, 3),
            "check_sum": float(logps.double().sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--hidden", type=int, default=256, help="H: the logits' size does not depend on it (7B: 3584)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=578)
    ap.add_argument("--targets", type=int, default=256, help="supervised tokens per row in the spd layout")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/logprob_memory_<device>.json)")
    ap.add_argument("--_one", nargs=2, metavar=("PATH", "LAYOUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        print(json.dumps(one(*args._one, args)))
        return

    import inspect

    import torch

    from apodistill.losses import linear_token_logps

    runs = []
    for layout in ("spd", "all"):
        for path in ("logits", "chunked"):
            if args.device == "cuda":  # the allocator's peak can be reset: one process will do
                runs.append(one(path, layout, args))
                torch.cuda.empty_cache()
                continue
            cmd = [sys.executable, __file__, "--_one", path, layout, "--device", args.device, "--dtype", args.dtype,
                   "--hidden", str(args.hidden), "--batch", str(args.batch), "--tokens", str(args.tokens), "--targets", str(args.targets)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    by = {(r["layout"], r["path"]): r for r in runs}
    out = {
        "what": "peak memory of token log-probs, forward + backward, minus inputs",
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "dtype": args.dtype,
        "vocab": VOCAB,
        "batch": args.batch,
        "tokens": args.tokens,
        "hidden": args.hidden,
        "spd_targets_per_row": args.targets,
        "chunk_bytes": inspect.signature(linear_token_logps).parameters["chunk_bytes"].default,
        "full_float32_logits_bytes": args.batch * args.tokens * VOCAB * 4,
        "runs": runs,
    }
    for layout in ("spd", "all"):
        a, b = by[(layout, "logits")], by[(layout, "chunked")]
        out[f"peak_ratio_{layout}"] = round(a["peak_bytes"] / max(b["peak_bytes"], 1), 2)
        out[f"peak_gib_{layout}"] = {"logits": round(a["peak_bytes"] / 2**30, 3), "chunked": round(b["peak_bytes"] / 2**30, 3)}
        out[f"same_result_{layout}"] = abs(a["check_sum"] - b["check_sum"]) <= 1e-4 * max(1.0, abs(a["check_sum"]))
    path = Path(args.out or Path(__file__).parent / "results" / f"logprob_memory_{args.device}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
