"""Hand-maintained suite files -> Great Expectations suites, and a checkpoint run that
returns, for every expectation, the rows it failed.

Why a YAML file beside GX's own JSON store: the YAML carries comments, a stable ``name``
per expectation (the quarantine vocabulary) and ``{$param: key}`` references to params.
GX 1.x returns results ordered by column rather than by insertion, so results are keyed
by the ``name`` stored in each expectation's ``meta``, never by position.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

#: Names of the GX objects in the file context (validation/gx) and in each run's copy of it.
DATASOURCE, ASSET, BATCH = "trajectories", "trajectory_table", "whole_table"
DOCS_SITE = "reports"
ROW_KEY = "row_id"


class SuiteError(ValueError):
    """A suite file that cannot be turned into expectations; the message names file and entry."""


@dataclass(frozen=True)
class ExpectationSpec:
    name: str
    type: str
    kwargs: dict[str, Any]
    why: str = ""


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    expectations: list[ExpectationSpec] = field(default_factory=list)

    def names(self) -> list[str]:
        return [e.name for e in self.expectations]

    def param_keys(self) -> set[str]:
        """The params keys the suite refers to with ``{$param: key}``."""
        return {v["$param"] for e in self.expectations for v in e.kwargs.values() if isinstance(v, dict) and "$param" in v}


def suite_path(suites_dir: str | Path, name: str) -> Path:
    return Path(suites_dir) / "expectations" / f"{name}.yaml"


def load_suite_spec(path: str | Path) -> SuiteSpec:
    """Read and check a suite file: unique names, known GX expectation types."""
    import great_expectations.expectations as gxe

    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: suite file not found")
    data = yaml.safe_load(path.read_text()) or {}
    entries = data.get("expectations") or []
    if not isinstance(entries, list) or not entries:
        raise SuiteError(f"{path}: 'expectations' must be a non-empty list")
    specs: list[ExpectationSpec] = []
    for i, e in enumerate(entries):
        where = f"{path}: expectations[{i}]"
        missing = [k for k in ("name", "type", "kwargs") if k not in e]
        if missing:
            raise SuiteError(f"{where}: missing {', '.join(missing)}")
        if not hasattr(gxe, e["type"]):
            raise SuiteError(f"{where} ({e['name']}): {e['type']!r} is not a great_expectations expectation")
        specs.append(ExpectationSpec(e["name"], e["type"], dict(e["kwargs"]), str(e.get("why", "")).strip()))
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SuiteError(f"{path}: expectation names repeated: {dup}")
    return SuiteSpec(name=str(data.get("name") or path.stem), expectations=specs)


def _gx_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: ({"$PARAMETER": v["$param"]} if isinstance(v, dict) and "$param" in v else v) for k, v in kwargs.items()}


def _description(e: ExpectationSpec, parameters: dict[str, Any] | None) -> str:
    """What Data Docs shows for the expectation: its quarantine name, why, and thresholds."""
    refs = [(k, v["$param"]) for k, v in e.kwargs.items() if isinstance(v, dict) and "$param" in v]
    values = ", ".join(f"{k} = {parameters[p] if parameters and p in parameters else 'validate.' + p}" for k, p in refs)
    return f"{e.name}: {e.why}" + (f" ({values})" if values else "")


def build_gx_suite(spec: SuiteSpec, parameters: dict[str, Any] | None = None) -> Any:
    """The GX ExpectationSuite for ``spec``; each expectation carries its name in ``meta``
    and a description naming it (``parameters`` only fill the description's thresholds)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=spec.name)
    for e in spec.expectations:
        cls = getattr(gxe, e.type)
        try:
            expectation = cls(**_gx_kwargs(e.kwargs), meta={"name": e.name}, description=_description(e, parameters))
        except Exception as err:  # pydantic error from GX: re-raise naming the entry
            raise SuiteError(f"suite {spec.name}, expectation {e.name} ({e.type}): {err}") from err
        suite.add_expectation(expectation)
    return suite


def sync_context(project_root: str | Path, spec: SuiteSpec, parameters: dict[str, Any] | None = None) -> Any:
    """Open (or create) the GX file context under ``project_root`` and (re)write the data
    source, the suite, its validation definition and a checkpoint named after the suite.

    Used on a throw-away copy at every stage run, and once by hand to refresh the
    committed ``validation/gx`` (``python -m apodistill.validation validation``).
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(project_root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.variables.save()
    source = context.data_sources.add_or_update_pandas(DATASOURCE)
    asset = source.add_dataframe_asset(ASSET) if ASSET not in source.get_asset_names() else source.get_asset(ASSET)
    try:
        batch = asset.get_batch_definition(BATCH)
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe(BATCH)
    suite = context.suites.add_or_update(build_gx_suite(spec, parameters))
    definition = context.validation_definitions.add_or_update(gx.ValidationDefinition(name=spec.name, data=batch, suite=suite))
    context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=spec.name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_KEY]},
        )
    )
    return context


def _point_docs_at(context: Any, docs_dir: Path) -> None:
    """Make ``docs_dir`` the only Data Docs site, so the checkpoint's action writes there."""
    for site in list(context.get_config().data_docs_sites or {}):
        context.delete_data_docs_site(site)
    context.add_data_docs_site(
        site_name=DOCS_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )


def _raised(info: dict[str, Any]) -> str | None:
    """GX's exception_info is flat for one metric and keyed by metric id for several."""
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info["raised_exception"] else None
    messages = [str(v.get("exception_message")) for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    return "; ".join(messages) or None


@dataclass
class SuiteRun:
    """What a checkpoint run found: failing row ids per expectation name, and GX's verdict."""

    failures: dict[str, list[int]]
    success: bool
    statistics: dict[str, Any]


def run_suite(
    df: pd.DataFrame,
    spec: SuiteSpec,
    parameters: dict[str, Any],
    suites_dir: str | Path,
    docs_dir: str | Path | None,
) -> SuiteRun:
    """Run ``spec`` on ``df`` through a checkpoint; build Data Docs into ``docs_dir``.

    The committed file context ``<suites_dir>/gx`` is copied to a temporary folder first,
    so a run never rewrites tracked files (GX stores ids and results on every save).
    ``df`` must have a unique integer ``row_id`` column.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    missing = sorted(spec.param_keys() - set(parameters))
    if missing:
        raise SuiteError(f"suite {spec.name} refers to params not given: {missing}")
    if not df[ROW_KEY].is_unique:
        raise ValueError(f"{ROW_KEY} must be unique to key per-row results")
    with tempfile.TemporaryDirectory(prefix="apodistill-gx-") as tmp:
        committed = Path(suites_dir) / "gx"
        if committed.is_dir():
            shutil.copytree(committed, Path(tmp) / "gx", ignore=shutil.ignore_patterns("uncommitted"))
        context = sync_context(tmp, spec, parameters)
        if docs_dir is not None:
            docs = Path(docs_dir)
            if docs.exists():
                shutil.rmtree(docs)  # a stage output: stale pages of an earlier run must not linger
            docs.mkdir(parents=True)
            _point_docs_at(context, docs)
        else:
            for site in list(context.get_config().data_docs_sites or {}):
                context.delete_data_docs_site(site)
        checkpoint = context.checkpoints.get(spec.name)
        result = checkpoint.run(batch_parameters={"dataframe": df}, expectation_parameters=parameters)
    (suite_result,) = result.run_results.values()
    failures: dict[str, list[int]] = {name: [] for name in spec.names()}
    for r in suite_result.results:
        name = (r.expectation_config.meta or {}).get("name")
        if name not in failures:
            raise SuiteError(f"GX returned a result for an expectation without a known meta name: {r.expectation_config}")
        raised = _raised(r.exception_info or {})
        if raised:
            raise SuiteError(f"expectation {name} raised inside GX: {raised}")
        failures[name] = sorted(int(u[ROW_KEY]) for u in (r.result.get("unexpected_index_list") or []))
    return SuiteRun(failures=failures, success=bool(suite_result.success), statistics=dict(suite_result.statistics))
