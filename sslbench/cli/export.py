"""`sslbench export RUN`: the trained encoder in a file that other code loads; `sslbench runs
export-tensorboard RUN...`: stored runs' curves for TensorBoard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sslbench.cli import app
from sslbench.cli.options import DbOption, RunIdArg
from sslbench.cli.runs import runs_app
from sslbench.errors import UserError


@app.command("export")
def export_command(
    run_id: RunIdArg,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="File to write [run<ID>-<backbone>.safetensors / .pt].")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="safetensors (sslbench.load_encoder; no pickle), torchvision "
        "(torchvision.models.resnet18/50 names) or torchscript (torch.jit.load).")
    ] = "safetensors",
    db: DbOption = None,
) -> None:
    """Write RUN's encoder (the backbone, with its architecture, input normalisation and run
    config as metadata) for use outside sslbench."""
    from sslbench.cli.runs import format_size
    from sslbench.export import export_encoder, load_encoder

    path = export_encoder(run_id, out, fmt, db=db)
    typer.echo(f"wrote {path} ({fmt}, {format_size(path.stat().st_size)})")
    if fmt == "torchvision":
        recipe = load_encoder(path).metadata["torchvision_recipe"]
        typer.echo("load it into torchvision with:\n" + recipe.replace("PATH", repr(str(path))))
    else:
        typer.echo(f"load it with sslbench.load_encoder({str(path)!r})"
                   + (f" or torch.jit.load({str(path)!r})" if fmt == "torchscript" else ""))


@runs_app.command("export-tensorboard")
def export_tensorboard_command(
    run_ids: Annotated[list[int], typer.Argument(help="Run ids (see `sslbench runs list`).")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="TensorBoard log folder; each run gets run<ID>-<method>-<dataset>/.")
    ] = Path("tensorboard"),
    db: DbOption = None,
) -> None:
    """Write stored runs' curves (loss, kNN, diagnostics, learning rate, evaluation scores) as
    TensorBoard scalars, to overlay them with `tensorboard --logdir OUT`."""
    from sslbench import tensorboard
    from sslbench.results import open_store

    tensorboard.check_available()
    with open_store(db) as store:
        runs = [(store.get_run(run_id), store.children(run_id)) for run_id in run_ids]
    for run, _ in runs:
        folder = tensorboard.run_folder(out, run.id, run.method, run.dataset)
        if tensorboard.existing_events(folder):
            raise UserError(f"{folder} already holds TensorBoard events of run {run.id} (live "
                            "curves or an earlier export); choose another --out")
    root = tensorboard.check_folder(out)
    for run, children in runs:
        folder, points = tensorboard.write_stored_run(root, run, children)
        typer.echo(f"run {run.id}: {points} points to {folder}")
    typer.echo(f"view them with: tensorboard --logdir {root}")
