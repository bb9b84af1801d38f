"""The training setting of a run, stated from its resolved params (never a roster default):
which splits the teachers saw the labels on, which teachers and weights, the consensus
method, the APO loss, what the teachers were on the evaluation split. The model card
(serving.card) and the evaluation report print it.
"""

from __future__ import annotations

from typing import Any, Mapping


def prompt_on(split: str, teacher: Mapping[str, Any], teachers: Mapping[str, Any]) -> str:
    """How ``teacher`` was asked on ``split``: ``label_conditioned`` on the splits in
    ``teachers.conditioned_splits``, its own ``prompt_mode`` elsewhere (the teachers stage's rule)."""
    if split in (teachers.get("conditioned_splits") or []):
        return "label_conditioned"
    return str(teacher.get("prompt_mode") or "blind")


def training_setting(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The training setting as (label, sentence) pairs, from the resolved params: which
    splits the teachers saw labels on, which teachers (and weights), the consensus method,
    the APO loss, the evaluation split. The model card and the evaluation report print them.

    Reads ``teachers``, ``self_distill``, ``apo`` and ``evaluate``; a missing section is
    left out rather than guessed.
    """
    teachers = params.get("teachers", {})
    roster = list(teachers.get("roster", []))
    out: list[tuple[str, str]] = []
    if roster:
        conditioned = sorted(teachers.get("conditioned_splits") or [])
        if conditioned:
            out.append(("Teacher prompts", f"label-conditioned on {', '.join(conditioned)}: every teacher explained the "
                        "study's known labels there, as in the paper's CXR-MAX data; each teacher's own prompt_mode elsewhere"))
        else:
            out.append(("Teacher prompts", "blind on every split (teachers.conditioned_splits: []): the teachers diagnosed "
                        "without labels, so their errors and biases are in the training data"))
        on_train = {t.get("name"): prompt_on("train", t, teachers) for t in roster}
        modes = sorted(set(on_train.values()))
        if len(modes) > 1:
            out.append(("On the train split", "; ".join(f"{m}: {', '.join(n for n, v in on_train.items() if v == m)}" for m in modes)))
        out.append((f"Teachers ({len(roster)})", ", ".join(f"{t.get('name')} ({t.get('backend', '?')}: {t.get('model', '?')})" for t in roster)
                    + f"; tasks: {', '.join(teachers.get('tasks') or ['single'])}"))
        weights = teachers.get("weights")
        out.append(("Teacher weights w_u", "auto (agreement with the leave-one-out majority on train)" if weights == "auto"
                    else ", ".join(f"{k} {v:g}" for k, v in (weights or {}).items())))
    sd = params.get("self_distill")
    if sd:
        method = sd.get("method", "?")
        how = {"in_context": "the SPD student reads every teacher's trajectory and writes one consensus",
               "vote": "w_u-weighted vote of the teachers' labels"}.get(method, method)
        out.append(("Consensus", f"{method}: {how}; teachers' {sd.get('context', '?')} in context; "
                    f"an unparseable consensus -> {sd.get('fallback', '?')}"))
    apo = params.get("apo")
    if apo:
        out.append(("APO", f"{apo.get('loss', '?')} loss, beta {apo.get('beta', '?')}, teacher negatives "
                    f"{'scaled by w_u' if apo.get('weight_negatives') else 'unweighted'}; reference = the SPD student"))
    split = params.get("evaluate", {}).get("split")
    if split and roster:
        modes = sorted({prompt_on(split, t, teachers) for t in roster})
        out.append(("Evaluation", f"the {split} split, where the teachers were {' / '.join(modes)}"))
    return out
