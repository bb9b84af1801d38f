"""Typed params: ``params.yaml`` -> :class:`Params`, checked before any stage writes output.

params.yaml holds every value; the typed sections here hold types, constraints and
descriptions only (no defaults: one place, no second set to disagree with). Errors name
the key path (``apo.beta: Input should be greater than 0``), so a typo made with
``dvc exp run -S`` is caught at the first stage that reads the file. Code that needs a
whole config (tests, benches) loads params.yaml and overrides what it changes::

    params = with_overrides(load_params("params.yaml"), {"apo.beta": 0.2, "fetch": {"n_patients": 30}})
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from apodistill.config._base import Section
from apodistill.config.base import BaseConfig
from apodistill.config.evaluate import EvaluateConfig, RegisterConfig
from apodistill.config.fetch import FetchConfig
from apodistill.config.files import RepoFiles, repository_of
from apodistill.config.teachers import TeacherSpec, TeachersConfig
from apodistill.config.train import ApoConfig, ControlConfig, SelfDistillConfig, SpdConfig
from apodistill.config.validate import ValidateConfig

__all__ = [
    "Params",
    "ParamsError",
    "load_params",
    "parse_params",
    "with_overrides",
    "BaseConfig",
    "FetchConfig",
    "TeachersConfig",
    "TeacherSpec",
    "ValidateConfig",
    "SpdConfig",
    "SelfDistillConfig",
    "ApoConfig",
    "ControlConfig",
    "EvaluateConfig",
    "RegisterConfig",
]


def keyed_error(key: str, message: str) -> PydanticCustomError:
    """A validation error reported under ``key`` (for checks that span sections)."""
    return PydanticCustomError("keyed", "{key}: {message}", {"key": key, "message": message})


class Params(Section):
    base: BaseConfig
    fetch: FetchConfig
    teachers: TeachersConfig
    validate_: ValidateConfig = Field(alias="validate")
    spd: SpdConfig
    control: ControlConfig
    self_distill: SelfDistillConfig
    apo: ApoConfig
    evaluate: EvaluateConfig
    register_: RegisterConfig = Field(alias="register")

    model_config = Section.model_config | {"populate_by_name": True}

    @model_validator(mode="after")
    def _teacher_keys(self) -> "Params":
        """Every map keyed by teacher (a field marked ``keyed_by: teacher``) names roster teachers only."""
        roster = self.teachers.names()
        for key, value in _marked(self, "teacher"):
            extra = sorted(set(value) - set(roster)) if isinstance(value, dict) else []
            if extra:
                raise keyed_error(key, f"unknown teachers {extra}; roster: {', '.join(roster)}")
        return self

    def section(self, name: str) -> Any:
        return getattr(self, name + "_" if name in ("validate", "register") else name)

    def dump(self) -> dict[str, Any]:
        """The resolved params as plain data (for provenance files and MLflow)."""
        return self.model_dump(mode="json", by_alias=True)


def _marked(model: Section, kind: str, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every field in ``model`` and its sub-sections marked ``keyed_by: kind``."""
    out = []
    for name, field in type(model).model_fields.items():
        key = prefix + (field.alias or name)
        value = getattr(model, name)
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("keyed_by") == kind:
            out.append((key, value))
        elif isinstance(value, Section):
            out += _marked(value, kind, key + ".")
    return out


class ParamsError(ValueError):
    """params.yaml is malformed; the message names each bad key path and what is wrong."""


def _format(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} problem(s) in params"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        loc = loc.replace("validate_", "validate").replace("register_", "register")
        msg = e["msg"]
        if e["type"] == "keyed":
            loc, msg = e["ctx"]["key"], e["ctx"]["message"]
        elif e["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif e["type"] == "extra_forbidden":
            msg = "unknown key (typo? see params.yaml comments for the known keys)"
        elif e["type"] == "missing":
            msg = "required key is missing (params.yaml holds every key; copy it from there)"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_params(data: dict[str, Any], source: str = "params", root: str | Path | None = None) -> Params:
    """Check ``data``; with ``root`` (a repository), also the files its values name (config/files.py)."""
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    context = {"repo": RepoFiles.read(root)} if root is not None else None
    try:
        return Params.model_validate(data, context=context)
    except ValidationError as err:
        raise ParamsError(_format(err, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:  # found by the property test: a binary file is not a params file
        raise ParamsError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None


def load_params(path: str | Path) -> Params:
    """Read and check a params file; raise :class:`ParamsError` naming every bad key.

    Values that name files (launcher configs, suites, templates) are checked against the
    repository holding the file (the nearest folder above it with dvc.yaml), whatever the
    working directory."""
    return parse_params(read_yaml(path), str(path), repository_of(path))


def _merge(dst: dict[str, Any], overrides: Mapping[str, Any], model: Section) -> dict[str, Any]:
    """Apply ``overrides`` to ``dst`` (the dump of ``model``): a mapping merges into a section,
    any other value (a list, a map such as teachers.weights) replaces."""
    for key, value in overrides.items():
        node, sub = dst, model
        *parents, last = key.split(".")
        for p in parents:
            node, sub = node[p], _field(sub, p)
        target = _field(sub, last)
        if isinstance(value, Mapping) and isinstance(target, Section):
            _merge(node[last], value, target)
        else:
            node[last] = copy.deepcopy(value)
    return dst


def _field(model: Any, key: str) -> Any:
    return model.section(key) if isinstance(model, Params) else getattr(model, key, None)


def with_overrides(params: Params, overrides: Mapping[str, Any]) -> Params:
    """``params`` with ``overrides`` applied and checked again: keys are dotted paths
    (``"apo.beta": 0.2``) or nested mappings merged into the section (``"fetch": {...}``);
    lists and other values replace. Roster entries given as mappings start from
    ``teachers.defaults``, as in params.yaml."""
    return parse_params(_merge(params.dump(), overrides, params), "overrides")
