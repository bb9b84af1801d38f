"""Columns derived from the trajectory table before the expectation suite runs.

Why derive instead of expecting on ``text`` alone: "the answer parses into the finding
vocabulary" or "this teacher already answered this prompt" are not regexes. Each derived
column holds one fact the suite can expect on, so every quarantine reason is still a
named GX expectation with its failing values shown in Data Docs.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from apodistill.findings import TASKS, TrajectoryParseError, parse_trajectory

#: Columns this module adds; they are dropped again from the stage's output tables.
DERIVED = ("row_id", "parse_error", "answer_task", "think_chars", "length_ratio", "duplicate_of", "benchmark_split")
#: A teacher's prompt: two rows with the same values here answer the same question.
PROMPT_KEY = ("teacher", "task", "study_id", "prior_study_id", "prompt_mode", "template")

_THINK = re.compile(r"(?s)<think>(.*?)</think>")


def _think_chars(text: str) -> float:
    match = _THINK.search(text)
    return float(len(match.group(1).strip())) if match else np.nan


def parse_row(text: str, task: str, findings: list[str]) -> tuple[dict[str, str] | None, str | None, str | None]:
    """Parse one trajectory: ``(labels, answer_task, parse_error)``.

    The row's own task vocabulary is tried first. When that fails on a value, the other
    vocabulary is tried: an answer that parses there is well-formed but answers the wrong
    kind of prompt, which the suite reports as ``labels_match_task`` rather than as an
    unparseable answer.
    """
    try:
        return parse_trajectory(text, findings, task).labels, task, None
    except TrajectoryParseError as err:
        first = err.reason
    except ValueError as err:  # unknown task name
        return None, None, f"unknown_task: {err}"
    if first == "bad_value":
        for other in TASKS:
            if other == task:
                continue
            try:
                return parse_trajectory(text, findings, other).labels, other, None
            except TrajectoryParseError:
                pass
    return None, None, first


def derive_columns(table: pd.DataFrame, findings: list[str], benchmark_splits: dict[str, str]) -> pd.DataFrame:
    """The table with the :data:`DERIVED` columns and ``answer_<finding>`` added.

    ``benchmark_splits`` maps study_id -> split from the benchmark. Rows keep their order;
    ``row_id`` is their position and keys the per-row GX results.
    """
    df = table.reset_index(drop=True).copy()
    df["row_id"] = np.arange(len(df), dtype=np.int64)
    # GX map expectations skip nulls; a missing text or status must fail, not pass.
    df["text"] = df["text"].fillna("").astype(str)
    df["status"] = df["status"].fillna("").astype(str)

    parsed = [parse_row(t, k, findings) for t, k in zip(df["text"], df["task"])]
    df["parse_error"] = pd.Series([p[2] for p in parsed], dtype=object)
    df["answer_task"] = pd.Series([p[1] for p in parsed], dtype=object)
    for f in findings:
        df[f"answer_{f}"] = pd.Series([p[0][f] if p[0] else None for p in parsed], dtype=object)

    df["think_chars"] = df["text"].map(_think_chars).astype(float)

    chars = df["text"].str.len().astype(float)
    ok = df["status"] == "ok"
    median = chars[ok].groupby(df.loc[ok, "teacher"]).median()
    df["length_ratio"] = np.where(ok, chars / df["teacher"].map(median).replace(0, np.nan), np.nan)

    first = df.groupby(list(PROMPT_KEY), sort=False, dropna=False)["row_id"].transform("first")
    df["duplicate_of"] = pd.Series(np.where(first != df["row_id"], first.astype(str), None), dtype=object)

    df["benchmark_split"] = pd.Series(df["study_id"].map(benchmark_splits), dtype=object)
    return df
