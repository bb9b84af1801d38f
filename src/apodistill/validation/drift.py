"""Teacher drift over the data stream: per-window measures and change points.

For each teacher, over windows of ``drift_window`` consecutive stream positions
(``stream_index // drift_window``): its label distribution, its agreement with the
leave-one-out majority of the other teachers, the Jensen-Shannon divergence of its label
distribution from the pooled one, its refusal rate and its length.

Change points come from a river detector (ADWIN by default; registered by name), run in
stream order on each teacher's streams:

- ``agreement``: per-row agreement with the leave-one-out majority. It catches a teacher
  that gets worse (or better).
- ``<finding>=<value>``: per row, 1 if the teacher answered ``value`` minus the share of
  the other teachers who did on the same item (every value but ``no`` / ``stable``,
  whose rate is one minus the others'). It catches a teacher whose errors change
  direction at the same accuracy (a provider update that starts over-calling edema while
  it stops missing consolidation), which leaves agreement flat. Subtracting the peers'
  share keeps a change in the case mix, seen by every teacher alike, from raising flags.
- ``all=<value>``: the same, averaged over the findings of a row: a shift spread thinly over
  every finding (a pair teacher that starts calling everything "improving").

Why agreement with peers and not accuracy: drift must be seen on streams nobody has
labelled. Why river: its detectors carry proven false-alarm bounds (ADWIN's ``delta``);
a hand-written threshold does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from apodistill.findings import PAIR_VALUES, SINGLE_VALUES, values_for
from apodistill.registry import Registry

DETECTORS: Registry[Callable[..., Any]] = Registry("drift detector")
VALUES = (*SINGLE_VALUES, *PAIR_VALUES)
#: Windows are per teacher and task: studies and pairs are numbered in separate streams.
KEY = ["teacher", "task", "window"]
#: The value per task whose rate is not watched on its own (it is one minus the others').
REFERENCE_VALUE = {"single": "no", "pair": "stable"}


@DETECTORS.register("adwin")
def _adwin(**params: Any) -> Any:
    from river.drift import ADWIN

    return ADWIN(**params)


@DETECTORS.register("page_hinkley")
def _page_hinkley(**params: Any) -> Any:
    from river.drift import PageHinkley

    return PageHinkley(**params)


def make_detector(name: str, params: dict[str, Any]) -> Any:
    """A fresh detector; unknown names and bad keyword arguments fail naming what is known."""
    factory = DETECTORS.get(name)
    try:
        return factory(**params)
    except TypeError as err:
        raise ValueError(f"validate.detector_params for {name!r}: {err}") from None


def detect(stream_index: np.ndarray, values: np.ndarray, name: str, params: dict[str, Any]) -> list[tuple[int, int]]:
    """Feed ``values`` (already in stream order) to a fresh detector; ``(position, stream_index)``
    of every detection."""
    detector = make_detector(name, params)
    hits = []
    for position, (index, value) in enumerate(zip(stream_index, values)):
        detector.update(float(value))
        if detector.drift_detected:
            hits.append((position, int(index)))
    return hits


def stream_name(task: str, name: str) -> str:
    """Single-study streams keep their plain name; prior/current pairs, numbered in their own
    stream (pairs.parquet), are prefixed ``pair:``."""
    return name if task == "single" else f"{task}:{name}"


def detector_streams(scored: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """``(teacher, stream name, frame with stream_index and x)`` for every stream watched,
    per task (studies and pairs are numbered in separate streams).

    ``scored`` comes from :func:`apodistill.validation.agreement.loo_agreement`; rows are
    returned in stream order (ties broken by row_id, so the order is reproducible).
    """
    order = ["stream_index", "row_id"]
    rated = scored[scored["agree"].notna()]
    per_row = rated.groupby(["teacher", "task", "row_id"], sort=False).agg(
        stream_index=("stream_index", "first"), x=("agree", "mean")
    )
    for (teacher, task), s in per_row.reset_index().groupby(["teacher", "task"], sort=True):
        yield teacher, stream_name(task, "agreement"), s.sort_values(order, kind="stable")
    peered = scored[scored["peers"] > 0]
    for (teacher, task), s in peered.groupby(["teacher", "task"], sort=True):
        for value in values_for(task):
            if value == REFERENCE_VALUE[task]:
                continue  # its rate is one minus the others': a mirror stream adds only false alarms
            share = s[f"share_{value}"] if f"share_{value}" in s else 0.0
            s = s.assign(x=((s["value"] == value).astype(float) - share).fillna(0.0))
            for finding, f in s.groupby("finding", sort=True):
                yield teacher, stream_name(task, f"{finding}={value}"), f.sort_values(order, kind="stable")[["stream_index", "x"]]
            # all findings of a row at once: a shift spread thinly over every finding
            pooled = s.groupby("row_id", sort=False).agg(stream_index=("stream_index", "first"), x=("x", "mean")).reset_index()
            yield teacher, stream_name(task, f"all={value}"), pooled.sort_values(order, kind="stable")[["stream_index", "x"]]


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two count or probability vectors."""
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return (kl(p) + kl(q)) / 2


def _window_js(labels: pd.DataFrame) -> pd.Series:
    """Mean over findings of JS(teacher's value counts || all teachers' value counts), per window."""
    counts = labels.groupby(["window", "task", "finding", "teacher", "value"]).size().unstack("value", fill_value=0)
    pooled = counts.groupby(level=["window", "task", "finding"]).sum()
    rows = [
        (key[3], key[1], key[0], js_divergence(own.to_numpy(float), pooled.loc[key[:3]].to_numpy(float)))
        for key, own in counts.iterrows()
    ]
    js = pd.DataFrame(rows, columns=["teacher", "task", "window", "js"])
    return js.groupby(KEY)["js"].mean()


@dataclass
class DriftResult:
    """``windows``: one row per (teacher, task, window); ``flags``: one row per detection
    (teacher, task, stream, window, stream_index); ``window``: stream positions per window."""

    windows: pd.DataFrame
    flags: pd.DataFrame
    window: int
    detector: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Flat numbers per teacher for reports/validate.json (``drift.<teacher>.<measure>``)."""
        out: dict[str, float] = {"drift.windows": float(self.windows["window"].nunique())}
        flagged = 0
        for teacher, w in self.windows.groupby("teacher"):
            f = self.flags[self.flags["teacher"] == teacher]
            flagged += int(len(f) > 0)
            p = f"drift.{teacher}."
            out[p + "flags"] = float(len(f))
            out[p + "flagged_windows"] = float(len(f[["task", "window"]].drop_duplicates()))
            out[p + "first_flag_window"] = float(f["window"].min()) if len(f) else -1.0
            out[p + "agreement"] = (
                float(np.average(w["agreement"].fillna(0), weights=w["rated"])) if w["rated"].sum() else float("nan")
            )
            out[p + "agreement_min_window"] = float(w["agreement"].min())
            out[p + "js_mean"] = float(w["js_divergence"].mean())
            out[p + "js_max"] = float(w["js_divergence"].max())
            out[p + "refusal_rate"] = float(np.average(w["refusal_rate"], weights=w["rows"]))
            out[p + "refusal_rate_max_window"] = float(w["refusal_rate"].max())
            out[p + "mean_chars"] = (
                float(np.average(w["mean_chars"].fillna(0), weights=w["ok_rows"])) if w["ok_rows"].sum() else float("nan")
            )
        out["drift.flagged_teachers"] = float(flagged)
        return out


def _label_rates(labels: pd.DataFrame) -> pd.DataFrame:
    """Per (teacher, window): share of each value over all findings (``frac_<value>``), per
    finding (``<finding>=<value>``), and the teacher's excess over its peers per finding
    and value (``excess:<finding>=<value>``: the window mean of that detector stream)."""
    pooled = labels.groupby([*KEY, "value"]).size().unstack("value", fill_value=0)
    pooled = pooled.reindex(columns=[v for v in VALUES if v in pooled.columns])
    frac = pooled.div(pooled.sum(axis=1), axis=0).add_prefix("frac_")
    per = labels.groupby([*KEY, "finding", "value"]).size().rename("n").reset_index()
    per["rate"] = per["n"] / per.groupby([*KEY, "finding"])["n"].transform("sum")
    per["key"] = per["finding"] + "=" + per["value"].astype(str)
    rates = per.pivot_table(index=KEY, columns="key", values="rate", fill_value=0.0)
    peered = labels[labels["peers"] > 0]
    excess = []
    for value in VALUES:
        if f"share_{value}" not in peered:
            continue
        x = peered[peered["task"].map(lambda t, v=value: v in values_for(t))]
        x = x.assign(x=(x["value"] == value).astype(float) - x[f"share_{value}"])
        e = x.groupby([*KEY, "finding"])["x"].mean().unstack("finding")
        excess.append(e.rename(columns=lambda f, v=value: f"excess:{f}={v}"))
    return frac.join(rates).join(pd.concat(excess, axis=1) if excess else None)


def measure_drift(
    rows: pd.DataFrame, scored: pd.DataFrame, window: int, detector: str, detector_params: dict[str, Any]
) -> DriftResult:
    """Drift measures per teacher and window, and change points of each teacher's streams.

    ``rows``: every trajectory (quarantined included) with ``row_id``, teacher,
    stream_index, status, text and a boolean ``refused`` (refused status or a refusal
    phrase). ``scored``: validated labels from
    :func:`apodistill.validation.agreement.loo_agreement`.
    """
    rows = rows.assign(window=rows["stream_index"] // window)
    windows = rows.groupby(KEY).agg(
        rows=("row_id", "size"),
        stream_start=("stream_index", "min"),
        refusal_rate=("refused", "mean"),
    )
    ok = rows[rows["status"] == "ok"]
    windows["ok_rows"] = ok.groupby(KEY).size().reindex(windows.index, fill_value=0)
    windows["mean_chars"] = ok.assign(chars=ok["text"].str.len()).groupby(KEY)["chars"].mean()

    labels = scored.assign(window=scored["stream_index"] // window)
    if len(labels):
        windows = windows.join(_label_rates(labels)).join(_window_js(labels).rename("js_divergence"))
        # rows weigh equally; "rated" counts rows with a majority on at least one finding
        per_row = labels.groupby([*KEY, "row_id"])["agree"].mean()
        agree = per_row.groupby(level=KEY).agg(["count", "mean"])
        windows = windows.join(agree.rename(columns={"count": "rated", "mean": "agreement"}))
    else:
        windows = windows.assign(js_divergence=np.nan, rated=0, agreement=np.nan)
    windows["rated"] = windows["rated"].fillna(0).astype(int)

    hits = []
    for teacher, stream, s in detector_streams(scored):
        task = stream.split(":", 1)[0] if ":" in stream else "single"
        for position, index in detect(s["stream_index"].to_numpy(), s["x"].to_numpy(), detector, detector_params):
            hits.append((teacher, task, stream, int(index) // window, int(index), position))
    flags = pd.DataFrame(hits, columns=["teacher", "task", "stream", "window", "stream_index", "position"])
    counts = flags.groupby(KEY).size()
    windows["flags"] = counts.reindex(windows.index, fill_value=0).astype(int)
    windows = windows.reset_index().sort_values(KEY, ignore_index=True)
    return DriftResult(windows=windows, flags=flags, window=window, detector={"name": detector, "params": dict(detector_params)})
