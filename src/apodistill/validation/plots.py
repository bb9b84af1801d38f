"""Drift plots and ``dvc plots`` data: one PNG and one CSV per teacher, and an overview.

CSV columns end with ``agreement`` so ``dvc plots show`` draws agreement per window by
default (its y is the last column); the PNGs show every measure with the flags.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from apodistill.validation.drift import DriftResult

#: Excess columns drawn in the PNG (the abnormal value of each task; the CSV has them all).
EXCESS_SHOWN = ("=yes", "=worsening")
CSV_COLUMNS = ("window", "stream_start", "rows", "ok_rows", "rated", "flags", "refusal_rate", "mean_chars", "js_divergence")


def file_stem(teacher: str, task: str) -> str:
    """``gpt5`` for single-study windows, ``gpt5_pair`` for prior/current pairs."""
    return teacher if task == "single" else f"{teacher}_{task}"


def write_drift_tables(drift: DriftResult, out_dir: Path) -> list[Path]:
    """``<teacher>.csv`` (``<teacher>_pair.csv`` for pairs) per teacher: one row per window, every window of the stream; label
    shares, the teacher's rate minus its peers' per finding and value (``excess:...``, the window
    mean of a detector stream) and, last, agreement."""
    out_dir.mkdir(parents=True, exist_ok=True)
    all_windows = (
        range(int(drift.windows["window"].min()), int(drift.windows["window"].max()) + 1) if len(drift.windows) else range(0)
    )
    frac = sorted(c for c in drift.windows.columns if c.startswith(("frac_", "excess:")))
    paths = []
    for (teacher, task), w in drift.windows.groupby(["teacher", "task"]):
        table = w.set_index("window").reindex(all_windows)
        table.index.name = "window"
        table = table.reset_index()[[*CSV_COLUMNS, *frac, "agreement"]]
        path = out_dir / f"{file_stem(teacher, task)}.csv"
        table.to_csv(path, index=False, float_format="%.6g")
        paths.append(path)
    return paths


def plot_teacher(teacher: str, w: pd.DataFrame, flags: pd.DataFrame, window: int, path: Path) -> Path:
    """Five panels over the stream windows, dashed red lines where the detector fired
    (at the flagged row's stream position, in window units)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frac = [c for c in w.columns if c.startswith("frac_")]
    excess = [c for c in w.columns if c.startswith("excess:") and c.endswith(EXCESS_SHOWN)]
    fig, axes = plt.subplots(6, 1, figsize=(8, 13), sharex=True)
    fig.subplots_adjust(left=0.09, right=0.97, top=0.95, bottom=0.04, hspace=0.3)
    x = w["window"]
    panels = [
        ("agreement with the leave-one-out majority", [("agreement", "C0")]),
        ("label rate minus the other teachers' rate, per finding", [(c, f"C{i}") for i, c in enumerate(excess)]),
        ("label distribution (all findings)", [(c, f"C{i + 2}") for i, c in enumerate(frac)]),
        ("JS divergence from the pooled label distribution", [("js_divergence", "C1")]),
        ("refusal rate", [("refusal_rate", "C3")]),
        ("mean length (chars, ok rows)", [("mean_chars", "C4")]),
    ]
    for ax, (title, series) in zip(axes, panels):
        for col, color in series:
            ax.plot(x, w[col], marker=".", color=color, label=col.removeprefix("frac_").removeprefix("excess:"))
        ax.set_title(title, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
        for position in flags["stream_index"] / window:
            ax.axvline(position, color="red", linestyle="--", alpha=0.6)
    axes[0].set_ylim(0, 1.02)
    axes[1].axhline(0, color="grey", linewidth=0.8)
    for ax in axes[1:3]:
        if ax.get_lines():
            ax.legend(fontsize=6, ncol=3)
    axes[-1].set_xlabel("stream window")
    n = len(flags)
    where = ", ".join(f"{r.stream} @ {r.stream_index}" for r in flags.itertuples())
    fig.suptitle(f"{teacher}: {n} drift flag{'s' if n != 1 else ''}" + (f" ({where})" if n else ""), fontsize=10)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_overview(drift: DriftResult, path: Path) -> Path:
    """Every teacher's agreement on one axis, flagged windows marked with an x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, ((teacher, task), w) in enumerate(drift.windows.groupby(["teacher", "task"])):
        label = teacher if task == "single" else f"{teacher} ({task})"
        line = ax.plot(w["window"], w["agreement"], marker=".", label=label, color=f"C{i % 10}")[0]
        hit = w[w["flags"] > 0]
        ax.plot(hit["window"], hit["agreement"], "x", markersize=10, color=line.get_color())
    ax.set_xlabel("stream window")
    ax.set_ylabel("agreement with leave-one-out majority")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=4)
    ax.set_title(f"Teacher agreement over the stream ({drift.detector.get('name')} flags marked x)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_drift_report(drift: DriftResult, out_dir: str | Path) -> list[Path]:
    """CSV + PNG per teacher and ``overview.png`` into ``out_dir`` (a stage output folder)."""
    out = Path(out_dir)
    for stale in [*out.glob("*.png"), *out.glob("*.csv")] if out.is_dir() else []:
        stale.unlink()  # a teacher dropped from the roster must not leave its old plot behind
    paths = write_drift_tables(drift, out)
    for (teacher, task), w in drift.windows.groupby(["teacher", "task"]):
        flags = drift.flags[(drift.flags["teacher"] == teacher) & (drift.flags["task"] == task)]
        stem = file_stem(teacher, task)
        paths.append(plot_teacher(stem, w, flags, drift.window, out / f"{stem}.png"))
    paths.append(plot_overview(drift, out / "overview.png"))
    return paths
