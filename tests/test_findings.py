from __future__ import annotations

import pytest

from apodistill.findings import MS_CXR_T_5, TrajectoryParseError, format_trajectory, parse_trajectory

LABELS = {f: "no" for f in MS_CXR_T_5} | {"pleural_effusion": "yes"}


def test_round_trip():
    text = format_trajectory("Blunted left angle.", LABELS, MS_CXR_T_5)
    p = parse_trajectory(text, MS_CXR_T_5)
    assert p.labels == LABELS and p.think == "Blunted left angle."


@pytest.mark.parametrize(
    "text, reason",
    [
        ("no tags at all", "no_think"),
        ("<think>x</think> but no answer", "no_answer"),
        ("<think>x</think><answer>\nedema: maybe\n</answer>", "bad_value"),
        ("<think>x</think><answer>\nedema: no\n</answer>", "missing_finding"),
        ("<think>x</think><answer>\ndragons: no\n</answer>", "unknown_finding"),
        ("<think>x</think><answer>\nedema no\n</answer>", "bad_answer_line"),
    ],
)
def test_parse_errors_name_reason(text, reason):
    with pytest.raises(TrajectoryParseError) as err:
        parse_trajectory(text, MS_CXR_T_5)
    assert err.value.reason == reason


def test_pair_vocabulary():
    labels = {f: "stable" for f in MS_CXR_T_5}
    text = format_trajectory("Unchanged.", labels, MS_CXR_T_5)
    assert parse_trajectory(text, MS_CXR_T_5, "pair").labels == labels
    with pytest.raises(TrajectoryParseError):
        parse_trajectory(text, MS_CXR_T_5, "single")
