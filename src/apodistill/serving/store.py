"""Which MLflow store the CLI commands talk to: the project's (sqlite in the repository by
default, ``MLFLOW_TRACKING_URI`` overrides), the same one the pipeline stages log to."""

from __future__ import annotations

import os


def use_store() -> str:
    """Point MLflow (tracking and registry) at the configured store; return its URI."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    from apodistill.tracking import DEFAULT_URI

    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)
    mlflow.set_tracking_uri(uri)
    return uri


def load_model(uri: str):
    """(pyfunc model, info) for a model URI (``models:/name@alias``, ``models:/name/3``,
    ``runs:/...``, a local pyfunc folder).

    ``info`` names what was loaded (uri, and name, version, alias for registry URIs).
    """
    import mlflow.pyfunc

    use_store()
    info: dict[str, str] = {"uri": uri}
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
