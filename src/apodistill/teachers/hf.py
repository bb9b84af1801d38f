"""``hf`` backend: a local transformers vision-language model as a teacher.

It goes through the student's own processor path (:mod:`apodistill.student`): the same
chat template, image preparation and ``generate``. So any student folder written by the
spd/apo stages, or a local Qwen2.5-VL checkpoint, can serve as a teacher without a network
(nothing leaves the machine, so the PHI guard does not apply).

Roster fields it reads: ``model`` (a student folder with ``student.json``, or a local
pretrained checkpoint), ``concurrency`` (prompts per generate batch), ``max_tokens``
(max_new_tokens), ``temperature`` (null: greedy), ``image_size`` (side images are resized to).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

from apodistill.teachers.backends import BACKENDS, Backend, Request, Result, RunContext, Sink, is_refusal


def folder_fingerprint(path: str) -> str:
    """Names, sizes and mtimes of a model folder's files: retrained weights give a new key."""
    p = Path(path)
    if not p.is_dir():
        return path
    h = hashlib.sha256()
    for f in sorted(p.rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


@BACKENDS.register("hf")
class HFBackend(Backend):
    sends_images_off_machine = False

    def __init__(self, spec, ctx: RunContext):
        super().__init__(spec, ctx)
        self._fingerprint = folder_fingerprint(spec.model)
        self._model: Any = None
        self._processor: Any = None

    def answer_params(self, request: Request) -> dict[str, Any]:
        return {"weights": self._fingerprint, "max_new_tokens": self.spec.max_tokens,
                "temperature": self.spec.temperature, "image_size": self.spec.image_size}

    def _load(self) -> None:
        """Load weights only when something is asked (a fully cached run never loads them)."""
        if self._model is not None:
            return
        from apodistill.student import load_pretrained, load_student

        if (Path(self.spec.model) / "student.json").is_file():
            self._model, self._processor = load_student(self.spec.model)
        else:
            self._model, self._processor = load_pretrained(self.spec.model)
        self._model.eval()

    def _images(self, req: Request) -> list:
        from apodistill.student import prepare_image

        return [prepare_image(p, self.spec.image_size) for p in req.image_paths]

    def _generate(self, batch: list[Request]) -> list[Result]:
        from apodistill.student import generate

        self._load()
        images, ok = [], []
        results: dict[int, Result] = {}
        for i, req in enumerate(batch):
            try:
                images.append(self._images(req))
                ok.append(i)
            except OSError as err:
                results[i] = Result("", "error", f"image_unreadable: {err}")
        t0 = time.perf_counter()
        texts: list[str] = []
        if ok:
            sample = self.spec.temperature is not None and self.spec.temperature > 0
            texts = generate(self._model, self._processor, images, [batch[i].prompt for i in ok],
                             max_new_tokens=self.spec.max_tokens, do_sample=sample,
                             temperature=self.spec.temperature or 1.0)
        per = (time.perf_counter() - t0) / max(1, len(ok))
        tok = self._processor.tokenizer
        for i, text in zip(ok, texts):
            ptok = len(tok(batch[i].prompt)["input_ids"])
            ctok = len(tok(text)["input_ids"]) if text else 0
            # An empty or malformed generation is still the model's answer (greedy decoding
            # would give it again): stored as ok, the validate stage quarantines it.
            if is_refusal(text):
                results[i] = Result(text, "refused", "refusal", per, ptok, ctok, raw=text)
            else:
                results[i] = Result(text, "ok", None, per, ptok, ctok, raw=text)
        return [results[i] for i in range(len(batch))]

    async def run(self, requests: list[Request], sink: Sink) -> None:
        size = self.spec.concurrency
        for start in range(0, len(requests), size):
            batch = requests[start : start + size]
            # in a thread, so remote teachers in the same run keep their requests flowing
            results = await asyncio.to_thread(self._generate, batch)
            for req, res in zip(batch, results):
                sink(req, res)

    def close(self) -> None:
        self._model = self._processor = None
