"""Training losses as small pure torch functions (docs/method.md, stages 1 and 3).

- ``apo_loss``: APO, the paper's Plackett-Luce top-1 loss over the consensus and the N raw
  teacher trajectories (``plackett_luce``), or the released script's pairwise sigmoid DPO
  (``pairwise``). Kinds are registered by name in ``LOSSES``.
- ``token_logps`` / ``sequence_logps``: log-probabilities of label tokens under causal shift.
- ``linear_token_logps``: the same from the last hidden states and the output layer, scoring
  only the label positions, chunk by chunk: no (B, T, V) logits tensor ever exists.
- ``weighted_sft_loss``: SPD with black-box teachers, token cross-entropy weighted by w_u.

Every function takes tensors and returns tensors; nothing here knows about models, batches
on disk or configs, so each loss can be checked against hand-computed numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from apodistill.registry import Registry

if TYPE_CHECKING:
    import torch

# A per-prompt APO loss: (r_chosen (B,), r_rejected (B, N), weights (B, N), valid (B, N)) -> (B,)
ApoKind = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]
LOSSES: Registry[ApoKind] = Registry("APO loss")


@LOSSES.register("plackett_luce")
def plackett_luce_loss(r_chosen, r_rejected, weights, valid):
    """Paper's loss: the consensus is ranked first among itself and all valid negatives.

        loss_b = -log( exp r_c / (exp r_c + sum_u w_u exp r_u) )
               = logsumexp([r_c, r_u + log w_u for valid u]) - r_c

    Invalid negatives (mask False or w_u = 0) enter as -inf, i.e. exp(.) = 0, so they drop
    out exactly, as if the prompt never had them. A prompt with no valid negative gets 0
    (P(chosen wins against nobody) = 1). logsumexp keeps the loss and its gradient (a
    softmax) finite for rewards of any size. Scaling all w_u by c acts like adding log c to
    every negative's reward: the loss is NOT invariant to the scale of the weights.
    """
    import torch

    log_w = torch.log(torch.where(valid, weights, torch.ones_like(weights)))
    neg = torch.where(valid, r_rejected + log_w, torch.full_like(r_rejected, float("-inf")))
    scores = torch.cat([r_chosen.unsqueeze(1), neg], dim=1)
    return torch.logsumexp(scores, dim=1) - r_chosen


@LOSSES.register("pairwise")
def pairwise_loss(r_chosen, r_rejected, weights, valid):
    """Released script's variant: one sigmoid DPO term per (consensus, teacher) pair.

        term_bu = -log sigmoid(r_c - r_u) = softplus(r_u - r_c)
        loss_b  = sum_u w_u * term_bu / sum_u w_u        (valid u only)

    i.e. a w-weighted mean over the prompt's valid pairs, so it is invariant to the scale
    of the weights and, with w = 1, is the plain mean of the N DPO terms. Averaging per
    prompt first means a prompt with few valid negatives counts as much as one with N
    (TRL's expanded pairs instead weigh prompts by their number of pairs; the same when all
    prompts have N). A prompt with no valid negative gets 0. softplus is stable for large
    reward gaps.
    """
    import torch
    import torch.nn.functional as F

    w = torch.where(valid, weights, torch.zeros_like(weights))
    term = torch.where(valid, F.softplus(r_rejected - r_chosen.unsqueeze(1)), torch.zeros_like(r_rejected))
    return (w * term).sum(dim=1) / w.sum(dim=1).clamp_min(torch.finfo(w.dtype).tiny)


def _at_least_float32(x):
    """Upcast half precision to float32 for softmax-type reductions; keep float64 as is."""
    import torch

    return x.to(torch.promote_types(x.dtype, torch.float32))


def _negative_weights(weights, batch: int, n: int, like):
    import torch

    if weights is None:
        return torch.ones(batch, n, dtype=like.dtype, device=like.device)
    weights = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if weights.shape not in ((n,), (batch, n)):
        raise ValueError(f"weights must have shape ({n},) or ({batch}, {n}); got {tuple(weights.shape)}")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("weights must be finite and >= 0 (0 drops that negative)")
    return weights.expand(batch, n)


def apo_loss(
    policy_chosen_logps,
    policy_rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    beta: float,
    weights=None,
    kind: str = "plackett_luce",
    rejected_mask=None,
):
    """APO loss (docs/method.md, stage 3) for a batch of prompts, each with one chosen and N rejected.

    Rewards are r = beta * (log pi_theta(t) - log pi_ref(t)) for the chosen (consensus)
    sequence, shape (B,), and each rejected (teacher) sequence, shape (B, N). ``kind`` picks a
    per-prompt loss from ``LOSSES`` (see ``plackett_luce_loss`` and ``pairwise_loss``);
    the returned loss is the mean over the B prompts, so equal-sized micro-batches average
    to the full-batch loss under gradient accumulation.

    ``weights``: (N,) or (B, N) teacher weights w_u >= 0, None = all 1. ``rejected_mask``:
    (B, N) bool, False marks padding / absent negatives (a quarantined teacher trajectory,
    one identical to the chosen); their log-probs may hold any value, nan and inf included,
    and get a zero gradient. A negative with w_u = 0
    is treated exactly like a masked one, in the loss and in the metrics.

    Metrics (detached 0-dim tensors):
      reward_chosen   mean r_c over the B prompts
      reward_rejected mean r_u over all valid (prompt, negative) entries
      margin          mean over prompts with >= 1 valid negative of r_c - mean_valid(r_u)
      pref_accuracy   share of those prompts where r_c > every valid r_u
      negatives       mean number of valid negatives per prompt
    margin and pref_accuracy are NaN when no prompt has a valid negative.
    """
    import torch

    per_prompt = LOSSES.get(kind)
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if policy_rejected_logps.dim() != 2 or policy_chosen_logps.dim() != 1:
        raise ValueError("chosen log-probs must be (B,) and rejected (B, N)")
    batch, n = policy_rejected_logps.shape
    if policy_chosen_logps.shape[0] != batch:
        raise ValueError(f"chosen has {policy_chosen_logps.shape[0]} prompts, rejected {batch}")

    r_chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    r_rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    w = _negative_weights(weights, batch, n, r_rejected)
    valid = w > 0
    if rejected_mask is not None:
        if rejected_mask.shape != (batch, n):
            raise ValueError(f"rejected_mask must be ({batch}, {n}); got {tuple(rejected_mask.shape)}")
        valid = valid & rejected_mask.to(torch.bool)
    # Padding may hold nan/inf; zero it before any op whose backward would turn 0 * nan into nan.
    r_rejected = torch.where(valid, r_rejected, torch.zeros_like(r_rejected))

    loss = per_prompt(r_chosen, r_rejected, w, valid).mean()

    with torch.no_grad():
        rc, ru = r_chosen.detach(), r_rejected.detach()
        count = valid.sum(dim=1)
        has = count > 0
        ru_zero = torch.where(valid, ru, torch.zeros_like(ru))
        mean_ru = ru_zero.sum(dim=1) / count.clamp_min(1)
        max_ru = torch.where(valid, ru, torch.full_like(ru, float("-inf"))).amax(dim=1)
        metrics = {
            "reward_chosen": rc.mean(),
            "reward_rejected": ru_zero.sum() / count.sum().clamp_min(1),
            "margin": (rc - mean_ru)[has].mean(),
            "pref_accuracy": (rc > max_ru)[has].float().mean(),
            "negatives": count.float().mean(),
        }
    return loss, metrics


def token_logps(logits, labels, ignore_index: int = -100):
    """Log-probability of each label token, with the causal shift.

    Position t of ``logits`` (B, T, V) predicts token t+1, so ``logits[:, :-1]`` are scored
    against ``labels[:, 1:]`` (the HF convention: labels are the input ids with non-target
    positions set to ``ignore_index``). Returns (logps (B, T-1), mask (B, T-1)); logps are 0
    where the mask is False. Computed as logit[label] - logsumexp(logits) one row at a time
    in float32, so a bf16 (B, T, V) batch is never copied whole to float32.
    """
    import torch

    logits = logits[:, :-1]
    targets = labels[:, 1:]
    mask = targets != ignore_index
    safe = torch.where(mask, targets, torch.zeros_like(targets))
    rows = []
    for row_logits, row_targets in zip(logits, safe):
        row_logits = _at_least_float32(row_logits)
        picked = row_logits.gather(-1, row_targets.unsqueeze(-1)).squeeze(-1)
        rows.append(picked - torch.logsumexp(row_logits, dim=-1))
    logps = torch.stack(rows)
    return torch.where(mask, logps, torch.zeros_like(logps)), mask


def linear_token_logps(hidden, weight, labels, ignore_index: int = -100, chunk_bytes: int = 2**27):
    """``token_logps(hidden @ weight.T, labels)`` without materialising the logits.

    ``hidden`` (B, T, H) are the last hidden states, ``weight`` (V, H) the output layer
    (lm_head; no bias in Qwen). Only the N positions that predict a label token are scored
    (prompt, image and padding positions cost nothing), in chunks of rows whose float32
    logits take at most ``chunk_bytes``; with gradients on and more than one chunk, each
    chunk is recomputed in the backward pass (activation checkpointing), so memory holds one
    chunk's (rows, V) logits at a time instead of a (B, T, V) tensor, its float32 copy and
    their gradients. For a 152k vocabulary and 4 x 578 tokens the full float32 logits alone
    are 1.4 GB; bench/logprob_memory.py measures the peak.

    The chunk's matmul runs like the model's own lm_head (``F.linear``, so under autocast
    in the autocast dtype), then the log-softmax in at least float32. Returns (logps
    (B, T-1), mask (B, T-1)) exactly as ``token_logps``: logps are 0 where mask is False.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    targets = labels[:, 1:]
    mask = targets != ignore_index
    rows_h = hidden[:, :-1][mask]  # (N, H), row-major order of the mask
    rows_t = targets[mask]
    per_chunk = max(1, int(chunk_bytes) // (4 * weight.shape[0]))
    # Recompute in backward only when there is more than one chunk: one chunk's logits fit
    # the budget anyway, and recomputing them would cost a second output-layer matmul.
    recompute = torch.is_grad_enabled() and (rows_h.requires_grad or weight.requires_grad) and rows_h.shape[0] > per_chunk
    parts = []
    for i in range(0, rows_h.shape[0], per_chunk):
        h, t = rows_h[i : i + per_chunk], rows_t[i : i + per_chunk]
        parts.append(checkpoint(_rows_logps, h, weight, t, use_reentrant=False) if recompute else _rows_logps(h, weight, t))
    out_dtype = torch.promote_types(torch.promote_types(hidden.dtype, weight.dtype), torch.float32)
    picked = torch.cat(parts) if parts else hidden.new_zeros(0, dtype=out_dtype)
    logps = torch.zeros(mask.shape, dtype=picked.dtype, device=hidden.device).masked_scatter(mask, picked)
    return logps, mask


def _rows_logps(h, weight, t):
    import torch
    import torch.nn.functional as F

    logits = _at_least_float32(F.linear(h, weight))
    return logits.gather(-1, t.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def sequence_logps(logits, labels, ignore_index: int = -100):
    """log pi(sequence) = sum over target tokens of log pi(token | prefix), shape (B,).

    Uses ``token_logps`` (logits[:, :-1] predict labels[:, 1:]); prompt and padding positions
    carry ``ignore_index`` and add nothing. This is the sequence log-probability APO's reward
    compares between the policy and the reference.
    """
    logps, _ = token_logps(logits, labels, ignore_index)
    return logps.sum(dim=1)


def weighted_sft_loss(logits, labels, example_weights, ignore_index: int = -100, normalizer=None):
    """SPD loss for black-box teachers: token cross-entropy, each example weighted by its w_u.

        loss = sum_b w_b * sum_t ce_bt / sum_b w_b * n_b

    where ce_bt = -log q(label_bt | prefix) (causal shift as in ``token_logps``) and n_b is
    example b's number of target tokens: a w-weighted mean per token. With all w_b equal this
    is exactly the plain mean token cross-entropy (HF's causal-LM loss), so w only reshapes
    how much each teacher's tokens count; it also means a teacher with long trajectories
    counts per token, as in the mixture objective sum_u w_u KL(pi_u || q) summed over tokens.

    ``normalizer``: if given, divides the weighted sum instead of this batch's own
    sum_b w_b * n_b. Gradient accumulation passes the effective batch's total (the sum of
    the micro-batches' ``weighted_tokens`` metric) so K micro-batches add up to exactly the
    full-batch loss. A batch without target tokens gives 0.

    Metrics (detached): ``ce`` unweighted mean token CE, ``tokens`` n target tokens,
    ``weighted_tokens`` sum_b w_b * n_b.
    """
    logps, mask = token_logps(logits, labels, ignore_index)
    return weighted_sft_from_logps(logps, mask, example_weights, normalizer)


def weighted_sft_from_logps(logps, mask, example_weights, normalizer=None):
    """``weighted_sft_loss`` from token log-probs and their mask, e.g. from ``linear_token_logps``."""
    import torch

    w = torch.as_tensor(example_weights, dtype=logps.dtype, device=logps.device)
    if w.shape != (logps.shape[0],):
        raise ValueError(f"example_weights must be ({logps.shape[0]},); got {tuple(w.shape)}")
    ce_sum = -logps.sum(dim=1)
    n_tokens = mask.sum(dim=1).to(logps.dtype)
    weighted_tokens = (w * n_tokens).sum()
    denom = weighted_tokens if normalizer is None else torch.as_tensor(normalizer, dtype=logps.dtype, device=logps.device)
    loss = (w * ce_sum).sum() / denom.clamp_min(torch.finfo(logps.dtype).tiny)
    metrics = {
        "ce": (ce_sum.sum() / n_tokens.sum().clamp_min(1)).detach(),
        "tokens": n_tokens.sum().detach(),
        "weighted_tokens": weighted_tokens.detach(),
    }
    return loss, metrics


def chosen_nll(chosen_logps, chosen_tokens):
    """Mean per-token negative log-likelihood of the chosen (consensus) sequences, averaged over prompts.

    The optional anchor of ``apo.sft_weight`` (0 in the paper's loss): added to the APO loss it keeps
    the consensus likely while the teachers' trajectories are pushed down, the stabiliser of
    RPO / iterative RPO (Pang et al., 2024). ``chosen_logps`` (B,) sums of target log-probs,
    ``chosen_tokens`` (B,) their token counts.
    """
    import torch

    return (-(chosen_logps / torch.clamp(chosen_tokens, min=1))).mean()

