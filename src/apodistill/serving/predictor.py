"""The student ready to answer queries: one code path for the pyfunc, `predict` and `serve`.

A query is one current image, an optional prior image (then the task is the MS-CXR-T
prior/current comparison) and an optional prompt. Without a prompt the student gets the
task prompt it was trained on, stored with the registered model: a small student answers
its own prompt far better than a free-form one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass
class Query:
    image: Any  # PIL image, path, raw bytes, base64 text or data URL
    prior_image: Any | None = None
    prompt: str | None = None


@dataclass
class Answer:
    trajectory: str
    task: str  # single | pair
    wellformed: bool
    answers: dict[str, str | None] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0  # the decoded text re-tokenized (special tokens are not counted)
    finish_reason: str = "stop"  # stop | length (the generation hit max_new_tokens)

    def as_dict(self) -> dict[str, Any]:
        return {
            "trajectory": self.trajectory, "task": self.task, "wellformed": self.wellformed,
            "answers": self.answers, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "finish_reason": self.finish_reason,
        }


class Predictor:
    """Model, processor, the findings it answers, its task prompts and its input profile.

    ``answer`` holds a lock: one generate at a time, since torch modules are not meant to be
    driven from several threads; concurrency comes from batching several queries into one
    call (``apodistill serve`` queues and batches requests).
    """

    def __init__(self, model: Any, processor: Any, findings: Sequence[str], prompts: dict[str, str],
                 image_size: int, max_new_tokens: int = 96, input_profile: dict[str, Any] | None = None):
        self.model = model
        self.processor = processor
        self.findings = list(findings)
        self.prompts = dict(prompts)
        self.image_size = int(image_size)
        self.max_new_tokens = int(max_new_tokens)
        self.input_profile = input_profile  # training image statistics (serving/input_check.py); None: basic checks
        self._lock = threading.Lock()

    @classmethod
    def from_folder(cls, student_dir: str, meta: dict[str, Any]) -> "Predictor":
        """Load a student folder (full or LoRA) with the registered ``meta`` (findings, prompts, input profile)."""
        from apodistill.student import load_student, student_info

        model, processor = load_student(student_dir)
        model.eval()
        size = student_info(student_dir).get("image_size") or meta["image_size"]
        return cls(model, processor, meta["findings"], meta["prompts"], size, meta.get("max_new_tokens", 96),
                   meta.get("input_profile"))

    def check(self, q: Query) -> tuple[str, list[Any]]:
        """(task, decoded images, prior first); raises ValueError for an image that does not
        decode and :class:`~apodistill.serving.input_check.InputRejected` for one far outside
        the training images."""
        from apodistill.serving.input_check import InputRejected, check_image
        from apodistill.serving.pyfunc import decode_image

        pair = not (q.prior_image is None or (isinstance(q.prior_image, str) and not q.prior_image))
        named = [("prior image", q.prior_image), ("image", q.image)] if pair else [("image", q.image)]
        out = []
        for name, value in named:
            im = decode_image(value)
            reason = check_image(im, self.input_profile)
            if reason is not None:
                raise InputRejected(f"{name}: {reason}")
            out.append(im)
        return ("pair" if pair else "single"), out

    def _images(self, q: Query) -> tuple[str, list[Any]]:
        from apodistill.student import prepare_image

        task, images = self.check(q)
        return task, [prepare_image(im, self.image_size) for im in images]

    def answer(self, queries: Sequence[Query], max_new_tokens: int | None = None,
               temperature: float | None = None, on_delta: Callable[[int, str], None] | None = None) -> list[Answer]:
        """Greedy answers (sampled when ``temperature`` > 0), parsed into per-finding labels.

        Raises ValueError for an image that cannot be decoded or is refused by the input
        check (before any generation). ``on_delta(i, text)``, when given, receives query i's
        trajectory piece by piece as it is generated (their concatenation is the trajectory).
        """
        import pandas as pd

        from apodistill.evaluate import parse_predictions
        from apodistill.student import chat_prompt, generate

        if not queries:
            return []
        max_new = int(max_new_tokens or self.max_new_tokens)
        tasks, images = zip(*(self._images(q) for q in queries))
        prompts = [q.prompt or self.prompts[t] for q, t in zip(queries, tasks)]
        sample = bool(temperature and temperature > 0)
        with self._lock:
            streamer = None
            if on_delta is not None:
                from apodistill.serving.stream import RowStreamer

                streamer = RowStreamer(self.processor.tokenizer, on_delta)
            texts = generate(self.model, self.processor, list(images), prompts, max_new,
                             do_sample=sample, temperature=temperature if sample else 1.0, streamer=streamer)
            tok = self.processor.tokenizer
            prompt_tokens = [
                len(self.processor(text=[chat_prompt(self.processor, p, len(imgs))], images=list(imgs))["input_ids"][0])
                for p, imgs in zip(prompts, images)
            ]
            completion_tokens = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
        rows = pd.DataFrame({"task": list(tasks), "study_id": "", "prior_study_id": "", "text": texts})
        parsed = parse_predictions(rows, self.findings)
        out = []
        for i, r in enumerate(parsed.to_dict("records")):
            out.append(Answer(
                trajectory=texts[i], task=tasks[i], wellformed=bool(r["wellformed"]),
                answers={f: r[f"answer_{f}"] for f in self.findings},
                prompt_tokens=prompt_tokens[i], completion_tokens=completion_tokens[i],
                finish_reason="length" if completion_tokens[i] >= max_new else "stop",
            ))
        return out
