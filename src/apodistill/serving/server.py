"""An OpenAI-compatible HTTP server for the student (`apodistill serve`).

It speaks the chat completions protocol every LLM client already speaks, so the distilled
student can be queried by any OpenAI client and can itself be a teacher of the next round
(the teachers stage's ``openai`` backend pointed at it).

- ``POST /v1/chat/completions``: the last user message's ``image_url`` parts (data URLs) are
  the images: one image is a single study, two are prior then current (the order the
  ``openai`` teacher backend sends). Non-streaming. ``choices[0].message.content`` is the
  trajectory; ``usage`` counts tokens; an extra ``apodistill`` object has the parsed labels.
- ``GET /v1/models``, ``GET /health``.
- The body is read up to ``max_body_bytes`` (413 beyond); bad input is a 4xx with an
  OpenAI-style ``{"error": {"message", "type", "param", "code"}}`` body; a failure inside
  the model is a 500 of the same shape. The server keeps serving after any of them.
- ``prompt_mode="student"`` (default) answers with the task prompt the student was trained
  on and ignores the client's text (a small student does not follow free-form prompts);
  ``"client"`` passes the request's text parts as the prompt.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint's annotations at runtime,
# and `Request` is imported inside create_app (fastapi stays out of `apodistill --help`).
import json
import time
import uuid
from typing import Any

from apodistill.serving.predictor import Predictor, Query

MiB = 1 << 20
_DRAIN_FACTOR = 8  # an oversized body is read and dropped up to 8x the limit (see _read_limited)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str = "invalid_request"):
        super().__init__(message)
        self.message, self.status, self.param, self.code = message, status, param, code


def _error(status: int, message: str, param: str | None = None, code: str = "invalid_request", kind: str = "invalid_request_error"):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


def parse_chat_request(body: dict[str, Any], max_tokens_limit: int, prompt_mode: str) -> tuple[Query, int, float | None]:
    """(query, max_new_tokens, temperature) from a chat completions body; BadRequest otherwise."""
    from apodistill.serving.pyfunc import decode_image

    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    if body.get("stream"):
        raise BadRequest("streaming is not supported; send stream: false", param="stream", code="unsupported")
    if body.get("n") not in (None, 1):
        raise BadRequest("only n = 1 is supported", param="n", code="unsupported")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("`messages` must be a non-empty list of message objects", param="messages")
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise BadRequest("no user message", param="messages")
    content = users[-1].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise BadRequest("user message `content` must be a string or a list of content parts", param="messages")
    texts, urls = [], []
    for i, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(url, str) or not url:
                raise BadRequest(f"content part {i}: image_url needs a `url`", param="messages")
            if not url.startswith("data:"):
                raise BadRequest(f"content part {i}: only data URLs (data:image/png;base64,...) are accepted; "
                                 "the server does not fetch remote images", param="messages", code="invalid_image")
            urls.append(url)
        else:
            raise BadRequest(f"content part {i}: unsupported type {kind!r} (text, image_url)", param="messages")
    if not urls:
        raise BadRequest("no image in the last user message: send one chest X-ray (or prior then current) "
                         "as image_url content parts with data URLs", param="messages", code="no_image")
    if len(urls) > 2:
        raise BadRequest(f"{len(urls)} images: send one (a study) or two (prior, then current)", param="messages", code="too_many_images")
    images = []
    for i, url in enumerate(urls):
        try:
            images.append(decode_image(url))
        except ValueError as err:
            raise BadRequest(f"image {i}: {err}", param="messages", code="invalid_image") from None
    max_new = body.get("max_completion_tokens", body.get("max_tokens"))
    max_new = max_tokens_limit if max_new is None else max_new
    if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new <= 0:
        raise BadRequest("max_tokens must be a positive integer", param="max_tokens")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature < 0):
        raise BadRequest("temperature must be a number >= 0", param="temperature")
    prompt = "\n".join(t for t in texts if t.strip()) if prompt_mode == "client" else None
    query = Query(images[-1], images[0] if len(images) == 2 else None, prompt or None)
    return query, min(max_new, max_tokens_limit), temperature


def create_app(predictor: Predictor, info: dict[str, str], served_name: str, max_body_bytes: int = 8 * MiB,
               max_tokens_limit: int = 256, prompt_mode: str = "student"):
    """The FastAPI app around a loaded predictor."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool

    if prompt_mode not in ("student", "client"):
        raise ValueError(f"prompt_mode must be student or client, got {prompt_mode!r}")
    app = FastAPI(title="apodistill student", version="1")
    created = int(time.time())

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception):
        # Last resort for a bug: the client gets a JSON 500 naming the error; uvicorn logs the traceback.
        return _error(500, f"internal error: {type(err).__name__}: {err}", code="internal_error", kind="server_error")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": served_name, **info}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": served_name, "object": "model", "created": created, "owned_by": "apodistill"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            return _error(400, "invalid Content-Length header", code="bad_header")
        raw = await _read_limited(request, max_body_bytes)
        if raw is None:
            return _error(413, f"request body{f' of {declared} bytes' if declared else ''} exceeds the limit of "
                          f"{max_body_bytes} bytes (apodistill serve --max-body-mb)", code="body_too_large")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return _error(400, f"malformed JSON body: {err}", code="malformed_json")
        try:
            query, max_new, temperature = parse_chat_request(body, max_tokens_limit, prompt_mode)
        except BadRequest as err:
            return _error(err.status, err.message, err.param, err.code)
        try:
            answer = (await run_in_threadpool(predictor.answer, [query], max_new, temperature))[0]
        except ValueError as err:  # input the model could not take
            return _error(400, str(err), code="invalid_input")
        except RuntimeError as err:  # torch failures surface as RuntimeError; reported, server stays up
            return _error(500, f"generation failed: {err}", code="generation_failed", kind="server_error")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": served_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.trajectory},
                         "finish_reason": answer.finish_reason}],
            "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                      "total_tokens": answer.prompt_tokens + answer.completion_tokens},
            "apodistill": {"task": answer.task, "wellformed": answer.wellformed, "answers": answer.answers},
        }

    return app


async def _read_limited(request: Any, limit: int) -> bytes | None:
    """The body, or None when it is longer than ``limit``.

    An oversized body is still read and dropped (up to 8x the limit, never kept), so the
    client, which is still sending, gets the 413 instead of a reset connection.
    """
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    chunks, size = [], 0
    too_big = declared is not None and int(declared) > limit
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                too_big = True
                chunks = []
            if too_big:
                if size > limit * _DRAIN_FACTOR:
                    break
                continue
            chunks.append(chunk)
    except ClientDisconnect:
        return None
    return None if too_big else b"".join(chunks)


def serve(model_uri: str, host: str, port: int, max_body_bytes: int, max_tokens_limit: int,
          prompt_mode: str, served_name: str | None = None, log_level: str = "info") -> None:
    """Load the model and serve it until interrupted."""
    import uvicorn

    from apodistill.serving.store import load_model

    model, info = load_model(model_uri)
    predictor = model.unwrap_python_model().predictor
    name = served_name or (f"{info['name']}@{info['alias']}" if info.get("alias") else
                           f"{info['name']}/{info['version']}" if info.get("name") else model_uri)
    app = create_app(predictor, info, name, max_body_bytes, max_tokens_limit, prompt_mode)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
