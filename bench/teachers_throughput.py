"""Throughput of the `openai` teacher backend against a local server with fixed latency.

With latency L and concurrency C the bound is C / L requests per second (16 / 0.2 s = 80/s);
the backend should reach at least 90% of it. `req_per_s` times the request phase (first
send to last answer committed: data URLs, HTTP, parsing, one SQLite commit per answer);
`stage_req_per_s` also counts the stage's set-up (reading tables, hashing images, keys).

    .venv/bin/python bench/teachers_throughput.py            # 500 requests, 200 ms, concurrency 16

The server runs in its own process so that it does not share the client's interpreter lock.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tiny-benchmark builder shared with the tests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="requests (one study each)")
    ap.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()

    from teachers_helpers import make_benchmark

    import aiohttp  # noqa: F401  imported before timing: the figure is throughput, not import time

    from apodistill.config import load_params, with_overrides
    from apodistill.teachers.openai_compat import OpenAIBackend
    from apodistill.teachers.runner import run_teachers

    phase: dict[str, float] = {}
    original_run = OpenAIBackend.run

    async def timed_run(self, requests, sink):  # the request phase alone: first send to last answer stored
        t, cpu = time.perf_counter(), time.process_time()
        await original_run(self, requests, sink)
        phase["requests_s"] = time.perf_counter() - t
        phase["client_cpu_ms_per_request"] = (time.process_time() - cpu) * 1000 / len(requests)

    OpenAIBackend.run = timed_run

    server = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "fake_openai_server.py"), "--port", "0", "--latency", str(args.latency)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        url = server.stdout.readline().strip().split()[-1]
        with tempfile.TemporaryDirectory() as tmp:
            bench = make_benchmark(Path(tmp) / "b", n_patients=args.n, studies_per_patient=1)
            params = with_overrides(load_params(REPO / "params.yaml"), {"teachers": {
                "roster": [{"name": "bench", "backend": "openai", "model": "bench", "base_url": url,
                            "concurrency": args.concurrency, "rpm": 1e6, "timeout_s": 30}],
                "weights": "auto", "tasks": ["single"], "conditioned_splits": []}})  # fmt: skip
            t0 = time.perf_counter()
            out = run_teachers(params.teachers, params.base, "synthetic", bench, REPO / "templates/teachers",
                               Path(tmp) / "cache.sqlite", progress=False)
            wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait()
    ok = int((out.table.status == "ok").sum())
    bound = args.concurrency / args.latency
    rate = args.n / phase["requests_s"]
    result = {"requests": args.n, "ok": ok, "latency_s": args.latency, "concurrency": args.concurrency,
              "requests_s": round(phase["requests_s"], 3), "req_per_s": round(rate, 2), "bound_req_per_s": bound,
              "share_of_bound": round(rate / bound, 3),
              "client_cpu_ms_per_request": round(phase["client_cpu_ms_per_request"], 2),
              "stage_wall_s": round(wall, 3), "stage_req_per_s": round(args.n / wall, 2)}
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok == args.n and rate >= 0.9 * bound else 1


if __name__ == "__main__":
    raise SystemExit(main())
