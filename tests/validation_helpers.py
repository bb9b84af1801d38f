"""Synthetic teacher trajectories with known accuracy, a planted drift and planted defects.

Independent of apodistill.teachers on purpose: the validation tests must know exactly
which rows are bad and where the drift starts.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from apodistill.findings import MS_CXR_T_5, PAIR_VALUES, SINGLE_VALUES, display, format_trajectory

FINDINGS = list(MS_CXR_T_5)
#: Seven teachers and their per-finding accuracy before any drift (the paper's ordering).
ACCURACY = {
    "gpt5": 0.90,
    "glm45v": 0.86,
    "qwen_vl_max": 0.83,
    "grok4": 0.80,
    "gemini25": 0.78,
    "moonshot": 0.76,
    "sonnet4": 0.75,
}
#: Typical reasoning length per teacher (sentences), so verbosity differs between teachers.
VERBOSITY = {"gpt5": 4, "glm45v": 3, "qwen_vl_max": 2, "grok4": 5, "gemini25": 3, "moonshot": 2, "sonnet4": 6}
SENTENCES = (
    "The cardiomediastinal silhouette is within normal limits.",
    "There is no displaced rib fracture.",
    "Lung volumes are preserved bilaterally.",
    "The costophrenic angles are examined for blunting.",
    "The lung apices are inspected for a pleural line.",
    "Perihilar vessels are assessed for indistinctness.",
    "Airspace opacity is sought in each lobe.",
    "Comparison is made with the expected appearance.",
)
SPLITS = ("train",) * 7 + ("val",) + ("test",) * 2


def benchmark(n_studies: int) -> pd.DataFrame:
    """A minimal studies table: study_id, split and stream_index (what validate reads)."""
    return pd.DataFrame(
        {
            "study_id": [f"s{i:05d}" for i in range(n_studies)],
            "split": [SPLITS[i % len(SPLITS)] for i in range(n_studies)],
            "stream_index": np.arange(n_studies),
        }
    )


def _think(rng: np.random.Generator, teacher: str) -> str:
    n = max(1, VERBOSITY[teacher] + int(rng.integers(-1, 2)))
    return " ".join(rng.choice(SENTENCES, size=n))


def _record_id(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def roster_table(
    n_studies: int = 1200,
    seed: int = 0,
    drift_teacher: str | None = "grok4",
    drift_at: int = 600,
    drift_accuracy: float = 0.35,
    refusal_rate: float = 0.01,
    pairs: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(trajectories, studies)``: every teacher answers every study (task "single") and
    the first ``pairs`` prior/current pairs (task "pair", numbered in their own stream as
    in pairs.parquet: study i-1 -> study i is pair i-1).

    Each finding is answered correctly with the teacher's :data:`ACCURACY`, otherwise with
    another value at random. ``drift_teacher``'s accuracy falls to ``drift_accuracy`` from
    position ``drift_at`` of each stream on. Refused rows carry a refusal text.
    """
    rng = np.random.default_rng(seed)
    studies = benchmark(n_studies)
    prompts = [("single", s.study_id, None, s.split, int(s.stream_index)) for s in studies.itertuples(index=False)]
    for k in range(min(pairs, n_studies - 1)):
        cur = studies.iloc[k + 1]
        prompts.append(("pair", cur.study_id, studies.iloc[k].study_id, cur.split, k))
    vocab = {"single": (SINGLE_VALUES, ["yes", "no", "no", "no", "uncertain"]), "pair": (PAIR_VALUES, list(PAIR_VALUES))}
    truth = {p: rng.choice(vocab[p[0]][1], size=len(FINDINGS)) for p in prompts}
    rows = []
    for teacher, acc in ACCURACY.items():
        for prompt in prompts:
            task, study_id, prior, split, index = prompt
            a = drift_accuracy if teacher == drift_teacher and index >= drift_at else acc
            labels = {}
            for j, f in enumerate(FINDINGS):
                right = truth[prompt][j]
                labels[f] = right if rng.random() < a else rng.choice([v for v in vocab[task][0] if v != right])
            refused = rng.random() < refusal_rate
            text = (
                "I'm sorry, but as an AI I cannot provide a medical diagnosis."
                if refused
                else format_trajectory(_think(rng, teacher), labels, FINDINGS)
            )
            rows.append(
                dict(
                    record_id=_record_id(teacher, task, study_id, prior),
                    teacher=teacher,
                    model=f"{teacher}-sim",
                    backend="synthetic",
                    task=task,
                    study_id=study_id,
                    prior_study_id=prior,
                    split=split,
                    stream_index=index,
                    prompt_mode="blind",
                    template=f"{task}_blind.txt",
                    text=text,
                    status="refused" if refused else "ok",
                    reason="refusal" if refused else None,
                    latency_s=0.01,
                    prompt_tokens=100,
                    completion_tokens=len(text) // 4,
                )
            )
    return pd.DataFrame(rows), studies


def _good(teacher: str, think: str | None = None, labels: dict[str, str] | None = None) -> str:
    think = think or " ".join(SENTENCES[: VERBOSITY[teacher]])
    return format_trajectory(think, labels or {f: "no" for f in FINDINGS}, FINDINGS)


def planted_defects(teacher: str = "gpt5") -> dict[str, tuple[dict, set[str]]]:
    """One bad row per defect kind: name -> (column overrides, expectations it must fail).

    The overrides apply on top of a copy of a clean row of ``teacher`` (see
    :func:`plant`); the expected sets are exactly the expectation names that row fails.
    """
    good = _good(teacher)
    answer = "\n".join(f"{display(f)}: no" for f in FINDINGS)
    pair_labels = {f: "stable" for f in FINDINGS}
    long_think = " ".join([SENTENCES[0]] * 120)  # > 4000 chars
    rambling = " ".join([SENTENCES[1]] * 40)  # ~1,400 chars: > 4x the teacher's median, < 4000
    return {
        "refused": (
            {"status": "refused", "reason": "refusal", "text": "I'm sorry, but as an AI I cannot provide a medical diagnosis."},
            {"status_ok", "well_formed", "not_truncated", "answer_parseable", "no_refusal_phrase"},
        ),
        "error": (
            {"status": "error", "reason": "HTTP 500", "text": ""},
            {"status_ok", "text_not_empty", "well_formed", "not_truncated", "answer_parseable"},
        ),
        "missing_status": ({"status": None}, {"status_ok"}),
        "unclosed_think": (
            {"text": good.replace("</think>", "")},
            {"well_formed", "answer_parseable"},
        ),
        "truncated": ({"text": good[: good.index("pneumothorax")]}, {"not_truncated", "answer_parseable"}),
        "empty_think": ({"text": f"<think> </think>\n<answer>\n{answer}\n</answer>"}, {"think_not_empty"}),
        "hallucinated_finding": (
            {"text": good.replace("</answer>", "cardiomegaly: yes\n</answer>")},
            {"answer_parseable"},
        ),
        "wrong_vocabulary": ({"text": _good(teacher, labels=pair_labels)}, {"labels_match_task"}),
        "refusal_phrase": (
            {"text": _good(teacher, think="As an AI language model I cannot provide a diagnosis. " + SENTENCES[0])},
            {"no_refusal_phrase"},
        ),
        "runaway": ({"text": _good(teacher, think=long_think)}, {"within_max_chars", "length_typical_for_teacher"}),
        "rambling": ({"text": _good(teacher, think=rambling)}, {"length_typical_for_teacher"}),
        "split_leak": ({"split": "train", "_benchmark_split": "test"}, {"split_matches_benchmark"}),
        "unknown_study": ({"study_id": "not-in-benchmark"}, {"split_matches_benchmark"}),
    }


def plant(
    table: pd.DataFrame, studies: pd.DataFrame, teacher: str = "gpt5"
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, set[str]]]:
    """Append one defective row per kind (plus an exact duplicate of a clean row).

    Returns ``(table, studies, expected)`` with ``expected[record_id]`` = the expectation
    names that row must fail. Every defect sits on a fresh study so that it cannot collide
    with a clean row; the duplicate copies the teacher's first clean row.
    """
    clean = table[(table["teacher"] == teacher) & (table["status"] == "ok")].iloc[0]
    extra_rows, extra_studies, expected = [], [], {}
    n = int(studies["stream_index"].max()) + 1
    for k, (kind, (overrides, names)) in enumerate(planted_defects(teacher).items()):
        row = clean.to_dict()
        study = f"defect{k:02d}"
        row.update(record_id=f"defect-{kind}", study_id=study, stream_index=n + k, split="train", text=_good(teacher))
        bench_split = overrides.pop("_benchmark_split", "train")
        row.update(overrides)
        extra_rows.append(row)
        extra_studies.append({"study_id": study, "split": bench_split, "stream_index": n + k})
        expected[row["record_id"]] = names
    dup = clean.to_dict() | {"record_id": "defect-duplicate"}
    extra_rows.append(dup)
    expected["defect-duplicate"] = {"unique_teacher_prompt"}
    out = pd.concat([table, pd.DataFrame(extra_rows)], ignore_index=True)
    return out, pd.concat([studies, pd.DataFrame(extra_studies)], ignore_index=True), expected
