"""`sslbench runs delete ID...` and `sslbench runs gc`: reclaim disk, files and rows together."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from sslbench.cli.options import DbOption
from sslbench.cli.runs import _console, _table, format_size, runs_app
from sslbench.errors import UserError

if TYPE_CHECKING:
    from sslbench.store import Store
    from sslbench.store.files import Removal

DryRun = Annotated[bool, typer.Option(
    "--dry-run", help="Print what would be removed and the bytes freed; change nothing.")]


@runs_app.command("delete")
def delete_command(
    run_ids: Annotated[list[int], typer.Argument(help="Run ids (see `sslbench runs list`).")],
    dry_run: DryRun = False,
    db: DbOption = None,
) -> None:
    """Delete runs: their rows, metrics, artifacts and files (checkpoints, run folder).

    A run's evaluations go with it; a sweep trial keeps its row (the study refers to it) and
    loses its files. Running runs are refused.
    """
    from sslbench.results import open_store
    from sslbench.store.files import plan_removal

    with open_store(db, write=True) as store:
        removal = plan_removal(store, delete=run_ids)
        _remove(store, removal, {i: "asked for" for i in run_ids}, dry_run)


@runs_app.command("gc")
def gc_command(
    failed_older_than: Annotated[float | None, typer.Option(
        metavar="DAYS", min=0, help="Delete FAILED, KILLED and PRUNED runs that ended over DAYS "
        "days ago (rows and files).")] = None,
    keep_best: Annotated[int | None, typer.Option(
        metavar="K", min=1, help="Per method and dataset, remove the checkpoints of all but the "
        "best K completed runs (their rows, metrics and evaluations stay).")] = None,
    by: Annotated[str, typer.Option(
        help="Rank for --keep-best by this protocol's top-1 (linear, knn, semi:1...) or "
             "summary key (objective).")] = "linear",
    dry_run: DryRun = False,
    db: DbOption = None,
) -> None:
    """Collect runs: old failed/killed ones, and the checkpoints of all but the best K."""
    if failed_older_than is None and keep_best is None:
        raise UserError("say what to collect: --failed-older-than DAYS and/or --keep-best K")
    from sslbench.report.gc import collect
    from sslbench.results import open_store
    from sslbench.store.files import plan_removal

    with open_store(db, write=True) as store:
        chosen = collect(store, now=datetime.now(UTC), failed_older_than_days=failed_older_than,
                         keep_best=keep_best, by=by)
        removal = plan_removal(store, delete=chosen.delete, strip=chosen.strip)
        _remove(store, removal, chosen.reasons, dry_run)


def _remove(store: Store, removal: Removal, reasons: dict[int, str], dry_run: bool) -> None:
    """Print the plan, then apply it unless ``dry_run``."""
    from sslbench.store.files import apply_removal, disk_usage

    if removal.empty:
        typer.echo("nothing to remove")
        return
    table = _table("id", "kind", "method", "dataset", "status", "removes", "why", "disk",
                   numeric=("id", "disk"))
    removed = set(removal.paths)
    for run_id, run in removal.runs.items():
        action = ("row and files" if run_id in removal.deleted else
                  "files; row kept (sweep trial)" if run.sweep_id is not None else
                  "files; row kept")
        why = reasons.get(run_id) or (f"evaluation of run {run.parent_id}"
                                      if run.parent_id is not None else "-")
        size = disk_usage(p for p in run.paths if p in removed)
        table.add_row(str(run_id), run.kind, run.method, run.dataset, run.status, action, why,
                      format_size(size) if size else "-")
    console = _console()
    console.print(table)
    for path in removal.shared:
        console.print(f"kept {path}: a run that stays records it too")
    if dry_run:
        console.print(f"would free {format_size(removal.bytes)} ({len(removal.deleted)} rows "
                      f"deleted, {len(removal.stripped)} kept without files); nothing removed "
                      "(--dry-run)")
        return
    leftovers = apply_removal(store, removal)
    console.print(f"freed {format_size(removal.bytes)}: {len(removal.deleted)} rows deleted, "
                  f"{len(removal.stripped)} kept without files")
    for path in leftovers:
        console.print(f"warning: could not delete {path} (its rows are gone); remove it by hand")
