"""`sslbench bench ...`: benchmarks, printed and recorded as runs of kind ``bench`` in the store."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from sslbench.cli import app
from sslbench.cli.options import (
    ConfigOption,
    DataDirOption,
    DbOption,
    GpusOption,
    RecipeOption,
)
from sslbench.errors import UserError

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


MethodArg = Annotated[str, typer.Argument(help="Method (see `sslbench methods`).")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="A config override key=value, e.g. --set model.width=64 (repeatable).")]
NoRecord = Annotated[bool, typer.Option("--no-record", help="Print only.")]


@bench_app.command("throughput")
def bench_throughput(
    method: MethodArg = "simclr",
    backbone: Annotated[str | None, typer.Option(
        help="convnet, resnet18 or resnet50 [the dataset's default].")] = None,
    width: Annotated[int | None, typer.Option(help="Backbone width.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per round.")] = 20,
    warmup: Annotated[int, typer.Option(min=1, help="Untimed steps before them.")] = 2,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds, each timing every data path in "
                                                    "turn (medians shown).")] = 3,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader workers of the conventional "
                                                     "PIL pipeline; 0 skips it.")] = 2,
    dataset: Annotated[str | None, typer.Option(help="Dataset [fashion-mnist].")] = None,
    random_data: Annotated[bool, typer.Option(
        "--random-data", help="Random uint8 images of the dataset's shape (no files needed).")
    ] = False,
    peak_tflops: Annotated[float | None, typer.Option(
        help="Peak TFLOP/s of the device, for the MFU [known GPUs: from their data sheet].")
    ] = None,
    config: ConfigOption = None,
    recipe: RecipeOption = None,
    overrides: SetOption = None,
    data_dir: DataDirOption = None,
    gpus: GpusOption = None,
    db: DbOption = None,
    no_record: NoRecord = False,
) -> None:
    """Images/s of (a) the training step with sslbench's data path, (b) the same step on views
    prepared in advance (the ceiling), (c) the overhead 1 - a/b, (d) the conventional PIL pipeline
    in DataLoader workers, (e) a/d and b/d; model FLOPs, MFU and peak memory."""
    from sslbench.bench.record import run_throughput
    from sslbench.resolve import resolve_config

    flags = {"model.backbone": backbone, "model.width": width, "train.batch_size": batch_size,
             "data.dataset": dataset, "data.data_dir": data_dir, "train.gpus": gpus}
    cfg = resolve_config(method, config_file=config, flags=flags, overrides=overrides or [],
                         recipe=recipe)
    run_throughput(cfg, steps=steps, warmup=warmup, rounds=rounds, workers=workers,
                   random_data=random_data, peak_tflops=peak_tflops, db=db,
                   record=not no_record, echo=typer.echo)


@bench_app.command("time-to-accuracy")
def bench_time_to_accuracy(
    method: MethodArg = "simclr",
    budgets: Annotated[str, typer.Option(
        help="Training budgets, comma-separated (90s, 2m, 1h30m): one complete run per budget, "
             "its schedules planned to end there; 0: the baselines only.")] = "1m,2m,5m",
    batch_size: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset [fashion-mnist].")] = None,
    config: ConfigOption = None,
    recipe: RecipeOption = None,
    overrides: SetOption = None,
    data_dir: DataDirOption = None,
    gpus: GpusOption = None,
    baselines: Annotated[bool, typer.Option(
        "--baselines/--no-baselines",
        help="Probe the untrained encoder and the raw pixels first, with the same probe.")] = True,
    db: DbOption = None,
    no_record: NoRecord = False,
) -> None:
    """Pretrain a recipe (METHOD, --recipe, --config, --set) at each budget and print the
    linear-probe accuracy each reaches: the time-to-accuracy curve, beside the random-init and
    raw-pixel baselines. Scored on the test split; --set eval.split=val scores on the
    validation split (to choose a recipe by its curve)."""
    from sslbench.bench.record import run_time_to_accuracy
    from sslbench.config.budget import parse_duration
    from sslbench.resolve import resolve_config

    only_baselines = budgets.strip() == "0"
    budgets_s = [] if only_baselines else [parse_duration(b, "--budgets")
                                           for b in budgets.split(",") if b.strip()]
    if not budgets_s and not only_baselines:
        raise UserError("--budgets: give at least one duration, e.g. --budgets 2m,5m (or 0 for "
                        "the baselines only)")
    if only_baselines and not baselines:
        raise UserError("--budgets 0 --no-baselines measures nothing: drop one of them")
    flags = {"train.batch_size": batch_size, "data.dataset": dataset, "data.data_dir": data_dir,
             "train.gpus": gpus}
    cfg = resolve_config(method, config_file=config, flags=flags, overrides=overrides or [],
                         recipe=recipe)
    run_time_to_accuracy(cfg, budgets_s=budgets_s, db=db, record=not no_record,
                         echo=typer.echo, with_baselines=baselines)


@bench_app.command("startup")
def bench_startup(
    repeats: Annotated[int, typer.Option(min=1, help="Timed runs (median shown).")] = 5,
    db: DbOption = None,
    no_record: NoRecord = False,
) -> None:
    """Wall time of `sslbench --help` in a fresh interpreter (target: under half a second)."""
    from sslbench.bench.record import run_startup

    run_startup(repeats, db, record=not no_record, echo=typer.echo)
