"""Pictures of the evaluation (matplotlib, PNG bytes) and the data files `dvc plots` draws.

The PNGs are embedded in reports/index.html (base64) and written next to reports/eval.md;
the CSV files are what the top-level ``plots:`` of dvc.yaml point at, so ``dvc plots diff``
compares experiments (a bar per finding and system; a confusion matrix per student, task and
finding).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from apodistill.evaluate import ACC
from apodistill.findings import display
from apodistill.reporting.tables import Published, System

# Systems drawn per finding; every system's mean is in the second panel and in the tables.
CHART_KINDS = ("baseline", "student", "control")
COLOURS = {"teacher": "#9aa5b1", "baseline": "#e0a030", "student": "#2f6fb0", "control": "#3a8f5c"}


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=100)


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # figures call tight_layout: one draw, not two
    plt.close(fig)
    return buf.getvalue()


def accuracy_chart(metrics: dict[str, float], systems: Sequence[System], task: str, findings: Sequence[str], published: Published | None) -> bytes:
    """Left: accuracy per finding of the baselines and students (the paper's student hatched).
    Right: mean accuracy of every system, the paper's number as a hollow marker beside it."""
    plt, fig = _figure(13, 5.2)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    drawn = [s for s in systems if s.ran and s.kind in CHART_KINDS and f"{s.key}.{ACC[task]}.mean" in metrics]
    pub = published if published and published.task == task else None
    # The control arm is an upper bound, not a method: outlined in its colour, so it never reads as a student.
    bars = [(s.label, [metrics.get(f"{s.key}.{ACC[task]}.{f}", np.nan) for f in findings],
             {"fill": False, "edgecolor": COLOURS["control"], "hatch": "..", "linewidth": 1.2} if s.kind == "control" else {}) for s in drawn]  # fmt: skip
    for key, per in (pub.findings.items() if pub else []):
        if per:
            bars.append((pub.label[key] + " (published)", [per.get(f, np.nan) for f in findings], {"hatch": "//", "edgecolor": "black", "fill": False}))
    width = 0.8 / max(len(bars), 1)
    x = np.arange(len(findings))
    for i, (label, values, style) in enumerate(bars):
        left.bar(x + (i - (len(bars) - 1) / 2) * width, values, width, label=label, **style)
    left.set_xticks(x, [display(f) for f in findings])
    left.set_ylim(0, 1)
    left.set_ylabel("top-1 accuracy")
    left.set_title(f"Per-finding accuracy ({'pairs, MS-CXR-T protocol' if task == 'pair' else 'single studies'})")
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    left.grid(axis="y", alpha=0.3)

    everyone = [s for s in systems if s.ran and f"{s.key}.{ACC[task]}.mean" in metrics]
    y = np.arange(len(everyone))[::-1]
    right.barh(y, [metrics[f"{s.key}.{ACC[task]}.mean"] for s in everyone], color=[COLOURS[s.kind] for s in everyone])
    if pub:
        marks = [(yy, pub.mean[s.key]) for yy, s in zip(y, everyone) if s.key in pub.mean]
        if marks:
            right.scatter([m for _, m in marks], [yy for yy, _ in marks], marker="o", facecolors="none", edgecolors="black", zorder=3, label="paper v2 (published)")
            right.legend(fontsize=8, loc="lower right")
    right.set_yticks(y, [s.label if len(s.label) < 28 else ("control arm (gold labels)" if s.kind == "control" else s.key) for s in everyone], fontsize=8)
    right.set_xlim(0, 1)
    right.set_xlabel("mean accuracy")
    right.set_title("Every system")
    right.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(plt, fig)


def confusion_chart(confusions: dict[tuple[str, str, str], pd.DataFrame], students: Sequence[System], task: str, findings: Sequence[str]) -> bytes | None:
    """A grid of count matrices (gold rows x predicted columns): one row per student, one column per finding."""
    present = [s for s in students if any((s.key, task, f) in confusions for f in findings)]
    if not present:
        return None
    plt, fig = _figure(3.0 * len(findings), 2.7 * len(present))
    axes = np.atleast_2d(fig.subplots(len(present), len(findings), squeeze=False))
    for r, s in enumerate(present):
        for c, f in enumerate(findings):
            ax = axes[r, c]
            m = confusions[(s.key, task, f)]
            ax.imshow(m.to_numpy(), cmap="Blues", vmin=0)
            for (i, j), v in np.ndenumerate(m.to_numpy()):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="black")
            ax.set_xticks(range(m.shape[1]), [str(v)[:6] for v in m.columns], fontsize=7, rotation=30)
            ax.set_yticks(range(m.shape[0]), [str(v)[:6] for v in m.index], fontsize=7)
            ax.set_title(f"{s.key}: {display(f)}", fontsize=9)
            if c == 0:
                ax.set_ylabel("gold", fontsize=8)
            if r == len(present) - 1:
                ax.set_xlabel("predicted", fontsize=8)
    fig.tight_layout()
    return _png(plt, fig)


def write_plot_data(out_dir: str | Path, metrics: dict[str, float], predictions: pd.DataFrame, systems: Sequence[System], tasks: Sequence[str], findings: Sequence[str]) -> list[Path]:
    """CSV files for dvc.yaml's top-level ``plots``:

    - ``accuracy.csv``: ``task, system, finding, accuracy, label`` (label = ``task | finding | system``,
      the y of a ``bar_horizontal`` plot) for the baselines, students and the control arm;
    - ``accuracy_mean.csv``: ``task, system, accuracy, label`` for every system;
    - ``confusion/<student>.<task>.<finding>.csv``: ``actual, predicted`` per example (``template: confusion``).
    """
    out = Path(out_dir)
    (out / "confusion").mkdir(parents=True, exist_ok=True)
    for old in (out / "confusion").glob("*.csv"):  # a student left out of this run leaves no stale file
        old.unlink()
    per, mean = [], []
    for task in tasks:
        for s in systems:
            if not s.ran or metrics.get(f"{s.key}.{ACC[task]}.mean") is None:
                continue
            mean.append({"task": task, "system": s.key, "accuracy": metrics[f"{s.key}.{ACC[task]}.mean"], "label": f"{task} | {s.key}"})
            if s.kind in CHART_KINDS:
                per += [{"task": task, "system": s.key, "finding": f, "accuracy": metrics[f"{s.key}.{ACC[task]}.{f}"], "label": f"{task} | {f} | {s.key}"} for f in findings]
    written = [out / "accuracy.csv", out / "accuracy_mean.csv"]
    pd.DataFrame(per, columns=["task", "system", "finding", "accuracy", "label"]).to_csv(written[0], index=False)
    pd.DataFrame(mean, columns=["task", "system", "accuracy", "label"]).to_csv(written[1], index=False)
    for s in systems:
        if s.kind != "student" or not s.ran:
            continue
        for task in tasks:
            rows = predictions[(predictions["system"] == s.key) & (predictions["task"] == task)]
            for f in findings:
                keep = rows[f"correct_{f}"].notna()  # the examples accuracy scores (gold uncertain left out)
                path = out / "confusion" / f"{s.key}.{task}.{f}.csv"
                pd.DataFrame({"actual": rows.loc[keep, f"gold_{f}"], "predicted": rows.loc[keep, f"answer_{f}"].fillna("unparsed")}).to_csv(path, index=False)
                written.append(path)
    return written
