"""`sslbench methods`: every registered method with its paper, family, losses and
hyperparameters."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from sslbench.cli import app


def describe(name: str) -> dict[str, Any]:
    """A method's spec as plain data (what `sslbench methods --json` prints)."""
    import dataclasses

    from sslbench.methods import get_method_spec

    spec = get_method_spec(name)
    hyper = {f.name: getattr(spec.config_cls(), f.name)
             for f in dataclasses.fields(spec.config_cls) if f.name != "name"}
    return {"name": spec.name, "paper": spec.paper, "family": spec.family,
            "losses": [fn.__name__ for fn in spec.losses],
            "multi_crop": spec.method_cls.multi_crop, "hyperparameters": hyper,
            "overrides": dict(spec.defaults)}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The methods table of the README: name, paper, family, the losses it exports."""
    lines = ["| name | paper | family | functions in `sslbench.losses` |",
             "|------|-------|--------|------|"]
    for row in rows:
        losses = ", ".join(f"`{name}`" for name in row["losses"])
        lines.append(f"| `{row['name']}` | {row['paper']} | {row['family']} | {losses} |")
    return "\n".join(lines) + "\n"


@app.command("methods")
def methods_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    as_markdown: Annotated[bool, typer.Option(
        "--markdown", help="Print a Markdown table (the README's).")] = False,
) -> None:
    """List every method: paper, family, its losses and its hyperparameters (method.KEY) with
    defaults."""
    from sslbench.methods import method_names

    rows = [describe(name) for name in method_names()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if as_markdown:
        typer.echo(markdown_table(rows), nl=False)
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
