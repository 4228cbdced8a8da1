"""`sslbench knn RUN`, `sslbench semi-supervised RUN --labels 1%`, `sslbench supervised`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sslbench.cli import app
from sslbench.cli.options import (
    DataDirOption,
    DatasetOption,
    DbOption,
    EvalDatasetOption,
    GpusOption,
    Overrides,
    RunIdArg,
)

Labels = Annotated[str, typer.Option(
    help="Labelled subset: a percentage (1%), a fraction (0.01) or a count per class (10/class).")]
Steps = Annotated[int | None, typer.Option(help="Fine-tuning optimizer steps [500].")]
Lr = Annotated[float | None, typer.Option(help="Fine-tuning learning rate (AdamW) [1e-3].")]
SplitSeed = Annotated[int | None, typer.Option(
    help="Seed of the label subsets (with the dataset and --labels) [0].")]
Augment = Annotated[bool | None, typer.Option(
    "--augment/--no-augment", help="Random crop + flip while fine-tuning [on].")]


def _set(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in values.items() if v is not None}


@app.command("knn")
def knn_command(
    run_id: RunIdArg,
    k: Annotated[int | None, typer.Option("--k", "-k", help="Neighbours [200].")] = None,
    temperature: Annotated[float | None, typer.Option(
        help="Temperature T of the vote weights exp(s/T) [0.1].")] = None,
    layer: Annotated[str | None, typer.Option(
        help="Features of: backbone (default), stageN (an earlier stage) or projector; "
             "a :gridK suffix reads a K×K pool of the last map (backbone:grid3).")] = None,
    eval_dataset: EvalDatasetOption = None,
    data_dir: DataDirOption = None,
    gpus: GpusOption = None,
    db: DbOption = None,
) -> None:
    """Weighted kNN (cosine, l2-normalised features) of RUN's frozen encoder; a child run."""
    from sslbench.run.evaluate import evaluate_run

    overrides = _set("eval.knn", {"k": k, "temperature": temperature, "layer": layer})
    evaluate_run(run_id, db, "knn", overrides=overrides, data_dir=data_dir, gpus=gpus,
                 echo=typer.echo, eval_dataset=eval_dataset)


@app.command("semi-supervised")
def semi_supervised_command(
    run_id: RunIdArg,
    labels: Labels,
    steps: Steps = None,
    lr: Lr = None,
    batch_size: Annotated[int | None, typer.Option(help="Fine-tuning batch size [128].")] = None,
    split_seed: SplitSeed = None,
    augment: Augment = None,
    eval_dataset: EvalDatasetOption = None,
    data_dir: DataDirOption = None,
    gpus: GpusOption = None,
    db: DbOption = None,
) -> None:
    """Fine-tune RUN's encoder + a linear head on a class-balanced label subset; a child run.

    Also trains a linear probe on the same subset. Top-1 on the full test split.
    """
    from sslbench.config import parse_label_spec

    spec = parse_label_spec(labels)  # bad --labels: one line, exit 2, before the DB is opened
    from sslbench.run.evaluate import evaluate_run

    overrides = _set("eval.semi", {"steps": steps, "lr": lr, "batch_size": batch_size,
                                   "split_seed": split_seed, "augment": augment})
    evaluate_run(run_id, db, f"semi:{spec}", overrides=overrides, data_dir=data_dir, gpus=gpus,
                 echo=typer.echo, eval_dataset=eval_dataset)


@app.command("supervised")
def supervised_command(
    labels: Labels,
    overrides: Overrides = None,
    dataset: DatasetOption = None,
    steps: Steps = None,
    lr: Lr = None,
    split_seed: SplitSeed = None,
    augment: Augment = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the initialisation and order.")] = None,
    data_dir: DataDirOption = None,
    gpus: GpusOption = None,
    db: DbOption = None,
) -> None:
    """Supervised from scratch on the same label subset as `semi-supervised`: the baseline.

    A freshly initialised backbone (model.* as for pretraining) + a linear head, trained with
    the fine-tuning settings (eval.semi.*) on the subset; top-1 on the full test split.
    """
    from sslbench.config import parse_label_spec

    spec = parse_label_spec(labels)
    from sslbench.resolve import resolve_config
    from sslbench.run.evaluate import run_supervised

    flags = {"data.dataset": dataset, "data.data_dir": data_dir, "train.seed": seed,
             "train.gpus": gpus,
             **_set("eval.semi", {"steps": steps, "lr": lr, "split_seed": split_seed,
                                  "augment": augment})}
    # The backbone, data and fine-tuning settings resolve exactly as for a pretraining run
    # (dataset defaults included), without a method.
    cfg = resolve_config(None, flags=flags, overrides=overrides or [])
    run_supervised(cfg, spec, db, echo=typer.echo)
