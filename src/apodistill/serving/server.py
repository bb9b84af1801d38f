"""An OpenAI-compatible HTTP server for the student (`apodistill serve`).

It speaks the chat completions protocol every LLM client already speaks, so the distilled
student can be queried by any OpenAI client and can itself be a teacher of the next round
(the teachers stage's ``openai`` backend pointed at it).

- ``POST /v1/chat/completions``: the last user message's ``image_url`` parts (data URLs) are
  the images: one image is a single study, two are prior then current (the order the
  ``openai`` teacher backend sends). ``choices[0].message.content`` is the trajectory;
  ``usage`` counts tokens; an extra ``apodistill`` object has the parsed labels.
  ``stream: true`` answers with server-sent events (``chat.completion.chunk`` objects, then
  ``data: [DONE]``; ``stream_options.include_usage`` adds the usage chunk), as OpenAI's API does.
- ``GET /v1/models``, ``GET /health`` (queue figures; no authentication, no data).
- Binds 127.0.0.1 unless told otherwise. With ``--api-key-env NAME`` every ``/v1/`` request
  needs ``Authorization: Bearer <the value of $NAME>`` (401 otherwise).
- Requests wait in a bounded queue and are generated in batches (:mod:`.batcher`); a full
  queue is a 503 with ``Retry-After``.
- Images far outside the training images are refused with a 422 and the reason
  (:mod:`.input_check`), before they reach the queue.
- Every log line carries the request id (``X-Request-ID`` from the client when it is a short
  token, else a new one; echoed in the response header).
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
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from apodistill.serving.predictor import Predictor, Query

from apodistill.serving.context import REQUEST_ID, RequestContext, log_config

log = logging.getLogger("apodistill.serve")

MiB = 1 << 20
_DRAIN_FACTOR = 8  # an oversized body is read and dropped up to 8x the limit (see _read_limited)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str = "invalid_request"):
        super().__init__(message)
        self.message, self.status, self.param, self.code = message, status, param, code


def _error(status: int, message: str, param: str | None = None, code: str = "invalid_request", kind: str = "invalid_request_error",
           headers: dict[str, str] | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status,
                        headers=headers)


@dataclass
class ChatRequest:
    query: Query
    max_new: int
    temperature: float | None
    stream: bool = False
    include_usage: bool = False


def parse_chat_request(body: Any, max_tokens_limit: int, prompt_mode: str) -> ChatRequest:
    """The request a chat completions body asks for; :class:`BadRequest` (with a message) otherwise."""
    from apodistill.serving.pyfunc import decode_image

    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("`stream` must be true or false", param="stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool)):
        raise BadRequest("`stream_options` must be an object like {\"include_usage\": true}", param="stream_options")
    if options is not None and not stream:
        raise BadRequest("`stream_options` is only allowed with stream: true", param="stream_options")
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
            if not isinstance(part.get("text", ""), str):
                raise BadRequest(f"content part {i}: `text` must be a string", param="messages")
            texts.append(part.get("text", ""))
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
    if temperature is not None and not temperature < float("inf"):
        raise BadRequest("temperature must be a finite number >= 0", param="temperature")
    prompt = "\n".join(t for t in texts if t.strip()) if prompt_mode == "client" else None
    query = Query(images[-1], images[0] if len(images) == 2 else None, prompt or None)
    return ChatRequest(query, min(max_new, max_tokens_limit), temperature, bool(stream),
                       bool(options and options.get("include_usage")))


def create_app(predictor: Predictor, info: dict[str, str], served_name: str, max_body_bytes: int = 8 * MiB,
               max_tokens_limit: int = 256, prompt_mode: str = "student", api_key: str | None = None,
               max_batch: int = 8, max_queue: int = 64, batch_wait_s: float = 0.01):
    """The FastAPI app around a loaded predictor (``api_key``: the bearer token /v1/ requires)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import StreamingResponse

    from apodistill.serving.batcher import Batcher, Job, QueueFull
    from apodistill.serving.input_check import InputRejected

    if prompt_mode not in ("student", "client"):
        raise ValueError(f"prompt_mode must be student or client, got {prompt_mode!r}")
    batcher = Batcher(predictor, max_batch=max_batch, max_queue=max_queue, max_wait_s=batch_wait_s)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        log.info("serving %s: batches of up to %d, queue of %d, auth %s, input profile %s", served_name, max_batch,
                 max_queue, "on" if api_key else "off", "on" if predictor.input_profile else "off (size/transparency only)")
        yield
        await batcher.stop()

    app = FastAPI(title="apodistill student", version="1", lifespan=lifespan)
    app.add_middleware(RequestContext, api_key=api_key)
    created = int(time.time())

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception):
        # Last resort for a bug: the client gets a JSON 500 naming the error; the traceback is logged.
        log.exception("internal error")
        return _error(500, f"internal error: {type(err).__name__}: {err}", code="internal_error", kind="server_error")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": served_name, **info, **batcher.stats()}

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
            req = parse_chat_request(body, max_tokens_limit, prompt_mode)
            await run_in_threadpool(predictor.check, req.query)  # refuse before the queue
        except BadRequest as err:
            return _error(err.status, err.message, err.param, err.code)
        except InputRejected as err:
            log.info("refused: %s", err)
            return _error(422, str(err), "messages", code="image_out_of_distribution")
        except ValueError as err:
            return _error(400, str(err), "messages", code="invalid_image")
        job = Job(req.query, req.max_new, req.temperature, REQUEST_ID.get(), stream=req.stream)
        try:
            batcher.submit(job)
        except QueueFull as err:
            log.warning("503: queue full: %s", err)
            return _error(503, f"server busy: {err}; retry shortly", code="queue_full", kind="server_error",
                          headers={"Retry-After": "1"})
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        if req.stream:
            return StreamingResponse(_events(job, cid, served_name, req.include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            answer = await job.future
        except ValueError as err:  # input the model could not take
            return _error(400, str(err), code="invalid_input")
        except RuntimeError as err:  # torch failures surface as RuntimeError; reported, server stays up
            return _error(500, f"generation failed: {err}", code="generation_failed", kind="server_error")
        return {
            "id": cid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": served_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.trajectory},
                         "finish_reason": answer.finish_reason}],
            "usage": _usage(answer),
            "apodistill": {"task": answer.task, "wellformed": answer.wellformed, "answers": answer.answers},
        }

    return app


def _usage(answer) -> dict[str, int]:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens}


async def _events(job, cid: str, model: str, include_usage: bool):
    """Server-sent events as OpenAI streams them: a role chunk, content chunks, a chunk with the
    finish reason, the usage chunk when asked for, ``[DONE]``. The content chunks concatenate to
    exactly the non-streamed answer."""
    created = int(time.time())

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices, **extra}
        return f"data: {json.dumps(obj)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    sent = ""
    while (piece := await job.deltas.get()) is not None:
        sent += piece
        yield chunk({"content": piece})
    try:
        answer = job.future.result()
    except Exception as err:  # noqa: BLE001  headers are sent: the error travels as an event
        yield f"data: {json.dumps({'error': {'message': f'generation failed: {err}', 'type': 'server_error', 'param': None, 'code': 'generation_failed'}})}\n\n"
        return
    if answer.trajectory.startswith(sent):
        rest = answer.trajectory[len(sent):]
        if rest:
            yield chunk({"content": rest})
    else:
        log.warning("streamed text is not a prefix of the answer; the stream ends with the difference missing")
    yield chunk({}, answer.finish_reason,
                apodistill={"task": answer.task, "wellformed": answer.wellformed, "answers": answer.answers})
    if include_usage:
        yield chunk(None, usage=_usage(answer))
    yield "data: [DONE]\n\n"


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
          prompt_mode: str, served_name: str | None = None, log_level: str = "info", api_key_env: str | None = None,
          max_batch: int = 8, max_queue: int = 64, batch_wait_s: float = 0.01) -> None:
    """Load the model and serve it until interrupted.

    ``api_key_env`` names the environment variable holding the bearer token (never the token
    itself, like the teachers' ``api_key_env``); it must be set and non-empty.
    """
    import os

    import uvicorn

    from apodistill.serving.store import load_model

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env, "")
        if not api_key:
            raise ServeSetupError(f"--api-key-env {api_key_env}: the environment variable is not set or empty; "
                                  f"export {api_key_env}=<token> (clients send it as Authorization: Bearer <token>)")
    model, info = load_model(model_uri)
    predictor = model.unwrap_python_model().predictor
    name = served_name or (f"{info['name']}@{info['alias']}" if info.get("alias") else
                           f"{info['name']}/{info['version']}" if info.get("name") else model_uri)
    app = create_app(predictor, info, name, max_body_bytes, max_tokens_limit, prompt_mode, api_key,
                     max_batch, max_queue, batch_wait_s)
    uvicorn.run(app, host=host, port=port, log_level=log_level, log_config=log_config(log_level), access_log=False)


class ServeSetupError(RuntimeError):
    """The server cannot start as asked (the message says why)."""
