"""Shared set-up for the registry and serving tests: a tiny student, a temporary MLflow
store, registering versions with known metrics, and a served student in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from apodistill.findings import MS_CXR_T_5, format_trajectory

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates" / "student"
NAME = "apodistill-student"
FINDINGS = list(MS_CXR_T_5)
TINY = dict(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64,
            vision_hidden_size=32, vision_depth=1, vision_heads=2)
PARAMS = {
    "base": {"findings": FINDINGS, "mlflow_experiment": "serving-test"},
    "teachers": {"roster": [{"name": "gpt5", "backend": "simulated", "model": "gpt-5", "profile": "gpt5"},
                            {"name": "moonshot", "backend": "simulated", "model": "moonshot-v1", "profile": "moonshot"}]},
    "evaluate": {"max_new_tokens": 12},  # a random tiny student never stops early: keep generations short
}


def prompts() -> dict[str, str]:
    from apodistill.training.data import task_prompt

    return {t: task_prompt(TEMPLATES, t, FINDINGS) for t in ("single", "pair")}


def build_student(folder: Path, seed: int = 0):
    """A random-init tiny student saved with ``save_student``; returns (model, processor)."""
    from apodistill.config.train import TinyStudentConfig
    from apodistill.student import build_processor, build_tiny_student, save_student, train_tokenizer

    corpus = [format_trajectory("clear lungs sharp angles", {f: "no" for f in FINDINGS}, FINDINGS),
              format_trajectory("larger effusion", {f: "stable" for f in FINDINGS}, FINDINGS), *prompts().values()] * 5
    tok = train_tokenizer(corpus, TINY["vocab_size"])
    proc = build_processor(tok, 64)
    model = build_tiny_student(TinyStudentConfig(**TINY), tok, seed=seed)
    _untie_head(model, seed)
    save_student(model, proc, folder, extra={"image_size": 64})
    model.eval()
    return model, proc


def _untie_head(model, seed: int) -> None:
    """A random tied-embedding model repeats its last prompt token (a newline: empty text after
    strip). A separate random output head makes it say something (not well-formed), which is
    all the serving plumbing needs; the saved config records the untied head."""
    import torch

    g = torch.Generator().manual_seed(seed)
    emb = model.get_input_embeddings().weight
    model.lm_head.weight = torch.nn.Parameter(torch.randn(emb.shape, generator=g) * 0.5)
    model.config.tie_word_embeddings = False
    model.config.get_text_config().tie_word_embeddings = False


def store_env(root: Path) -> dict[str, str]:
    """Environment for a temporary MLflow sqlite store with artifacts under ``root``."""
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "APODISTILL_MLFLOW_ARTIFACTS": str(root / "artifacts"),
            "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def write_params(path: Path, **register) -> Path:
    """params.yaml with the serving tests' changes (PARAMS, register) applied: a complete file."""
    from apodistill.config import with_overrides
    from params_helpers import DEFAULT

    changes = {**PARAMS, "teachers": {**PARAMS["teachers"], "weights": "auto"}, "register": {"model_name": NAME, **register}}
    path.write_text(yaml.safe_dump(with_overrides(DEFAULT, changes).dump()))
    return path


def metrics_for(acc: float, pair_acc: float | None = None, system: str = "apo") -> dict[str, float]:
    m = {f"{system}.acc.mean": acc, **{f"{system}.acc.{f}": acc for f in FINDINGS}, "best_teacher.acc.mean": 0.6,
         "teacher.gpt5.acc.mean": 0.6, "teacher.moonshot.acc.mean": 0.4, "spd.acc.mean": acc - 0.05}
    if pair_acc is not None:
        m[f"{system}.pair_acc.mean"] = pair_acc
    return m


def subprocess_env(root: Path) -> dict[str, str]:
    return {**os.environ, **store_env(root), "PYTHONUNBUFFERED": "1"}


def apodistill_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "apodistill.cli", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_uri: str, root: Path, *extra: str) -> tuple[subprocess.Popen, str, Path]:
    """`apodistill serve` in a subprocess on a free port; returns (process, base URL, log file)."""
    port = free_port()
    log = root / f"serve-{port}.log"
    proc = subprocess.Popen(apodistill_cmd("serve", "--model", model_uri, "--port", str(port), *extra),
                            cwd=REPO, env=subprocess_env(root), stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}", log


def wait_ready(proc: subprocess.Popen, url: str, log: Path, deadline_s: float = 180.0) -> None:
    """Poll /health until the server answers; fail with its log if it exits or never answers."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise RuntimeError(f"server not ready after {deadline_s} s:\n{log.read_text()[-3000:]}")


def synthetic_profile(n: int = 120, seed: int = 0) -> dict:
    """An input profile built from rendered radiographs, as the register stage builds one from
    the benchmark's train split."""
    import numpy as np

    from apodistill.data import render_study_image
    from apodistill.serving.input_check import build_profile

    rng = np.random.default_rng(seed)
    findings = ["pleural_effusion", "consolidation", "pneumothorax", "edema", "cardiomegaly", "pneumonia", "atelectasis"]
    images = [render_study_image({f: float(rng.uniform(0.2, 1)) for f in findings if rng.random() < 0.35}, 64, seed * 10_000 + i)
              for i in range(n)]
    return build_profile(images)


class ServerThread:
    """`create_app` served by uvicorn in a thread of this process (no model loading from MLflow:
    the server tests stay fast). Use as a context manager; ``url`` is the base URL."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    access_log=False, lifespan="on"))
        self.thread = None

    def __enter__(self) -> "ServerThread":
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True, name="uvicorn-test")
        self.thread.start()
        end = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
