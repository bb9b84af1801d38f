"""The student model: construction, tokenizer, processor, encoding and generation."""

from apodistill.student.encode import (
    IGNORE,
    Encoded,
    chat_prompt,
    encode,
    generate,
    load_template,
    prepare_image,
    render_template,
)
from apodistill.student.model import (
    apply_lora,
    build_processor,
    build_tiny_student,
    load_pretrained,
    load_student,
    save_student,
    student_info,
)
from apodistill.student.tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS, train_tokenizer

__all__ = [
    "IGNORE",
    "Encoded",
    "chat_prompt",
    "encode",
    "generate",
    "load_template",
    "prepare_image",
    "render_template",
    "apply_lora",
    "build_processor",
    "build_tiny_student",
    "load_pretrained",
    "load_student",
    "save_student",
    "student_info",
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "train_tokenizer",
]
