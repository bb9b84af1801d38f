"""``openai`` backend: any OpenAI-compatible ``/v1/chat/completions`` endpoint.

GPT-5, Gemini (OpenAI compatibility layer), Qwen-VL-Max (DashScope), Grok, GLM, Moonshot
and vLLM servers all speak this protocol, so one backend with a per-teacher ``base_url``
covers the paper's roster. Images travel as base64 data URLs inside the message.

Why it is built this way:
- a pool of ``concurrency`` workers and a token-bucket limiter at ``rpm`` requests per
  minute: providers throttle per key, and staying under the limit is cheaper than retrying;
- retries with exponential backoff and full jitter on 429, 5xx, timeouts, dropped
  connections and unreadable bodies, never shorter than the server's ``Retry-After``;
- every request ends as ok, refused or error with a reason: nothing is dropped silently;
- the key is read from the environment variable named by ``api_key_env`` and is scrubbed
  from anything stored (reasons, raw bodies); it is never logged.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import mimetypes
import os
import random
import time
from typing import Any

from apodistill.teachers.backends import (
    BACKENDS, Backend, Request, Result, RunContext, Sink, TeacherSetupError, is_refusal, scrub,
)


def image_data_url(path: str) -> str:
    """``data:image/png;base64,...`` for an image file (the type guessed from its name)."""
    mime = mimetypes.guess_type(path)[0] or "image/png"
    with open(path, "rb") as fh:
        return f"data:{mime};base64,{base64.b64encode(fh.read()).decode()}"


def build_messages(req: Request) -> list[dict[str, Any]]:
    """One user turn: the prompt, then the image(s); pairs label prior and current."""
    content: list[dict[str, Any]] = [{"type": "text", "text": req.prompt}]
    labels = ("Prior study:", "Current study:") if len(req.image_paths) == 2 else (None,)
    for label, path in zip(labels, req.image_paths):
        if label:
            content.append({"type": "text", "text": label})
        content.append({"type": "image_url", "image_url": {"url": image_data_url(path)}})
    return [{"role": "user", "content": content}]


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds, fractional allowed, or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RateLimiter:
    """Token bucket: ``rpm`` per minute on average, bursts of at most ``burst``."""

    def __init__(self, rpm: float, burst: int):
        self.rate = rpm / 60.0
        self.capacity = float(max(1, burst))
        self.tokens = self.capacity
        self.t = time.monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.t) * self.rate)
                self.t = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self.tokens) / self.rate)


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, raw: str = ""):
        super().__init__(reason)
        self.reason, self.retry_after, self.raw = reason, retry_after, raw


def parse_completion(body: str) -> tuple[str, str, str | None, int, int]:
    """(text, status, reason, prompt_tokens, completion_tokens) from a 200 response body.

    Raises ValueError/KeyError/TypeError/IndexError on a body that is not a completion.
    """
    data = json.loads(body)
    choice = data["choices"][0]
    msg = choice["message"]
    text = msg.get("content") or ""
    if isinstance(text, list):  # some servers return content parts
        text = "".join(part.get("text", "") for part in text if isinstance(part, dict))
    usage = data.get("usage") or {}
    ptok, ctok = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    if msg.get("refusal"):
        return str(msg["refusal"]), "refused", "refusal", ptok, ctok
    if choice.get("finish_reason") == "content_filter":
        return text, "refused", "content_filter", ptok, ctok
    if is_refusal(text):
        return text, "refused", "refusal", ptok, ctok
    if not text.strip():
        return text, "error", "empty_response", ptok, ctok
    return text, "ok", None, ptok, ctok


@BACKENDS.register("openai")
class OpenAIBackend(Backend):
    sends_images_off_machine = True

    def __init__(self, spec, ctx: RunContext):
        super().__init__(spec, ctx)
        self._key: str | None = None
        if spec.api_key_env:
            self._key = os.environ.get(spec.api_key_env)
            if not self._key:
                raise TeacherSetupError(
                    f"teacher {spec.name!r}: environment variable {spec.api_key_env} is not set; "
                    f"export it with the API key (teachers.roster[].api_key_env names the variable, never the key)"
                )

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend({self.spec.name}, {self.spec.base_url}, key={'set' if self._key else 'none'})"

    def answer_params(self, request: Request) -> dict[str, Any]:
        return {"max_tokens": self.spec.max_tokens, "temperature": self.spec.temperature}

    def _payload(self, req: Request) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.spec.model, "messages": build_messages(req), "max_tokens": self.spec.max_tokens}
        if self.spec.temperature is not None:
            body["temperature"] = self.spec.temperature
        return body

    async def run(self, requests: list[Request], sink: Sink) -> None:
        import aiohttp

        spec = self.spec
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        limiter = RateLimiter(spec.rpm, spec.concurrency)
        queue: asyncio.Queue[Request] = asyncio.Queue()
        for r in requests:
            queue.put_nowait(r)
        url = spec.base_url.rstrip("/") + "/chat/completions"
        connector = aiohttp.TCPConnector(limit=spec.concurrency)
        timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
        async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as session:

            async def worker() -> None:
                while not queue.empty():
                    req = queue.get_nowait()
                    sink(req, await self._ask(session, url, limiter, req))

            await asyncio.gather(*(worker() for _ in range(min(spec.concurrency, len(requests)))))

    async def _ask(self, session, url: str, limiter: RateLimiter, req: Request) -> Result:
        """One request with retries; always returns a Result."""
        import aiohttp

        spec, secrets = self.spec, [self._key or ""]
        try:
            payload = json.dumps(self._payload(req))
        except OSError as err:
            return Result("", "error", f"image_unreadable: {err}")
        last = _Retry("not_sent")
        latency = 0.0
        for attempt in range(spec.max_retries + 1):
            await limiter.acquire()
            t0 = time.monotonic()
            try:
                async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as resp:
                    body = await resp.text(errors="replace")
                latency = time.monotonic() - t0
                if resp.status == 429 or resp.status >= 500:
                    raise _Retry(f"http_{resp.status}", retry_after_s(resp.headers.get("Retry-After")), body)
                if resp.status >= 400:
                    return Result("", "error", f"http_{resp.status}: {scrub(body[:300], secrets)}",
                                  latency, raw=scrub(body, secrets), attempts=attempt + 1)
                try:
                    text, status, reason, ptok, ctok = parse_completion(body)
                except (ValueError, KeyError, TypeError, IndexError) as err:
                    raise _Retry("malformed_json", None, body) from err
                return Result(text, status, reason, latency, ptok, ctok, raw=scrub(body, secrets), attempts=attempt + 1)
            except _Retry as r:
                last = r
            except asyncio.TimeoutError:
                latency = time.monotonic() - t0
                last = _Retry("timeout")
            except aiohttp.ClientError as err:
                latency = time.monotonic() - t0
                last = _Retry(f"connection: {type(err).__name__}")
            if attempt < spec.max_retries:
                await asyncio.sleep(self.backoff(attempt, last.retry_after))
        return Result("", "error", f"{last.reason}: gave up after {spec.max_retries + 1} attempts", latency,
                      raw=scrub(last.raw, secrets), attempts=spec.max_retries + 1)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff, never shorter than the server's Retry-After."""
        ceiling = min(self.spec.max_backoff_s, self.spec.backoff_s * 2**attempt)
        wait = random.uniform(ceiling / 2, ceiling)
        return max(wait, retry_after or 0.0)
