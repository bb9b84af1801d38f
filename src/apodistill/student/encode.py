"""Turning (images, prompt, target) into model inputs, scoring sequences, and generating.

One path for every student and stage: the chat template renders the prompt with one image
placeholder per image, the processor expands placeholders and computes pixel patches, the
target trajectory (plus the end-of-turn token) is appended and is the only supervised part.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

IGNORE = -100


def render_template(template: str, **fields: str) -> str:
    """Fill ``{name}`` fields of a prompt template (str.format with only the given names)."""
    try:
        return template.format(**fields)
    except KeyError as err:
        raise KeyError(f"prompt template needs field {err}; given: {sorted(fields)}") from None


def load_template(templates_dir: str | Path, name: str) -> str:
    path = Path(templates_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {path} not found")
    return path.read_text().strip()


def prepare_image(img: Image.Image | str | Path, size: int) -> Image.Image:
    """Grayscale radiographs become 3-channel ``size`` x ``size`` images (the processor wants RGB)."""
    if not isinstance(img, Image.Image):
        with Image.open(img) as f:
            img = f.copy()
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return img


# Two images are a prior/current pair: each is named in the text right before it. Why: with only
# its position to tell them apart, the small student read pairs backwards about as often as not
# ("decreased" for a finding that had grown); a name gives attention a token to find each image by.
PAIR_NAMES = ("Prior:", "Current:")


def chat_prompt(processor: Any, prompt: str, n_images: int) -> str:
    if n_images == 2:
        content = [part for name in PAIR_NAMES for part in ({"type": "text", "text": name}, {"type": "image"})]
    else:
        content = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": prompt})
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@dataclass
class Encoded:
    """A padded batch; ``labels`` mark the supervised (target) tokens, IGNORE elsewhere."""

    input_ids: Any
    attention_mask: Any
    labels: Any
    pixel_values: Any
    image_grid_thw: Any

    def model_inputs(self) -> dict[str, Any]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "pixel_values": self.pixel_values,
            "image_grid_thw": self.image_grid_thw,
        }

    def to(self, device: Any) -> "Encoded":
        return Encoded(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.labels, self.pixel_values, self.image_grid_thw)))


def encode(
    processor: Any,
    images: Sequence[Sequence[Image.Image]],
    prompts: Sequence[str],
    targets: Sequence[str],
    max_length: int,
) -> Encoded:
    """Encode examples for teacher-forced training or scoring (right padding).

    Sequences longer than ``max_length`` lose the end of the target (the prompt and its image
    tokens are kept whole, or the example would not match its pixels).
    """
    import torch

    tok = processor.tokenizer
    texts = [chat_prompt(processor, p, len(imgs)) for p, imgs in zip(prompts, images)]
    flat = [im for imgs in images for im in imgs]
    enc = processor(text=texts, images=flat, padding=False, return_tensors=None)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    rows, labels = [], []
    for prompt_ids, target in zip(enc["input_ids"], targets):
        target_ids = tok(target, add_special_tokens=False)["input_ids"] + [eos]
        room = max(0, max_length - len(prompt_ids))
        target_ids = target_ids[:room]
        rows.append(list(prompt_ids) + target_ids)
        labels.append([IGNORE] * len(prompt_ids) + target_ids)
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    lab = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (r, l) in enumerate(zip(rows, labels)):
        input_ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
        lab[i, : len(l)] = torch.tensor(l)
    pixel_values = torch.as_tensor(enc["pixel_values"]) if not torch.is_tensor(enc["pixel_values"]) else enc["pixel_values"]
    grid = torch.as_tensor(enc["image_grid_thw"])
    return Encoded(input_ids, attn, lab, pixel_values.float(), grid)


def generate(
    model: Any,
    processor: Any,
    images: Sequence[Sequence[Image.Image]],
    prompts: Sequence[str],
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    streamer: Any = None,
) -> list[str]:
    """Generate one completion per prompt (left padding; decoding stops at the end-of-turn token).

    ``streamer``: a transformers ``BaseStreamer`` that receives each step's tokens (serving streams them)."""
    import torch

    tok = processor.tokenizer
    texts = [chat_prompt(processor, p, len(imgs)) for p, imgs in zip(prompts, images)]
    flat = [im for imgs in images for im in imgs]
    old_side = tok.padding_side
    tok.padding_side = "left"
    try:
        enc = processor(text=texts, images=flat, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = old_side
    device = next(model.parameters()).device
    enc = {k: v.to(device) for k, v in enc.items()}
    kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample)
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
    with torch.no_grad():
        out = model.generate(
            **enc,
            eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tok.pad_token_id,
            streamer=streamer,
            **kwargs,
        )
    new = out[:, enc["input_ids"].shape[1] :]
    return [s.strip() for s in tok.batch_decode(new, skip_special_tokens=True)]
