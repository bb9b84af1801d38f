"""How the ``openai`` backend schedules one teacher's requests: a token-bucket rate limit, at
most ``concurrency`` attempts counted in flight, retries that back off without a slot, and
hedging, so that hung attempts never hold the teacher's other work.

Why hedging rather than a shorter timeout: a non-streamed completion sends nothing until it
is done, and a teacher's normal latency varies from seconds (GPT-4-class) to a minute
(reasoning models), so no fixed deadline separates slow from hung. The teacher's own
observed p95 does: an attempt older than ``hedge_factor`` x p95 (at least ``hedge_min_s``;
``hedge_initial_s`` before ``hedge_min_samples`` answers are timed, this run or the cache's
earlier ones) gets a duplicate and stops counting against ``concurrency``; the first answer
wins and the other attempt is cancelled. At most ``concurrency`` attempts are hedged at once,
so what is in flight never exceeds twice ``concurrency``.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from apodistill.teachers.backends import Request, Result, Sink, is_free, scrub

if TYPE_CHECKING:
    from apodistill.teachers.openai_compat import OpenAIBackend


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


class Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, raw: str = ""):
        super().__init__(reason)
        self.reason, self.retry_after, self.raw = reason, retry_after, raw


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
    last: Retry | None = None
    done: bool = False


@dataclass(eq=False)
class _Attempt:
    job: _Job
    limiter: RateLimiter
    sent_at: float | None = None  # when the request left (None: waiting for the rate limiter)
    hedged: bool = False  # a duplicate was started; this one no longer counts against concurrency


class Scheduler:
    """One teacher's requests: at most ``concurrency`` attempts count as in flight.

    Retries wait for their backoff without a slot. An attempt older than the hedge threshold
    (:meth:`OpenAIBackend.hedge_threshold`) is *hedged*: it leaves the slot count (up to
    ``concurrency`` such attempts at once) and a duplicate of its request starts, so hung
    attempts never hold the teacher's other work; the first answer wins and the other attempt
    is cancelled. New requests start only while ``ctx.budget`` allows.
    """

    def __init__(self, backend: "OpenAIBackend", session, requests: list[Request], sink: Sink):
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

    def _failed(self, job: _Job, err: Retry, now: float) -> None:
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
                elif isinstance(err, Retry):
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
