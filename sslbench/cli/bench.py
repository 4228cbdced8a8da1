"""`sslbench bench ...`: benchmarks, printed and recorded as runs of kind ``bench`` in the store."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from sslbench.cli import app
from sslbench.cli.runs import DbOption

bench_app = typer.Typer(help="Benchmarks (printed, and recorded as runs of kind 'bench').",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("report")
def bench_report(
    runs: Annotated[int, typer.Option(min=1, help="Fabricated pretrain runs (each with "
                                                  "3 evaluation children).")] = 10_000,
    repeats: Annotated[int, typer.Option(min=1, help="Timed repetitions (median shown).")] = 3,
    db: DbOption = None,
    no_record: Annotated[bool, typer.Option("--no-record", help="Print only.")] = False,
) -> None:
    """Time `sslbench report` (load + leaderboard + markdown) on a database of fabricated runs."""
    import statistics

    from sslbench.report.export import to_markdown, to_rich
    from sslbench.report.fabricate import fabricate
    from sslbench.report.table import Filters, build_leaderboard, load_runs
    from sslbench.store import Store

    with (tempfile.TemporaryDirectory() as tmp,
          Store.open(str(Path(tmp) / "fabricated.sqlite")) as store):
        t0 = time.perf_counter()
        rows = fabricate(store, runs)
        fill_s = time.perf_counter() - t0
        timings = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            loaded = load_runs(store, Filters(dataset="fabricated"))
            board = build_leaderboard(loaded)
            to_markdown(board)
            to_rich(board)
            timings.append(time.perf_counter() - t0)
    median = statistics.median(timings)
    typer.echo(f"report of {runs} pretrain runs ({rows} rows): median {median:.3f} s over "
               f"{repeats} (min {min(timings):.3f} s); filling the DB took {fill_s:.1f} s")
    if no_record:
        return
    with Store.open(db) as store:
        run_id = store.create_run(kind="bench", method="report", dataset="fabricated",
                                  config={"bench": "report", "runs": runs, "repeats": repeats},
                                  seed=0, device="cpu")
        store.update_summary(run_id, report_s=median, report_min_s=min(timings),
                             rows=float(rows))
        store.finish_run(run_id, "COMPLETED")
    typer.echo(f"recorded as run {run_id}")
