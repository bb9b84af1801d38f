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

    .venv/bin/python bench/apo_vs_trl.py                      # CPU (a few minutes on 2 cores)
    .venv/bin/python bench/apo_vs_trl.py --device cuda --steps 20
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
    return p.parse_args()


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
        pixels = np.random.default_rng(args.seed + i).integers(0, 256, (64, 64), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(root / "img" / f"{i}.png")
        chosen, rejected = trajectory(), tuple(trajectory() for _ in range(N_NEGATIVES))
        corpus += [chosen, *rejected]
        sets.append(CandidateSet(("single", f"s{i}", None), (f"img/{i}.png",), prompt, chosen, rejected, (True,) * N_NEGATIVES, (1.0,) * N_NEGATIVES))
    dims = load_params(REPO / "params.yaml").spd.model  # the embedded default's tiny student
    tokenizer = train_tokenizer(corpus, dims.vocab_size)
    processor = build_processor(tokenizer, 64)
    model = build_tiny_student(dims, tokenizer, seed=args.seed)
    save_student(model, processor, root / "ref")
    return sets


def time_ours(args: argparse.Namespace, root: Path, sets) -> dict:
    from accelerate import Accelerator

    from apodistill.config import load_params, with_overrides
    from apodistill.training.apo import reference_logps, train_apo
    from apodistill.training.data import ImageStore

    images = ImageStore(root, 64)
    # Untimed pass on one batch first: the timed pass should not pay the process's first-call costs.
    reference_logps(root / "ref", sets[: args.prompts_per_step], images, root / "refwarm", args.max_length, args.prompts_per_step, args.device)
    t0 = time.perf_counter()
    ref_c, ref_r, _ = reference_logps(root / "ref", sets, images, root / "refcache", args.max_length, args.prompts_per_step, args.device)
    ref_s = time.perf_counter() - t0
    walls = []
    for run, steps in enumerate((1, args.warmup, args.warmup + args.steps)):
        optim = dict(lr=5e-7, steps=steps, batch_size=args.prompts_per_step, warmup_ratio=0.0, checkpoint_every=10**6, log_every=10**6)
        cfg = with_overrides(load_params(REPO / "params.yaml"), {"apo": {"beta": 0.1, "loss": "plackett_luce", "max_length": args.max_length,
                                                                        "lora": {"enabled": False}, "optim": optim}}).apo  # fmt: skip
        acc = Accelerator(cpu=args.device == "cpu")
        t0 = time.perf_counter()
        train_apo(cfg, sets, ref_c, ref_r, root / "ref", images, acc, str(root / f"ckpt{run}"), None, args.seed, "bench")
        walls.append(time.perf_counter() - t0)
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

    from apodistill.student import load_student
    from apodistill.training.data import ImageStore

    images = ImageStore(root, 64)
    data = Dataset.from_list(trl_rows(sets, images))
    walls, tokens = [], None
    for run, steps in enumerate((1, args.warmup, args.warmup + args.steps)):
        policy, processor = load_student(root / "ref")
        ref, _ = load_student(root / "ref")
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
            bf16=False,
            use_cpu=args.device == "cpu",
            gradient_checkpointing=False,
            save_strategy="no",
            logging_steps=10**6,
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=args.seed,
        )
        trainer = DPOTrainer(model=policy, ref_model=ref, args=cfg, train_dataset=data, processing_class=processor)
        if tokens is None:  # what TRL actually feeds, to check both sides score the same lengths
            batch = trainer.data_collator([dict(r) for r in trl_rows(sets[:1], images)])
            tokens = float(batch["attention_mask"].sum(1).float().mean())
        t0 = time.perf_counter()
        trainer.train()
        walls.append(time.perf_counter() - t0)
    walls = walls[1:]
    return {"prompts_per_s": args.prompts_per_step * args.steps / (walls[1] - walls[0]), "walls_s": walls, "tokens_per_sequence": tokens}


def ours_tokens(sets, root: Path, args: argparse.Namespace) -> float:
    from apodistill.student import encode, load_student
    from apodistill.training.data import ImageStore

    _, processor = load_student(root / "ref")
    s = sets[0]
    images = ImageStore(root, 64)
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
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
