"""Options and arguments shared by several commands, declared once (torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sslbench.limits import MAX_ID

DbOption = Annotated[str | None, typer.Option(
    "--db", metavar="PATH|URL",
    help="Results DB: a SQLite file or SQLAlchemy URL (default: $SSLBENCH_DB, else "
         "./sslbench.sqlite).")]
Overrides = Annotated[list[str] | None, typer.Argument(
    help="Config overrides as dotted key=value, e.g. optimizer.lr=2e-3 method.ema_decay=0.996",
    show_default=False)]
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
RecipeOption = Annotated[str | None, typer.Option(
    metavar="NAME", help="A shipped recipe for the method (cifar10, imagenet100...; "
    "`sslbench recipes` lists them), applied under --config, flags and overrides.")]
DataDirOption = Annotated[str | None, typer.Option(
    help="Root holding one folder per dataset [env SSLBENCH_DATA].")]
DatasetOption = Annotated[str | None, typer.Option(help="Dataset [default fashion-mnist].")]
GpusOption = Annotated[int | None, typer.Option(
    help="0: CPU; 1: one GPU [default: a GPU if there is one].")]
def run_id_argument(help: str) -> Any:
    """A run id argument: an id outside 1 … 2^63 − 1 is a usage error (exit 2), not a crash."""
    return typer.Argument(help=help, min=1, max=MAX_ID)


RunIdArg = Annotated[int, run_id_argument("Id of a completed pretrain run.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
EvalDatasetOption = Annotated[str | None, typer.Option(
    metavar="NAME", help="Probe the encoder on this dataset instead of its pretraining one "
    "(transfer: channels and size adapted, both datasets recorded).")]
