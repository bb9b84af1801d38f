"""Per-teacher statistics of a run: counts, latency percentiles, tokens, blind accuracy."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from apodistill.teachers.simulated import truth_pair, truth_single


def _reason_tag(reason: str | None) -> str:
    return (reason or "unknown").split(":", 1)[0].strip().replace(" ", "_") or "unknown"


def teacher_stats(table: pd.DataFrame, parsed: pd.Series, truths: pd.Series, requested: dict[str, int],
                  findings: list[str], prices: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """Flat ``<teacher>.<stat>`` metrics (numbers only, for DVC metrics and MLflow).

    ``prices``: USD per 1M (prompt, completion) tokens per teacher; ``<teacher>.cost_usd`` is
    what the table's answers cost at those prices, and ``cost_usd`` the sum over teachers.

    ``parsed`` holds each row's parsed answers (dict or None), ``truths`` each row's truth
    dict; accuracy is over parsed rows: per finding the share of right answers ("uncertain"
    counts as wrong), ``single`` against label == 1, ``pair`` against the progression class.
    """
    out: dict[str, float] = {}
    for teacher, idx in table.groupby("teacher", sort=False).groups.items():
        t = table.loc[idx]
        p = f"{teacher}."
        for status in ("ok", "refused", "error"):
            out[p + status] = int((t["status"] == status).sum())
        out[p + "rows"] = len(t)
        out[p + "requested"] = int(requested.get(teacher, 0))
        out[p + "cached"] = len(t) - int(requested.get(teacher, 0))
        out[p + "unparseable"] = int(((t["status"] == "ok") & parsed.loc[idx].isna()).sum())
        answered = t[t["status"] != "error"]["latency_s"].to_numpy(dtype=float)
        out[p + "latency_p50"] = round(float(np.percentile(answered, 50)), 4) if len(answered) else 0.0
        out[p + "latency_p95"] = round(float(np.percentile(answered, 95)), 4) if len(answered) else 0.0
        out[p + "prompt_tokens"] = int(t["prompt_tokens"].sum())
        out[p + "completion_tokens"] = int(t["completion_tokens"].sum())
        out[p + "tokens"] = out[p + "prompt_tokens"] + out[p + "completion_tokens"]
        pin, pout = (prices or {}).get(teacher, (0.0, 0.0))
        out[p + "cost_usd"] = round((out[p + "prompt_tokens"] * pin + out[p + "completion_tokens"] * pout) / 1e6, 6)
        for reason, n in t.loc[t["status"] == "error", "reason"].map(_reason_tag).value_counts().items():
            out[f"{p}error_reason.{reason}"] = int(n)
        for (task, mode), g in t.groupby(["task", "prompt_mode"]).groups.items():
            accs = _accuracy(parsed.loc[g], truths.loc[g], task, findings)
            for f, a in accs.items():
                out[f"{p}{task}.{mode}.acc.{f}"] = a
            if accs:
                out[f"{p}{task}.{mode}.acc_mean"] = round(float(np.mean(list(accs.values()))), 4)
    out["cost_usd"] = round(sum(v for k, v in out.items() if k.endswith(".cost_usd")), 6)
    out["tokens"] = int(sum(v for k, v in out.items() if k.endswith(".tokens")))
    return out


def _accuracy(parsed: pd.Series, truths: pd.Series, task: str, findings: list[str]) -> dict[str, float]:
    keep = parsed.notna()
    if not keep.any():
        return {}
    out = {}
    for f in findings:
        right = []
        for labels, truth in zip(parsed[keep], truths[keep]):
            if task == "pair":
                prog = truth.get("progression", {}).get(f)
                if prog is None:
                    continue
                right.append(labels[f] == truth_pair(prog))
            else:
                label = truth.get("label", {}).get(f)
                if label is None or label == -1.0:
                    continue
                right.append(labels[f] == ("yes" if truth_single(label) else "no"))
        if right:
            out[f] = round(float(np.mean(right)), 4)
    return out


def dumps(stats: dict[str, Any]) -> str:
    return json.dumps(stats, indent=2, sort_keys=True) + "\n"
