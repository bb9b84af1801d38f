"""Stage time of the `openai` teacher backend when some requests hang, against the same run without.

A local server answers after `--latency` s, except that chosen requests hang (accepted, then
silent) on their first attempt. Runs, each on a fresh cache, all with the roster's default
deadlines and hedging unless named:

- `no_hangs`: the reference;
- `4_of_first_8`: arrivals 0, 2, 4, 6 hang: as many as the teacher's concurrency (4), after a
  few answers have been timed (the hedge threshold is then 3 x the observed p95, >= 1 s);
- `first_4`: the very first 4 hang, before any answer is timed (threshold `hedge_initial_s`);
- `first_4_no_hedge`: the same without hedging (the old behaviour: each hung request holds
  its worker for `timeout_s`, 60 s by default).

    .venv/bin/python bench/teachers_hangs.py [--n 400] [--latency 0.2] [--json bench/teachers_hangs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tiny-benchmark builder shared with the tests


class HangAt:
    """Plan: the requests arriving at these positions hang on their first attempt."""

    def __init__(self, positions: set[int]):
        self.positions, self.n, self.lock = positions, 0, threading.Lock()

    def __call__(self, ident: str, attempt: int) -> str:
        with self.lock:
            k, self.n = self.n, self.n + 1
        return "hang" if attempt == 0 and k in self.positions else "ok"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400, help="requests (one study each)")
    ap.add_argument("--latency", type=float, default=0.2, help="server latency per answer, seconds")
    ap.add_argument("--skip-no-hedge", action="store_true", help="leave out the slow run without hedging")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    from teachers_helpers import make_benchmark

    from fake_openai_server import FakeOpenAIServer
    from params_helpers import DEFAULT, teachers_config
    from apodistill.teachers.runner import run_teachers

    os.environ.setdefault("APODISTILL_BENCH_KEY", "sk-bench")
    runs = {"no_hangs": (set(), {}), "4_of_first_8": ({0, 2, 4, 6}, {}), "first_4": ({0, 1, 2, 3}, {})}
    if not args.skip_no_hedge:
        runs["first_4_no_hedge"] = ({0, 1, 2, 3}, {"hedge_factor": None})
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        bench = make_benchmark(Path(tmp) / "b", n_patients=args.n, studies_per_patient=1)
        for name, (hang, extra) in runs.items():
            spec = {"name": "t", "backend": "openai", "model": "m", "api_key_env": "APODISTILL_BENCH_KEY",
                    "concurrency": 4, "rpm": 1e6, **extra}
            with FakeOpenAIServer(latency_s=args.latency, plan=HangAt(hang), hang_s=120) as server:
                cfg = teachers_config(roster=[{**spec, "base_url": server.url}], tasks=["single"])
                t0 = time.perf_counter()
                out = run_teachers(cfg, DEFAULT.base, "synthetic", bench, REPO / "templates/teachers",
                                   Path(tmp) / f"{name}.sqlite", progress=False)
                wall = time.perf_counter() - t0
                sent = len(server.log)
            results[name] = {"stage_s": round(wall, 2), "ok": int((out.table.status == "ok").sum()),
                             "requests_sent": sent, "hung": len(hang)}
            print(name, results[name], flush=True)
    ref = results["no_hangs"]["stage_s"]
    for r in results.values():
        r["vs_no_hangs"] = round(r["stage_s"] / ref, 3)
    summary = {"requests": args.n, "latency_s": args.latency, "concurrency": 4, "runs": results}
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if all(r["ok"] == args.n for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
