"""`sslbench reproduce NAME`: the seed papers' claims, each recorded as a run with its figure."""

from __future__ import annotations

from typing import Annotated

import typer

from sslbench.cli import app
from sslbench.cli.options import DbOption
from sslbench.reproduce import REPRODUCTIONS

_NAMES = "\n\n".join(f"{name}: {text}" for name, (_, text) in REPRODUCTIONS.items())


@app.command("reproduce", help=f"Reproduce a claim of the seed papers; NAME is one of:\n\n{_NAMES}"
                               "\n\nThe run, its points and its figure go into the store; the "
                               "pretraining runs it starts are its children.")
def reproduce_command(
    name: Annotated[str, typer.Argument(help="Which reproduction (see above).")],
    out_dir: Annotated[str, typer.Option(
        "--out", help="Folder for the figure (PNG).")] = "reproductions",
    output_dir: Annotated[str | None, typer.Option(
        help="Tschannen et al.'s: root of the runs' folders [beside the database: "
             "DB.runs/].")] = None,
    dataset: Annotated[str, typer.Option(help="Dataset of the training ones.")] = "fashion-mnist",
    data_dir: Annotated[str | None, typer.Option(
        help="Root holding one folder per dataset [env SSLBENCH_DATA].")] = None,
    train_size: Annotated[int | None, typer.Option(
        help="Random train images used (pretraining and probe) [10 000 for simsiam-collapse "
             "and batch-size; all for Tschannen et al.'s].")] = None,
    test_size: Annotated[int | None, typer.Option(
        help="Random test images for the probe [2 000; all for Tschannen et al.'s].")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Pretraining epochs [each reproduction's own].")] = None,
    batch_sizes: Annotated[str, typer.Option(
        help="batch-size: the sizes compared, comma-separated.")] = "16,64,256,512",
    seed: Annotated[int, typer.Option(help="Seed of everything random (the first seed).")] = 0,
    seeds: Annotated[int, typer.Option(
        help="Tschannen et al.'s: seeds per configuration (--seed, --seed + 1, ...).")] = 3,
    steps: Annotated[int | None, typer.Option(
        help="Tschannen et al.'s: training steps [the paper's, 21 000 mostly].")] = None,
    eval_every: Annotated[int | None, typer.Option(
        help="Tschannen et al.'s: steps between evaluations [the paper's, 1 000].")] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Tschannen et al.'s: a smoke run (few steps, 512/256 images).")] = False,
    mi_target: Annotated[str, typer.Option(
        help="mi-target: the targets t of |Î − t| in nats, comma-separated.")] = "2,4",
    set_keys: Annotated[list[str] | None, typer.Option(
        "--set", help="Tschannen et al.'s: an infomax KEY=VALUE for every run, repeatable "
                      "(e.g. method.realnvp_layers=10 for a smaller flow).")] = None,
    gpus: Annotated[int | None, typer.Option(help="0: CPU; 1: one GPU.")] = None,
    jobs: Annotated[int, typer.Option(
        help="Tschannen et al.'s grids: runs at once, each its own process (one per core: the "
             "grid finishes about that many times sooner).")] = 1,
    db: DbOption = None,
) -> None:
    from sslbench.errors import UserError
    from sslbench.reproduce import ReproSettings, check_name, check_settings

    check_name(name)
    try:
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise UserError(f"--batch-sizes {batch_sizes!r} must be integers, e.g. 16,64,256") from None
    try:
        targets = [float(t) for t in mi_target.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--mi-target {mi_target!r} must be numbers in nats, e.g. 2,4") from None
    settings = ReproSettings(db=db, out_dir=out_dir, output_dir=output_dir, dataset=dataset,
                             data_dir=data_dir, train_size=train_size, test_size=test_size,
                             epochs=epochs, batch_sizes=sizes, seed=seed, seeds=seeds, steps=steps,
                             eval_every=eval_every, quick=quick, mi_targets=targets,
                             overrides=list(set_keys or []), gpus=gpus, jobs=jobs)
    check_settings(name, settings)
    from sslbench.reproduce import run_reproduction

    run_reproduction(name, settings, echo=typer.echo)
