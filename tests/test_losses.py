"""Exact-tensor tests of the training losses against numbers computed by hand with `math`."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from apodistill.losses import (
    LOSSES,
    apo_loss,
    linear_token_logps,
    sequence_logps,
    token_logps,
    weighted_sft_from_logps,
    weighted_sft_loss,
)

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


# One prompt, N = 2. Policy/ref chosen: -10 / -12 -> r_c = 0.5 * 2 = 1.0.
# Negatives: policy (-20, -8), ref (-19, -10) -> r_u = 0.5 * (-1, 2) = (-0.5, 1.0).
PC, RC = t([-10.0]), t([-12.0])
PR, RR = t([[-20.0, -8.0]]), t([[-19.0, -10.0]])
BETA = 0.5
R_C, R_U = 1.0, (-0.5, 1.0)


def test_plackett_luce_hand_example():
    loss, _ = apo_loss(PC, PR, RC, RR, BETA)
    expect = -math.log(math.exp(R_C) / (math.exp(R_C) + math.exp(R_U[0]) + math.exp(R_U[1])))
    assert loss.item() == pytest.approx(expect, abs=1e-12)


def test_plackett_luce_weighted_hand_example():
    loss, _ = apo_loss(PC, PR, RC, RR, BETA, weights=t([2.0, 0.5]))
    expect = -math.log(math.exp(R_C) / (math.exp(R_C) + 2.0 * math.exp(R_U[0]) + 0.5 * math.exp(R_U[1])))
    assert loss.item() == pytest.approx(expect, abs=1e-12)


def test_pairwise_hand_example():
    loss, _ = apo_loss(PC, PR, RC, RR, BETA, kind="pairwise")
    expect = (-logsig(R_C - R_U[0]) - logsig(R_C - R_U[1])) / 2
    assert loss.item() == pytest.approx(expect, abs=1e-12)
    loss_w, _ = apo_loss(PC, PR, RC, RR, BETA, weights=t([3.0, 1.0]), kind="pairwise")
    expect_w = (3.0 * -logsig(R_C - R_U[0]) + 1.0 * -logsig(R_C - R_U[1])) / 4.0
    assert loss_w.item() == pytest.approx(expect_w, abs=1e-12)


def test_batch_loss_is_mean_over_prompts_and_per_prompt_weights():
    pc, rc = t([-10.0, -5.0]), t([-12.0, -5.0])
    pr, rr = t([[-20.0, -8.0], [-4.0, -6.0]]), t([[-19.0, -10.0], [-5.0, -6.0]])
    # prompt 2: r_c = 0, r_u = (0.5, 0), weights (1, 3)
    w = t([[1.0, 1.0], [1.0, 3.0]])
    loss, _ = apo_loss(pc, pr, rc, rr, BETA, weights=w)
    l1 = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(-0.5) + math.exp(1.0)))
    l2 = -math.log(1.0 / (1.0 + math.exp(0.5) + 3.0))
    assert loss.item() == pytest.approx((l1 + l2) / 2, abs=1e-12)


@pytest.mark.parametrize("kind", ["plackett_luce", "pairwise"])
def test_single_negative_is_dpo(kind):
    pc, rc, pr, rr, beta = -3.0, -4.0, -6.0, -5.5, 0.1
    loss, _ = apo_loss(t([pc]), t([[pr]]), t([rc]), t([[rr]]), beta, kind=kind)
    assert loss.item() == pytest.approx(-logsig(beta * ((pc - rc) - (pr - rr))), abs=1e-12)


@pytest.mark.parametrize("kind", ["plackett_luce", "pairwise"])
def test_unit_weights_equal_no_weights(kind):
    gen = torch.Generator().manual_seed(0)
    pc, rc = torch.randn(3, generator=gen, dtype=D), torch.randn(3, generator=gen, dtype=D)
    pr, rr = torch.randn(3, 7, generator=gen, dtype=D), torch.randn(3, 7, generator=gen, dtype=D)
    base, _ = apo_loss(pc, pr, rc, rr, 0.3, kind=kind)
    for w in (torch.ones(7, dtype=D), torch.ones(3, 7, dtype=D)):
        assert apo_loss(pc, pr, rc, rr, 0.3, weights=w, kind=kind)[0].item() == base.item()


@pytest.mark.parametrize("kind", ["plackett_luce", "pairwise"])
def test_zero_weight_or_mask_drops_negative(kind):
    # Dropped entry holds garbage (inf/nan) to prove it never leaks into loss or gradient.
    pc, rc = t([-1.0, -2.0]), t([-1.5, -2.0])
    pr = t([[-3.0, float("nan"), -1.0], [-2.5, -4.0, float("inf")]])
    rr = t([[-3.5, 0.0, -1.2], [-2.0, -4.0, 0.0]])
    keep = torch.tensor([[True, False, True], [True, True, False]])
    w = keep.to(D) * t([1.0, 2.0, 0.5])
    lw = t([[1.0, 0.5], [1.0, 2.0]])  # the kept entries' weights
    ref_pr, ref_rr = t([[-3.0, -1.0], [-2.5, -4.0]]), t([[-3.5, -1.2], [-2.0, -4.0]])
    expect, m_ref = apo_loss(pc, ref_pr, rc, ref_rr, 0.7, weights=lw, kind=kind)
    pr_w = pr.clone().requires_grad_(True)
    by_weight, m_w = apo_loss(pc, pr_w, rc, rr, 0.7, weights=w, kind=kind)
    by_weight.backward()
    by_mask, m_m = apo_loss(pc, pr, rc, rr, 0.7, weights=t([1.0, 2.0, 0.5]), kind=kind, rejected_mask=keep)
    assert by_weight.item() == pytest.approx(expect.item(), abs=1e-12)
    assert by_mask.item() == pytest.approx(expect.item(), abs=1e-12)
    assert torch.isfinite(pr_w.grad).all() and pr_w.grad[~keep].eq(0).all()
    for key in ("reward_rejected", "margin", "pref_accuracy"):
        assert float(m_w[key]) == pytest.approx(float(m_ref[key]), abs=1e-12)
        assert float(m_m[key]) == pytest.approx(float(m_ref[key]), abs=1e-12)


@pytest.mark.parametrize("kind", ["plackett_luce", "pairwise"])
def test_prompt_without_valid_negative_contributes_zero(kind):
    loss, metrics = apo_loss(t([0.0]), t([[1.0, 2.0]]), t([0.0]), t([[0.0, 0.0]]), 1.0, kind=kind,
                             rejected_mask=torch.tensor([[False, False]]))
    assert loss.item() == 0.0
    assert math.isnan(float(metrics["pref_accuracy"]))


@pytest.mark.parametrize("kind", ["plackett_luce", "pairwise"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_huge_rewards_finite_loss_and_gradients(kind, sign):
    # beta 1, ref 0: rewards are +-1e4 and gaps of 2e4, far past exp overflow in float32.
    pc = torch.tensor([sign * 1e4, -sign * 1e4], requires_grad=True)
    pr = torch.tensor([[-sign * 1e4, sign * 1e4, 0.0], [sign * 1e4, sign * 1e4, -sign * 1e4]], requires_grad=True)
    loss, _ = apo_loss(pc, pr, torch.zeros(2), torch.zeros(2, 3), 1.0, weights=torch.tensor([1.0, 0.5, 2.0]), kind=kind)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pc.grad).all() and torch.isfinite(pr.grad).all()
    assert pc.grad.abs().sum() > 0


def test_metrics_hand_example():
    # prompt 1: r_c = 1, r_u = (-0.5, 1.0) -> ties the second: not a win, margin 1 - 0.25 = 0.75
    # prompt 2: r_c = 0.5*(0-(-4)) = 2, r_u = (0.5, padding) -> win, margin 1.5
    pc, rc = t([-10.0, 0.0]), t([-12.0, -4.0])
    pr, rr = t([[-20.0, -8.0], [1.0, 99.0]]), t([[-19.0, -10.0], [0.0, 0.0]])
    mask = torch.tensor([[True, True], [True, False]])
    _, m = apo_loss(pc, pr, rc, rr, BETA, rejected_mask=mask)
    assert float(m["reward_chosen"]) == pytest.approx(1.5)
    assert float(m["reward_rejected"]) == pytest.approx((-0.5 + 1.0 + 0.5) / 3)
    assert float(m["margin"]) == pytest.approx((0.75 + 1.5) / 2)
    assert float(m["pref_accuracy"]) == pytest.approx(0.5)
    assert float(m["negatives"]) == pytest.approx(1.5)
    assert all(not v.requires_grad for v in m.values())


def test_registry_and_bad_inputs():
    assert set(LOSSES.names()) == {"plackett_luce", "pairwise"}
    with pytest.raises(KeyError, match="pairwise, plackett_luce"):
        apo_loss(PC, PR, RC, RR, BETA, kind="ipo")
    with pytest.raises(ValueError, match="weights"):
        apo_loss(PC, PR, RC, RR, BETA, weights=t([1.0, -1.0]))
    with pytest.raises(ValueError, match="shape"):
        apo_loss(PC, PR, RC, RR, BETA, weights=t([1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="beta"):
        apo_loss(PC, PR, RC, RR, 0.0)


def _logits_from_probs(rows):
    """(B, T, V) logits whose softmax is exactly the given probability rows."""
    return torch.log(torch.tensor(rows, dtype=D))


def test_sequence_logps_hand_example():
    # V = 3, T = 4. Position t predicts token t+1. Labels: prompt token ignored, then 2, 0, ignored.
    probs = [[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]],
             [[0.5, 0.25, 0.25], [0.1, 0.7, 0.2], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05]]]
    labels = torch.tensor([[-100, 2, 0, -100], [-100, 1, 1, 0]])
    got = sequence_logps(_logits_from_probs(probs), labels)
    expect = [math.log(0.5) + math.log(0.6), math.log(0.25) + math.log(0.7) + math.log(0.3)]
    assert got.tolist() == pytest.approx(expect, abs=1e-12)
    logps, mask = token_logps(_logits_from_probs(probs), labels)
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    assert logps[0, 2].item() == 0.0


@pytest.mark.parametrize("chunk_bytes", [4 * 50 * 3, 2**28])  # 3 rows per chunk (uneven split), or all at once
def test_linear_token_logps_equals_token_logps_of_the_logits(chunk_bytes):
    """Chunked from hidden states = the logits path, values and gradients, float32 within 1e-5."""
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 7, 16, generator=gen, requires_grad=True)
    weight = torch.randn(50, 16, generator=gen, requires_grad=True)
    labels = torch.randint(0, 50, (3, 7), generator=gen)
    labels[0, :4] = -100  # prompt
    labels[2, 5:] = -100  # padding
    want, want_mask = token_logps(hidden @ weight.T, labels)
    g_out = torch.randn(want.shape, generator=gen)
    gh, gw = torch.autograd.grad((want * g_out).sum(), (hidden, weight))
    got, mask = linear_token_logps(hidden, weight, labels, chunk_bytes=chunk_bytes)
    assert torch.equal(mask, want_mask) and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-5, rtol=0) and (got[~mask] == 0).all()
    gh2, gw2 = torch.autograd.grad((got * g_out).sum(), (hidden, weight))
    assert torch.allclose(gh2, gh, atol=1e-5, rtol=0) and torch.allclose(gw2, gw, atol=1e-5, rtol=0)
    # the SFT loss built on either gives the same number
    w = torch.tensor([1.0, 2.0, 0.5])
    a, _ = weighted_sft_loss(hidden @ weight.T, labels, w)
    b, _ = weighted_sft_from_logps(got, mask, w)
    assert b.item() == pytest.approx(a.item(), abs=1e-6)


def test_linear_token_logps_hand_example_without_gradients():
    # H = V = 3 and weight = I: the logits are the hidden states, as in test_sequence_logps_hand_example.
    probs = [[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]]
    labels = torch.tensor([[-100, 2, 0]])
    with torch.no_grad():
        got, mask = linear_token_logps(_logits_from_probs(probs), torch.eye(3, dtype=D), labels, chunk_bytes=1)
    assert got.dtype == D and got[0].tolist() == pytest.approx([math.log(0.5), math.log(0.6)], abs=1e-12)
    empty, m = linear_token_logps(torch.zeros(1, 3, 3), torch.eye(3), torch.full((1, 3), -100))
    assert empty.shape == (1, 2) and not m.any() and (empty == 0).all()


def test_weighted_sft_equal_weights_is_plain_cross_entropy():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 6, 11, generator=gen)
    labels = torch.randint(0, 11, (3, 6), generator=gen)
    labels[0, :3] = -100
    labels[2, 4:] = -100
    expect = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    for w in (torch.ones(3), torch.full((3,), 2.5)):
        loss, m = weighted_sft_loss(logits, labels, w)
        assert loss.item() == pytest.approx(expect.item(), abs=1e-6)
        assert float(m["ce"]) == pytest.approx(expect.item(), abs=1e-6)


def test_weighted_sft_hand_example_and_normalizer():
    # Example 1: 2 target tokens with p 0.5, 0.6; example 2: 1 token with p 0.25 (V = 3).
    probs = [[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]],
             [[0.5, 0.25, 0.25], [0.1, 0.7, 0.2], [0.3, 0.3, 0.4]]]
    labels = torch.tensor([[-100, 2, 0], [-100, 1, -100]])
    w = t([3.0, 1.0])
    loss, m = weighted_sft_loss(_logits_from_probs(probs), labels, w)
    num = 3.0 * (-math.log(0.5) - math.log(0.6)) + 1.0 * -math.log(0.25)
    assert loss.item() == pytest.approx(num / (3.0 * 2 + 1.0 * 1), abs=1e-12)
    assert float(m["weighted_tokens"]) == 7.0 and float(m["tokens"]) == 3.0
    # Split into two micro-batches normalised by the total: the parts add up to the whole.
    a, _ = weighted_sft_loss(_logits_from_probs(probs[:1]), labels[:1], w[:1], normalizer=7.0)
    b, _ = weighted_sft_loss(_logits_from_probs(probs[1:]), labels[1:], w[1:], normalizer=7.0)
    assert (a + b).item() == pytest.approx(loss.item(), abs=1e-12)



def test_chosen_nll_is_the_mean_per_token_nll_over_prompts():
    from apodistill.losses import chosen_nll

    logps = torch.tensor([-2.0, -6.0], requires_grad=True)
    out = chosen_nll(logps, torch.tensor([2.0, 3.0]))
    assert out.item() == pytest.approx((2 / 2 + 6 / 3) / 2)  # 1.5
    out.backward()
    assert torch.allclose(logps.grad, torch.tensor([-1 / 4, -1 / 6]))
    assert chosen_nll(torch.tensor([-1.0]), torch.tensor([0.0])).item() == 1.0  # no target token: counted as one
