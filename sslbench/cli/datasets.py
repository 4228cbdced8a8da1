"""`sslbench datasets`: the registered datasets and where each one is found on this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from sslbench.cli import app


@app.command("datasets")
def datasets_command(
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            metavar="DIR",
            help="Root holding one folder per dataset [env SSLBENCH_DATA].",
        ),
    ] = None,
) -> None:
    """List the datasets sslbench knows, their shapes and where their files were found."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from sslbench.data.discovery import locate
    from sslbench.data.registry import DATASETS
    from sslbench.escape import printable

    table = Table("name", "classes", "image shape", title="datasets")
    table.add_column("found in", overflow="fold")  # paths are worth reading in full
    for info in DATASETS.values():
        if not info.files:
            where = "synthetic (generated)"
        else:
            located = locate(info.name, data_dir)
            looked = ", ".join(str(path) for path in located.searched)
            where = str(located.folder) if located.folder else f"not found (looked in: {looked})"
            if located.folder is None and info.downloadable:
                where += "; downloaded on first use"
        shape = "×".join(str(size) for size in info.shape)
        classes = str(info.num_classes)
        if info.configurable:
            classes = "data.class_list"
            shape = f"{shape} (data.image_size)"
        table.add_row(info.name, classes, shape, Text(printable(where)))  # a path as typed
    Console().print(table)
