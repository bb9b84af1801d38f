"""``openai`` backend: any OpenAI-compatible ``/v1/chat/completions`` endpoint.

GPT-5, Gemini (OpenAI compatibility layer), Qwen-VL-Max (DashScope), Grok, GLM, Moonshot
and vLLM servers all speak this protocol, so one backend with a per-teacher ``base_url``
covers the paper's roster. Images travel as base64 data URLs inside the message.

Why it is built this way:
- at most ``concurrency`` attempts in flight and a token-bucket limiter at ``rpm`` requests
  per minute: providers throttle per key, and staying under the limit is cheaper than retrying;
- three deadlines per attempt (connect, read-idle, total), and hedging: an attempt slower than
  ``hedge_factor`` x the teacher's observed p95 gets a duplicate and stops holding a slot, so a
  few hung requests cannot stall a teacher's other work (one hung request used to hold a
  worker for the whole ``timeout_s``);
- retries with exponential backoff and full jitter on 429, 5xx, timeouts, dropped
  connections and unreadable bodies, never shorter than the server's ``Retry-After``; a
  retry waits out its backoff without a slot;
- ``teachers.budget_usd``: no new request once the run's budget is spent;
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

from apodistill.teachers.backends import BACKENDS, Backend, Request, Result, RunContext, Sink, TeacherSetupError, is_refusal, scrub
from apodistill.teachers.scheduler import LatencyWindow, RateLimiter, Retry, Scheduler, _Attempt  # noqa: F401  (RateLimiter: re-export)


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
    honours_budget = True

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

    def timeouts(self):
        """Per-attempt deadlines: connect, read-idle (between response bytes) and total."""
        import aiohttp

        spec = self.spec
        return aiohttp.ClientTimeout(total=spec.timeout_s, sock_connect=spec.connect_timeout_s,
                                     sock_read=spec.read_idle_timeout_s)

    async def run(self, requests: list[Request], sink: Sink) -> None:
        import aiohttp

        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        # hedged attempts may briefly double what is in flight; the pool must not make a
        # hedge wait behind the connection of the attempt it replaces
        connector = aiohttp.TCPConnector(limit=2 * self.spec.concurrency)
        async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=self.timeouts()) as session:
            await Scheduler(self, session, requests, sink).run()

    async def attempt(self, session, url: str, payload: str, sent: _Attempt) -> Result:
        """One HTTP attempt: a final Result, or raises :class:`Retry`. Marks ``sent.sent_at``
        when the request leaves (time waiting for the rate limiter is not latency)."""
        import aiohttp

        secrets = [self._key or ""]
        await sent.limiter.acquire()
        t0 = sent.sent_at = time.monotonic()
        try:
            async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as resp:
                body = await resp.text(errors="replace")
        except aiohttp.ConnectionTimeoutError:
            raise Retry("connect_timeout") from None
        except aiohttp.SocketTimeoutError:
            raise Retry("read_idle_timeout") from None
        except asyncio.TimeoutError:
            raise Retry("timeout") from None
        except aiohttp.ClientError as err:
            raise Retry(f"connection: {type(err).__name__}") from None
        latency = time.monotonic() - t0
        if resp.status == 429 or resp.status >= 500:
            raise Retry(f"http_{resp.status}", retry_after_s(resp.headers.get("Retry-After")), body)
        if resp.status >= 400:
            return Result("", "error", f"http_{resp.status}: {scrub(body[:300], secrets)}", latency, raw=scrub(body, secrets))
        try:
            text, status, reason, ptok, ctok = parse_completion(body)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise Retry("malformed_json", None, body) from err
        return Result(text, status, reason, latency, ptok, ctok, raw=scrub(body, secrets))

    def hedge_threshold(self, latencies: LatencyWindow) -> float | None:
        """Seconds after which a running attempt is hedged (None: not now)."""
        spec = self.spec
        if spec.hedge_factor is None:
            return None
        if latencies.count() < spec.hedge_min_samples:
            return None if spec.hedge_initial_s is None else max(spec.hedge_min_s, spec.hedge_initial_s)
        return max(spec.hedge_min_s, spec.hedge_factor * latencies.p95())

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff, never shorter than the server's Retry-After."""
        ceiling = min(self.spec.max_backoff_s, self.spec.backoff_s * 2**attempt)
        wait = random.uniform(ceiling / 2, ceiling)
        return max(wait, retry_after or 0.0)
