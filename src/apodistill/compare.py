"""Experiments side by side in one screen: `apodistill compare` / `make compare`.

`dvc exp show` puts every param and metric of every experiment in one row, which is wide.
This table is turned on its side: one column per experiment (workspace, baseline and each
`dvc exp`), one row per field. The rows are APO's loss and beta, the teacher weights, any
other param that differs between the shown experiments, then the headline metrics (the
summary stage's `reports/headline.json`, chosen by :mod:`apodistill.headline`).
Columns that do not fit the width go into a second block below the first.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

from apodistill.headline import headline_keys

ALWAYS = (r"^apo\.loss$", r"^apo\.beta$", r"^teachers\.weights(\.\w+)?$")
_META = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}


def experiments(repo: str | None = None, names: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows of `dvc exp show` (workspace, baseline, experiments). With ``names``: the workspace
    (the run the experiments are compared with, e.g. the default arm of `make ablation`) and
    the named experiments, in that order."""
    import dvc.api

    rows = dvc.api.exp_show(repo=repo)
    if names:
        by_name = {r.get("Experiment") or r.get("rev"): r for r in rows}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise KeyError(f"no experiment named {', '.join(missing)} (see `dvc exp list`)")
        rows = [r for r in rows if r.get("rev") == "workspace"] + [by_name[n] for n in names if n != "workspace"]
    return rows


def _label(row: dict[str, Any]) -> str:
    if row.get("Experiment"):
        return str(row["Experiment"])
    return "workspace" if row.get("rev") == "workspace" else f"{row.get('typ', 'baseline')} {str(row.get('rev', ''))[:7]}"


def _fmt(v: Any) -> str:
    """``.933`` for a score, ``1`` for a whole number, ``-`` where an experiment has no value
    (dvc.api.exp_show gives missing values as None or the text 'None')."""
    if v is None or v in ("", "None", "-", "!"):
        return "-"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.3f}".replace("0.", ".", 1) if abs(v) < 1 else f"{v:.4g}"
    return str(v)


def _is_param(key: str, metrics: Iterable[str]) -> bool:
    return key not in _META and "/" not in key and key not in metrics and not key.endswith(".py")


def table_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(column labels, [(field, values)]) for the sideways table."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    metrics = headline_keys(k for k in keys if any(isinstance(r.get(k), (int, float)) for r in rows))
    params = [k for k in keys if _is_param(k, metrics)]
    always = [k for rx in map(re.compile, ALWAYS) for k in params if rx.search(k)]
    differing = [k for k in params if k not in always and len({repr(r.get(k)) for r in rows}) > 1]
    fields = list(dict.fromkeys([*always, *differing]))
    out = [(k, [_fmt(r.get(k)) for r in rows]) for k in fields]
    out += [(k, [_fmt(r.get(k)) for r in rows]) for k in metrics if any(r.get(k) is not None for r in rows)]
    return [_label(r) for r in rows], out


def render(columns: list[str], fields: list[tuple[str, list[str]]], width: int = 200) -> str:
    """Plain-text table, split into blocks of columns so that no line is wider than ``width``."""
    name_w = max([len("field"), *(len(k) for k, _ in fields)])
    col_w = [max([len(c), *(len(v[i]) for _, v in fields)]) for i, c in enumerate(columns)]
    blocks, current, used = [], [], name_w
    for i, w in enumerate(col_w):
        if current and used + 2 + w > width:
            blocks.append(current)
            current, used = [], name_w
        current.append(i)
        used += 2 + w
    if current:
        blocks.append(current)
    lines: list[str] = []
    for block in blocks:
        if lines:
            lines.append("")
        lines.append("  ".join(["field".ljust(name_w), *(columns[i].rjust(col_w[i]) for i in block)]).rstrip())
        lines.append("  ".join(["-" * name_w, *("-" * col_w[i] for i in block)]))
        for k, values in fields:
            lines.append("  ".join([k.ljust(name_w), *(values[i].rjust(col_w[i]) for i in block)]).rstrip())
    return "\n".join(lines)
