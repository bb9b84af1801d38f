"""Every params profile is valid, and the pretrained-student path (the 7B profile's) works on a
local folder laid out like a Hugging Face snapshot, with LoRA, save and reload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from apodistill.config import load_params
from params_helpers import section
from apodistill.student import encode, load_student, save_student
from apodistill.training.data import Example, ImageStore
from apodistill.training.spd import prepare_student

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "profiles").glob("*.yaml")), ids=lambda p: p.name)
def test_profile_is_valid(path):
    p = load_params(path)
    assert (ROOT / "pipeline" / "accelerate" / f"{p.base.accelerate}.yaml").is_file()


def test_7b_profile_has_the_papers_values():
    p = load_params(ROOT / "profiles" / "qwen2.5-vl-7b.yaml")
    assert p.spd.base_model == "Qwen/Qwen2.5-VL-7B-Instruct"
    for section, lr in ((p.spd, 1e-4), (p.apo, 5e-7)):
        assert section.lora.enabled and (section.lora.r, section.lora.alpha) == (8, 32) and section.lora.target_modules == "all-linear"
        assert section.optim.lr == lr and section.optim.epochs == 1 and section.optim.bf16
        assert section.optim.warmup_ratio == 0.05
        assert section.optim.batch_size * section.optim.grad_accum * 8 == 32  # 8 GPUs (deepspeed_zero2.yaml)


def test_pretrained_path_with_lora(tiny_student, tiny_images, tmp_path):
    root, paths = tiny_images
    model, proc = tiny_student(seed=4)
    snap = tmp_path / "hub-snapshot"  # what from_pretrained finds in the HF cache
    model.save_pretrained(snap)
    proc.tokenizer.save_pretrained(snap)
    proc.image_processor.save_pretrained(snap)
    cfg = section("spd", base_model=str(snap), image_size=64, lora={"enabled": True, "r": 4, "alpha": 16, "dropout": 0.0})
    peft_model, processor, base = prepare_student(cfg, [], seed=0)
    assert base == str(snap) and hasattr(peft_model, "peft_config")
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in peft_model.parameters()) / 5
    enc = encode(processor, ImageStore(root, 64).batch([Example((paths[0],), "p", "t")]), ["p"], ["<think>x</think>"], 64)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.add_(0.02)
        expected = peft_model(**enc.model_inputs()).logits
    save_student(peft_model, processor, tmp_path / "spd", base=base, extra={"image_size": 64})
    merged, _ = load_student(tmp_path / "spd")
    assert torch.allclose(expected, merged(**enc.model_inputs()).logits, atol=1e-4)
