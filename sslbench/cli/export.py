"""`sslbench export RUN`: the trained encoder in a file that other code loads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sslbench.cli import app
from sslbench.cli.options import DbOption, RunIdArg


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
