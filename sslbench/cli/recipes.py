"""`sslbench recipes`: the shipped recipes, what each spends and what it should reach."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from sslbench.cli import app
from sslbench.errors import UserError


@app.command("recipes")
def recipes_command(
    name: Annotated[str | None, typer.Argument(
        help="Only this recipe (cifar10, imagenet100...).", show_default=False)] = None,
    method: Annotated[str | None, typer.Option(help="Only the recipes of this method.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the shipped recipes (`sslbench pretrain METHOD --recipe NAME`): dataset, backbone,
    budget, the top-1 each should reach and where its settings and that number come from."""
    from sslbench.config.recipes import recipe_names, shipped_recipes

    if name is not None and name not in recipe_names():
        raise UserError(f"unknown recipe {name!r}: choose one of {', '.join(recipe_names())}")
    rows = []
    for info in shipped_recipes():
        if (name is not None and info.name != name) or (method is not None
                                                        and info.method != method):
            continue
        keys = info.keys
        rows.append({"recipe": info.name, "method": info.method,
                     "dataset": keys.get("data.dataset", "fashion-mnist"),
                     "backbone": keys.get("model.backbone", "convnet"), "budget": info.budget,
                     "expected": info.expected, "expected_source": info.expected_source,
                     "source": info.source, "summary": info.summary, "path": str(info.path)})
    if method is not None and not rows:
        raise UserError(f"no recipe for method {method!r}"
                        + (f" in {name!r}" if name else "") + ": `sslbench recipes` lists them")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return

    if len(rows) == 1:  # one recipe: every field, sources included
        row = rows[0]
        for key in ("recipe", "method", "summary", "dataset", "backbone", "budget"):
            typer.echo(f"{key + ':':<17}{row[key]}")
        typer.echo(f"{'expected:':<17}" + ", ".join(
            f"{k} top-1 {v:g} %" for k, v in row["expected"].items()))
        for key in ("expected_source", "source", "path"):
            typer.echo(f"{key + ':':<17}{row[key]}")
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(title="recipes (sslbench pretrain METHOD --recipe NAME; "
                        "sslbench recipes NAME --method METHOD: its sources)")
    for column in ("recipe", "method", "dataset", "backbone", "expected top-1 %", "budget"):
        table.add_column(column, no_wrap=column != "budget")
    for row in rows:
        expected = ", ".join(f"{k} {v:g}" for k, v in row["expected"].items())
        table.add_row(row["recipe"], row["method"], row["dataset"], row["backbone"], expected,
                      row["budget"])
    Console().print(table)
