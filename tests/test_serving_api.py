"""`apodistill serve` as an exposed service, with the official `openai` client as the caller:
bearer-token auth, streaming equal to the non-streamed answer, 16 concurrent requests through
the bounded queue and batches, 503 when the queue is full, 422 for images far outside the
training images. In-process (uvicorn in a thread) around a tiny random student: fast."""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import openai
import pytest
from PIL import Image
from serving_helpers import FINDINGS, ServerThread, build_student, prompts, synthetic_profile

from apodistill.serving.predictor import Predictor, Query
from apodistill.serving.server import create_app

MAX_TOKENS = 12
TOKEN = "apodistill-test-token-8d1f"
FIX = Path(__file__).parent / "fixtures"


def png(im: Image.Image) -> str:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def radiograph(seed: int, size: int = 64) -> Image.Image:
    from apodistill.data import render_study_image

    rng = np.random.default_rng(seed)
    return render_study_image({"pleural_effusion": float(rng.uniform(0.3, 1)), "edema": float(rng.uniform(0, 1))}, size, 50_000 + seed)


def messages(*images: Image.Image) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": "Read this chest X-ray."},
                                         *({"type": "image_url", "image_url": {"url": png(im)}} for im in images)]}]


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    model, proc = build_student(tmp_path_factory.mktemp("student") / "student")
    return Predictor(model, proc, FINDINGS, prompts(), 64, MAX_TOKENS, input_profile=synthetic_profile())


@pytest.fixture(scope="module")
def server(student):
    app = create_app(student, {"uri": "test"}, "student", max_tokens_limit=MAX_TOKENS, api_key=TOKEN, max_batch=8, max_queue=64)
    with ServerThread(app) as srv:
        yield SimpleNamespace(url=srv.url, client=openai.OpenAI(base_url=srv.url + "/v1", api_key=TOKEN, max_retries=0))


def test_auth_refused_without_the_token_and_accepted_with_it(server):
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="not-the-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.chat.completions.create(model="student", messages=messages(radiograph(1)), max_tokens=MAX_TOKENS)
    assert err.value.status_code == 401 and "invalid API key" in str(err.value)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    bare = httpx.post(server.url + "/v1/chat/completions", json={"messages": messages(radiograph(1))})
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.url + "/health").status_code == 200  # no data there: open
    ok = server.client.chat.completions.create(model="student", messages=messages(radiograph(1)), max_tokens=MAX_TOKENS)
    assert ok.choices[0].message.content and ok.usage.total_tokens > 0
    assert [m.id for m in server.client.models.list()] == ["student"]


@pytest.mark.parametrize("images", [(1,), (2,), (3, 4)])  # single studies and a prior/current pair
def test_streamed_answer_equals_the_non_streamed_one(server, student, images):
    msgs = messages(*(radiograph(s) for s in images))
    whole = server.client.chat.completions.create(model="student", messages=msgs, max_tokens=MAX_TOKENS)
    stream = server.client.chat.completions.create(model="student", messages=msgs, max_tokens=MAX_TOKENS, stream=True,
                                                   stream_options={"include_usage": True})
    pieces, finish, usage, roles = [], None, None, []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk" and chunk.id.startswith("chatcmpl-")
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            roles += [c.delta.role] if c.delta.role else []
            pieces += [c.delta.content] if c.delta.content else []
            finish = c.finish_reason or finish
    text = whole.choices[0].message.content
    assert "".join(pieces) == text != "" and len(pieces) > 1  # really in pieces
    assert roles == ["assistant"] and finish == whole.choices[0].finish_reason
    assert usage.model_dump() == whole.usage.model_dump()
    q = Query(*(radiograph(s) for s in images[::-1])) if len(images) == 2 else Query(radiograph(images[0]))
    assert text == student.answer([q])[0].trajectory  # the student's own greedy answer


def test_16_concurrent_requests_all_answer(server, student):
    images = [radiograph(100 + i) for i in range(16)]

    def ask(im):
        t0 = time.perf_counter()
        r = server.client.chat.completions.create(model="student", messages=messages(im), max_tokens=MAX_TOKENS)
        return r.choices[0].message.content, time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(ask, images))
    wall = time.perf_counter() - t0
    lat = np.array([s for _, s in results])
    alone = [a.trajectory for a in student.answer([Query(im) for im in images[:4]])] + \
            [student.answer([Query(im)])[0].trajectory for im in images[4:8]]
    assert all(text for text, _ in results)
    assert [text for text, _ in results[:8]] == alone  # each request got its own answer (no interleaving)
    print(f"\n16 concurrent requests via the openai client: all 200 in {wall:.2f} s; latency p50 "
          f"{np.percentile(lat, 50):.3f} s, p95 {np.percentile(lat, 95):.3f} s (tiny student, {MAX_TOKENS} tokens, batches of 8)")


class GatedPredictor(Predictor):
    """The real predictor, held at a gate so the queue can be filled on purpose."""

    gate = threading.Event()

    def answer(self, *args, **kw):
        assert self.gate.wait(30)
        return super().answer(*args, **kw)


def test_full_queue_is_a_503_and_the_queued_requests_still_answer(student):
    p = GatedPredictor(student.model, student.processor, FINDINGS, prompts(), 64, MAX_TOKENS, student.input_profile)
    GatedPredictor.gate.clear()
    app = create_app(p, {}, "student", max_tokens_limit=MAX_TOKENS, max_batch=1, max_queue=2, batch_wait_s=0)
    body = {"model": "student", "messages": messages(radiograph(7)), "max_tokens": MAX_TOKENS}
    with ServerThread(app) as srv, ThreadPoolExecutor(3) as pool:
        accepted = []
        for _ in range(3):  # one generating (held at the gate), two waiting in the queue
            accepted.append(pool.submit(httpx.post, srv.url + "/v1/chat/completions", json=body, timeout=60))
            time.sleep(0.3)
        assert httpx.get(srv.url + "/health").json()["queued"] == 2
        full = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=10)
        assert full.status_code == 503 and full.headers["retry-after"] == "1"
        assert full.json()["error"]["code"] == "queue_full" and "--max-queue" in full.json()["error"]["message"]
        GatedPredictor.gate.set()
        answers = [f.result() for f in accepted]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert len({r.json()["choices"][0]["message"]["content"] for r in answers}) == 1


def _gradient() -> Image.Image:
    x = np.linspace(0, 1, 128)
    rgb = np.stack([np.tile(x, (128, 1)), np.tile(x[:, None], (1, 128)), np.full((128, 128), 0.5)], -1)
    return Image.fromarray((rgb * 255).astype(np.uint8), "RGB")


def _pink_noise(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(128)
    amp = 1 / np.maximum(np.hypot(*np.meshgrid(f, f)), 1 / 128)
    img = np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random((128, 128)))))
    return Image.fromarray(((img - img.min()) / np.ptp(img) * 255).astype(np.uint8), "L")


NOT_RADIOGRAPHS = {
    "colour gradient": (_gradient, "colourfulness"),
    "gray gradient": (lambda: Image.fromarray(np.tile(np.linspace(0, 255, 128), (128, 1)).astype(np.uint8), "L"), "layout"),
    "blank": (lambda: Image.new("L", (128, 128), 200), "contrast"),
    "1x1 transparent": (lambda: Image.new("RGBA", (1, 1), (0, 0, 0, 0)), "1x1 px"),
    "transparent 64 px": (lambda: Image.new("RGBA", (64, 64), (255, 255, 255, 0)), "transparent"),
    "white noise": (lambda: Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128), dtype=np.uint8), "L"), "roughness"),
    "photo-like (1/f) noise": (lambda: _pink_noise(1), "layout"),
    "photo-like colour noise": (lambda: Image.merge("RGB", [_pink_noise(2), _pink_noise(3), _pink_noise(4)]), "colourfulness"),
}


@pytest.mark.parametrize("name", list(NOT_RADIOGRAPHS))
def test_non_radiographs_get_a_422_with_the_reason(server, name):
    make, words = NOT_RADIOGRAPHS[name]
    with pytest.raises(openai.UnprocessableEntityError) as err:
        server.client.chat.completions.create(model="student", messages=messages(make()), max_tokens=MAX_TOKENS)
    assert err.value.status_code == 422 and words in str(err.value)
    assert err.value.body["code"] == "image_out_of_distribution"


def test_every_synthetic_test_radiograph_passes(tmp_path, student, server):
    """The test split of a benchmark built by the fetch stage's own code, at two sizes, and the
    MIMIC-layout fixture JPEGs (rendered): none is refused; a few go through HTTP too."""
    from params_helpers import DEFAULT, section

    from apodistill.data import build, resolve_image

    import pandas as pd

    from apodistill.serving.input_check import check_image, profile_from_benchmark

    images = []
    for size in (64, 128):
        out = tmp_path / f"b{size}"
        build(SimpleNamespace(base=DEFAULT.base, fetch=section("fetch", source="synthetic", n_patients=40, image_size=size)), out)
        studies = pd.read_parquet(out / "studies.parquet")
        test = [Image.open(resolve_image(out, p)) for p in studies.loc[studies.split == "test", "image_path"]]
        own = profile_from_benchmark(str(out))  # what the register stage stores: this benchmark's train images
        assert [check_image(im, own) for im in test] == [None] * len(test)
        assert "far outside" in check_image(_gradient(), own) and "far outside" in check_image(_pink_noise(9), own)
        images += test
    bad = "bb0e3d7a"  # the fixture's deliberately truncated JPEG
    images += [Image.open(p) for p in sorted((FIX / "mimic_cxr" / "files").rglob("*.jpg")) if bad not in p.name]
    refused = [(i, err) for i, im in enumerate(images) for err in [_refusal(student, im)] if err]
    assert len(images) >= 50 and refused == []
    for im in images[:: len(images) // 4][:4]:
        r = server.client.chat.completions.create(model="student", messages=messages(im), max_tokens=MAX_TOKENS)
        assert r.choices[0].message.content


def _refusal(student: Predictor, im: Image.Image) -> str | None:
    try:
        student.check(Query(im))
    except ValueError as err:
        return str(err)
    return None


def test_a_refused_prior_is_named(server):
    with pytest.raises(openai.UnprocessableEntityError, match="prior image: image is far outside"):
        server.client.chat.completions.create(model="student", messages=messages(_gradient(), radiograph(5)), max_tokens=MAX_TOKENS)


def test_no_profile_from_a_handful_of_images(tmp_path):
    from teachers_helpers import make_benchmark

    from apodistill.serving.input_check import check_image, profile_from_benchmark

    bench = make_benchmark(tmp_path / "b", n_patients=3, image_size=64, radiographs=True)
    assert profile_from_benchmark(str(bench)) is None  # under 20 train images: no quantiles to trust
    assert check_image(_gradient(), None) is None and "1x1 px" in check_image(Image.new("L", (1, 1)), None)


def test_serve_refuses_to_start_without_the_token_variable(monkeypatch):
    from typer.testing import CliRunner

    from apodistill.cli import app

    monkeypatch.delenv("APODISTILL_TEST_UNSET_TOKEN", raising=False)
    res = CliRunner().invoke(app, ["serve", "--model", "models:/nothing@none", "--api-key-env", "APODISTILL_TEST_UNSET_TOKEN"])
    assert res.exit_code == 2 and "APODISTILL_TEST_UNSET_TOKEN" in res.output and "not set or empty" in res.output
