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
import heapq
import json
import mimetypes
import os
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from apodistill.teachers.backends import (
    BACKENDS, Backend, Request, Result, RunContext, Sink, TeacherSetupError, is_free, is_refusal, scrub,
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
            await _Scheduler(self, session, requests, sink).run()

    async def attempt(self, session, url: str, payload: str, sent: "_Attempt") -> Result:
        """One HTTP attempt: a final Result, or raises :class:`_Retry`. Marks ``sent.sent_at``
        when the request leaves (time waiting for the rate limiter is not latency)."""
        import aiohttp

        secrets = [self._key or ""]
        await sent.limiter.acquire()
        t0 = sent.sent_at = time.monotonic()
        try:
            async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as resp:
                body = await resp.text(errors="replace")
        except aiohttp.ConnectionTimeoutError:
            raise _Retry("connect_timeout") from None
        except aiohttp.SocketTimeoutError:
            raise _Retry("read_idle_timeout") from None
        except asyncio.TimeoutError:
            raise _Retry("timeout") from None
        except aiohttp.ClientError as err:
            raise _Retry(f"connection: {type(err).__name__}") from None
        latency = time.monotonic() - t0
        if resp.status == 429 or resp.status >= 500:
            raise _Retry(f"http_{resp.status}", retry_after_s(resp.headers.get("Retry-After")), body)
        if resp.status >= 400:
            return Result("", "error", f"http_{resp.status}: {scrub(body[:300], secrets)}", latency, raw=scrub(body, secrets))
        try:
            text, status, reason, ptok, ctok = parse_completion(body)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise _Retry("malformed_json", None, body) from err
        return Result(text, status, reason, latency, ptok, ctok, raw=scrub(body, secrets))

    def hedge_threshold(self, latencies: "LatencyWindow") -> float | None:
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


class LatencyWindow:
    """The last ``size`` answer latencies of one teacher (seeded with the cache's history)."""

    def __init__(self, history: list[float], size: int = 200):
        self.values: deque[float] = deque((float(x) for x in history[-size:] if x == x and x >= 0), maxlen=size)

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    def count(self) -> int:
        return len(self.values)

    def p95(self) -> float:
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


@dataclass(eq=False)
class _Job:
    req: Request
    payload: str
    attempts: int = 0  # attempts started, hedges included
    running: set = field(default_factory=set)  # its attempts in flight
    last: _Retry | None = None
    done: bool = False


@dataclass(eq=False)
class _Attempt:
    job: _Job
    limiter: RateLimiter
    sent_at: float | None = None  # when the request left (None: waiting for the rate limiter)
    hedged: bool = False  # a duplicate was started; this one no longer counts against concurrency


class _Scheduler:
    """One teacher's requests: at most ``concurrency`` attempts count as in flight.

    Retries wait for their backoff without a slot. An attempt older than the hedge threshold
    (:meth:`OpenAIBackend.hedge_threshold`) is *hedged*: it leaves the slot count (up to
    ``concurrency`` such attempts at once) and a duplicate of its request starts, so hung
    attempts never hold the teacher's other work; the first answer wins and the other attempt
    is cancelled. New requests start only while ``ctx.budget`` allows.
    """

    def __init__(self, backend: OpenAIBackend, session, requests: list[Request], sink: Sink):
        self.b, self.session, self.sink = backend, session, sink
        spec = backend.spec
        self.url = spec.base_url.rstrip("/") + "/chat/completions"
        self.limiter = RateLimiter(spec.rpm, spec.concurrency)
        self.new: deque[Request] = deque(requests)
        self.urgent: deque[_Job] = deque()  # hedges and due retries, before new work
        self.waiting: list[tuple[float, int, _Job]] = []  # (due, seq, job): retries in backoff
        self.tasks: dict[asyncio.Task, _Attempt] = {}
        self.latencies = LatencyWindow(backend.history)
        self.hedges = 0
        self._seq = 0
        self.free = is_free(spec)

    def _counted(self) -> int:
        return sum(1 for a in self.tasks.values() if not a.hedged)

    def _start(self, job: _Job) -> None:
        job.attempts += 1
        a = _Attempt(job, self.limiter)
        task = asyncio.ensure_future(self.b.attempt(self.session, self.url, job.payload, a))
        job.running.add(task)
        self.tasks[task] = a

    def _next_job(self) -> _Job | None:
        while self.urgent:
            job = self.urgent.popleft()
            if not job.done:
                return job
        while self.new:
            if not self.b.ctx.budget.allows_new(self.free):
                return None
            req = self.new.popleft()
            try:
                payload = json.dumps(self.b._payload(req))
            except OSError as err:
                self.sink(req, Result("", "error", f"image_unreadable: {err}"))
                continue
            return _Job(req, payload)
        return None

    def _finish(self, job: _Job, result: Result) -> None:
        job.done = True
        for t in job.running:
            t.cancel()
        result.attempts = job.attempts
        if result.status != "error":
            self.latencies.add(result.latency_s)
        self.sink(job.req, result)

    def _failed(self, job: _Job, err: _Retry, now: float) -> None:
        job.last = err
        if job.running:  # a hedge or the hedged original is still on it
            return
        spec = self.b.spec
        if job.attempts > spec.max_retries:
            secrets = [self.b._key or ""]
            self._finish(job, Result("", "error", f"{err.reason}: gave up after {job.attempts} attempts", 0.0,
                                     raw=scrub(err.raw, secrets)))
            return
        self._seq += 1
        heapq.heappush(self.waiting, (now + self.b.backoff(job.attempts - 1, err.retry_after), self._seq, job))

    async def run(self) -> None:
        spec = self.b.spec
        while True:
            now = time.monotonic()
            while self.waiting and self.waiting[0][0] <= now:
                self.urgent.append(heapq.heappop(self.waiting)[2])
            while self._counted() < spec.concurrency:
                job = self._next_job()
                if job is None:
                    break
                self._start(job)
            if not self.tasks and not self.waiting:
                if self.urgent or (self.new and self.b.ctx.budget.allows_new(self.free)):
                    continue
                return
            threshold = self.b.hedge_threshold(self.latencies)
            wake = [self.waiting[0][0] - now] if self.waiting else []
            if threshold is not None:
                wake += [a.sent_at + threshold - now + 0.001 for a in self._hedgeable()]
                if any(a.sent_at is None for a in self.tasks.values()):
                    wake.append(0.05)  # not sent yet (rate limiter): look again soon to time it from its send
            timeout = max(0.005, min(wake)) if wake else None
            if not self.tasks:  # only retries in backoff
                await asyncio.sleep(timeout or 0)
                continue
            done, _ = await asyncio.wait(set(self.tasks), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            now = time.monotonic()
            for task in done:
                a = self.tasks.pop(task)
                a.job.running.discard(task)
                if a.job.done or task.cancelled():
                    continue
                err = task.exception()
                if err is None:
                    self._finish(a.job, task.result())
                elif isinstance(err, _Retry):
                    self._failed(a.job, err, now)
                else:
                    raise err
            if threshold is not None:
                self._hedge(threshold, now)

    def _hedgeable(self) -> list[_Attempt]:
        """Attempts that may still be hedged, oldest first (none while ``concurrency`` are hedged)."""
        spec = self.b.spec
        if sum(1 for a in self.tasks.values() if a.hedged) >= spec.concurrency:
            return []
        ok = [a for a in self.tasks.values() if not a.hedged and a.sent_at is not None and not a.job.done
              and a.job.attempts <= spec.max_retries and len(a.job.running) == 1]
        return sorted(ok, key=lambda a: a.sent_at)

    def _hedge(self, threshold: float, now: float) -> None:
        room = self.b.spec.concurrency - sum(1 for a in self.tasks.values() if a.hedged)
        for a in self._hedgeable():
            if room <= 0 or now - a.sent_at < threshold:
                return
            a.hedged = True
            room -= 1
            self.hedges += 1
            self.urgent.appendleft(a.job)
