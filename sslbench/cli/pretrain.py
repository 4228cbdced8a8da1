"""`sslbench pretrain METHOD` and `sslbench linear-eval RUN`."""

from __future__ import annotations

from typing import Annotated

import typer

from sslbench.cli import app
from sslbench.cli.options import (
    ConfigOption,
    DataDirOption,
    DatasetOption,
    DbOption,
    EvalDatasetOption,
    GpusOption,
    Overrides,
    QuietOption,
    RecipeOption,
    RunIdArg,
    run_id_argument,
)
from sslbench.distributed import DEFAULT_MASTER_PORT
from sslbench.errors import UserError


@app.command("pretrain")
def pretrain_command(
    method: Annotated[str, typer.Argument(help="Method to pretrain (see `sslbench methods`).")],
    overrides: Overrides = None,
    config: ConfigOption = None,
    recipe: RecipeOption = None,
    dataset: DatasetOption = None,
    data_dir: DataDirOption = None,
    epochs: Annotated[int | None, typer.Option(help="Pretraining epochs.")] = None,
    budget: Annotated[str | None, typer.Option(
        help="Train for this long instead of --epochs (10m, 90s, 1h30m), seconds of training "
             "steps; the schedules are planned to end exactly there.")] = None,
    budget_steps: Annotated[int | None, typer.Option(
        help="Train for this many optimizer steps instead of --epochs.")] = None,
    budget_flops: Annotated[float | None, typer.Option(
        help="Train for this many training FLOPs instead of --epochs (e.g. 2e15).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch size.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of everything random.")] = None,
    seeds: Annotated[str | None, typer.Option(
        help="A group of runs, one per seed: a count N (seeds --seed … --seed+N-1) or a list "
             "(0,1,2); `sslbench report` shows their mean and 95 % interval.")] = None,
    gpus: Annotated[int | None, typer.Option(
        help="0: CPU; N: N GPU workers per node, NCCL, batch split across them "
             "[default: a GPU if there is one].")] = None,
    procs: Annotated[int | None, typer.Option(
        help="N CPU worker processes per node (gloo), batch split across them [1].")] = None,
    nnodes: Annotated[int, typer.Option(help="Nodes of a multi-node run.")] = 1,
    node_rank: Annotated[int, typer.Option(help="This node's rank, 0 … nnodes-1 (node 0 "
                                                "records the run).")] = 0,
    master_addr: Annotated[str, typer.Option(
        help="Address of node 0, where the workers meet (multi-node).")] = "127.0.0.1",
    master_port: Annotated[int, typer.Option(help="Free TCP port on node 0 (multi-node).")]
    = DEFAULT_MASTER_PORT,
    evaluate: Annotated[str | None, typer.Option(
        "--eval", help="Protocols to run after pretraining, comma-separated: linear, knn, "
                       "semi:1 (1 % of the labels), semi:10, semi:10/class...; or 'none'.")] = None,
    stop_on_collapse: Annotated[bool, typer.Option(
        "--stop-on-collapse", help="End the run (FAILED) when the representation collapses, "
                                   "instead of only warning.")] = False,
    tensorboard: Annotated[str | None, typer.Option(
        metavar="DIR", help="Write live TensorBoard curves (loss, kNN, diagnostics, learning rate) "
        "into DIR/run<ID>-<method>-<dataset> (needs the 'tensorboard' extra).")] = None,
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the resolved config and exit.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Pretrain an encoder with a self-supervised METHOD, evaluate it, record everything."""
    from sslbench.config import to_yaml
    from sslbench.config.budget import parse_duration
    from sslbench.resolve import resolve_config

    flags = {
        "data.dataset": dataset, "data.data_dir": data_dir, "train.epochs": epochs,
        "train.budget_s": None if budget is None else parse_duration(budget),
        "train.budget_steps": budget_steps, "train.budget_flops": budget_flops,
        "train.batch_size": batch_size, "train.seed": seed, "train.gpus": gpus,
        "train.procs": procs,
        "eval.protocols": None if evaluate is None else ("" if evaluate == "none" else evaluate),
        "eval.diagnostics.stop_on_collapse": True if stop_on_collapse else None,
        "train.tensorboard": tensorboard,
    }
    cfg = resolve_config(method, config_file=config, flags=flags, overrides=overrides or [],
                         recipe=recipe)
    group = [cfg.train.seed] if seeds is None else parse_seeds(seeds, cfg.train.seed)
    if dry_run:
        typer.echo(to_yaml(cfg), nl=False)
        return

    import dataclasses

    from sslbench.distributed.launch import LaunchOptions
    from sslbench.run.pretrain import run_pretrain

    launch = LaunchOptions(nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                           master_port=master_port)
    run_ids = []
    for s in group:
        seeded = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=s))
        run_ids.append(run_pretrain(seeded, db, echo=typer.echo, show_progress=not quiet,
                                    launch_options=launch))
    if seeds is not None and all(r is not None for r in run_ids):
        _echo_group(db, [r for r in run_ids if r is not None], group)


def parse_seeds(text: str, first: int) -> list[int]:
    """``--seeds``: a count N (``first`` … ``first`` + N − 1) or a comma list of seeds."""
    items = [x.strip() for x in text.split(",")]
    if not all(x.isdigit() for x in items):
        raise UserError(f"--seeds {text!r}: give a count (3) or a list of seeds (0,1,2)")
    values = [int(x) for x in items]
    if len(values) == 1:
        if values[0] < 1:
            raise UserError(f"--seeds {text!r}: at least one seed")
        return list(range(first, first + values[0]))
    if len(set(values)) != len(values):
        raise UserError(f"--seeds {text!r}: a seed is listed twice")
    return values


def _echo_group(db: str | None, run_ids: list[int], seeds: list[int]) -> None:
    """The group's mean and 95 % interval per protocol, as the leaderboard shows them."""
    from sslbench.report.export import group_scores
    from sslbench.report.table import Filters, build_leaderboard, load_runs
    from sslbench.store import Store

    with Store.open(db, create=False) as store:
        board = build_leaderboard(load_runs(store, Filters(ids=tuple(run_ids))))
    for line in group_scores(board):
        typer.echo(f"runs {', '.join(map(str, run_ids))} (seeds {', '.join(map(str, seeds))}) "
                   f"of {line}")


@app.command("linear-eval")
def linear_eval_command(
    run_id: RunIdArg,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the linear classifier.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate of the classifier.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Mini-batch size.")] = None,
    batchnorm: Annotated[bool | None, typer.Option(
        "--batchnorm/--no-batchnorm", help="A BatchNorm (no affine) before the layer [off].")
    ] = None,
    augment: Annotated[bool | None, typer.Option(
        "--augment/--no-augment", help="Train on features of augmented images (crop + flip), "
                                       "recomputed every step [off].")] = None,
    layer: Annotated[str | None, typer.Option(
        help="Features of: backbone (default), stageN (an earlier stage) or projector; "
             "a :gridK suffix reads a K×K pool of the last map (backbone:grid3).")] = None,
    eval_dataset: EvalDatasetOption = None,
    data_dir: DataDirOption = None,
    gpus: GpusOption = None,
    db: DbOption = None,
) -> None:
    """Train a linear classifier on RUN's frozen encoder; recorded as a child run of RUN."""
    from sslbench.run.evaluate import evaluate_run

    linear = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
              "batchnorm": batchnorm, "augment": augment, "layer": layer}
    overrides = {f"eval.linear.{k}": v for k, v in linear.items() if v is not None}
    evaluate_run(run_id, db, "linear", overrides=overrides, data_dir=data_dir, gpus=gpus,
                 echo=typer.echo, eval_dataset=eval_dataset)


@app.command("resume")
def resume_command(
    run_id: Annotated[int, run_id_argument("Id of a KILLED or FAILED pretrain run.")],
    data_dir: Annotated[str | None, typer.Option(
        help="Root holding one folder per dataset [env SSLBENCH_DATA; default: as recorded].")
    ] = None,
    gpus: Annotated[int | None, typer.Option(help="0: CPU; 1: one GPU [default: as recorded].")
                    ] = None,
    db: DbOption = None,
    quiet: QuietOption = False,
) -> None:
    """Continue a killed or failed pretrain RUN from its last checkpoint, in the same run row.

    Model, optimizer, LR schedule, EMA target, queues, random generators and data order are
    restored: the run ends as an uninterrupted one would (bit-exact on the CPU).
    """
    from sslbench.run.pretrain import resume_pretrain

    resume_pretrain(run_id, db, data_dir=data_dir, gpus=gpus, echo=typer.echo,
                    show_progress=not quiet)
