"""Scoring a batch for training: log-probs of the supervised tokens without the logits tensor.

Shared by SPD (weighted SFT) and APO (sequence log-probs of the N+1 candidates, policy and
reference). Exact against the model's full logits + ``losses.token_logps``: tests/test_scoring.py.
"""

from __future__ import annotations

from typing import Any

from apodistill.student.encode import Encoded


def target_logps(model: Any, enc: Encoded) -> tuple[Any, Any]:
    """Log-probs of the supervised tokens, (B, T-1) with their mask, as ``token_logps`` gives.

    The forward runs through ``model`` itself (so DDP and DeepSpeed see it) with the output
    layer swapped for the identity, which returns the last hidden states instead of the
    (B, T, V) logits; ``linear_token_logps`` then scores only the label positions, chunk by
    chunk. Under FSDP the output layer's weight is sharded outside the forward, so there
    the logits path is kept.
    """
    import torch

    from apodistill.losses import linear_token_logps, token_logps

    owner = _output_owner(model)
    if owner is None:
        return token_logps(model(**enc.model_inputs()).logits, enc.labels)
    head = owner.get_output_embeddings()
    owner.set_output_embeddings(torch.nn.Identity())
    try:
        hidden = model(**enc.model_inputs()).logits
    finally:
        owner.set_output_embeddings(head)
    return linear_token_logps(hidden, head.weight, enc.labels)


def _output_owner(model: Any) -> Any:
    """The transformers model holding ``lm_head`` (under DDP / compile / DeepSpeed / peft), or
    None where its weight cannot be used outside the forward (FSDP)."""
    from accelerate.utils import extract_model_from_parallel

    name = type(model).__name__
    if name.startswith("FSDP") or "FullyShardedDataParallel" in name:
        return None
    inner = extract_model_from_parallel(model, keep_fp32_wrapper=True)
    if hasattr(inner, "get_base_model"):  # peft
        inner = inner.get_base_model()
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if head is None or getattr(head, "bias", None) is not None or type(head.weight).__name__ == "DTensor":
        return None
    return inner
