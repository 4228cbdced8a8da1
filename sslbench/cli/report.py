"""`sslbench report`: the leaderboard of the run database, as a table, an export, or PNG plots.

Only reads the database (a missing one is an error, never created). No torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sslbench.cli import app
from sslbench.cli.options import DbOption
from sslbench.errors import UserError


@app.command("report")
def report_command(
    db: DbOption = None,
    dataset: Annotated[str | None, typer.Option(help="Only runs on this dataset.")] = None,
    method: Annotated[str | None, typer.Option(
        help="Only these methods (comma list, e.g. simclr,byol).")] = None,
    backbone: Annotated[str | None, typer.Option(help="Only this backbone.")] = None,
    budget: Annotated[str | None, typer.Option(
        help="Only runs at this budget: a duration (10m), 'N steps', 'X flop' or 'N epochs'.")
    ] = None,
    sweep: Annotated[str | None, typer.Option(
        help="Report this sweep instead: trials ranked by objective, parameter importance, "
             "objective-vs-parameter plots.")] = None,
    status: Annotated[str, typer.Option(
        help="Only pretrain runs with this status ('any' for all).")] = "completed",
    since: Annotated[str | None, typer.Option(help="Runs created on/after YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option(help="Runs created before YYYY-MM-DD.")] = None,
    protocol: Annotated[str | None, typer.Option(
        help="Columns, e.g. linear,knn,semi:1,semi:10 (default: every protocol present).")] = None,
    group_by: Annotated[list[str] | None, typer.Option(
        "--group-by", help="Also group rows by this config key (repeatable), e.g. "
        "method.ema_decay.")] = None,
    sort: Annotated[str | None, typer.Option(
        help="Sort by a protocol (mean, best first within each budget), method, dataset, budget, "
             "runs, wall or img_per_s.",
    )] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="table, markdown, csv, json or html.")] = "table",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the export to this file instead of stdout.")] = None,
    plots: Annotated[Path | None, typer.Option(
        help="Also write PNG figures (curves, accuracy by method) into this folder.")] = None,
) -> None:
    """Leaderboard: a row per method and budget (or group), the mean ± 95 % CI over seeds per
    protocol, and which rows are tied with the best of their budget."""
    from sslbench.config import check_protocol
    from sslbench.config.budget import parse_budget_label
    from sslbench.report.export import FORMATS, render, to_rich
    from sslbench.report.table import parse_date
    from sslbench.results import leaderboard, open_store
    from sslbench.store import RUN_STATUSES

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    _check_paths(output, plots)
    if sweep is not None:
        _sweep_report(db, sweep, fmt, output, plots)
        return
    wanted_status = None if status.lower() == "any" else status.upper()
    if wanted_status is not None and wanted_status not in RUN_STATUSES:
        raise UserError(f"--status {status!r}: choose one of "
                        f"{', '.join(s.lower() for s in RUN_STATUSES)} or any")
    protocols = [p.strip() for p in protocol.split(",") if p.strip()] if protocol else None
    for name in protocols or ():
        try:
            check_protocol(name)
        except UserError as exc:
            raise UserError(f"--protocol: {exc}") from None
    with open_store(db) as store:
        board = leaderboard(
            store, dataset=dataset,
            method=[m.strip() for m in method.split(",") if m.strip()] if method else None,
            backbone=backbone, status=wanted_status,
            budget=parse_budget_label(budget) if budget is not None else None,
            since=parse_date(since, "--since") if since else None,
            until=parse_date(until, "--until") if until else None,
            group_by=group_by or (), protocols=protocols, sort=sort)
        if plots is not None:
            from sslbench.report.plots import write_plots

            written = write_plots(store, board, plots) if board.groups else {}
            for name, series in written.items():
                typer.echo(f"wrote {plots / name} ({series} series)", err=True)

    if fmt == "table":
        if not board.groups:
            typer.echo("no runs match (see `sslbench runs list`)")
            return
        from rich.console import Console

        Console(width=None if sys.stdout.isatty() else 250).print(to_rich(board))
        return
    _emit(render(board, fmt), output)


def _check_paths(output: Path | None, plots: Path | None) -> None:
    """A bad -o or --plots is bad input, found before the database is read."""
    from sslbench.files import check_output_file, check_output_folder

    if output is not None:
        check_output_file(output, "--output")
    if plots is not None:
        check_output_folder(plots, "--plots")


def _emit(text: str, output: Path | None) -> None:
    """The export on stdout, or into ``output`` whole (a full disk leaves the old file)."""
    if output is None:
        typer.echo(text, nl=False)
        return
    from sslbench.files import write_text

    write_text(output, text)
    typer.echo(f"wrote {output}", err=True)


def _sweep_report(db: str | None, study: str, fmt: str, output: Path | None,
                  plots: Path | None) -> None:
    from sslbench.report import sweep as sweep_report
    from sslbench.store import Store

    with Store.open(db, create=False, read=True) as store:
        report = sweep_report.build_sweep_report(store, study)
    if plots is not None:
        from sslbench.report.plots import write_sweep_plots

        for name, series in write_sweep_plots(report, plots).items():
            typer.echo(f"wrote {plots / name} ({series} series)", err=True)
    if fmt == "table":
        from rich.console import Console

        console = Console(width=None if sys.stdout.isatty() else 250)
        for table in sweep_report.to_rich(report):
            console.print(table)
        return
    _emit(sweep_report.render(report, fmt), output)
