"""`sslbench sweep METHOD`, `sslbench sweep status STUDY`, `sslbench sweep best STUDY`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sslbench.cli import app
from sslbench.cli.options import DbOption
from sslbench.errors import UserError

ACTIONS = ("status", "best")


@app.command("sweep")
def sweep_command(
    target: Annotated[str, typer.Argument(
        help="A method to sweep (its shipped space, sweeps/METHOD.yaml, or the default space), "
             "or 'status' / 'best'.")],
    study_arg: Annotated[str | None, typer.Argument(
        metavar="[STUDY]", help="With status/best: the study name.")] = None,
    space: Annotated[Path | None, typer.Option(
        help="Search space YAML (default: the method's shipped space).")] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="Trials in the study (overrides "
                                                           "the space file).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Local worker processes.")] = 1,
    study: Annotated[str | None, typer.Option(
        help="Study name (default: METHOD-DATASET); the same name resumes it.")] = None,
    storage: Annotated[str | None, typer.Option(
        help="Optuna storage: a journal file path or postgresql://... (default: a journal file "
             "beside the results DB).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Fix a parameter: key=value (repeatable).")] = None,
    recipe: Annotated[str | None, typer.Option(
        metavar="NAME", help="Every trial starts from this shipped recipe of the method "
                             "(`sslbench recipes`), under the space's fixed keys.")] = None,
    budget: Annotated[str | None, typer.Option(
        help="Every trial trains this long (10m, 90s), its schedules planned to end there "
             "(the same as --set train.budget_s=SECONDS).")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Root folder of the datasets.")] = None,
    confirm: Annotated[int, typer.Option(
        min=0, help="Then re-run the best trial with N fresh seeds, evaluated on the test split "
                    "(the number to report; trials choose on the validation split).")] = 0,
    confirm_set: Annotated[list[str] | None, typer.Option(
        "--confirm-set", help="With --confirm: change a key for the confirmation runs only, "
                              "key=value (repeatable), e.g. train.budget_s=900 to confirm a "
                              "short-budget search at the full budget.")] = None,
    recipe_out: Annotated[Path | None, typer.Option(
        metavar="FILE", help="With best: write the confirmed best trial as a recipe file, its "
                             "expected numbers from the --confirm runs on the test split.")] = None,
    db: DbOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-run lines.")] = False,
) -> None:
    """Search hyperparameters with Optuna (TPE, pruning on the online kNN); every trial is a run,
    scored on the validation split.

    Re-running the same command resumes the study: trials left running by a dead worker are
    failed and retried. `optuna-dashboard <journal file or URL>` opens the same study.
    """
    if target in ACTIONS:
        if study_arg is None:
            raise UserError(f"sslbench sweep {target} needs a study name, e.g. "
                            f"`sslbench sweep {target} byol-fashion-mnist`")
        if recipe_out is not None and target != "best":
            raise UserError("--recipe-out goes with `sslbench sweep best STUDY`")
        if recipe_out is not None:
            _write_recipe(study_arg, db, recipe_out)
        else:
            _inspect(target, study_arg, storage, db)
        return
    if recipe_out is not None:
        raise UserError("--recipe-out goes with `sslbench sweep best STUDY`, once the study's "
                        "best trial is confirmed (--confirm N)")
    if study_arg is not None:
        raise UserError(f"unexpected argument {study_arg!r}: use --study NAME to name the study")
    fixed = list(set_ or [])
    if budget is not None:
        from sslbench.config.budget import parse_duration

        fixed.append(f"train.budget_s={parse_duration(budget)}")
    if confirm_set and not confirm:
        raise UserError("--confirm-set changes the confirmation runs: give --confirm N too")
    _run(target, space, trials, workers, study, storage, fixed, data_dir, db, quiet, confirm,
         recipe, _typed(confirm_set or []))


def _typed(items: list[str]) -> dict[str, Any]:
    """``key=value`` items (--set, --confirm-set) as YAML scalars (900 → int); the config
    coerces them further when it is built ("none" → None)."""
    import yaml

    from sslbench.config import parse_overrides

    return {k: yaml.safe_load(v) for k, v in parse_overrides(items).items()}


def _run(method: str, space_file: Path | None, trials: int | None, workers: int,
         study: str | None, storage: str | None, fixed: list[str], data_dir: str | None,
         db: str | None, quiet: bool, confirm: int, recipe: str | None,
         confirm_set: dict[str, Any]) -> None:
    import dataclasses

    from sslbench.methods import get_method_spec
    from sslbench.sweep.space import load_space, space_for
    from sslbench.sweep.worker import (
        SweepJob,
        check_job,
        enqueue_baseline,
        run_sweep,
        trial_config,
    )

    get_method_spec(method)
    space = load_space(space_file) if space_file else space_for(method)
    if space.method != method:
        raise UserError(f"search space {space.source} is for {space.method!r}, not {method!r}")
    if recipe is not None:
        # The recipe is chosen over the space: a key it sets is no longer fixed by the space
        # (the shipped spaces fix Fashion-MNIST and 2 epochs); --set still fixes anything.
        from sslbench.config import load_yaml_file
        from sslbench.config.recipes import recipe_path

        keys = load_yaml_file(recipe_path(recipe, method))
        space = dataclasses.replace(space, recipe=recipe, fixed={
            k: v for k, v in space.fixed.items() if k not in keys})
    if fixed:
        space = space.with_fixed(_typed(fixed))
    if trials is not None:
        space = dataclasses.replace(space, trials=trials)
    overrides = (f"data.data_dir={data_dir}",) if data_dir else ()
    dataset = trial_config(space, {}, overrides).data.dataset  # what the trials train on
    job = SweepJob(study or f"{method}-{dataset}", space, db, storage, overrides, quiet)
    check_job(job)  # every bound of the space builds a valid config, before anything starts
    if confirm_set:  # so does what the confirmations change
        from sslbench.config import apply_dotted
        from sslbench.resolve import config_from_dict
        from sslbench.sweep.confirm import confirmation_changes

        config_from_dict(apply_dotted(trial_config(space, {}, overrides).to_dict(),
                                      confirmation_changes(confirm_set)))

    from sslbench.store import Store, resolve_db_url
    from sslbench.sweep.study import locked, make_study, open_storage, recover_dead_trials

    # a bad --storage is bad input: found before the results DB is created
    optuna_storage, lock = open_storage(storage, resolve_db_url(db))
    with Store.open(db, create=True) as store:
        handle = make_study(job.study, space, optuna_storage)
        with locked(lock):
            if said := enqueue_baseline(handle, job):
                typer.echo(f"study {job.study}: {said}")
        retried = recover_dead_trials(handle, store, lock)
    if retried:
        typer.echo(f"study {job.study}: trial(s) {', '.join(map(str, retried))} were left running "
                   "by a dead worker: marked failed and queued again")
    typer.echo(f"study {job.study}: {space.method}, objective {space.objective} top-1 on the "
               f"validation split, {space.trials} trials, {workers} worker(s)")
    n, seconds = run_sweep(job, workers)
    typer.echo(f"study {job.study}: {n} trial(s) run in {seconds:.0f}s")
    _inspect("status", job.study, storage, db)
    if confirm:
        from sslbench.sweep.confirm import confirm_best

        echo = (lambda _msg: None) if quiet else typer.echo
        runs = confirm_best(job.study, db, confirm, echo=echo, overrides=confirm_set)
        _echo_confirmed(db, job.study, runs)


def _echo_confirmed(db: str | None, study: str, run_ids: list[int]) -> None:
    from sslbench.report.export import group_scores
    from sslbench.report.table import Filters, build_leaderboard, load_runs
    from sslbench.store import Store

    with Store.open(db, create=False) as store:
        board = build_leaderboard(load_runs(store, Filters(ids=tuple(run_ids))))
    for line in group_scores(board):
        typer.echo(f"study {study}: confirmed on the test split, runs "
                   f"{', '.join(map(str, run_ids))}: {line}")


def _write_recipe(study: str, db: str | None, path: Path) -> None:
    from sslbench.escape import printable
    from sslbench.store import Store
    from sslbench.sweep.recipe import recipe_from_study

    if path.exists():
        raise UserError(f"{printable(str(path))} exists: remove it or choose another file for "
                        "--recipe-out")
    if not path.parent.is_dir():
        raise UserError(f"--recipe-out {printable(str(path))}: no folder "
                        f"{printable(str(path.parent))}; create it first")
    with Store.open(db, create=False, read=True) as store:
        # a file in recipes/NAME/ is recipe NAME: its header gives `--recipe NAME`
        folder = path.resolve().parent
        name = folder.name if folder.parent.name == "recipes" else None
        text = recipe_from_study(store, study, name=name)
    path.write_text(text, encoding="utf-8")
    typer.echo(f"study {printable(study)}: its confirmed best trial written as recipe "
               f"{printable(str(path))} (see `sslbench recipes` for shipping it)")


def _inspect(action: str, name: str, storage: str | None, db: str | None) -> None:
    from sslbench.store import Store
    from sslbench.sweep.status import best_command, status_table

    with Store.open(db, create=False, read=True) as store:
        if action == "status":
            from rich.console import Console

            Console().print(status_table(name, storage, store))
        else:
            text: Any = best_command(name, storage, store)
            typer.echo(text)
