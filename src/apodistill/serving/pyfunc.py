"""The student as an MLflow pyfunc model (weights + processor + prompt templates).

mlflow.transformers mishandles Qwen2.5-VL processors, so the student is logged as a
pyfunc with its folder as an artifact. Input: a DataFrame with ``image`` (a path or base64
bytes of a PNG/JPEG), optional ``prior_image`` (for prior/current comparisons) and optional
``prompt`` (defaults to the task's template). Output: ``trajectory``, ``wellformed`` and one
``answer_<finding>`` column per finding.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc


def decode_image(value: Any):
    """A PIL image from a path, raw bytes, base64 text or a ``data:image/...;base64,`` URL."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str) and value.startswith("data:"):
        header, _, b64 = value.partition(",")
        if not header.startswith("data:image/"):
            raise ValueError(f"not an image data URL ({header[:40]!r})")
        data = base64.b64decode(b64, validate=False)
    elif isinstance(value, str) and Path(value).is_file():
        data = Path(value).read_bytes()
    elif isinstance(value, str):
        try:
            data = base64.b64decode(value, validate=True)
        except ValueError:
            raise ValueError(f"image is neither an existing path nor base64: {value[:60]!r}") from None
    else:
        raise ValueError(f"unsupported image value of type {type(value).__name__}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot decode image: {err}") from None


class StudentModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from apodistill.student import load_student, student_info

        folder = context.artifacts["student"]
        self.model, self.processor = load_student(folder)
        self.model.eval()
        self.meta = json.loads(Path(context.artifacts["meta"]).read_text())
        self.image_size = student_info(folder).get("image_size") or self.meta["image_size"]

    def prompt_for(self, task: str) -> str:
        return self.meta["prompts"][task]

    def predict(self, context: Any, model_input: Any, params: dict | None = None):
        import pandas as pd

        from apodistill.evaluate import parse_predictions
        from apodistill.student import generate, prepare_image

        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "image" not in df:
            raise ValueError("input needs an 'image' column (path, base64 or data URL)")
        params = params or {}
        max_new = int(params.get("max_new_tokens", self.meta.get("max_new_tokens", 96)))
        images, prompts, tasks = [], [], []
        for row in df.to_dict("records"):
            cur = prepare_image(decode_image(row["image"]), self.image_size)
            prior = row.get("prior_image")
            task = "pair" if isinstance(prior, (str, bytes)) and prior else "single"
            imgs = [prepare_image(decode_image(prior), self.image_size), cur] if task == "pair" else [cur]
            images.append(imgs)
            prompts.append(row.get("prompt") or self.prompt_for(task))
            tasks.append(task)
        texts = generate(self.model, self.processor, images, prompts, max_new)
        out = pd.DataFrame({"task": tasks, "study_id": "", "prior_study_id": "", "text": texts})
        out = parse_predictions(out, self.meta["findings"])
        cols = ["text", "wellformed"] + [f"answer_{f}" for f in self.meta["findings"]]
        return out[cols].rename(columns={"text": "trajectory"})
