"""The shared training loop: weights change, accumulation is exact, a killed run resumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from params_helpers import section
from apodistill.training.data import Example, ImageStore
from apodistill.training.loop import batch_plan, make_optimizer, train_loop
from apodistill.training.spd import SftSteps
from conftest import make_trajectory


def _acc():
    """A fresh Accelerator per run: save_state saves every model an instance has prepared."""
    from accelerate import Accelerator

    return Accelerator(cpu=True, mixed_precision="no")


def _examples(paths):
    rng = np.random.default_rng(3)
    return [
        Example((paths[i % len(paths)],), "Chest X-ray. Think, then answer.", make_trajectory(rng), float(1 + (i % 3)))
        for i in range(8)
    ]


def _run(tiny_student, tiny_images, tmp_path, cfg, steps_stop=None, ckpt="ck", sgd=False):
    accelerator = _acc()
    root, paths = tiny_images
    model, proc = tiny_student(seed=0)
    examples = _examples(paths)
    if sgd:  # plain SGD: the update is the gradient itself (Adam's first step is ~sign(g), too touchy to compare)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    else:
        opt, sched = make_optimizer(list(model.parameters()), cfg, cfg.steps)
    model, opt, sched = accelerator.prepare(model, opt, sched)
    sft = SftSteps(examples, ImageStore(root, 64), proc, 128, accelerator.device)
    res = train_loop(
        accelerator=accelerator, model=model, optimizer=opt, scheduler=sched,
        plan=batch_plan(len(examples), cfg, seed=0), units_fn=sft.units, step_fn=sft.step,
        cfg=cfg, ckpt_dir=tmp_path / ckpt, run_key="k", curve_path=tmp_path / "curve.csv", stop_after=steps_stop,
    )
    return accelerator.unwrap_model(model), res


def test_weights_change(tiny_student, tiny_images, tmp_path):
    before, _ = tiny_student(seed=0)
    after, res = _run(tiny_student, tiny_images, tmp_path, section("spd.optim", lr=1e-2, steps=2, batch_size=4, log_every=1))
    changed = [n for (n, a), (_, b) in zip(before.named_parameters(), after.named_parameters()) if not torch.equal(a, b)]
    assert len(changed) > 10
    assert res.rows[-1]["loss"] > 0 and (tmp_path / "curve.csv").read_text().startswith("step,loss")


def test_accumulation_equals_big_batch(tiny_student, tiny_images, tmp_path):
    """4 micro-batches of 2 give the same update as one batch of 8 (weighted-token mean)."""
    common = dict(lr=1.0, steps=1, max_grad_norm=1e9)
    big, _ = _run(tiny_student, tiny_images, tmp_path, section("spd.optim", batch_size=8, grad_accum=1, **common), ckpt="a", sgd=True)
    acc, _ = _run(tiny_student, tiny_images, tmp_path, section("spd.optim", batch_size=2, grad_accum=4, **common), ckpt="b", sgd=True)
    start, _ = tiny_student(seed=0)
    for (n, a), (_, b), (_, s) in zip(big.named_parameters(), acc.named_parameters(), start.named_parameters()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), n
    assert any(not torch.equal(a, s) for (_, a), (_, s) in zip(big.named_parameters(), start.named_parameters()))


def test_resume_after_crash_matches_uninterrupted(tiny_student, tiny_images, tmp_path):
    cfg = section("spd.optim", lr=5e-3, steps=6, batch_size=2, checkpoint_every=2, log_every=1)
    full, full_res = _run(tiny_student, tiny_images, tmp_path, cfg, ckpt="full")
    _, crashed = _run(tiny_student, tiny_images, tmp_path, cfg, steps_stop=5, ckpt="crash")
    assert crashed.resumed_from == 0 and (tmp_path / "crash" / "checkpoint-4").is_dir()
    resumed, res = _run(tiny_student, tiny_images, tmp_path, cfg, ckpt="crash")
    assert res.resumed_from == 4
    assert [r["step"] for r in res.rows] == [r["step"] for r in full_res.rows]
    for (n, a), (_, b) in zip(full.named_parameters(), resumed.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n


def test_checkpoints_of_another_config_are_ignored(tiny_student, tiny_images, tmp_path):
    cfg = section("spd.optim", lr=5e-3, steps=4, batch_size=2, checkpoint_every=2)
    _run(tiny_student, tiny_images, tmp_path, cfg, steps_stop=3, ckpt="c")
    accelerator = _acc()
    root, paths = tiny_images
    model, proc = tiny_student(seed=0)
    opt, sched = make_optimizer(list(model.parameters()), cfg, cfg.steps)
    model, opt, sched = accelerator.prepare(model, opt, sched)
    sft = SftSteps(_examples(paths), ImageStore(root, 64), proc, 128, accelerator.device)
    res = train_loop(accelerator=accelerator, model=model, optimizer=opt, scheduler=sched,
                     plan=batch_plan(8, cfg, 0), units_fn=sft.units, step_fn=sft.step, cfg=cfg,
                     ckpt_dir=tmp_path / "c", run_key="other", curve_path=None)
    assert res.resumed_from == 0


def test_batch_plan_epochs_and_determinism():
    cfg = section("spd.optim", batch_size=3, grad_accum=2, steps=5)
    a, b = batch_plan(10, cfg, 7), batch_plan(10, cfg, 7)
    assert a == b and len(a) == 5 and all(len(w) == 2 and all(len(m) == 3 for m in w) for w in a)
    first_epoch = [i for w in a for m in w for i in m][:10]
    assert sorted(first_epoch) == list(range(10))
    assert len(batch_plan(10, section("spd.optim", batch_size=4, epochs=2.0), 0)) == 5
    groups = [0] * 7 + [1] * 3
    plan = batch_plan(10, section("spd.optim", batch_size=2, steps=20), 1, groups=groups)
    assert all(len({groups[i] for i in m}) == 1 for w in plan for m in w)
    assert {i for w in plan[:6] for m in w for i in m} == set(range(10))  # 4 + 2 micro-batches: the first epoch sees every example


def test_batch_plan_is_global_and_split_by_rank():
    """P processes x accumulation A see the micro-batches of one process with accumulation P x A."""
    from apodistill.training.loop import effective_batch, local_window, total_steps

    one = batch_plan(10, section("spd.optim", batch_size=2, grad_accum=4, steps=5), 3)
    two = batch_plan(10, section("spd.optim", batch_size=2, grad_accum=2, steps=5), 3, processes=2)
    assert one == two
    assert local_window(two[0], 0, 2) == two[0][:2] and local_window(two[0], 1, 2) == two[0][2:]
    with pytest.raises(ValueError, match="cannot be split"):
        local_window(two[0], 0, 3)
    cfg = section("spd.optim", batch_size=2, grad_accum=2, epochs=1.0)
    assert effective_batch(cfg, 4) == 16 and total_steps(64, cfg, 4) == 4 and total_steps(64, cfg, 1) == 16


def test_batch_plan_groups_by_length():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 200, size=400).tolist()
    groups = [0] * 300 + [1] * 100
    base = section("spd.optim", batch_size=8, grad_accum=1, steps=60, epochs=None, group_by_length=False)
    grouped = base.model_copy(update={"group_by_length": True})

    def padded(plan):  # slots a right-padded batch of each micro-batch takes
        return sum(len(m) * max(lengths[i] for i in m) for w in plan for m in w)

    a = batch_plan(400, base, 1, groups=groups, lengths=lengths)
    b = batch_plan(400, grouped, 1, groups=groups, lengths=lengths)
    assert a == batch_plan(400, base, 1, groups=groups)  # off: lengths change nothing
    assert b == batch_plan(400, grouped, 1, groups=groups, lengths=lengths)  # seeded
    assert padded(b) < 0.8 * padded(a)
    assert all(len({groups[i] for i in m}) == 1 for w in b for m in w)
    first_epoch = [i for w in b[:51] for m in w for i in m]  # 38 + 13 micro-batches make the first epoch
    assert sorted(first_epoch) == list(range(400))  # every example once
