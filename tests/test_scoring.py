"""The student's scoring path: each speed/memory change is exact against the path it replaced.

- ``target_logps`` (output layer swapped for the identity, chunked log-probs on label
  positions only) equals ``token_logps`` of the model's full logits, values and gradients;
- SDPA attention equals eager attention;
- a sequence scores the same alone as padded into a batch with longer ones, so grouping
  batches by length (less padding) changes no number.
"""

from __future__ import annotations

import numpy as np
import torch

from apodistill.config.train import LoraConfigSection
from apodistill.losses import token_logps
from apodistill.student import apply_lora, encode
from apodistill.student.model import ATTENTION
from apodistill.training.data import Example, ImageStore
from apodistill.training.scoring import target_logps
from conftest import make_trajectory


def _batch(proc, root, paths, n=3, lengths=(1.0, 0.3, 0.7)):
    rng = np.random.default_rng(4)
    targets = [make_trajectory(rng) for _ in range(n)]
    targets = [t[: max(8, int(len(t) * f))] for t, f in zip(targets, lengths)]
    exs = [Example((paths[i],), "Chest X-ray.", t) for i, t in enumerate(targets)]
    return encode(proc, ImageStore(root, 64).batch(exs), [e.prompt for e in exs], targets, 256), exs


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_target_logps_equals_logits_path_values_and_gradients(tiny_student, tiny_images):
    root, paths = tiny_images
    model, proc = tiny_student(seed=5)
    enc, _ = _batch(proc, root, paths)
    want, want_mask = token_logps(model(**enc.model_inputs()).logits, enc.labels)
    g_out = torch.randn(want.shape, generator=torch.Generator().manual_seed(0))
    (want * g_out).sum().backward()
    g_want = _grads(model)
    model.zero_grad(set_to_none=True)
    got, mask = target_logps(model, enc)
    (got * g_out).sum().backward()
    g_got = _grads(model)
    assert torch.equal(mask, want_mask)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    assert g_got.keys() == g_want.keys() and len(g_got) > 10
    for n in g_want:
        assert torch.allclose(g_got[n], g_want[n], atol=1e-5, rtol=1e-4), n
    # the output layer is back in place afterwards
    assert isinstance(model.lm_head, torch.nn.Linear)


def test_target_logps_through_lora_equals_logits_path(tiny_student, tiny_images):
    root, paths = tiny_images
    model, proc = tiny_student(seed=6)
    lora = apply_lora(model, LoraConfigSection(enabled=True, r=4, alpha=8, dropout=0.0, target_modules="all-linear", vision=True))
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.add_(0.05)
    enc, _ = _batch(proc, root, paths)
    with torch.no_grad():
        want, _ = token_logps(lora(**enc.model_inputs()).logits, enc.labels)
        got, _ = target_logps(lora, enc)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_sdpa_equals_eager_attention(tiny_student, tiny_images):
    root, paths = tiny_images
    model, proc = tiny_student(seed=7)
    assert model.config._attn_implementation == ATTENTION == "sdpa"  # what build_tiny_student asks for
    enc, _ = _batch(proc, root, paths)
    with torch.no_grad():
        sdpa, _ = target_logps(model, enc)
        model.set_attn_implementation("eager")
        eager, _ = target_logps(model, enc)
    assert torch.allclose(sdpa, eager, atol=1e-5, rtol=0)


def test_padding_changes_no_score(tiny_student, tiny_images):
    """Each sequence scored alone (no padding) equals its row in a padded batch."""
    root, paths = tiny_images
    model, proc = tiny_student(seed=8)
    enc, exs = _batch(proc, root, paths)
    assert (enc.attention_mask == 0).any()  # the batch really is padded
    with torch.no_grad():
        batched = target_logps(model, enc)[0].sum(1)
        for i, ex in enumerate(exs):
            one = encode(proc, ImageStore(root, 64).batch([ex]), [ex.prompt], [ex.target], 256)
            assert one.attention_mask.all()
            alone = target_logps(model, one)[0].sum(1)[0]
            assert torch.allclose(alone, batched[i], atol=1e-5, rtol=0), i


def test_lora_without_vision_leaves_the_vision_tower_frozen(tiny_student, tiny_images):
    """vision: false (ms-swift's freeze_vit): adapters in the language model only; the vision
    tower gets no gradient, so backward stops at its output."""
    root, paths = tiny_images
    model, proc = tiny_student(seed=9)
    lora = apply_lora(model, LoraConfigSection(enabled=True, r=4, alpha=8, dropout=0.0, target_modules="all-linear", vision=False))
    adapted = {n for n, _ in lora.named_parameters() if "lora_A" in n}
    assert adapted and not any(".visual." in n for n in adapted)
    enc, _ = _batch(proc, root, paths)
    target_logps(lora, enc)[0].sum().backward()
    assert all(p.grad is None for n, p in lora.named_parameters() if ".visual." in n)
    assert all(lora.get_parameter(n).grad is not None for n in adapted)
