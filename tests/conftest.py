"""Shared test set-up: offline, no analytics, and tiny-model factories."""

from __future__ import annotations

import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers on a 2-core machine: one torch thread each (and in the
    # stages the e2e tests launch: accelerate takes OMP_NUM_THREADS), else OpenMP threads spin
    # against each other. Results do not depend on the thread count (docs: Reproducibility).
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pytest

from apodistill.findings import MS_CXR_T_5, format_trajectory

TINY_DIMS = dict(
    vocab_size=300,
    hidden_size=32,
    num_layers=1,
    num_heads=2,
    num_kv_heads=2,
    intermediate_size=64,
    vision_hidden_size=32,
    vision_depth=1,
    vision_heads=2,
)


def make_trajectory(rng: np.random.Generator, findings=MS_CXR_T_5) -> str:
    labels = {f: ("yes" if rng.random() < 0.4 else "no") for f in findings}
    think = " ".join(rng.choice(["opacity", "clear lungs", "blunted angle", "haze", "rim"], size=3))
    return format_trajectory(think, labels, findings)


@pytest.fixture
def tiny_images(tmp_path):
    """Eight small grayscale PNGs on disk (paths relative to tmp_path)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        p = tmp_path / f"img{i}.png"
        Image.fromarray((rng.random((64, 64)) * 255).astype("uint8"), mode="L").save(p)
        paths.append(p.name)
    return tmp_path, paths


def tiny_student_factory(seed: int = 0, texts: list[str] | None = None):
    """(model, processor): the TINY_DIMS student with a tokenizer trained on a few trajectories."""
    from apodistill.config.train import TinyStudentConfig
    from apodistill.student import build_processor, build_tiny_student, train_tokenizer

    rng = np.random.default_rng(1)
    corpus = texts or [make_trajectory(rng) for _ in range(40)] + ["Chest X-ray. Think, then answer."]
    tok = train_tokenizer(corpus, TINY_DIMS["vocab_size"])
    proc = build_processor(tok, 64)
    model = build_tiny_student(TinyStudentConfig(**TINY_DIMS), tok, seed=seed)
    return model, proc


@pytest.fixture
def tiny_student():
    """A factory: (model, processor) with a tokenizer trained on a few trajectories."""
    return tiny_student_factory


@pytest.fixture(scope="session")
def vendor(tmp_path_factory) -> Path:
    """The CDN assets `make setup` vendors into .vendor/ (apodistill.offline); fetched from the
    npm registry into a temporary folder when set-up has not run here."""
    import shutil

    from apodistill.offline import VEGA, fetch

    local = Path(__file__).resolve().parents[1] / ".vendor"
    if (local / VEGA[0][0]).is_dir():
        return local
    if shutil.which("npm") is None:
        pytest.skip("no .vendor/ (make setup) and no npm to fetch it")
    return fetch(tmp_path_factory.mktemp("vendor"))
