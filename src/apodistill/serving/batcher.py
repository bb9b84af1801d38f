"""Queued, batched generation for `apodistill serve`.

Requests wait in a bounded queue (``max_queue``; when it is full the server answers 503 at
once instead of letting waits grow without bound). One worker takes up to ``max_batch``
compatible requests (same generation limit and temperature) that arrive within
``max_wait_s`` of the first, and runs them as one ``generate`` in a thread, so the event loop
keeps accepting, refusing and streaming meanwhile. One model, one generate at a time: on a
CPU or one GPU, a batch is how concurrent requests share it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from apodistill.serving.predictor import Predictor, Query

log = logging.getLogger("apodistill.serve")


class QueueFull(Exception):
    """The request queue is full (the server answers 503)."""


@dataclass(eq=False)
class Job:
    query: Query
    max_new: int
    temperature: float | None
    rid: str  # request id, for the logs
    stream: bool = False
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    deltas: asyncio.Queue = field(default_factory=asyncio.Queue)  # streamed text pieces, then None
    queued_at: float = field(default_factory=time.monotonic)

    def key(self) -> tuple[int, float | None]:
        return self.max_new, (self.temperature or None)


class Batcher:
    def __init__(self, predictor: Predictor, max_batch: int = 8, max_queue: int = 64, max_wait_s: float = 0.01):
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        self.predictor = predictor
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_queue)
        self.carry: deque[Job] = deque()  # taken from the queue, waiting for a batch they fit
        self.in_flight = 0
        self._task: asyncio.Task | None = None

    def submit(self, job: Job) -> None:
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull(f"{self.queue.qsize()} requests are waiting (apodistill serve --max-queue)") from None

    def stats(self) -> dict[str, Any]:
        return {"queued": self.queue.qsize() + len(self.carry), "max_queue": self.queue.maxsize,
                "in_flight": self.in_flight, "max_batch": self.max_batch}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="apodistill-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _next(self, timeout: float | None) -> Job | None:
        if timeout is None:
            return await self.queue.get()
        try:
            return await asyncio.wait_for(self.queue.get(), max(timeout, 0.0))
        except asyncio.TimeoutError:
            return None

    async def _collect(self) -> list[Job]:
        first = self.carry.popleft() if self.carry else await self._next(None)
        batch, later = [first], deque()
        while self.carry and len(batch) < self.max_batch:
            job = self.carry.popleft()
            (batch if job.key() == first.key() else later).append(job)
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            job = await self._next(deadline - time.monotonic())
            if job is None:
                break
            (batch if job.key() == first.key() else later).append(job)
        self.carry.extendleft(reversed(later))
        return [j for j in batch if not j.future.done()]  # a client that went away

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            streams = {i: j for i, j in enumerate(batch) if j.stream}

            def on_delta(i: int, text: str, streams=streams) -> None:  # called from the generate thread
                if i in streams:
                    loop.call_soon_threadsafe(streams[i].deltas.put_nowait, text)

            rids = ",".join(j.rid for j in batch)
            self.in_flight = len(batch)
            t0 = time.monotonic()
            try:
                answers = await asyncio.to_thread(self.predictor.answer, [j.query for j in batch], batch[0].max_new,
                                                  batch[0].temperature, on_delta if streams else None)
            except Exception as err:  # noqa: BLE001  every waiting request gets the failure; the loop goes on
                log.error("generation of batch [%s] failed: %s: %s", rids, type(err).__name__, err)
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(err)
                    j.deltas.put_nowait(None)
            else:
                log.info("batch of %d [%s] generated in %.3f s (waited up to %.3f s)", len(batch), rids,
                         time.monotonic() - t0, t0 - min(j.queued_at for j in batch))
                for j, a in zip(batch, answers):
                    if not j.future.done():
                        j.future.set_result(a)
                    j.deltas.put_nowait(None)
            finally:
                self.in_flight = 0
