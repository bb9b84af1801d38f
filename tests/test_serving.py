"""`apodistill serve` over 127.0.0.1: OpenAI-compatible answers, the teachers stage's `openai`
backend using the served student as a teacher, and clear 4xx errors that do not stop it.

One server subprocess per module (loading the pyfunc costs seconds), serving a student
registered in a temporary MLflow store.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import re
import time
from types import SimpleNamespace

import httpx
import mlflow
import pandas as pd
import pytest
import yaml
from serving_helpers import (
    FINDINGS, NAME, PARAMS, REPO, build_student, metrics_for, prompts, start_server, store_env, synthetic_profile,
    wait_ready,
)
from params_helpers import DEFAULT
from teachers_helpers import make_benchmark

from apodistill.config import with_overrides
from apodistill.serving.predictor import Predictor, Query
from apodistill.serving.register import log_and_register
from apodistill.tracking import stage_run

MAX_TOKENS = 12
KEY_ENV = "APODISTILL_TEST_STUDENT_KEY"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    previous_uri = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in store_env(root).items():
            mp.setenv(k, v)
        model, proc = build_student(root / "student")
        with stage_run("register", "serving-test", {}):
            log_and_register(root / "student", prompts(), FINDINGS, metrics_for(0.7), NAME, "challenger",
                             {"git_revision": "test"}, {}, max_new_tokens=MAX_TOKENS, input_profile=synthetic_profile())
        server, url, log = start_server(f"models:/{NAME}@challenger", root, "--max-body-mb", "1",
                                        "--max-tokens", str(MAX_TOKENS))
        try:
            wait_ready(server, url, log)
            yield SimpleNamespace(url=url, root=root, log=log,
                                  predictor=Predictor(model, proc, FINDINGS, prompts(), 64, MAX_TOKENS))
        finally:
            server.terminate()
            server.wait(timeout=30)
    mlflow.set_tracking_uri(previous_uri)


def _png(seed: int = 0) -> bytes:
    from apodistill.data import render_study_image

    buf = io.BytesIO()
    render_study_image({"pleural_effusion": 0.7}, size=64, seed=seed).save(buf, format="PNG")
    return buf.getvalue()


def _data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _chat(*parts: dict, **extra) -> dict:
    return {"model": "student", "messages": [{"role": "user", "content": list(parts)}], "max_tokens": MAX_TOKENS, **extra}


def _image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def test_health_and_models(served):
    h = httpx.get(served.url + "/health").json()
    assert h["status"] == "ok" and h["version"] == "1" and h["alias"] == "challenger"
    m = httpx.get(served.url + "/v1/models").json()
    assert [d["id"] for d in m["data"]] == [f"{NAME}@challenger"]


def test_chat_completion_is_the_students_greedy_trajectory(served):
    png = _png(1)
    r = httpx.post(served.url + "/v1/chat/completions", json=_chat({"type": "text", "text": "Read this."}, _image(_data_url(png))),
                   timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    want = served.predictor.answer([Query(png)])[0]
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"] == want.trajectory != ""
    assert body["usage"]["prompt_tokens"] == want.prompt_tokens > 0
    assert body["usage"]["total_tokens"] == want.prompt_tokens + want.completion_tokens
    assert body["apodistill"]["task"] == "single" and set(body["apodistill"]["answers"]) == set(FINDINGS)


def test_openai_teacher_backend_round_trip_writes_trajectories(served, tmp_path, monkeypatch):
    """The teachers stage, with the served student as its only (openai) teacher."""
    bench = make_benchmark(tmp_path / "bench", n_patients=3, studies_per_patient=2, image_size=64, radiographs=True)  # 6 studies, 3 pairs
    monkeypatch.setenv(KEY_ENV, "sk-local-test")
    roster = [{"name": "student", "backend": "openai", "model": f"{NAME}@challenger", "base_url": served.url + "/v1",
               "api_key_env": KEY_ENV, "concurrency": 2, "max_tokens": MAX_TOKENS, "timeout_s": 120, "max_retries": 1}]
    params = with_overrides(DEFAULT, {**PARAMS, "teachers": {"roster": roster, "weights": "auto", "tasks": ["single", "pair"], "conditioned_splits": []}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.dump()))
    spec = importlib.util.spec_from_file_location("teachers_stage", REPO / "pipeline" / "teachers.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    rc = stage.main(["--params", str(tmp_path / "params.yaml"), "--benchmark", str(bench),
                     "--templates", str(REPO / "templates" / "teachers"), "--cache", str(tmp_path / "cache.sqlite"),
                     "--out", str(tmp_path / "traj"), "--stats", str(tmp_path / "stats.json"), "--no-progress", "--no-mlflow"])
    assert rc == 0
    t = pd.read_parquet(tmp_path / "traj" / "trajectories.parquet")
    assert len(t) == 9 and (t.teacher == "student").all() and (t.backend == "openai").all()
    assert (t.status == "ok").all(), t[["status", "reason"]]
    assert sorted(t.task) == ["pair"] * 3 + ["single"] * 6 and (t.prompt_tokens > 0).all()
    studies = pd.read_parquet(bench / "studies.parquet").set_index("study_id")
    path = {s: str(bench / p) for s, p in studies.image_path.items()}
    want = served.predictor.answer([Query(path[r.study_id], path[r.prior_study_id] if r.task == "pair" else None)
                                    for r in t.itertuples()])
    assert list(t.text) == [a.trajectory for a in want]  # what the student says, carried through unchanged


@pytest.mark.parametrize("body, status, words", [
    (_chat({"type": "text", "text": "no image here"}), 400, "no image"),
    (_chat(_image(_data_url(b"hello", "text/plain"))), 400, "not an image data URL"),
    (_chat(_image(_data_url(b"definitely not a png"))), 400, "cannot decode image"),
    (_chat(_image("https://example.org/cxr.png")), 400, "only data URLs"),
    (_chat(*[_image("data:image/png;base64,AAAA")] * 3), 400, "3 images"),
    (_chat(_image("data:image/png;base64,AAAA"), stream="yes"), 400, "`stream` must be true or false"),
    ({"messages": "hi"}, 400, "messages"),
    (b"{not json", 400, "malformed JSON"),
    (_chat(_image(_data_url(b"\x89PNG" + b"0" * (3 << 19)))), 413, "exceeds the limit"),  # 1.5 MiB body, limit 1 MiB
])
def test_bad_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving(served, body, status, words):
    kw = {"content": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(served.url + "/v1/chat/completions", timeout=60, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words in err["message"] and err["type"] == "invalid_request_error"
    good = httpx.post(served.url + "/v1/chat/completions", json=_chat(_image(_data_url(_png()))), timeout=60)
    assert good.status_code == 200 and good.json()["choices"][0]["message"]["content"]


def test_oversized_body_without_content_length_is_refused(served):
    def chunks():
        for _ in range(24):
            yield b"x" * (1 << 16)  # 1.5 MiB, chunked transfer encoding

    r = httpx.post(served.url + "/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]["message"]
    assert httpx.get(served.url + "/health").status_code == 200


def test_every_log_line_names_its_request(served):
    r = httpx.post(served.url + "/v1/chat/completions", json=_chat(_image(_data_url(_png(3)))), timeout=60,
                   headers={"X-Request-ID": "trace-abc.123"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-abc.123"
    bad = httpx.post(served.url + "/v1/chat/completions", json={"messages": "hi"}, timeout=60)
    rid = bad.headers["x-request-id"]
    assert len(rid) == 16 and rid != "trace-abc.123"
    time.sleep(0.5)  # the access line is written as the response ends
    lines = [ln for ln in served.log.read_text().splitlines() if ln.strip()]
    fmt = re.compile(r"^\S+ \S+ (INFO|WARNING|ERROR|DEBUG) \[([A-Za-z0-9._,-]+)\] \S+: ")
    assert lines and all(fmt.match(ln) for ln in lines), [ln for ln in lines if not fmt.match(ln)][:3]
    assert any("[trace-abc.123] apodistill.serve: POST /v1/chat/completions 200" in ln for ln in lines)
    assert any(f"[{rid}] apodistill.serve: POST /v1/chat/completions 400" in ln for ln in lines)
    assert any("trace-abc.123" in ln and "batch of 1" in ln for ln in lines)  # the generation names it too


def test_registered_profile_refuses_a_gradient_in_serve_and_predict(served, tmp_path):
    import numpy as np
    from PIL import Image

    x = np.linspace(0, 255, 96).astype(np.uint8)
    Image.fromarray(np.stack([np.tile(x, (96, 1)), np.tile(x[:, None], (1, 96)), np.full((96, 96), 90, np.uint8)], -1),
                    "RGB").save(tmp_path / "gradient.png")
    r = httpx.post(served.url + "/v1/chat/completions", json=_chat(_image(_data_url((tmp_path / "gradient.png").read_bytes()))),
                   timeout=60)
    assert r.status_code == 422 and "far outside what the student was trained on" in r.json()["error"]["message"]
    from typer.testing import CliRunner

    from apodistill.cli import app

    res = CliRunner().invoke(app, ["predict", str(tmp_path / "gradient.png"), "--model", f"models:/{NAME}@challenger"])
    assert res.exit_code == 2 and "far outside what the student was trained on: colourfulness" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
