"""Stage `apo`: Autonomous Preference Optimization (docs/method.md, stage 3).

The consensus of each training study must beat all N teacher trajectories at once
(Plackett-Luce over N+1 candidates; `apo.loss: pairwise` gives the released script's DPO
pairs). Reference = the SPD student; its log-probs are computed once into --ref-cache and
reused while the SPD model and the candidates are unchanged.

    accelerate launch --config_file pipeline/accelerate/cpu.yaml pipeline/apo.py --params params.yaml ...
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from apodistill.stage import load_or_exit, make_accelerator, read_weights, write_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("--params", "--benchmark", "--trajectories", "--consensus", "--templates", "--ref-model", "--ref-cache",
                 "--out", "--checkpoints", "--metrics", "--curve"):
        ap.add_argument(name, required=True)
    ap.add_argument("--pairwise-out", help="folder for the pairwise-DPO baseline (apo.pairwise_baseline)")
    args = ap.parse_args()

    params = load_or_exit(args.params)
    cfg, base = params.apo, params.base
    import mlflow
    import pandas as pd

    from apodistill.provenance import provenance, seed_everything, write_provenance
    from apodistill.student import save_student, student_info
    from apodistill.tracking import log_curve, stage_run
    from apodistill.training.apo import build_candidates, ref_key, reference_logps, train_apo
    from apodistill.training.data import ImageStore
    from apodistill.training.loop import clear_checkpoints

    seeds = seed_everything(base.seed)
    accelerator = make_accelerator(cfg.optim.bf16)
    config = {"base": base.model_dump(mode="json"), "apo": cfg.model_dump(mode="json")}

    studies = pd.read_parquet(Path(args.benchmark) / "studies.parquet")
    traj = pd.read_parquet(Path(args.trajectories) / "trajectories.parquet")
    traj = traj[traj["split"] == "train"]
    consensus = pd.read_parquet(Path(args.consensus) / "consensus.parquet")
    weights = read_weights(args.trajectories)
    roster = params.teachers.names()
    sets = build_candidates(consensus, traj, studies, roster, weights, base.findings, args.templates)
    if not sets:
        raise SystemExit(f"error: no consensus rows in {args.consensus}: nothing to optimise")
    ref_info = student_info(args.ref_model)
    images = ImageStore(args.benchmark, ref_info.get("image_size", params.spd.image_size))

    with stage_run("apo", base.mlflow_experiment, config):
        t0 = time.time()
        ref_c, ref_r, hit = reference_logps(
            args.ref_model, sets, images, args.ref_cache, cfg.max_length, cfg.ref_batch_size, accelerator.device
        )
        ref_seconds = time.time() - t0
        key = ref_key(args.ref_model, sets, cfg.max_length)
        t1 = time.time()
        model, processor, result = train_apo(
            cfg, sets, ref_c, ref_r, args.ref_model, images, accelerator, args.checkpoints, args.curve, base.seed, key
        )
        seconds = time.time() - t1
        metrics: dict[str, float] = {}
        if accelerator.is_main_process:
            save_student(
                model, processor, args.out,
                base=args.ref_model if cfg.lora.enabled else None,
                extra={"stage": "apo", "image_size": ref_info.get("image_size"), "max_length": cfg.max_length},
            )
            write_provenance(args.out, provenance("apo", config, seeds, reference=args.ref_model, ref_cache_hit=hit))
            last = result.rows[-1] if result.rows else {}
            n_neg = sum(sum(s.mask) for s in sets)
            metrics = {
                **metrics,
                "apo.steps": result.steps,
                "apo.prompts": len(sets),
                "apo.negatives_per_prompt": n_neg / len(sets),
                "apo.ref_cache_hit": int(hit),
                "apo.ref_seconds": round(ref_seconds, 1),
                "apo.train_seconds": round(seconds, 1),
                **{f"apo.final_{k}": float(v) for k, v in last.items() if k != "step"},
            }
            log_curve(result.rows, "apo.curve")
        if args.pairwise_out:
            metrics.update(pairwise_baseline(args, cfg, sets, ref_c, ref_r, images, key, base.seed, ref_info, config, seeds))
        if accelerator.is_main_process:
            write_metrics(args.metrics, metrics)
            mlflow.log_metrics(metrics)
            clear_checkpoints(args.checkpoints)


def pairwise_baseline(args, cfg, sets, ref_c, ref_r, images, key, seed, ref_info, config, seeds) -> dict:
    """The paper's released variant (pairwise DPO) from the same reference, into --pairwise-out.

    With `apo.pairwise_baseline: false` the folder only says so, and evaluate marks the row "not run".
    """
    from pathlib import Path

    from apodistill.provenance import provenance, write_provenance
    from apodistill.stage import make_accelerator
    from apodistill.student import save_student
    from apodistill.training.apo import train_apo

    out = Path(args.pairwise_out)
    if not cfg.pairwise_baseline:
        out.mkdir(parents=True, exist_ok=True)
        (out / "STATUS").write_text("not run: apo.pairwise_baseline is false\n")
        return {}
    pw = cfg.model_copy(update={"loss": "pairwise"})
    accelerator = make_accelerator(pw.optim.bf16)  # a fresh one: save_state saves every model an instance prepared
    t0 = time.time()
    model, processor, result = train_apo(
        pw, sets, ref_c, ref_r, args.ref_model, images, accelerator, str(Path(args.checkpoints) / "pairwise"), None, seed, key
    )
    if not accelerator.is_main_process:
        return {}
    save_student(
        model, processor, out, base=args.ref_model if pw.lora.enabled else None,
        extra={"stage": "apo", "image_size": ref_info.get("image_size"), "max_length": pw.max_length},
    )
    write_provenance(out, provenance("apo", {**config, "apo": pw.model_dump(mode="json")}, seeds, reference=args.ref_model))
    last = result.rows[-1] if result.rows else {}
    return {
        "apo_pairwise.train_seconds": round(time.time() - t0, 1),
        **{f"apo_pairwise.final_{k}": float(v) for k, v in last.items() if k != "step"},
    }


if __name__ == "__main__":
    main()
