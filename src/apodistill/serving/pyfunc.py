"""The student as an MLflow pyfunc model (weights + processor + prompts + params + metrics).

mlflow.transformers mishandles Qwen2.5-VL processors, so the student is logged as a
pyfunc with its folder as an artifact. Input: a DataFrame with ``image`` (a path, base64
text of a PNG/JPEG, or a ``data:image/...;base64,`` URL), optional ``prior_image`` (then the
task is the prior/current comparison) and optional ``prompt`` (default: the task prompt the
student was trained on). Output: ``trajectory``, ``task``, ``wellformed`` and one
``answer_<finding>`` column per finding (None when the trajectory does not parse).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

_MAX_PATH_CHARS = 4096  # longer strings are data, never file names (and would raise ENAMETOOLONG)
_PATH_LIKE_CHARS = 1024  # undecodable text shorter than this is reported as a missing file


def decode_image(value: Any):
    """A PIL image from a path, raw bytes, base64 text or a ``data:image/...;base64,`` URL.

    Raises ValueError with a message fit for an API client on anything else.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, Image.Image):
        return value
    source = "data"
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str) and value.startswith("data:"):
        header, sep, b64 = value.partition(",")
        if not header.startswith("data:image/"):
            raise ValueError(f"not an image data URL (media type {header[5:].split(';')[0] or 'missing'!r}); expected data:image/png;base64,...")
        if not sep or not header.endswith(";base64"):
            raise ValueError("image data URL must be base64 encoded (data:image/png;base64,...)")
        try:
            data = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("image data URL holds invalid base64") from None
    elif isinstance(value, str) and len(value) < _MAX_PATH_CHARS and Path(value).is_file():
        data, source = Path(value).read_bytes(), "path"
    elif isinstance(value, str) and len(value) < _MAX_PATH_CHARS and Path(value).is_dir():
        raise ValueError(f"file not found: {value} (a folder; give an image file)")
    elif isinstance(value, str):
        try:
            data, source = base64.b64decode(value, validate=True), "base64"
        except (binascii.Error, ValueError):
            if len(value) < _PATH_LIKE_CHARS:
                raise ValueError(f"file not found: {value}") from None
            raise ValueError(f"image is neither an existing path nor base64: {value[:60]!r}") from None
    else:
        raise ValueError(f"unsupported image value of type {type(value).__name__}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        if source == "base64" and len(value) < _PATH_LIKE_CHARS:
            # Short text that happens to be valid base64 ("scan") is a mistyped path, not image data.
            raise ValueError(f"file not found: {value}") from None
        what = "not an image format PIL reads (PNG, JPEG, ...)" if isinstance(err, UnidentifiedImageError) else str(err)
        raise ValueError(f"cannot decode image{f' {value}' if source == 'path' else ''}: {what}") from None


class StudentModel(mlflow.pyfunc.PythonModel):
    """Loads the student folder artifact into a :class:`~apodistill.serving.predictor.Predictor`."""

    def load_context(self, context):
        from apodistill.serving.predictor import Predictor

        self.meta = json.loads(Path(context.artifacts["meta"]).read_text())
        self.predictor = Predictor.from_folder(context.artifacts["student"], self.meta)
        self.artifacts = dict(context.artifacts)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from apodistill.serving.predictor import Query

        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "image" not in df:
            raise ValueError("input needs an 'image' column (path, base64 or data URL)")
        params = params or {}
        queries = [
            Query(r["image"], _present(r.get("prior_image")), _present(r.get("prompt")))
            for r in df.to_dict("records")
        ]
        answers = self.predictor.answer(queries, params.get("max_new_tokens"))
        findings = self.predictor.findings
        return pd.DataFrame(
            [{"trajectory": a.trajectory, "task": a.task, "wellformed": a.wellformed,
              **{f"answer_{f}": a.answers[f] for f in findings}} for a in answers],
            columns=["trajectory", "task", "wellformed", *[f"answer_{f}" for f in findings]],
        )


def _present(value: Any) -> Any:
    """Optional DataFrame cells arrive as None, NaN or "": all mean absent."""
    if value is None or (isinstance(value, float) and value != value) or (isinstance(value, str) and not value):
        return None
    return value
