"""Two training processes (DDP on gloo, CPU) train exactly what one process trains.

The SPD and APO training functions run once in this process (accumulation 2A) and once
under ``accelerate launch --config_file pipeline/accelerate/multi_cpu.yaml`` (2 processes,
accumulation A): the same effective batch, so the weights after k steps, the lr schedule
and the logged losses must agree. The 2-process run must also split the reference scoring
and write the reference cache once. The stages themselves under 2 processes (one MLflow run
each, effective batch on record): test_pipeline_e2e.py::test_spd_to_apo_on_two_cpu_processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ddp_worker

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    world = tmp / "world"
    ddp_worker.make_world(world)
    t0 = time.time()
    ddp_worker.run(world, tmp / "one", accum_spd=2, accum_apo=2)
    one_s = time.time() - t0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "pipeline/accelerate/multi_cpu.yaml"),
           str(ROOT / "tests/ddp_worker.py"), "--world", str(world), "--out", str(tmp / "two"), "--accum-spd", "1", "--accum-apo", "1"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    two_s = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    print(f"one process (in-process) {one_s:.1f} s, two processes (launch included) {two_s:.1f} s")
    return tmp


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=0), (k, (a[k] - b[k]).abs().max().item())


def _assert_same_rows(one: list[dict], two: list[dict]) -> None:
    assert [r["step"] for r in one] == [r["step"] for r in two]
    for r1, r2 in zip(one, two):
        assert r2["lr"] == pytest.approx(r1["lr"], rel=1e-9), r2["step"]
        assert r2["loss"] == pytest.approx(r1["loss"], abs=1e-5), r2["step"]
        for k in r1:
            if k not in ("step", "grad_norm") and r1[k] == r1[k]:  # NaN metrics (no valid negative) compare as absent
                assert r2[k] == pytest.approx(r1[k], abs=1e-5), (k, r2["step"])


def _ranks(d: Path) -> list[dict]:
    return [json.loads((d / f"rank{r}.json").read_text()) for r in range(2)]


def test_spd_two_processes_train_what_one_trains(runs):
    one, two = runs / "one", runs / "two"
    a, b = torch.load(one / "spd.pt"), torch.load(two / "spd.pt")
    _assert_same_weights(a, b)
    start = ddp_worker.spd_start_weights(runs / "world")
    assert sum(not torch.allclose(start[k], b[k], atol=1e-3) for k in b) > 10  # training moved the weights
    r1, r2 = json.loads((one / "spd_rows.json").read_text()), json.loads((two / "spd_rows.json").read_text())
    _assert_same_rows(r1["rows"], r2["rows"])
    # The cosine schedule with warm-up goes up once and then only down (stepping it once per process
    # per step ran it to the end and back up again).
    lrs = [r["lr"] for r in r2["rows"]]
    peak = lrs.index(max(lrs))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :])) and lrs[-1] < max(lrs)
    assert (r1["effective_batch"], r2["effective_batch"], r2["processes"]) == (4, 4, 2)
    assert (two / "spd.csv").read_text().count("\n") == 1 + ddp_worker.SPD_STEPS


def test_apo_two_processes_train_what_one_trains(runs):
    one, two = runs / "one", runs / "two"
    ref1, ref2 = torch.load(one / "ref.pt"), torch.load(two / "ref.pt")
    assert torch.allclose(ref1["chosen"], ref2["chosen"], atol=1e-5) and torch.allclose(ref1["rejected"], ref2["rejected"], atol=1e-5)
    a, b = torch.load(one / "apo.pt"), torch.load(two / "apo.pt")
    _assert_same_weights(a, b)
    from apodistill.student import load_student

    start = load_student(runs / "world" / "ref")[0].state_dict()
    assert sum(not torch.equal(start[k], b[k]) for k in b) > 10
    r1, r2 = json.loads((one / "apo_rows.json").read_text()), json.loads((two / "apo_rows.json").read_text())
    _assert_same_rows(r1["rows"], r2["rows"])
    assert (r1["effective_batch"], r2["effective_batch"]) == (2, 2)


def test_two_processes_write_once(runs):
    two = runs / "two"
    ranks = _ranks(two)
    assert [r["processes"] for r in ranks] == [2, 2]
    # the reference pass is split between the processes and its cache written once
    assert [r["ref_rows_scored"] for r in ranks] == [4, 4]
    assert [r["ref_cache_writes"] for r in ranks] == [1, 0]
    assert sorted(p.name for p in (two / "ref_cache").iterdir()) == ["key.json", "ref_logps.parquet"]
    # the mid-run checkpoint: one copy of the weights, each process's RNG state
    ck = two / "ckpt_spd" / "checkpoint-2"
    assert (ck / "meta.json").is_file() and (ck / "random_states_0.pkl").is_file() and (ck / "random_states_1.pkl").is_file()
    assert len(list(ck.glob("model*.safetensors"))) == 1
