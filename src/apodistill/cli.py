"""The `apodistill` command line.

    apodistill params check [params.yaml]   check a params file (exit 0 when valid)
    apodistill params show  [params.yaml]   print the resolved params with defaults filled in
    apodistill promote                      move `champion` to `challenger` if it is better (gated)
    apodistill predict IMAGE [--prior IMG]  trajectory and findings of a registered student
    apodistill serve --model URI --port N   OpenAI-compatible /v1/chat/completions for the student
    apodistill compare [EXP...]             experiments side by side: beta, teacher weights, headline metrics
    apodistill store                        the repository's MLflow store and its runs per experiment and stage

Stages run through DVC (`dvc repro`); this CLI is for the steps around them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    name="apodistill",
    help="Distil drifting multimodal teachers into one student (SPD -> self-distillation -> APO). "
    "Run the pipeline with `dvc repro`; use these commands around it.",
    no_args_is_help=True,
    add_completion=False,
)
params_app = typer.Typer(help="Check and show params.yaml.", no_args_is_help=True)
app.add_typer(params_app, name="params")


def _load(file: Path, code: int):
    """The checked params of ``file``, or exit ``code`` printing each bad key."""
    from apodistill.config import ParamsError, load_params

    try:
        return load_params(file)
    except ParamsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code) from None


@params_app.command("check")
def params_check(file: Path = typer.Argument(Path("params.yaml"), help="Params file to check.")) -> None:
    """Validate FILE against the typed params; print each bad key path and exit 1 if any."""
    p = _load(file, 1)
    typer.echo(f"{file}: ok ({len(p.teachers.roster)} teachers, findings: {', '.join(p.base.findings)})")


@params_app.command("show")
def params_show(file: Path = typer.Argument(Path("params.yaml"), help="Params file to resolve.")) -> None:
    """Print the resolved params as JSON (each roster entry with teachers.defaults filled in)."""
    typer.echo(json.dumps(_load(file, 1).dump(), indent=2))


DEFAULT_MODEL = "models:/apodistill-student@champion"


def _register_config(params_file: Path):
    """The ``register:`` section of ``params_file`` (params.yaml holds the only defaults); exit 2 without it."""
    return _load(params_file, 2).register_


@app.command()
def promote(
    metric: Optional[str] = typer.Option(None, help="Eval key to compare (acc.mean, pair_acc.mean, apo.acc.mean, ...); default register.promote_metric."),
    margin: Optional[float] = typer.Option(None, min=0, help="Smallest gain that promotes; default register.promote_margin."),
    force: bool = typer.Option(False, "--force", help="Promote even if the gate refuses (needs --reason; never without an evaluation)."),
    reason: Optional[str] = typer.Option(None, help="Why --force: recorded as the version tag promoted.reason."),
    name: Optional[str] = typer.Option(None, help="Registered model; default register.model_name."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Params file the register: values come from (run from the repository, or name it)."),
) -> None:
    """Move alias `champion` to the `challenger` version when it is better by at least the margin.

    Exit 0 promoted (or already champion), 1 refused by the gate, 2 usage error, 3 challenger
    has no evaluation. Both numbers are printed either way.
    """
    from apodistill.serving.promote import promote as run_promote
    from apodistill.serving.store import StoreNotFound, use_store

    cfg = _register_config(params_file)
    try:
        use_store()
    except StoreNotFound as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    d = run_promote(name or cfg.model_name, metric or cfg.promote_metric,
                    cfg.promote_margin if margin is None else margin, force, reason, cfg.alias)
    typer.echo(d.message)
    raise typer.Exit(d.code)


@app.command()
def predict(
    image: str = typer.Argument(..., help="Chest X-ray: a path, base64 text or data URL (the current study)."),
    prior: Optional[str] = typer.Option(None, help="Prior study image: asks the prior/current (MS-CXR-T) question."),
    model: str = typer.Option(DEFAULT_MODEL, help="Model URI (models:/name@alias, models:/name/3, runs:/..., a pyfunc folder)."),
    prompt: Optional[str] = typer.Option(None, help="Override the task prompt the student was trained on."),
    max_new_tokens: Optional[int] = typer.Option(None, min=1, help="Generation limit (default: the registered one)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
) -> None:
    """Print the student's reasoning trajectory and parsed findings for IMAGE (research use only)."""
    import pandas as pd

    from mlflow.exceptions import MlflowException

    from apodistill.serving.pyfunc import decode_image
    from apodistill.serving.store import StoreNotFound, load_model

    for value in (image, prior):  # fail before the seconds spent loading the model
        try:
            if value is not None:
                decode_image(value)
        except (ValueError, OSError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
    row = {"image": image}
    if prior:
        row["prior_image"] = prior
    if prompt:
        row["prompt"] = prompt
    try:
        pyfunc, info = load_model(model)
    except (MlflowException, OSError, StoreNotFound) as err:  # unknown model/alias, missing store or files: one readable line
        typer.echo(f"error: cannot load {model}: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        out = pyfunc.predict(pd.DataFrame([row]), params={"max_new_tokens": max_new_tokens} if max_new_tokens else None)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    r = out.iloc[0].to_dict()
    findings = {k[len("answer_"):]: r[k] for k in out.columns if k.startswith("answer_")}
    if as_json:
        typer.echo(json.dumps({"model": info, "task": r["task"], "trajectory": r["trajectory"],
                               "wellformed": bool(r["wellformed"]), "findings": findings}, indent=2))
        return
    typer.echo(r["trajectory"])
    typer.echo("")
    typer.echo(f"findings ({r['task']}, {'well-formed' if r['wellformed'] else 'NOT well-formed: answers missing'}):")
    for f, v in findings.items():
        typer.echo(f"  {f}: {v if v is not None else '-'}")


@app.command()
def store() -> None:
    """Where the MLflow store is (the repository's, from any subfolder), and its runs per DVC
    experiment and stage (`tags.dvc_experiment`, `tags.stage`)."""
    from apodistill.serving.store import StoreNotFound, use_store
    from apodistill.tracking import run_counts

    try:
        uri = use_store()
    except StoreNotFound as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    counts = run_counts()
    total = sum(n for by_stage in counts.values() for n in by_stage.values())
    typer.echo(f"store {uri}: {total} runs")
    for exp, by_stage in sorted(counts.items()):
        typer.echo(f"  {exp:<24} {sum(by_stage.values()):>4}  " + ", ".join(f"{k} {v}" for k, v in sorted(by_stage.items())))


@app.command()
def compare(
    names: Optional[list[str]] = typer.Argument(None, help="Experiments to show (dvc exp names or revisions); default: all of HEAD's."),
    width: int = typer.Option(200, min=40, help="Widest line; columns that do not fit go into a second block."),
) -> None:
    """Experiments side by side: one column each, rows = apo.loss, apo.beta, teacher weights,
    params that differ, then the headline metrics (what `dvc exp show` holds, turned on its side)."""
    from apodistill.compare import experiments, render, table_rows

    try:
        rows = experiments(names=names or ())
    except KeyError as err:
        typer.echo(f"error: {err.args[0]}", err=True)
        raise typer.Exit(2) from None
    columns, fields = table_rows(rows)
    typer.echo(render(columns, fields, width))


@app.command()
def serve(
    model: str = typer.Option(DEFAULT_MODEL, help="Model URI to serve."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port."),
    host: str = typer.Option("127.0.0.1", help="Interface; 0.0.0.0 exposes it to the network (then set --api-key-env)."),
    api_key_env: Optional[str] = typer.Option(
        None, help="Name of an environment variable holding a bearer token that every /v1/ request must send "
        "(Authorization: Bearer <token>); the token itself never goes on the command line."),
    max_body_mb: float = typer.Option(8.0, min=0.001, help="Largest request body in MiB (413 beyond)."),
    max_tokens: int = typer.Option(256, min=1, help="Upper bound on generated tokens per request."),
    max_batch: int = typer.Option(8, min=1, help="Requests generated together in one batch."),
    max_queue: int = typer.Option(64, min=1, help="Requests waiting at most; beyond, 503 with Retry-After."),
    batch_wait_ms: float = typer.Option(10.0, min=0, help="How long the first request of a batch waits for others."),
    prompt_mode: str = typer.Option("student", help="student: answer with the trained task prompt; client: use the request's text."),
    served_name: Optional[str] = typer.Option(None, help="Model id in responses and /v1/models (default: name@alias)."),
) -> None:
    """Serve the student over an OpenAI-compatible API: /v1/chat/completions (streaming too), /v1/models, /health."""
    from apodistill.serving.server import MiB, ServeSetupError
    from apodistill.serving.server import serve as run_serve
    from apodistill.serving.store import StoreNotFound

    from mlflow.exceptions import MlflowException

    if prompt_mode not in ("student", "client"):
        raise typer.BadParameter("must be student or client", param_hint="--prompt-mode")
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key_env:
        typer.echo(f"warning: serving on {host} without authentication; set --api-key-env", err=True)
    try:
        run_serve(model, host, port, int(max_body_mb * MiB), max_tokens, prompt_mode, served_name,
                  api_key_env=api_key_env, max_batch=max_batch, max_queue=max_queue, batch_wait_s=batch_wait_ms / 1000)
    except ServeSetupError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except (MlflowException, OSError, StoreNotFound) as err:  # unknown model/alias, missing store or files, port in use
        typer.echo(f"error: cannot serve {model}: {err}", err=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
