"""One tiny SPD run and one tiny APO run through the stages' own training functions.

tests/test_ddp.py runs this module twice: in the test process (one process) and under
``accelerate launch --config_file pipeline/accelerate/multi_cpu.yaml`` (two processes, gloo)
with half the gradient accumulation, i.e. the same effective batch, and compares the two.

    python -m accelerate.commands.launch --config_file pipeline/accelerate/multi_cpu.yaml \
        tests/ddp_worker.py --world DIR --out DIR --accum-spd 1 --accum-apo 1

Every process writes ``rank<r>.json`` with what it did (reference rows scored, reference
caches written); the main process writes the weights and logged rows. (That the stages open
one MLflow run under 2 processes is checked on the real pipeline in test_pipeline_e2e.py.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SPD_STEPS, APO_STEPS = 4, 3
PROMPT = "Chest X-ray. Think, then answer."


def make_world(world: Path) -> None:
    """Images, SPD examples' texts, APO candidate texts and the SPD student every APO run starts from."""
    import numpy as np
    from PIL import Image

    from conftest import make_trajectory, tiny_student_factory

    world.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray((rng.random((64, 64)) * 255).astype("uint8"), mode="L").save(world / f"img{i}.png")
    texts = {
        "spd": [make_trajectory(rng) for _ in range(8)],
        "apo": [[make_trajectory(rng) for _ in range(4)] for _ in range(8)],  # chosen + 3 rejected per prompt
    }
    (world / "texts.json").write_text(json.dumps(texts))
    from apodistill.student import save_student

    model, proc = tiny_student_factory(seed=3)
    save_student(model, proc, world / "ref", extra={"image_size": 64})


def spd_config(accum: int):
    from conftest import TINY_DIMS
    from params_helpers import section

    optim = dict(lr=1e-2, steps=SPD_STEPS, epochs=None, batch_size=2, grad_accum=accum, warmup_ratio=0.25, min_lr_ratio=0.1,
                 checkpoint_every=2, log_every=1)
    return section("spd", base_model=None, model=TINY_DIMS, image_size=64, max_length=128, lora={"enabled": False}, optim=optim)


def apo_config(accum: int):
    from params_helpers import section

    optim = dict(lr=5e-3, steps=APO_STEPS, epochs=None, batch_size=1, grad_accum=accum, warmup_ratio=0.0, checkpoint_every=100, log_every=1)
    return section("apo", beta=0.5, loss="plackett_luce", max_length=128, ref_batch_size=2, lora={"enabled": False}, optim=optim)


def spd_examples(world: Path):
    from apodistill.training.data import Example

    texts = json.loads((world / "texts.json").read_text())
    return [Example((f"img{i}.png",), PROMPT, t, float(1 + i % 3)) for i, t in enumerate(texts["spd"])]


def spd_start_weights(world: Path) -> dict:
    """The SPD student before training (train_spd builds it from the examples and the seed)."""
    from apodistill.training.spd import prepare_student, tokenizer_corpus

    model, _, _ = prepare_student(spd_config(1), tokenizer_corpus(spd_examples(world)), 0)
    return {k: v.detach() for k, v in model.state_dict().items()}


def run(world: Path, out: Path, accum_spd: int, accum_apo: int) -> None:
    import torch

    import apodistill.training.apo as apo_mod
    from apodistill.stage import make_accelerator
    from apodistill.training.apo import CandidateSet, reference_logps, train_apo
    from apodistill.training.data import ImageStore
    from apodistill.training.loop import batch_record
    from apodistill.training.spd import train_spd

    out.mkdir(parents=True, exist_ok=True)
    texts = json.loads((world / "texts.json").read_text())
    images = ImageStore(world, 64)
    accelerator = make_accelerator(False)
    record: dict = {"rank": accelerator.process_index, "processes": accelerator.num_processes, "ref_rows_scored": 0, "ref_cache_writes": 0}

    # Count what this process does at the two places that must happen once (cache write) or be split (scoring).
    write, score = apo_mod.write_ref_cache, apo_mod.score_sets

    def counting_write(*a, **k):
        record["ref_cache_writes"] += 1
        return write(*a, **k)

    def counting_score(model, processor, imgs, sets, *a, **k):
        if not torch.is_grad_enabled():
            record["ref_rows_scored"] += len(sets)
        return score(model, processor, imgs, sets, *a, **k)

    apo_mod.write_ref_cache, apo_mod.score_sets = counting_write, counting_score

    spd_cfg = spd_config(accum_spd)
    model, _, _, res = train_spd(spd_cfg, spd_examples(world), images, accelerator, str(out / "ckpt_spd"), str(out / "spd.csv"), seed=0)
    if accelerator.is_main_process:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "spd.pt")
        (out / "spd_rows.json").write_text(json.dumps({"rows": res.rows, **batch_record(accelerator, spd_cfg.optim)}))

    apo_cfg = apo_config(accum_apo)
    sets = [
        CandidateSet(("single", f"s{i}", None), (f"img{i}.png",), PROMPT, t[0], tuple(t[1:]), (True, i % 2 == 0, True), (1.0, 1.0, 1.0))
        for i, t in enumerate(texts["apo"])
    ]
    ref_c, ref_r, hit = reference_logps(world / "ref", sets, images, out / "ref_cache", apo_cfg.max_length, apo_cfg.ref_batch_size,
                                        accelerator=accelerator)  # fmt: skip
    record["ref_hit"] = hit
    model, _, res = train_apo(apo_cfg, sets, ref_c, ref_r, world / "ref", images, accelerator, str(out / "ckpt_apo"), None, 0, "k")
    if accelerator.is_main_process:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "apo.pt")
        torch.save({"chosen": ref_c, "rejected": ref_r}, out / "ref.pt")
        (out / "apo_rows.json").write_text(json.dumps({"rows": res.rows, **batch_record(accelerator, apo_cfg.optim)}))
    apo_mod.write_ref_cache, apo_mod.score_sets = write, score
    (out / f"rank{accelerator.process_index}.json").write_text(json.dumps(record))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--accum-spd", type=int, required=True)
    ap.add_argument("--accum-apo", type=int, required=True)
    args = ap.parse_args()
    run(Path(args.world), Path(args.out), args.accum_spd, args.accum_apo)


if __name__ == "__main__":
    main()
