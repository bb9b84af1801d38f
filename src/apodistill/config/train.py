"""``spd:``, ``self_distill:`` and ``apo:`` sections: the student and its three training steps."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from apodistill.config._base import Section


class TinyStudentConfig(Section):
    """Dimensions of the from-scratch Qwen2.5-VL student (used when ``base_model`` is null)."""

    vocab_size: int = Field(ge=300, description="Byte-level BPE vocabulary trained on the training corpus.")
    hidden_size: int = Field(gt=0, description="Text decoder width.")
    num_layers: int = Field(gt=0, description="Text decoder layers.")
    num_heads: int = Field(gt=0, description="Attention heads (head_dim = hidden/heads).")
    num_kv_heads: int = Field(gt=0, description="Key/value heads (grouped-query attention when < heads).")
    intermediate_size: int = Field(gt=0, description="MLP width.")
    vision_hidden_size: int = Field(gt=0, description="Vision tower width.")
    vision_depth: int = Field(gt=0, description="Vision tower blocks.")
    vision_heads: int = Field(gt=0, description="Vision attention heads.")

    @model_validator(mode="after")
    def _heads(self) -> "TinyStudentConfig":
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError("hidden_size / num_heads must be an even integer (rotary halves)")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError("vision_hidden_size must be a multiple of vision_heads")
        return self


class LoraConfigSection(Section):
    enabled: bool = Field(description="Train LoRA adapters instead of all weights.")
    r: int = Field(gt=0, description="LoRA rank (paper: 8).")
    alpha: int = Field(gt=0, description="LoRA alpha (paper: 32).")
    dropout: float = Field(ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] | Literal["all-linear"] = Field(description="Modules that get adapters.")
    vision: bool = Field(
        description="Adapters in the vision tower and merger too. false: the language model's layers only, the vision "
        "tower frozen (ms-swift's default, freeze_vit, which the paper trained with); its backward pass is then skipped.",
    )


class OptimConfig(Section):
    lr: float = Field(gt=0, description="Peak learning rate.")
    steps: int = Field(gt=0, description="Optimizer steps (the embedded default budgets in steps, not epochs).")
    epochs: float | None = Field(gt=0, description="If set, overrides steps with ceil(epochs * examples / effective batch).")
    batch_size: int = Field(gt=0, description="Per-device micro-batch.")
    grad_accum: int = Field(gt=0, description="Micro-batches per optimizer step.")
    warmup_ratio: float = Field(ge=0, lt=1, description="Linear warm-up share of the steps.")
    min_lr_ratio: float = Field(ge=0, le=1, description="Cosine decay floor as a share of lr.")
    weight_decay: float = Field(ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field(description="AdamW betas.")
    max_grad_norm: float = Field(gt=0, description="Gradient clipping.")
    checkpoint_every: int = Field(gt=0, description="Save a resumable checkpoint every N steps.")
    log_every: int = Field(gt=0, description="Log curves every N steps.")
    bf16: bool = Field(description="bf16 autocast (GPU); keep false on CPU.")
    group_by_length: bool = Field(
        description="Batch examples of similar length together (less padding; each example scores the same either way: "
        "tests/test_scoring.py) instead of uniformly at random (bench/results/spd_cpu_speed.json).",
    )


class SpdConfig(Section):
    base_model: str | None = Field(description="HF id or local path of the student (null: tiny model built from `model`).")
    model: TinyStudentConfig
    image_size: int = Field(ge=28, description="Images are resized to this side before the processor (64 -> 4 visual tokens).")
    max_length: int = Field(gt=0, description="Tokens per training sequence (prompt + trajectory).")
    consensus_fraction: float = Field(
        ge=0,
        lt=1,
        description="Share of SPD examples in the consensus format (teachers' trajectories in the prompt, their w_u-weighted vote as target), teaching a small student to compare; 0 for instruction-tuned students.",
    )
    lora: LoraConfigSection
    optim: OptimConfig


class SelfDistillConfig(Section):
    method: str = Field(
        description="in_context: the student writes the consensus (paper); or a label method registered in "
        "apodistill.consensus.METHODS: vote (each teacher once), weighted_vote (w_u), dawid_skene (per-teacher confusion by EM).",
    )
    context: Literal["full", "answers"] = Field(description="What of each teacher trajectory the student reads: full text, or its answer lines only.")
    max_new_tokens: int = Field(gt=0, description="Consensus length limit (tokens).")
    do_sample: bool = Field(description="Sample the consensus (true) or decode greedily.")
    temperature: float = Field(gt=0, description="Sampling temperature when do_sample.")
    top_p: float = Field(gt=0, le=1, description="Nucleus sampling when do_sample.")
    batch_size: int = Field(gt=0, description="Studies generated at once.")
    fallback: Literal["vote", "drop"] = Field(description="An unparseable consensus is replaced by the vote (recorded) or dropped.")
    compare: list[str] = Field(
        description="Methods whose answers on the training studies are measured against the benchmark's labels "
        "(measured only: nothing trains on them): the report's consensus table.",
    )
    compare_sample: int = Field(ge=0, description="Training studies the in_context comparison generates for (it runs the student); 0: skip it.")

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        from apodistill.consensus import IN_CONTEXT, METHODS

        return METHODS.check(method, also=(IN_CONTEXT,))

    @field_validator("compare")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        from apodistill.consensus import IN_CONTEXT, METHODS

        return [METHODS.check(m, also=(IN_CONTEXT,)) for m in methods]


class ApoConfig(Section):
    beta: float = Field(gt=0, description="Reward scale in r = beta * log(pi/pi_ref).")
    loss: str = Field(description="APO loss registered in apodistill.losses.LOSSES: plackett_luce (paper's N+1 softmax) | pairwise (released script's DPO pairs).")
    weight_negatives: bool = Field(description="Scale each negative by its teacher's w_u (false reproduces the paper).")
    negatives: Literal["all", "disagreeing"] = Field(
        description="all: every teacher trajectory is a negative (the paper); disagreeing: a variant that masks teachers whose "
        "answers equal the consensus on every finding, so the preference contrasts only differing answers.",
    )
    sft_weight: float = Field(
        ge=0,
        description="Weight of the chosen (consensus) sequence's per-token NLL added to the APO loss (0: the paper's loss; "
        ">0: the RPO-style anchor that keeps the consensus likely while negatives are pushed down).",
    )
    pairwise_baseline: bool = Field(
        description="Also train the paper's released variant (pairwise DPO, one pair per teacher) from the same reference, "
        "for the comparison table; the reference log-probs are shared, so it costs one more training run.",
    )
    max_length: int = Field(gt=0, description="Tokens per candidate sequence.")
    ref_batch_size: int = Field(gt=0, description="Prompts per forward when computing the reference log-probs (no gradients: can be larger).")
    lora: LoraConfigSection
    optim: OptimConfig

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, loss: str) -> str:
        from apodistill.losses import LOSSES  # no torch at import time

        return LOSSES.check(loss)


class ControlConfig(Section):
    """``control:``: the label-conditioned control arm (a second SPD student trained on teachers who
    explain each training study's known labels). It is the upper bound with gold labels, and the
    reference that bias inheritance is measured against; it never feeds the main students."""

    enabled: bool = Field(
        description="Ask the roster label-conditioned on train too (data/trajectories/control.parquet) and train the "
        "control student with the spd settings; false: no control arm (real teachers then cost nothing extra).",
    )

