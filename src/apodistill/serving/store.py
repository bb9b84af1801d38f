"""Which MLflow store the CLI commands talk to: the repository's own (``<repo>/mlflow.db``,
found from any subfolder, see :mod:`apodistill.tracking`), or ``MLFLOW_TRACKING_URI``.

A command that reads the registry never creates a store: outside a repository, or in one
that has none yet, it stops with an error that says where it looked.
"""

from __future__ import annotations

from pathlib import Path

from apodistill.tracking import StoreNotFound, tracking_uri
from apodistill.tracking import use_store as _use_store

__all__ = ["StoreNotFound", "load_model", "tracking_uri", "use_store"]

_STORE_SCHEMES = ("models:/", "runs:/")


def use_store() -> str:
    """Point MLflow (tracking and registry) at the existing store; return its URI.

    Raises :class:`StoreNotFound` (outside a repository, or no store yet).
    """
    return _use_store(must_exist=True)


def _local_model(uri: str) -> Path | None:
    """The folder of a local model URI (a path or ``file://``), None for store and remote URIs."""
    if uri.startswith(_STORE_SCHEMES):
        return None
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    return None if "://" in uri else Path(uri)


def load_model(uri: str):
    """(pyfunc model, info) for a model URI (``models:/name@alias``, ``models:/name/3``,
    ``runs:/...``, a local pyfunc folder).

    ``info`` names what was loaded (uri, and name, version, alias for registry URIs).
    Raises :class:`StoreNotFound` for a registry URI without a store, FileNotFoundError
    ("file not found: PATH") for a local folder that is missing or holds no MLflow model.
    """
    import mlflow.pyfunc

    info: dict[str, str] = {"uri": uri}
    local = _local_model(uri)
    if local is not None:
        if not local.exists():
            raise FileNotFoundError(f"file not found: {local}")
        if not (local / "MLmodel").is_file():
            raise FileNotFoundError(f"file not found: {local / 'MLmodel'} ({local} is not an MLflow model folder)")
        return mlflow.pyfunc.load_model(str(local)), info
    if uri.startswith(_STORE_SCHEMES):
        use_store()
    if uri.startswith("models:/"):
        ref = uri[len("models:/"):]
        name, _, alias = ref.partition("@")
        client = mlflow.MlflowClient()
        if alias:
            mv = client.get_model_version_by_alias(name, alias)
            info.update(name=name, alias=alias, version=str(mv.version))
            uri = f"models:/{name}/{mv.version}"  # pin: the alias may move while we load
        else:
            info.update(name=name.split("/")[0], version=name.partition("/")[2])
    return mlflow.pyfunc.load_model(uri), info
