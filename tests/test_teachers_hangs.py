"""Teachers that survive hangs: per-attempt connect / read-idle / total deadlines, and hedging so
that hung requests never hold a teacher's other work. Against a local server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time

import pandas as pd
import pytest
from teachers_helpers import gc_held, make_benchmark

from fake_openai_server import FakeOpenAIServer
from params_helpers import DEFAULT, teachers_config
from apodistill.teachers.runner import run_teachers

TEMPLATES = "templates/teachers"
KEY_ENV = "APODISTILL_TEST_HANG_KEY"


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-hang-test")


def _roster(url: str, **kw) -> list[dict]:
    return [{"name": "remote", "backend": "openai", "model": "gpt-5", "base_url": url, "api_key_env": KEY_ENV,
             "concurrency": 4, "rpm": 60000, "timeout_s": 30, "max_retries": 2, "backoff_s": 0.05, **kw}]


class FirstArrivals:
    """Plan: the requests arriving at these positions hang on their first attempt."""

    def __init__(self, hang_at: set[int]):
        self.hang_at, self.n, self.hung = hang_at, 0, set()
        self.lock = threading.Lock()

    def __call__(self, ident: str, attempt: int) -> str:
        with self.lock:
            k, self.n = self.n, self.n + 1
        if attempt == 0 and k in self.hang_at:
            self.hung.add(ident)
            return "hang"
        return "ok"


def _run(url: str, bench, cache, **kw):
    cfg = teachers_config(roster=_roster(url, **kw), tasks=["single"])
    with gc_held():
        t0 = time.monotonic()
        out = run_teachers(cfg, DEFAULT.base, "synthetic", bench, TEMPLATES, cache, progress=False)
        return out, time.monotonic() - t0


def test_four_hung_requests_do_not_stall_the_teacher(tmp_path):
    bench = make_benchmark(tmp_path / "b", n_patients=50, studies_per_patient=2)  # 100 requests
    # a 2 s floor: well past a normal answer's 0.15 s even when a loaded CI machine stalls the
    # loop, so only the hung attempts are hedged
    hedging = dict(hedge_factor=3.0, hedge_min_s=2.0, hedge_min_samples=3)
    with FakeOpenAIServer(latency_s=0.15, hang_s=60) as server:
        base_out, base_s = _run(server.url, bench, tmp_path / "a.sqlite", **hedging)
    plan = FirstArrivals({0, 2, 4, 6})  # 4 of the first 8 hang: as many as the teacher's concurrency
    with FakeOpenAIServer(latency_s=0.15, hang_s=60, plan=plan) as server:
        out, hang_s = _run(server.url, bench, tmp_path / "b.sqlite", **hedging)
    assert (base_out.table.status == "ok").all() and (out.table.status == "ok").all() and len(out.table) == 100
    assert len(plan.hung) == 4
    with sqlite3.connect(tmp_path / "b.sqlite") as con:
        stored = pd.read_sql("SELECT study_id, attempts, created_at FROM answers", con)
    # every hung request was answered by its hedge (2 attempts), everything else at once
    log = pd.DataFrame(server.log)
    hung_ids = set(log.loc[log.behaviour == "hang", "identity"])
    assert (log.groupby("identity").size().loc[sorted(hung_ids)] == 2).all()
    assert sorted(stored.attempts.value_counts().to_dict().items()) == [(1, 96), (2, 4)]
    # while each hung attempt waited, other answers kept being stored
    wall0 = time.time() - time.monotonic()  # server log times are monotonic; cache times are wall clock
    for ident in hung_ids:
        sent = log.loc[(log.identity == ident) & (log.behaviour == "hang"), "t"].iloc[0] + wall0
        again = log.loc[(log.identity == ident) & (log.behaviour == "ok"), "t"].iloc[0] + wall0
        during = stored[(stored.created_at > sent) & (stored.created_at < again + 0.3)]
        assert len(during) >= 1, ident
    ratio = hang_s / base_s
    print(f"\n100 requests, concurrency 4, 4 of the first 8 hang: {hang_s:.2f} s vs {base_s:.2f} s without hangs "
          f"({ratio:.2f}x); hedge p95-based, min 2 s")  # the speed target is bench/teachers_hangs.py's


def test_hangs_before_any_answer_is_timed_are_hedged_after_hedge_initial_s(tmp_path):
    """Every slot hung at once, nothing timed yet: the initial threshold rescues the run."""
    bench = make_benchmark(tmp_path / "b", n_patients=10, studies_per_patient=2)  # 20 requests
    with FakeOpenAIServer(latency_s=0.1, plan=FirstArrivals({0, 1, 2, 3}), hang_s=60) as server:
        out, took = _run(server.url, bench, tmp_path / "c.sqlite", hedge_initial_s=2.0, hedge_min_s=2.0, timeout_s=30)
    assert (out.table.status == "ok").all() and len(server.log) == 24
    assert 2.0 <= took < 10  # one initial threshold, not the 30 s total deadline


def test_without_hedging_a_hang_holds_its_slot_for_the_total_deadline(tmp_path):
    """The behaviour the hedge removes, measured the same way (short deadline to keep it quick)."""
    bench = make_benchmark(tmp_path / "b", n_patients=4, studies_per_patient=2)  # 8 requests
    with FakeOpenAIServer(latency_s=0.05, plan=FirstArrivals({0, 1, 2, 3}), hang_s=60) as server:
        out, took = _run(server.url, bench, tmp_path / "c.sqlite", hedge_factor=None, timeout_s=1.5, max_retries=1)
    assert (out.table.status == "ok").all()
    assert took >= 1.5  # nothing was stored until the hung attempts hit their total deadline
    with sqlite3.connect(tmp_path / "c.sqlite") as con:
        first = con.execute("SELECT MIN(created_at) FROM answers").fetchone()[0]
    assert first - (time.time() - took) >= 1.4


def test_read_idle_deadline_ends_a_silent_attempt_before_the_total(tmp_path):
    bench = make_benchmark(tmp_path / "b", n_patients=1, studies_per_patient=1)
    with FakeOpenAIServer(plan=lambda i, a: "hang", hang_s=60) as server:
        out, took = _run(server.url, bench, tmp_path / "c.sqlite", hedge_factor=None, timeout_s=20,
                         read_idle_timeout_s=0.3, max_retries=1)
    row = out.table.iloc[0]
    assert row.status == "error" and row.reason == "read_idle_timeout: gave up after 2 attempts"
    assert took < 5 and len(server.log) == 2


def test_connect_deadline(tmp_path):
    """A listener whose accept queue is full: the TCP handshake never completes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fill = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fill.append(s)
    time.sleep(0.1)
    bench = make_benchmark(tmp_path / "b", n_patients=1, studies_per_patient=1)
    try:
        out, took = _run(f"http://127.0.0.1:{port}/v1", bench, tmp_path / "c.sqlite", hedge_factor=None,
                         connect_timeout_s=0.3, timeout_s=20, max_retries=1)
    finally:
        for s in fill + [srv]:
            s.close()
    assert out.table.iloc[0].reason == "connect_timeout: gave up after 2 attempts" and took < 5


def test_hedge_threshold_follows_the_observed_p95():
    from apodistill.teachers.openai_compat import LatencyWindow, OpenAIBackend

    b = OpenAIBackend.__new__(OpenAIBackend)
    b.spec = teachers_config(roster=_roster("http://x", hedge_min_s=0.5, hedge_initial_s=7.0)).roster[0]
    assert b.hedge_threshold(LatencyWindow([])) == 7.0  # nothing timed yet
    assert b.hedge_threshold(LatencyWindow([0.1, 0.1])) == 7.0
    assert b.hedge_threshold(LatencyWindow([0.1, 0.2, 0.1])) == pytest.approx(0.6)  # 3 x p95, above the 0.5 s floor
    assert b.hedge_threshold(LatencyWindow([0.01] * 40)) == 0.5
    assert b.hedge_threshold(LatencyWindow([1.0] * 95 + [30.0] * 5)) == 90.0
    assert asyncio.iscoroutinefunction(OpenAIBackend.run)
