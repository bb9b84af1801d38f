"""Typed params: ``params.yaml`` -> :class:`Params`, checked before any stage writes output.

Errors name the key path (``apo.beta: Input should be greater than 0``), so a typo made
with ``dvc exp run -S`` is caught at the first stage that reads the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from apodistill.config._base import Section
from apodistill.config.base import BaseConfig
from apodistill.config.evaluate import EvaluateConfig, RegisterConfig
from apodistill.config.fetch import FetchConfig
from apodistill.config.teachers import TeacherSpec, TeachersConfig
from apodistill.config.train import ApoConfig, SelfDistillConfig, SpdConfig
from apodistill.config.validate import ValidateConfig

__all__ = [
    "Params",
    "ParamsError",
    "load_params",
    "BaseConfig",
    "FetchConfig",
    "TeachersConfig",
    "TeacherSpec",
    "ValidateConfig",
    "SpdConfig",
    "SelfDistillConfig",
    "ApoConfig",
    "EvaluateConfig",
    "RegisterConfig",
]


class Params(Section):
    base: BaseConfig = Field(default_factory=BaseConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    teachers: TeachersConfig
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    spd: SpdConfig = Field(default_factory=SpdConfig)
    self_distill: SelfDistillConfig = Field(default_factory=SelfDistillConfig)
    apo: ApoConfig = Field(default_factory=ApoConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    register_: RegisterConfig = Field(default_factory=RegisterConfig, alias="register")

    model_config = Section.model_config | {"populate_by_name": True}

    def section(self, name: str) -> Any:
        return getattr(self, name + "_" if name in ("validate", "register") else name)

    def dump(self) -> dict[str, Any]:
        """The resolved params as plain data (for provenance files and MLflow)."""
        return self.model_dump(mode="json", by_alias=True)


class ParamsError(ValueError):
    """params.yaml is malformed; the message names each bad key path and what is wrong."""


def _format(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} problem(s) in params"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        loc = loc.replace("validate_", "validate").replace("register_", "register")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo? see params.yaml comments for the known keys)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_params(data: dict[str, Any], source: str = "params") -> Params:
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ParamsError(_format(err, source)) from None


def load_params(path: str | Path) -> Params:
    """Read and check a params file; raise :class:`ParamsError` naming every bad key."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    return parse_params(data, str(path))
