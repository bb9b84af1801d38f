"""Stage `apo`: Autonomous Preference Optimization (docs/method.md, stage 3).

The consensus of each training study must beat all N teacher trajectories at once
(Plackett-Luce over N+1 candidates; `apo.loss: pairwise` gives the released script's DPO
pairs). Reference = the SPD student; its log-probs are computed once into --ref-cache and
reused while the SPD model and the candidates are unchanged. With `apo.pairwise_baseline`
the released script's pairwise DPO is trained too, from the same reference, into
--pairwise-out (otherwise that folder only holds a STATUS note and evaluate shows "not run").

    accelerate launch --config_file pipeline/accelerate/cpu.yaml pipeline/apo.py --params params.yaml \\
        --benchmark data/benchmark --trajectories data/validated --consensus data/consensus \\
        --templates templates/student --ref-model models/spd --ref-cache models/apo_ref \\
        --out models/apo --pairwise-out models/apo_pairwise --checkpoints checkpoints/apo \\
        --metrics reports/apo.json --curve reports/curves/apo.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from apodistill.stage import Stage, make_accelerator, read_weights, stage_parser

READS = ("base.seed", "base.findings", "base.accelerate", "apo", "teachers.roster")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__)
    ap.add_argument("--benchmark", required=True, help="fetch output folder (studies.parquet, images)")
    ap.add_argument("--trajectories", required=True, help="validate output folder (trajectories.parquet, weights.json)")
    ap.add_argument("--consensus", required=True, help="self_distill output folder (consensus.parquet)")
    ap.add_argument("--templates", required=True, help="student prompt templates folder")
    ap.add_argument("--ref-model", required=True, help="reference and initial policy: the SPD student folder")
    ap.add_argument("--ref-cache", required=True, help="folder of the cached reference log-probs (reused when its key matches)")
    ap.add_argument("--out", required=True, help="APO student output folder")
    ap.add_argument("--pairwise-out", required=True, help="pairwise-DPO baseline folder (apo.pairwise_baseline)")
    ap.add_argument("--checkpoints", required=True, help="resumable checkpoints (kept across a crash)")
    ap.add_argument("--metrics", required=True, help="flat JSON metrics to write")
    ap.add_argument("--curve", required=True, help="CSV training curve of the APO run for dvc plots")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    st = Stage.begin("apo", args, READS, torch=True)
    params, cfg, base = st.params, st.params.apo, st.params.base
    import pandas as pd

    from apodistill.student import save_student, student_info
    from apodistill.training.apo import build_candidates, ref_key, reference_logps, train_apo
    from apodistill.training.data import ImageStore
    from apodistill.training.loop import batch_record, clear_checkpoints

    # data
    studies = pd.read_parquet(Path(args.benchmark) / "studies.parquet")
    traj = pd.read_parquet(Path(args.trajectories) / "trajectories.parquet")
    consensus = pd.read_parquet(Path(args.consensus) / "consensus.parquet")
    sets = build_candidates(consensus, traj[traj["split"] == "train"], studies, params.teachers.names(),
                            read_weights(args.trajectories), base.findings, args.templates, cfg.negatives)  # fmt: skip
    if not sets:
        raise SystemExit(f"error: no consensus rows in {args.consensus}: nothing to optimise")
    ref_info = student_info(args.ref_model)
    images = ImageStore(args.benchmark, ref_info.get("image_size", params.spd.image_size))

    # model: the reference log-probs, once for both arms
    accelerator = make_accelerator(cfg.optim.bf16)
    t0 = time.time()
    # sharded over the processes, gathered to all, the cache written by the main one
    ref_c, ref_r, hit = reference_logps(args.ref_model, sets, images, args.ref_cache, cfg.max_length, cfg.ref_batch_size, accelerator=accelerator)
    key = ref_key(args.ref_model, sets, cfg.max_length)
    n_neg = sum(sum(s.mask) for s in sets)
    metrics = {"apo.prompts": len(sets), "apo.negatives_per_prompt": n_neg / len(sets),
               "apo.ref_cache_hit": int(hit), "apo.ref_seconds": round(time.time() - t0, 1)}  # fmt: skip

    # work: the method, then (apo.pairwise_baseline) the released script's pairwise DPO
    arms = [("apo", cfg, args.out, args.checkpoints, args.curve)]
    if cfg.pairwise_baseline:
        pairwise = cfg.model_copy(update={"loss": "pairwise"})
        arms.append(("apo_pairwise", pairwise, args.pairwise_out, str(Path(args.checkpoints) / "pairwise"), None))
    else:
        Path(args.pairwise_out).mkdir(parents=True, exist_ok=True)
        (Path(args.pairwise_out) / "STATUS").write_text("not run: apo.pairwise_baseline is false\n")
    curves = {}
    for i, (name, arm, out, ckpt, curve) in enumerate(arms):
        if i:  # a fresh accelerator: save_state saves every model an instance prepared
            accelerator = make_accelerator(arm.optim.bf16)
        t1 = time.time()
        model, processor, result = train_apo(arm, sets, ref_c, ref_r, args.ref_model, images, accelerator, ckpt, curve, base.seed, key)
        if not accelerator.is_main_process:
            continue
        # save
        save_student(model, processor, out, base=args.ref_model if arm.lora.enabled else None,
                     extra={"stage": "apo", "image_size": ref_info.get("image_size"), "max_length": arm.max_length})  # fmt: skip
        batch = batch_record(accelerator, arm.optim)  # processes x micro-batch x accumulation
        st.save(out, config={**st.config, "apo": arm.model_dump(mode="json")}, reference=args.ref_model, **batch)
        last = result.rows[-1] if result.rows else {}
        metrics.update({f"{name}.train_seconds": round(time.time() - t1, 1), **{f"{name}.final_{k}": float(v) for k, v in last.items() if k != "step"}})
        if name == "apo":
            metrics.update({"apo.steps": result.steps, **{f"apo.{k}": v for k, v in batch.items()}})
        curves[f"{name}.curve"] = result.rows
    if not accelerator.is_main_process:
        return 0

    # log
    st.note(ref_cache_hit=hit)
    st.finish(metrics, args.metrics, curves=curves)
    clear_checkpoints(args.checkpoints)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
