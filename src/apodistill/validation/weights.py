"""Teacher weights w_u for SPD and APO: fixed from params, or ``auto`` from evidence.

``auto`` sets w_u from each teacher's agreement with the leave-one-out majority of the
other teachers on the TRAIN split only: the weights shape training, so they must never
see validation or test studies (and no reference label is read at all).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from apodistill.validation.agreement import long_labels, loo_agreement, teacher_agreement

#: The only split ``auto`` weights may look at.
WEIGHT_SPLIT = "train"


def teacher_weights(
    spec: str | dict[str, float], validated: pd.DataFrame, findings: list[str], teachers: list[str]
) -> dict[str, Any]:
    """``{"mode": "fixed"|"auto", "weights": {teacher: w_u}, ...}`` as written to weights.json.

    ``teachers`` is every teacher in the trajectory table (quarantined ones included), so a
    teacher that lost all its rows still gets an explicit weight (0 under ``auto``).
    ``auto`` weights are agreement rates normalised to average 1 over ``teachers``.
    """
    if isinstance(spec, dict):
        return {"mode": "fixed", "weights": {t: float(w) for t, w in spec.items()}}
    if spec != "auto":
        raise ValueError(f"teachers.weights must be a mapping or 'auto', got {spec!r}")
    train = validated[validated["split"] == WEIGHT_SPLIT]
    stats = teacher_agreement(loo_agreement(long_labels(train, findings)))
    agreement = {t: float(stats["agreement"].get(t, 0.0)) for t in teachers}
    items = {t: int(stats["items"].get(t, 0)) for t in teachers}
    mean = sum(agreement.values()) / len(agreement) if agreement else 0.0
    if mean <= 0:
        raise ValueError(
            f"auto weights: no teacher agrees with the others on any {WEIGHT_SPLIT} item "
            f"({len(train)} validated {WEIGHT_SPLIT} rows); set teachers.weights explicitly"
        )
    return {
        "mode": "auto",
        "weights": {t: a / mean for t, a in agreement.items()},
        "agreement": agreement,
        "items": items,
        "split": WEIGHT_SPLIT,
    }
