"""Our APO step versus TRL's DPOTrainer: prompts per second, same tiny model and data.

Each prompt has one chosen (consensus) and N = 7 rejected (teacher) trajectories. Ours
(`apodistill.training.apo.train_apo`) scores the 8 candidates of a prompt in one batched
forward and reads cached reference log-probs; TRL gets the same data expanded into 7
(chosen, rejected) pairs, so per prompt its policy scores 14 sequences with gradients and
its reference model 14 more (TRL refuses precomputed reference log-probs for vision data).
Both run full fine-tuning in float32 with the same optimizer batch in prompts (TRL:
7 x prompts pairs per step), no gradient checkpointing, no checkpoint saving.

Timing: each side trains once for 1 step to warm the process (untimed), then for `--warmup`
and `--warmup + --steps` steps; the rate is the extra prompts over the extra wall time, so
model loading, accelerator/Trainer set-up and first-step costs cancel. Our one-off reference pass (stored by DVC and reused by every
experiment that changes only beta or the lr) is timed too and reported amortised over one
epoch of the benchmark data.

With ``--model-config bench/qwen2_5_vl_7b_config.json --lora --bf16`` both sides train the
Qwen2.5-VL-7B architecture (random weights, bf16) with the paper's LoRA (r=8, alpha=32, all
linear layers); TRL then uses the policy with its adapters disabled as the reference (its
``peft_config`` path), we use our cached reference pass as always. The 7B model is built once
and kept in memory: every "load the saved student" of either side gets a fresh copy of it
(reading 16 GB from disk ten times would dominate the timing).

    .venv/bin/python bench/apo_vs_trl.py                      # CPU (a few minutes on 2 cores)
    .venv/bin/python bench/apo_vs_trl.py --device cuda --steps 20
    python bench/apo_vs_trl.py --device cuda --model-config bench/qwen2_5_vl_7b_config.json --lora --bf16 \
        --image-size 448 --max-length 640 --prompts-per-step 1 --warmup 2 --steps 6
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
N_NEGATIVES = 7
WORDS = (
    "the costophrenic angles are sharp blunted opacity lower zone left right lobe hilar vascular "
    "markings cardiac silhouette size normal enlarged no focal airspace consolidation is seen pleural "
    "line visible interstitial haze diffuse bilateral apical lucency compared with prior unchanged "
    "increased decreased small moderate large effusion edema pneumothorax pneumonia finding suggests"
).split()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts-per-step", type=int, default=4, help="Prompts per optimizer step (TRL: x7 pairs).")
    p.add_argument("--warmup", type=int, default=2, help="Steps of the short run (its cost is subtracted).")
    p.add_argument("--steps", type=int, default=24, help="Extra steps of the long run that are timed (short runs are noisy on CPU).")
    p.add_argument("--think-words", type=int, default=40, help="Words of reasoning per trajectory.")
    p.add_argument("--max-length", type=int, default=384, help="Tokens per sequence (no truncation at the default).")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--templates", default="templates/student", help="Student prompt templates folder.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="Also write the result here.")
    p.add_argument("--model-config", default=None, help="A Qwen2.5-VL config JSON (e.g. the 7B's) instead of the tiny student.")
    p.add_argument("--lora", action="store_true", help="Both sides train the paper's LoRA (r=8, alpha=32, all-linear).")
    p.add_argument("--bf16", action="store_true", help="bf16 (the model in bf16, autocast on both sides).")
    p.add_argument("--image-size", type=int, default=64, help="Image side in px (64 -> 4 visual tokens, 448 -> 256).")
    return p.parse_args()


_IN_MEMORY: dict = {}


def load(folder: Path):
    """(model, processor) of the saved start student: from disk, or a fresh copy of the in-memory one."""
    import copy

    from apodistill.student import load_student

    if "model" in _IN_MEMORY:
        return copy.deepcopy(_IN_MEMORY["model"]), _IN_MEMORY["processor"]
    return load_student(folder)


def build_big(args: argparse.Namespace, tokenizer):
    """The architecture of --model-config with random weights, its special ids set to the tokenizer's."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from apodistill.student.model import ATTENTION

    raw = json.loads(Path(args.model_config).read_text())
    raw.pop("_comment", None)
    ids = {k: tokenizer.convert_tokens_to_ids(t) for k, t in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                                                              ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    raw.update(ids)
    cfg = Qwen2_5_VLConfig(**{k: v for k, v in raw.items() if k not in ("architectures", "model_type")})
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    with torch.device(args.device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=dtype, attn_implementation=ATTENTION)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_world(args: argparse.Namespace, root: Path):
    """Tiny student saved as the reference/policy start, images on disk, candidate sets."""
    import numpy as np
    from PIL import Image

    from apodistill.config import load_params
    from apodistill.findings import MS_CXR_T_5, SINGLE_VALUES, format_trajectory
    from apodistill.student import build_processor, build_tiny_student, save_student, train_tokenizer
    from apodistill.training.apo import CandidateSet
    from apodistill.training.data import task_prompt

    rng = random.Random(args.seed)
    n_prompts = args.prompts_per_step * (args.warmup + args.steps)

    def trajectory() -> str:
        think = " ".join(rng.choice(WORDS) for _ in range(args.think_words)) + "."
        return format_trajectory(think, {f: rng.choice(SINGLE_VALUES) for f in MS_CXR_T_5}, MS_CXR_T_5)

    prompt = task_prompt(args.templates, "single", MS_CXR_T_5)
    (root / "img").mkdir(parents=True)
    sets, corpus = [], [prompt]
    for i in range(n_prompts):
        pixels = np.random.default_rng(args.seed + i).integers(0, 256, (args.image_size, args.image_size), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(root / "img" / f"{i}.png")
        chosen, rejected = trajectory(), tuple(trajectory() for _ in range(N_NEGATIVES))
        corpus += [chosen, *rejected]
        sets.append(CandidateSet(("single", f"s{i}", None), (f"img/{i}.png",), prompt, chosen, rejected, (True,) * N_NEGATIVES, (1.0,) * N_NEGATIVES))
    dims = load_params(REPO / "params.yaml").spd.model  # the embedded default's tiny student
    tokenizer = train_tokenizer(corpus, dims.vocab_size)
    processor = build_processor(tokenizer, args.image_size)
    save_student(build_tiny_student(dims, tokenizer, seed=args.seed), processor, root / "ref")
    if args.model_config:  # the folder above stays: its files are what the reference cache key hashes
        _IN_MEMORY.update(model=build_big(args, tokenizer), processor=processor)
        import apodistill.student

        apodistill.student.load_student = lambda folder, **kw: load(Path(folder))  # train_apo / reference_logps load through it
    return sets


def time_ours(args: argparse.Namespace, root: Path, sets) -> dict:
    from accelerate import Accelerator

    from apodistill.config import load_params, with_overrides
    from apodistill.training.apo import reference_logps, train_apo
    from apodistill.training.data import ImageStore

    images = ImageStore(root, args.image_size)
    # LoRA: the paper's (the 7B profile's); otherwise full fine-tuning
    lora = load_params(REPO / "profiles" / "qwen2.5-vl-7b.yaml").apo.lora.model_dump() if args.lora else {"enabled": False}
    # Untimed pass on one batch first: the timed pass should not pay the process's first-call costs.
    reference_logps(root / "ref", sets[: args.prompts_per_step], images, root / "refwarm", args.max_length, args.prompts_per_step, args.device)
    t0 = time.perf_counter()
    ref_c, ref_r, _ = reference_logps(root / "ref", sets, images, root / "refcache", args.max_length, args.prompts_per_step, args.device)
    ref_s = time.perf_counter() - t0
    walls = []
    for run, steps in enumerate((1, args.warmup, args.warmup + args.steps)):
        optim = dict(lr=5e-7, steps=steps, batch_size=args.prompts_per_step, grad_accum=1, warmup_ratio=0.0, checkpoint_every=10**6,
                     log_every=10**6, bf16=args.bf16)
        cfg = with_overrides(load_params(REPO / "params.yaml"), {"apo": {"beta": 0.1, "loss": "plackett_luce", "max_length": args.max_length,
                                                                        "lora": lora, "optim": optim}}).apo  # fmt: skip
        acc = Accelerator(cpu=args.device == "cpu", mixed_precision="bf16" if args.bf16 else "no")
        t0 = time.perf_counter()
        train_apo(cfg, sets, ref_c, ref_r, root / "ref", images, acc, str(root / f"ckpt{run}"), None, args.seed, "bench")
        walls.append(time.perf_counter() - t0)
        _free(args)
    walls = walls[1:]  # the first run only warms the process (lazy imports, allocator)
    rate = args.prompts_per_step * args.steps / (walls[1] - walls[0])
    ref_per_prompt = ref_s / len(sets)
    return {"prompts_per_s": rate, "ref_pass_s": ref_s, "prompts_per_s_with_ref_pass": 1 / (1 / rate + ref_per_prompt), "walls_s": walls}


def trl_rows(sets, images):
    return [
        {
            "images": [images.get(s.images[0])],
            "prompt": [{"role": "user", "content": s.prompt}],
            "chosen": [{"role": "assistant", "content": s.chosen}],
            "rejected": [{"role": "assistant", "content": r}],
        }
        for s in sets
        for r in s.rejected
    ]


def time_trl(args: argparse.Namespace, root: Path, sets) -> dict:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from apodistill.training.data import ImageStore

    images = ImageStore(root, args.image_size)
    data = Dataset.from_list(trl_rows(sets, images))
    walls, tokens = [], None
    peft_config = None
    if args.lora:  # the same adapters as ours: the 7B profile's (the paper's)
        from peft import LoraConfig

        from apodistill.config import load_params

        lo = load_params(REPO / "profiles" / "qwen2.5-vl-7b.yaml").apo.lora
        from apodistill.student.model import VISION_MODULES

        peft_config = LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_modules, task_type="CAUSAL_LM",
                                 exclude_modules=None if lo.vision else VISION_MODULES)  # fmt: skip
    for run, steps in enumerate((1, args.warmup, args.warmup + args.steps)):
        policy, processor = load(root / "ref")
        ref = None if args.lora else load(root / "ref")[0]  # LoRA: TRL's reference is the policy with adapters off
        cfg = DPOConfig(
            output_dir=str(root / f"trl{run}"),
            per_device_train_batch_size=N_NEGATIVES * args.prompts_per_step,
            gradient_accumulation_steps=1,
            max_steps=steps,
            learning_rate=5e-7,
            lr_scheduler_type="constant",
            beta=0.1,
            loss_type=["sigmoid"],
            max_length=args.max_length,
            bf16=args.bf16,
            use_cpu=args.device == "cpu",
            gradient_checkpointing=False,
            save_strategy="no",
            logging_steps=10**6,
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=args.seed,
        )
        trainer = DPOTrainer(model=policy, ref_model=ref, args=cfg, train_dataset=data, processing_class=processor, peft_config=peft_config)
        if tokens is None:  # what TRL actually feeds, to check both sides score the same lengths
            batch = trainer.data_collator([dict(r) for r in trl_rows(sets[:1], images)])
            tokens = float(batch["attention_mask"].sum(1).float().mean())
        t0 = time.perf_counter()
        trainer.train()
        walls.append(time.perf_counter() - t0)
        del trainer, policy, ref
        _free(args)
    walls = walls[1:]
    return {"prompts_per_s": args.prompts_per_step * args.steps / (walls[1] - walls[0]), "walls_s": walls, "tokens_per_sequence": tokens}


def _free(args: argparse.Namespace) -> None:
    import gc

    gc.collect()
    if args.device == "cuda":
        import torch

        torch.cuda.empty_cache()


def ours_tokens(sets, root: Path, args: argparse.Namespace) -> float:
    from apodistill.student import encode
    from apodistill.student.model import processor_from
    from apodistill.training.data import ImageStore

    processor = processor_from(root / "ref")
    s = sets[0]
    images = ImageStore(root, args.image_size)
    texts = [s.chosen, *s.rejected]
    enc = encode(processor, [[images.get(s.images[0])]] * len(texts), [s.prompt] * len(texts), texts, args.max_length)
    return float(enc.attention_mask.sum(1).float().mean())


def main() -> None:
    args = parse_args()
    import torch
    import transformers
    import trl

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sets = build_world(args, root)
        ours = time_ours(args, root, sets)
        theirs = time_trl(args, root, sets)
        ours["tokens_per_sequence"] = ours_tokens(sets, root, args)
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    result = {
        "device": device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl_version": trl.__version__,
        "model": args.model_config or "tiny student (params.yaml spd.model)",
        "lora": "the 7B profile's (r=8, alpha=32, all-linear, vision tower frozen)" if args.lora else "full fine-tuning",
        "dtype": "bfloat16" if args.bf16 else "float32",
        "image_size": args.image_size,
        "negatives": N_NEGATIVES,
        "prompts_per_step": args.prompts_per_step,
        "timed_steps": args.steps,
        "ours": ours,
        "trl": theirs,
        "speedup": ours["prompts_per_s"] / theirs["prompts_per_s"],
        "speedup_with_ref_pass": ours["prompts_per_s_with_ref_pass"] / theirs["prompts_per_s"],
    }
    print(json.dumps(result, indent=2))
    print(
        f"ours {ours['prompts_per_s']:.2f} prompts/s ({ours['prompts_per_s_with_ref_pass']:.2f} with the one-off reference pass), "
        f"TRL DPOTrainer {theirs['prompts_per_s']:.2f} prompts/s: {result['speedup']:.2f}x "
        f"({result['speedup_with_ref_pass']:.2f}x); goal >= 1.7x"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
