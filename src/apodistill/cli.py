"""The `apodistill` command line.

    apodistill params check [params.yaml]   check a params file (exit 0 when valid)
    apodistill params show  [params.yaml]   print the resolved params with defaults filled in

Stages run through DVC (`dvc repro`); this CLI is for the steps around them.
"""

from __future__ import annotations

import json
from pathlib import Path

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


@params_app.command("check")
def params_check(file: Path = typer.Argument(Path("params.yaml"), help="Params file to check.")) -> None:
    """Validate FILE against the typed params; print each bad key path and exit 1 if any."""
    from apodistill.config import ParamsError, load_params

    try:
        p = load_params(file)
    except ParamsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{file}: ok ({len(p.teachers.roster)} teachers, findings: {', '.join(p.base.findings)})")


@params_app.command("show")
def params_show(file: Path = typer.Argument(Path("params.yaml"), help="Params file to resolve.")) -> None:
    """Print the resolved params (defaults filled in) as JSON."""
    from apodistill.config import ParamsError, load_params

    try:
        p = load_params(file)
    except ParamsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(p.dump(), indent=2))


if __name__ == "__main__":
    app()
