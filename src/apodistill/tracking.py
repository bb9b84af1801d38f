"""MLflow tracking: one store per repository, wherever a command runs.

The default store is ``<repository>/mlflow.db`` (sqlite) with artifacts in
``<repository>/mlartifacts/``. The repository is found the way DVC finds it:

1. ``DVC_ROOT``, which DVC sets for every stage command; for `dvc exp run --queue` / `--temp`
   it names the main repository, not the temporary workspace in ``.dvc/tmp/exps/``, so a
   queued experiment's runs land in the same store as the workspace's;
2. otherwise the nearest folder above the working directory holding ``dvc.yaml`` and
   ``.dvc/``; a folder inside ``<repo>/.dvc/tmp/`` counts as ``<repo>``.

``MLFLOW_TRACKING_URI`` overrides all of this (a tracking server, another sqlite file).

Artifact locations are stored as absolute ``file://`` URIs (MLflow resolves every local
location when it records it), so the store remembers the folder it lives in. When a sqlite
store is opened from another folder (the repository was moved, or copied with ``cp -r``),
:func:`relocate` rebases every artifact location under the old folder onto the new one
before MLflow reads it: ``models:/apodistill-student@champion`` then loads from the copy.

Each stage logs one run tagged with the git revision and the DVC experiment name, so all
runs of one experiment are found with ``tags.dvc_experiment = '<name>'``. The run's start
time is the stage process's start, so MLflow's Duration column is the stage's whole work.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

from apodistill.provenance import volatile

STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
ROOT_TAG = "apodistill.store_root"  # experiment tag: the folder the store's artifact URIs were written under
_IMPORTED_AT = time.time()

# (table, column) pairs that hold artifact locations in MLflow 3's sqlite schema.
_LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
    ("workspaces", "default_artifact_root"),
)


class StoreNotFound(RuntimeError):
    """No MLflow store where one was expected; the message says where it looked."""


def _outside_temp_workspace(folder: Path) -> Path:
    """``<repo>`` for a folder inside ``<repo>/.dvc/tmp/...`` (DVC's experiment workspaces)."""
    parts = folder.parts
    for i in range(len(parts) - 1):
        if parts[i] == ".dvc" and parts[i + 1] == "tmp":
            return Path(*parts[:i])
    return folder


def repository_root(start: str | Path | None = None) -> Path | None:
    """The repository whose store a command uses (see the module docstring), or None."""
    env = os.environ.get("DVC_ROOT")
    if env and (Path(env) / ".dvc").is_dir():
        return _outside_temp_workspace(Path(env).resolve())
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir() and (folder / "dvc.yaml").is_file():
            return _outside_temp_workspace(folder)
    return None


def tracking_uri(start: str | Path | None = None, *, must_exist: bool = False) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the repository's sqlite store.

    Raises :class:`StoreNotFound` outside a repository, or, with ``must_exist``, when the
    repository has no store yet: a command that reads the registry never creates an empty one.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    here = Path(start or os.getcwd()).resolve()
    root = repository_root(here)
    if root is None:
        raise StoreNotFound(
            f"no apodistill repository here: looked for dvc.yaml and .dvc/ in {here} and every folder above it "
            "(and DVC_ROOT is not set). Run the command inside the repository, or set MLFLOW_TRACKING_URI."
        )
    db = root / STORE_FILE
    if must_exist and not db.is_file():
        raise StoreNotFound(
            f"no MLflow store at {db} (the store of repository {root}): run the pipeline first "
            "(`make run` or `dvc repro`), or set MLFLOW_TRACKING_URI to another store."
        )
    return f"sqlite:///{db}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute or relative to the working directory)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):]).resolve()


def _rebase(conn: sqlite3.Connection, old: str, new: str) -> int:
    """Replace the prefix ``old`` by ``new`` in every location column; return rows changed."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    changed = 0
    for table, column in _LOCATION_COLUMNS:
        if table not in tables:
            continue
        for prefix_old, prefix_new in ((Path(old).as_uri() + "/", Path(new).as_uri() + "/"), (old + "/", new + "/")):
            cur = conn.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",  # noqa: S608 (fixed names)
                (prefix_new, len(prefix_old) + 1, len(prefix_old), prefix_old),
            )
            changed += cur.rowcount
    return changed


def relocate(db: str | Path) -> str | None:
    """Rebase the artifact locations of the sqlite store ``db`` onto the folder it is in now.

    The folder the locations were written under is the ``apodistill.store_root`` tag of the
    store's experiments. Returns the old folder when something was rebased, else None.
    A store MLflow has not created yet, or one without the tag, is left alone.
    """
    db = Path(db).resolve()
    if not db.is_file():
        return None
    new = str(db.parent)
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn, conn:
        try:
            olds = {r[0] for r in conn.execute("SELECT DISTINCT value FROM experiment_tags WHERE key = ?", (ROOT_TAG,))}
        except sqlite3.OperationalError:  # not an MLflow store (yet)
            return None
        olds.discard(new)
        if not olds:
            return None
        for old in olds:
            _rebase(conn, old, new)
        conn.execute("UPDATE experiment_tags SET value = ? WHERE key = ?", (new, ROOT_TAG))
    return ", ".join(sorted(olds))


def artifact_root(uri: str) -> Path | None:
    """Where runs of a local sqlite store keep artifacts: ``mlartifacts/`` beside the database
    (``APODISTILL_MLFLOW_ARTIFACTS`` overrides); None for a server, which decides itself."""
    db = sqlite_path(uri)
    if db is None:
        return None
    override = os.environ.get("APODISTILL_MLFLOW_ARTIFACTS")
    return Path(override).resolve() if override else db.parent / ARTIFACTS_DIR


def use_store(*, must_exist: bool = False) -> str:
    """Point MLflow (tracking and registry) at the resolved store, relocated if it moved."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri(must_exist=must_exist)
    db = sqlite_path(uri)
    if db is not None:
        old = relocate(db)
        if old:
            print(f"mlflow store {db} moved from {old}: artifact locations rebased onto {db.parent}")
    import mlflow

    mlflow.set_tracking_uri(uri)
    return uri


def setup(experiment: str) -> str:
    """Point MLflow at the store and ``experiment`` (created with artifacts beside a sqlite
    store, tagged with the store's folder); return the tracking URI."""
    uri = use_store()
    import mlflow

    location = artifact_root(uri)
    tags = {ROOT_TAG: str(sqlite_path(uri).parent)} if location is not None else {}
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        try:
            mlflow.create_experiment(experiment, artifact_location=location.as_uri() if location else None, tags=tags)
        except mlflow.exceptions.MlflowException:
            pass  # created meanwhile by a concurrent stage
    elif tags and ROOT_TAG not in exp.tags and exp.artifact_location.startswith(Path(tags[ROOT_TAG]).as_uri() + "/"):
        mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, ROOT_TAG, tags[ROOT_TAG])  # a store from before the tag
    mlflow.set_experiment(experiment)
    return uri


def run_counts() -> dict[str, dict[str, int]]:
    """``{dvc_experiment: {stage: runs}}`` over every experiment of the current store."""
    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    out: dict[str, dict[str, int]] = {}
    for run in runs:
        tags = run.data.tags
        by_stage = out.setdefault(tags.get("dvc_experiment", "-"), {})
        by_stage[tags.get("stage", "-")] = by_stage.get(tags.get("stage", "-"), 0) + 1
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for i, item in enumerate(v):
                out.update(_flatten(item, f"{key}.{item.get('name', i)}."))
        else:
            out[key] = v
    return out


def flatten(d: dict[str, Any]) -> dict[str, Any]:
    """Nested dict -> ``a.b.c`` keys (roster entries keyed by their name)."""
    return _flatten(d)


def run_tags(stage: str) -> dict[str, str]:
    """The run's volatile provenance (git revision, DVC experiment, host, argv, time) as tags."""
    v = volatile(stage)
    return {
        "stage": stage,
        "git_revision": v["git_revision"],
        "dvc_experiment": v["dvc_experiment"] or "workspace",
        "host": v["host"],
        "argv": " ".join(v["argv"])[:5000],
        "time": v["time"],
    }


def process_start_time() -> float:
    """When this process started (seconds since the epoch): Linux /proc, else when this
    module was imported (the stage script's first imports)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat(5): starttime in clock ticks after boot
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


@contextlib.contextmanager
def stage_run(stage: str, experiment: str, config: dict[str, Any]) -> Iterator[Any]:
    """The MLflow run of one stage, resolved params logged first.

    Open it at the start of the stage's work. The run's start time is the process's start,
    so its duration covers imports, data loading and saving even where the ``with`` block is
    narrower; ``stage_seconds`` (logged at the end) is the same span.
    """
    setup(experiment)
    import mlflow
    from mlflow.tracking.context.registry import resolve_tags

    started = process_start_time()
    exp = mlflow.get_experiment_by_name(experiment)
    created = mlflow.MlflowClient().create_run(exp.experiment_id, start_time=int(started * 1000),
                                               tags=resolve_tags(run_tags(stage)), run_name=stage)
    with mlflow.start_run(run_id=created.info.run_id) as run:
        flat = {k: str(v)[:6000] for k, v in flatten(config).items()}
        items = list(flat.items())
        for i in range(0, len(items), 100):
            mlflow.log_params(dict(items[i : i + 100]))
        yield run
        mlflow.log_metric("stage_seconds", round(time.time() - started, 1))


def log_curve(rows: list[dict[str, float]], prefix: str) -> None:
    """Per-step training curves (``{"step": n, "loss": ...}`` rows) as MLflow metrics."""
    import mlflow

    for row in rows:
        mlflow.log_metrics({f"{prefix}.{k}": v for k, v in row.items() if k != "step"}, step=int(row["step"]))
