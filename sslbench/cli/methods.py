"""`sslbench methods`: every registered method with its paper, family and hyperparameters."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from sslbench.cli import app


def _describe(name: str) -> dict[str, Any]:
    import dataclasses

    from sslbench.methods import get_method_spec

    spec = get_method_spec(name)
    hyper = {f.name: getattr(spec.config_cls(), f.name)
             for f in dataclasses.fields(spec.config_cls) if f.name != "name"}
    return {"name": spec.name, "paper": spec.paper, "family": spec.family,
            "hyperparameters": hyper, "overrides": dict(spec.defaults)}


@app.command("methods")
def methods_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every method: paper, family and its hyperparameters (method.KEY) with defaults."""
    from sslbench.methods import method_names

    rows = [_describe(name) for name in method_names()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(title="methods (set a hyperparameter with method.KEY=VALUE)")
    table.add_column("method", no_wrap=True)
    table.add_column("family")
    table.add_column("hyperparameters (defaults)", no_wrap=True)
    table.add_column("paper", ratio=1)
    for row in rows:
        settings = {f"method.{k}": v for k, v in row["hyperparameters"].items()}
        settings.update(row["overrides"])  # the method's own defaults for global keys
        table.add_row(row["name"], row["family"],
                      "\n".join(f"{k}={v}" for k, v in settings.items()), row["paper"])
    Console().print(table)
