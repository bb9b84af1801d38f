"""Configs for tests, built from the committed params.yaml: the only place default values live.

A test states what it changes; everything else is what a user's run gets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apodistill.config import Params, load_params, with_overrides

ROOT = Path(__file__).resolve().parents[1]
DEFAULT: Params = load_params(ROOT / "params.yaml")


def section(path: str, **values: Any) -> Any:
    """The params.yaml section at dotted ``path`` (``fetch``, ``spd.optim``) with ``values`` changed."""
    params = with_overrides(DEFAULT, {path: values}) if values else DEFAULT
    node: Any = params
    for part in path.split("."):
        node = params.section(part) if node is params else getattr(node, part)
    return node


def teachers_config(roster: list[dict], **values: Any) -> Any:
    """A ``teachers:`` section for ``roster`` (entries filled from teachers.defaults), blind on
    every split and with ``auto`` weights unless ``values`` say otherwise."""
    return section("teachers", **{"roster": roster, "weights": "auto", "conditioned_splits": [], **values})
