"""One table over seeds: the headline comparisons of several `dvc exp` runs of the default.

    make seeds                      # queues seed-1..3 (-S base.seed=N), runs them, then:
    python -m apodistill.reporting.seeds --out reports/seeds seed-1 seed-2 seed-3

Reads each experiment's metrics from `dvc exp show --json` (no file of the workspace is
changed) and writes ``<out>.md`` and ``<out>.json``: per headline number the mean and sample sd
over seeds with every seed's value, and per seed the paired-bootstrap intervals the evaluate
stage computed. A comparison "holds" over seeds when its mean difference is > 0 and every
seed's difference is > 0; the table says so per comparison, whichever way it comes out.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
from pathlib import Path
from typing import Any, Sequence

from apodistill.tracking import flatten

# (label, metrics key) of the numbers shown; pairs (MS-CXR-T) first
NUMBERS: tuple[tuple[str, str], ...] = (
    ("APO, pairs", "apo.pair_acc.mean"),
    ("SPD only, pairs", "spd.pair_acc.mean"),
    ("best teacher (val), pairs", "best_teacher.pair_acc.mean"),
    ("mean teacher, pairs", "mean_teacher.pair_acc.mean"),
    ("majority vote, pairs", "majority_vote.pair_acc.mean"),
    ("control arm (gold labels), pairs", "control.pair_acc.mean"),
    ("APO, single studies", "apo.acc.mean"),
    ("SPD only, single studies", "spd.acc.mean"),
    ("best teacher (val), single studies", "best_teacher.acc.mean"),
    ("mean teacher, single studies", "mean_teacher.acc.mean"),
)
# (claim, key of a paired-bootstrap difference) of the method's four claims on the headline task
CLAIMS: tuple[tuple[str, str], ...] = (
    ("APO > SPD only (pairs)", "apo.vs_spd.pair_acc"),
    ("APO >= best single teacher (pairs)", "apo.vs_best_teacher.pair_acc"),
    ("SPD only > mean teacher (pairs)", "spd.vs_mean_teacher.pair_acc"),
)
# (claim, system, reference) on single studies: the headline holds their means but not their intervals
# (those are in each run's reports/metrics.json), so the difference is of the two means
MEAN_CLAIMS: tuple[tuple[str, str, str], ...] = (
    ("APO > SPD only (single studies)", "apo.acc.mean", "spd.acc.mean"),
    ("APO >= best single teacher (single studies)", "apo.acc.mean", "best_teacher.acc.mean"),
    ("SPD only > mean teacher (single studies)", "spd.acc.mean", "mean_teacher.acc.mean"),
)
CONSENSUS = ("chosen consensus > plain vote (train)", "self_distill.acc.{method}.{task}", "self_distill.acc.vote.{task}")


def exp_metrics(names: Sequence[str], cwd: str | Path = ".") -> dict[str, dict[str, float]]:
    """Flat metrics of each named experiment (``dvc exp show --json``), keyed by experiment name."""
    raw = json.loads(subprocess.run(["dvc", "exp", "show", "--json", "--no-pager"], cwd=cwd, capture_output=True,
                                    text=True, check=True).stdout)  # fmt: skip
    found: dict[str, dict[str, float]] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            name = node.get("name")
            data = node.get("data") or {}
            if name in names and isinstance(data, dict) and data.get("metrics"):
                flat: dict[str, float] = {}
                for file in data["metrics"].values():
                    flat.update(flatten(file.get("data", {})))
                params: dict[str, Any] = {}
                for file in (data.get("params") or {}).values():
                    params.update(flatten(file.get("data", {})))
                found[name] = {**flat, **{f"params.{k}": v for k, v in params.items()}}
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(raw)
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"no metrics for experiment(s) {missing} in `dvc exp show` (run `make seeds` first)")
    return {n: found[n] for n in names}


def _mean_sd(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else float("nan")
    return m, sd


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean, sd and per-seed values of the headline numbers and of each claim's difference."""
    names = list(runs)
    numbers = []
    for label, key in NUMBERS:
        vals = [runs[n].get(key) for n in names]
        if all(v is None for v in vals):
            continue
        m, sd = _mean_sd([float(v) for v in vals if v is not None])
        numbers.append({"label": label, "key": key, "mean": m, "sd": sd, "values": vals})
    claims = []
    for label, key in CLAIMS:
        diffs = [runs[n].get(f"{key}.diff") for n in names]
        if all(d is None for d in diffs):
            continue
        cis = [(runs[n].get(f"{key}.ci_low"), runs[n].get(f"{key}.ci_high")) for n in names]
        m, sd = _mean_sd([float(d) for d in diffs if d is not None])
        holds = m > 0 and all(d is not None and d > 0 for d in diffs)
        if "best single teacher" in label:  # ">=": not worse beyond noise
            holds = m >= 0 and all(lo is not None and hi is not None and hi >= 0 for lo, hi in cis)
        claims.append({"label": label, "key": key, "mean": m, "sd": sd, "diffs": diffs, "ci": cis, "holds": holds})
    for label, key, ref in MEAN_CLAIMS:
        pairs = [(runs[n].get(key), runs[n].get(ref)) for n in names]
        if any(a is None or b is None for a, b in pairs):
            continue
        diffs = [float(a) - float(b) for a, b in pairs]
        m, sd = _mean_sd(diffs)
        holds = m >= 0 and all(d >= 0 for d in diffs) if ">=" in label else m > 0 and all(d > 0 for d in diffs)
        claims.append({"label": label, "key": f"{key}-{ref}", "mean": m, "sd": sd, "diffs": diffs, "ci": [(None, None)] * len(diffs), "holds": holds})
    method = str(runs[names[0]].get("params.self_distill.method", "dawid_skene"))
    for task in ("pair", "single"):
        chosen = [runs[n].get(CONSENSUS[1].format(method=method, task=task)) for n in names]
        vote = [runs[n].get(CONSENSUS[2].format(task=task)) for n in names]
        if any(c is None for c in chosen) or any(v is None for v in vote):
            continue
        diffs = [c - v for c, v in zip(chosen, vote)]
        m, sd = _mean_sd(diffs)
        claims.append({"label": f"{CONSENSUS[0]} ({method}, {task})", "key": f"self_distill.acc.{method}-vote.{task}", "mean": m,
                       "sd": sd, "diffs": diffs, "ci": [(None, None)] * len(diffs), "holds": m > 0 and all(d > 0 for d in diffs)})  # fmt: skip
    seeds = [runs[n].get("params.base.seed") for n in names]
    return {"experiments": names, "seeds": seeds, "numbers": numbers, "claims": claims}


def _f(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def markdown(summary: dict[str, Any]) -> str:
    names = summary["experiments"]
    head = " | ".join(f"{n} (seed {s})" for n, s in zip(names, summary["seeds"]))
    lines = [f"# Seeds: {len(names)} runs of the default", "",
             "Test split; each run regenerates the benchmark, the teachers' answers and every student from its seed.", "",
             f"| accuracy | mean ± sd | {head} |", "|---|---|" + "---|" * len(names)]  # fmt: skip
    for r in summary["numbers"]:
        lines.append(f"| {r['label']} | {_f(r['mean'])} ± {_f(r['sd'])} | " + " | ".join(_f(v) for v in r["values"]) + " |")
    lines += ["", f"| claim | holds over seeds | mean diff ± sd | {head} |", "|---|---|---|" + "---|" * len(names)]
    for c in summary["claims"]:
        cells = [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" if lo is not None else (f"{d:+.3f}" if d is not None else "—")
                 for d, (lo, hi) in zip(c["diffs"], c["ci"])]  # fmt: skip
        lines.append(f"| {c['label']} | {'yes' if c['holds'] else '**no**'} | {c['mean']:+.3f} ± {_f(c['sd'])} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed: difference [paired-bootstrap 95% interval over test examples] where the headline has it; single-study "
              "claims and consensus: the difference of the two accuracies (the single-study intervals are in each run's "
              "reports/metrics.json). A claim holds when the mean difference is above 0 and so is every seed's (for '>= best "
              "teacher': no seed's interval lies below 0, or, without intervals, no seed's difference)."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiments", nargs="+", help="dvc experiment names (make seeds: seed-1 seed-2 seed-3)")
    ap.add_argument("--out", default="reports/seeds", help="output path without suffix: writes .md and .json")
    args = ap.parse_args(argv)
    summary = summarise(exp_metrics(args.experiments))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    text = markdown(summary)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
