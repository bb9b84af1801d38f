"""The student: Qwen2.5-VL, either tiny and built from a config (embedded default) or a
pretrained checkpoint such as Qwen/Qwen2.5-VL-7B-Instruct (GPU profile), optionally with LoRA.

``load_student`` understands both a full save and a LoRA adapter folder whose
``student.json`` names its base, so every stage and the registry load students one way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from apodistill.config.train import LoraConfigSection, TinyStudentConfig

STUDENT_FILE = "student.json"
# Attention kernel for every student: PyTorch's scaled_dot_product_attention (fused kernels on
# GPU, same numbers as eager: tests/test_scoring.py). flash-attn is not a dependency.
ATTENTION = "sdpa"


_PROCESSOR_CLASS = None


def _processor_class():
    global _PROCESSOR_CLASS
    if _PROCESSOR_CLASS is not None:
        return _PROCESSOR_CLASS
    from transformers import Qwen2_5_VLProcessor

    class StudentProcessor(Qwen2_5_VLProcessor):
        """Qwen2.5-VL processor without the video processor.

        The video processor imports torchvision, which does not load with the pinned CPU
        torch; this project feeds still images only.
        """

        # The processor's sub-processors are read from this signature: no video_processor here.
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kw):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kw)

    _PROCESSOR_CLASS = StudentProcessor
    return StudentProcessor


def build_processor(tokenizer: Any, image_size: int):
    """Processor for ``image_size`` px inputs: images are never upscaled (min = max pixels)."""
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    side = max(56, (image_size // 28) * 28)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=side * side, max_pixels=side * side)
    cls = _processor_class()
    return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)


def tiny_config(cfg: TinyStudentConfig, tokenizer: Any):
    from transformers import Qwen2_5_VLConfig

    head_dim = cfg.hidden_size // cfg.num_heads
    half = head_dim // 2
    # mrope sections (temporal, height, width) must sum to head_dim / 2.
    t = half // 4
    h = (half - t) // 2
    mrope = [t, h, half - t - h]
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=2048,
        rope_scaling={"type": "mrope", "mrope_section": mrope},
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        depth=cfg.vision_depth,
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_hidden_size * 2,
        num_heads=cfg.vision_heads,
        out_hidden_size=cfg.hidden_size,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        fullatt_block_indexes=[cfg.vision_depth - 1],
        window_size=112,
        in_channels=3,
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_tiny_student(cfg: TinyStudentConfig, tokenizer: Any, seed: int = 0):
    """A randomly initialised Qwen2_5_VLForConditionalGeneration of the given dimensions."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration._from_config(tiny_config(cfg, tokenizer), attn_implementation=ATTENTION)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return model


def load_pretrained(name_or_path: str, dtype: str = "auto"):
    """A pretrained Qwen2.5-VL (local path or hub id already in the local cache) and its processor."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(name_or_path, dtype=dtype, attn_implementation=ATTENTION)
    return model, processor_from(name_or_path)


def processor_from(folder: str | Path):
    """The student processor from a saved folder or hub snapshot (tokenizer + image processor)."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return _processor_class()(
        image_processor=Qwen2VLImageProcessorPil.from_pretrained(folder),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )


VISION_MODULES = r".*\bvisual\b.*"  # Qwen2.5-VL's vision tower and merger: model.visual.*


def apply_lora(model: Any, cfg: LoraConfigSection):
    """Wrap the model with fresh LoRA adapters (peft); with ``cfg.vision`` false the vision tower
    gets none and stays frozen, so backward passes stop at its output."""
    from peft import LoraConfig, get_peft_model

    target = cfg.target_modules if isinstance(cfg.target_modules, str) else list(cfg.target_modules)
    lora = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=target, task_type="CAUSAL_LM",
                      exclude_modules=None if cfg.vision else VISION_MODULES)  # fmt: skip
    return get_peft_model(model, lora)


def save_student(model: Any, processor: Any, out_dir: str | Path, base: str | None = None, extra: dict | None = None) -> None:
    """Save weights (full, or the LoRA adapter with ``base`` recorded) and the processor."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    is_lora = hasattr(model, "peft_config")
    model.save_pretrained(out)
    processor.tokenizer.save_pretrained(out)
    processor.image_processor.save_pretrained(out)
    record = {"kind": "lora" if is_lora else "full", "base": base, **(extra or {})}
    (out / STUDENT_FILE).write_text(json.dumps(record, indent=2) + "\n")


def load_student(path: str | Path, merge: bool = True, dtype: Any = None):
    """(model, processor) from a folder written by :func:`save_student`.

    A LoRA folder loads its base first (recursively) and applies the adapter, merged by
    default so the result is a plain model.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    path = Path(path)
    info_file = path / STUDENT_FILE
    if not info_file.is_file():
        raise FileNotFoundError(f"{path}: not a student folder ({STUDENT_FILE} missing); expected the output of the spd or apo stage")
    info = json.loads(info_file.read_text())
    processor = processor_from(path)
    if info["kind"] == "lora":
        from peft import PeftModel

        base = info["base"]
        if base and (Path(base) / STUDENT_FILE).is_file():
            model, _ = load_student(base, merge=True, dtype=dtype)
        else:
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, dtype=dtype or "auto", attn_implementation=ATTENTION)
        model = PeftModel.from_pretrained(model, path)
        if merge:
            model = model.merge_and_unload()
    else:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=dtype or torch.float32, attn_implementation=ATTENTION)
    return model, processor


def student_info(path: str | Path) -> dict:
    return json.loads((Path(path) / STUDENT_FILE).read_text())
