"""A local OpenAI-compatible chat completions server that can misbehave on purpose.

Used by the fault, resume, hang and budget tests, the throughput and hang benchmarks, and for
dry runs of a real roster without keys. It answers ``POST /v1/chat/completions`` with a well-formed trajectory
after ``latency_s``, unless its ``plan`` says otherwise for that request:

``ok`` | ``429`` (with Retry-After) | ``500`` | ``503`` | ``timeout`` (sleeps past the
client's timeout) | ``hang`` (accepts, then sends nothing for ``hang_s``) | ``malformed``
(200 with a body that is not JSON) | ``refuse`` (a refusal in the text) | ``refusal_field``
(the ``message.refusal`` field) | ``400`` | ``400_echo`` (a 400 whose body echoes the request
headers, API key included, as careless servers do).

A request's identity is a hash of its image data URLs, so the caller can tell which study a
request was about and how many times the server saw it.

    python tests/fake_openai_server.py --port 8000 --latency 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import threading
import time
from collections import Counter
from typing import Callable

from apodistill.findings import MS_CXR_T_5, format_trajectory

Plan = Callable[[str, int], str]  # (identity, attempt index for that identity) -> behaviour


def identity_of(image_urls: list[str]) -> str:
    return hashlib.sha256("".join(image_urls).encode()).hexdigest()[:16]


class FakeOpenAIServer:
    def __init__(self, findings=MS_CXR_T_5, latency_s: float = 0.0, plan: Plan | None = None,
                 retry_after: str = "0.2", timeout_sleep_s: float = 3.0, host: str = "127.0.0.1", port: int = 0,
                 hang_s: float = 60.0, jitter: Callable[[], float] | None = None):
        self.findings = list(findings)
        self.latency_s = latency_s
        self.plan = plan
        self.retry_after = retry_after
        self.timeout_sleep_s = timeout_sleep_s
        self.hang_s = hang_s
        self.jitter = jitter  # extra seconds per answer (a latency distribution), None: none
        self.host, self.port = host, port
        self.log: list[dict] = []  # one entry per request received
        self.attempts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def answer(self, n_images: int) -> str:
        task = "pair" if n_images == 2 else "single"
        value = "stable" if task == "pair" else "no"
        think = "Sharp costophrenic angles, clear lungs and no pleural line; nothing acute is seen."
        return format_trajectory(think, {f: value for f in self.findings}, self.findings)

    async def _chat(self, request):
        from aiohttp import web

        received = time.monotonic()
        body = await request.text()
        try:
            data = json.loads(body)
            urls = [p["image_url"]["url"] for m in data["messages"] for p in m["content"]
                    if isinstance(p, dict) and p.get("type") == "image_url"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": {"message": "bad request body"}}, status=400)
        ident = identity_of(urls)
        with self._lock:
            attempt = self.attempts[ident]
            self.attempts[ident] += 1
        behaviour = self.plan(ident, attempt) if self.plan else "ok"
        self.log.append({"identity": ident, "attempt": attempt, "behaviour": behaviour, "t": received,
                         "authorization": request.headers.get("Authorization"), "model": data.get("model")})
        self.in_flight += 1  # the event loop is single-threaded: no lock needed
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._respond(data, urls, ident, attempt, behaviour, request)
        finally:
            self.in_flight -= 1

    async def _respond(self, data, urls, ident, attempt, behaviour, request):
        from aiohttp import web

        await asyncio.sleep(self.latency_s + (self.jitter() if self.jitter else 0.0))
        if behaviour == "hang":  # cancelled when the client gives up (handler_cancellation)
            await asyncio.sleep(self.hang_s)
        if behaviour == "429":
            return web.json_response({"error": {"message": "rate limited"}}, status=429,
                                     headers={"Retry-After": self.retry_after})
        if behaviour == "400_echo":  # a careless provider echoing the request headers
            return web.json_response({"error": {"message": f"bad request; headers: {dict(request.headers)}"}}, status=400)
        if behaviour in ("500", "503", "400"):
            return web.json_response({"error": {"message": f"injected {behaviour}"}}, status=int(behaviour))
        if behaviour == "timeout":
            await asyncio.sleep(self.timeout_sleep_s)
        if behaviour == "malformed":
            return web.Response(text='{"choices": [ {"message": ', content_type="application/json")
        message: dict = {"role": "assistant", "content": self.answer(len(urls))}
        if behaviour == "refuse":
            message["content"] = "I'm sorry, but I can't help with interpreting medical images. Please consult a radiologist."
        elif behaviour == "refusal_field":
            message = {"role": "assistant", "content": None, "refusal": "I cannot assist with diagnosing this image."}
        completion = {
            "id": f"chatcmpl-{ident}-{attempt}", "object": "chat.completion", "model": data.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 300 * len(urls), "completion_tokens": 60, "total_tokens": 300 * len(urls) + 60},
        }
        return web.json_response(completion)

    async def _serve(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/chat/completions", self._chat)
        # handler_cancellation: a hung handler ends when its client disconnects; a short
        # shutdown_timeout: stopping never waits on one that is still hanging
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=512)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> "FakeOpenAIServer":
        def target() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._serve())
            self._loop.close()

        self._thread = threading.Thread(target=target, daemon=True, name="fake-openai")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description="Local OpenAI-compatible server for tests and benchmarks.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = ap.parse_args()
    server = FakeOpenAIServer(latency_s=args.latency, host=args.host, port=args.port).start()
    print(f"listening on {server.url}", flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
