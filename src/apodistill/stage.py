"""The one shape of every ``pipeline/<stage>.py``, and the parts they share.

    READS = ("base.seed", "spd")              # the params keys the stage reads = its dvc.yaml params

    def main(argv: list[str] | None = None) -> int:
        args = parse_args(argv)               # args with help (stage_parser adds --params, --provenance)
        st = Stage.begin("spd", args, READS)  # load and check params (exit 2 naming the key), seed
        ...                                   # model, data, work: calls into src/apodistill
        st.save(args.out, steps=n)            # provenance.json inside the output (stable facts only)
        st.finish(metrics, args.metrics)      # metrics file, one MLflow run, the volatile sidecar
        return 0

Only standard-library and config imports at module level, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from apodistill.config import Params, ParamsError, load_params


def quiet_env() -> None:
    """Analytics off, offline hubs, and progress bars that suit a log file: set before heavy imports.

    When stderr is not a terminal (``dvc repro > log``, CI) tqdm redraws at most every 30 s
    instead of up to 10 times a second, so a log holds tens of progress lines, not thousands.
    tqdm reads ``TQDM_*`` when it is first imported, hence here, before anything imports it.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_MININTERVAL", "30")


def stage_parser(doc: str | None, mlflow_optional: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the stage's docstring as help and the arguments every stage takes."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", required=True, help="params file (params.yaml); checked before any output is written")
    ap.add_argument(
        "--provenance",
        help="sidecar JSON for the facts that change from run to run (git revision, time, host, argv, wall "
        "seconds); kept outside the hashed outputs so they never trigger a rerun",
    )
    if mlflow_optional:
        ap.add_argument("--no-mlflow", action="store_true", help="skip MLflow logging (tests, dry runs)")
    return ap


def load_or_exit(path: str | Path) -> Params:
    """Load params.yaml or exit 2 with the message that names each bad key (nothing written)."""
    quiet_env()
    try:
        return load_params(path)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def pick(params: Params, keys: Iterable[str]) -> dict[str, Any]:
    """The params at dotted ``keys`` (``base.seed``, ``spd``) as one nested dict."""
    data = params.dump()
    out: dict[str, Any] = {}
    for key in keys:
        parts = key.split(".")
        value: Any = data
        for p in parts:
            value = value[p]
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def write_metrics(path: str | Path, metrics: dict) -> None:
    """Flat JSON metrics (for ``dvc metrics`` / ``dvc exp show``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float) + "\n")


def finite(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite entries of ``metrics`` as floats (MLflow refuses NaN and strings)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


@dataclass
class Stage:
    """One run of one stage: its checked params, the config it read, seeds and bookkeeping."""

    name: str
    params: Params
    config: dict[str, Any]
    seeds: dict[str, int]
    sidecar: str | None = None
    mlflow: bool = True
    started: float = field(default_factory=time.time)
    volatile_facts: dict[str, Any] = field(default_factory=dict)
    _run: Any = None

    @classmethod
    def begin(cls, name: str, args: argparse.Namespace, reads: Sequence[str], torch: bool = False) -> "Stage":
        """Setup: load and check ``args.params`` (exit 2 naming the bad key), seed python/numpy
        (and torch when the stage uses it), keep the params the stage reads as its config."""
        from apodistill.provenance import seed_everything

        params = load_or_exit(args.params)
        seeds = seed_everything(params.base.seed, torch=torch)
        return cls(name, params, pick(params, reads), seeds, getattr(args, "provenance", None),
                   not getattr(args, "no_mlflow", False))  # fmt: skip

    def record(self, config: dict[str, Any] | None = None, **facts: Any) -> dict[str, Any]:
        """The stable provenance record (what ``save`` writes); ``config`` as in :meth:`save`."""
        from apodistill.provenance import record

        return record(self.name, self.config if config is None else config, self.seeds, **facts)

    def save(self, out: str | Path, config: dict[str, Any] | None = None, **facts: Any) -> Path:
        """Write ``provenance.json`` into the output folder ``out``: stable facts only.

        ``config`` replaces the stage's config for an output made with other settings
        (apo's pairwise baseline)."""
        from apodistill.provenance import write_json

        return write_json(out, self.record(config, **facts))

    def seconds(self) -> float:
        """Wall seconds since :meth:`begin`."""
        return round(time.time() - self.started, 2)

    def note(self, **facts: Any) -> None:
        """Volatile facts (wall seconds, cache hits, rows asked now) for MLflow and the sidecar."""
        self.volatile_facts.update(facts)

    @contextlib.contextmanager
    def tracking(self) -> Iterator[Any]:
        """The stage's MLflow run (params logged first, volatile facts as tags); re-entrant.
        Yields None with ``--no-mlflow``."""
        if not self.mlflow or self._run is not None:
            yield self._run
            return
        from apodistill import tracking

        with tracking.stage_run(self.name, self.params.base.mlflow_experiment, self.config) as run:
            self._run = run
            try:
                yield run
            finally:
                self._run = None

    def finish(self, metrics: dict[str, Any] | None = None, metrics_path: str | Path | None = None,
               artifacts: Sequence[str | Path] = (), curves: dict[str, list[dict[str, float]]] | None = None) -> None:
        """Save and log: the flat metrics file, one MLflow run (metrics, artifacts, curves,
        volatile tags), then the volatile sidecar (with the MLflow run id)."""
        metrics = metrics or {}
        if metrics_path is not None:
            write_metrics(metrics_path, metrics)
        run_id = None
        if self.mlflow:
            import mlflow

            from apodistill import tracking

            with self.tracking() as run:
                if metrics:
                    mlflow.log_metrics(finite(metrics))
                for path in artifacts:
                    mlflow.log_artifact(str(path))
                for prefix, rows in (curves or {}).items():
                    tracking.log_curve(rows, prefix)
                if self.volatile_facts:
                    mlflow.set_tags({k: str(v) for k, v in self.volatile_facts.items()})
                run_id = getattr(getattr(run, "info", None), "run_id", None)
        if self.sidecar:
            from apodistill.provenance import volatile, write_json

            write_json(self.sidecar, volatile(self.name, self.started, mlflow_run_id=run_id, **self.volatile_facts))


def make_accelerator(bf16: bool):
    """The accelerate ``Accelerator`` of `accelerate launch --config_file ...`; precision comes
    from params (``optim.bf16``), the one place it is set (the launcher configs leave it out).

    Without CUDA it is a CPU one: processes started by accelerate's torchrun launcher
    (pipeline/accelerate/multi_cpu.yaml) then form a gloo group instead of failing on NCCL."""
    import torch
    from accelerate import Accelerator

    return Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not torch.cuda.is_available())


def read_weights(validated_dir: str | Path) -> dict[str, float]:
    """w_u as resolved by the validate stage (fixed from params, or `auto` from agreement)."""
    path = Path(validated_dir) / "weights.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run the validate stage first (dvc repro validate)")
    return {k: float(v) for k, v in json.loads(path.read_text())["weights"].items()}
