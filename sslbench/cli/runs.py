"""`sslbench runs list` and `sslbench runs show`: read the recorded runs back from the store.

Only reads: a database that does not exist yet is an error, never created. The store, rich and
yaml are imported inside the commands so that `sslbench --help` stays fast (and torch-free).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sslbench.cli import app
from sslbench.cli.options import DbOption, run_id_argument
from sslbench.escape import printable
from sslbench.formatting import format_duration
from sslbench.limits import MAX_ID

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

    from sslbench.store import RunRecord

runs_app = typer.Typer(help="Inspect recorded runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

MAX_SUMMARY_COLUMNS = 4  # headline metrics shown by `runs list`
MAX_EPOCH_ROWS = 20  # rows of the per-epoch table of `runs show`
PIPE_WIDTH = 200  # output width when not writing to a terminal: one line per row
# Metrics stored as fractions and shown as percentages: knn_top1, linear_acc, val_accuracy.
_FRACTION_KEY = re.compile(r"(top\d+|acc|accuracy)($|_)")
_STATUS_STYLE = {
    "QUEUED": "cyan",
    "RUNNING": "yellow",
    "COMPLETED": "green",
    "FAILED": "red",
    "KILLED": "magenta",
    "PRUNED": "dim",
}


@runs_app.command("list")
def list_runs(
    db: DbOption = None,
    kind: Annotated[
        str | None,
        typer.Option(help="Only this kind: pretrain, linear, knn, semisup, trial or bench."),
    ] = None,
    method: Annotated[str | None, typer.Option(help="Only this method, e.g. byol.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Only this status: queued, running, completed, failed, killed, pruned."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, max=MAX_ID,
                                              help="At most this many runs.")] = None,
) -> None:
    """List runs, newest first, with their headline metrics and the disk their files use."""
    from sslbench.results import disk_usage_of, find_runs, open_store
    from sslbench.store import RUN_KINDS, RUN_STATUSES

    kind = _choice("--kind", kind and kind.lower(), RUN_KINDS)
    status = _choice("--status", status and status.upper(), RUN_STATUSES)
    with open_store(db) as store:
        records = find_runs(store, kind=kind, method=method, dataset=dataset, status=status,
                            limit=limit)
        usage = disk_usage_of(store, [r.id for r in records])
    console = _console()
    console.print(_runs_table(records, usage) if records else "no runs")


@runs_app.command("show")
def show_run(
    run_id: Annotated[int, run_id_argument("Run id, as shown by `sslbench runs list`.")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full record as JSON.")] = False,
) -> None:
    """Show one run: provenance, config, versions, metrics and artifacts."""
    from sslbench.store import Store

    with Store.open(db, create=False, read=True) as store:
        record = store.get_run(run_id)
        children = [child.id for child in store.children(run_id)]
    if as_json:
        typer.echo(json.dumps(record.to_dict() | {"children": children}, indent=2))
        return
    console = _console()
    for title, body in _run_sections(record, children):
        console.print(f"\n{title}", style="bold")
        console.print(printable(body, lines=True) if isinstance(body, str) else body)


@runs_app.command("compare")
def compare_runs(
    run_a: Annotated[int, run_id_argument("First run id.")],
    run_b: Annotated[int, run_id_argument("Second run id.")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the diff as JSON.")] = False,
) -> None:
    """Config diff and metric diff of two runs (evaluation children's scores included)."""
    from sslbench.report.table import protocol_of, score_of
    from sslbench.store import Store

    with Store.open(db, create=False, read=True) as store:
        records = [store.get_run(run_a), store.get_run(run_b)]
        kids = [store.children(run_a), store.children(run_b)]
    flat = [flatten(r.config) for r in records]
    config_diff = {k: [flat[0].get(k, _ABSENT), flat[1].get(k, _ABSENT)]
                   for k in sorted(set(flat[0]) | set(flat[1]))
                   if flat[0].get(k, _ABSENT) != flat[1].get(k, _ABSENT)}
    metrics: list[dict[str, float]] = []
    for record, children in zip(records, kids, strict=True):
        values = {k: float(v) for k, v in record.summary.items()
                  if isinstance(v, int | float) and not isinstance(v, bool)}
        for child in children:
            protocol = protocol_of(child.kind, child.config)
            score = score_of(child.kind, child.summary)
            if child.status == "COMPLETED" and protocol is not None and score is not None:
                values[f"{protocol} top1"] = score
        metrics.append(values)
    metric_keys = sorted(set(metrics[0]) | set(metrics[1]))
    if as_json:
        typer.echo(json.dumps({
            "runs": [run_a, run_b],
            "config": {k: [None if v is _ABSENT else v for v in pair]
                       for k, pair in config_diff.items()},
            "metrics": {k: [metrics[0].get(k), metrics[1].get(k)] for k in metric_keys},
        }, indent=2))
        return
    console = _console()
    top = _table("", f"run {run_a}", f"run {run_b}")
    for field_name in ("kind", "method", "dataset", "status", "seed"):
        _add(top, field_name, *(str(getattr(r, field_name)) for r in records))
    console.print(top)
    if config_diff:
        table = _table("config key", f"run {run_a}", f"run {run_b}")
        for key, (a, b) in config_diff.items():
            _add(table, key, _or_dash(None if a is _ABSENT else a),
                          _or_dash(None if b is _ABSENT else b))
        console.print(table)
    else:
        console.print("configs are identical")
    table = _table("metric", f"run {run_a}", f"run {run_b}", "b − a",
                   numeric=(f"run {run_a}", f"run {run_b}", "b − a"))
    for key in metric_keys:
        a, b = metrics[0].get(key), metrics[1].get(key)
        delta = "-"
        if a is not None and b is not None:
            is_fraction = _FRACTION_KEY.search(key) and 0 <= a <= 1 and 0 <= b <= 1
            delta = f"{100 * (b - a):+.2f} pt" if is_fraction else f"{b - a:+.4g}"
        _add(table, key, "-" if a is None else format_metric(key, a),
                      "-" if b is None else format_metric(key, b), delta)
    console.print(table)


_ABSENT = object()


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


# -- formatting -------------------------------------------------------------------------------


def format_metric(key: str, value: float) -> str:
    """A metric for reading: accuracies (fractions) as percentages with 2 decimals."""
    if math.isnan(value):
        return "nan"
    if _FRACTION_KEY.search(key) and 0.0 <= value <= 1.0:
        return f"{100 * value:.2f}%"
    return f"{value:.4g}"


def format_time(moment: datetime | None) -> str:
    """A stored UTC time as short local time."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else "-"


def format_size(size_bytes: int) -> str:
    """Bytes with a binary unit: `512 B`, `1.5 MiB`."""
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def headline_keys(records: Sequence[RunRecord], limit: int = MAX_SUMMARY_COLUMNS) -> list[str]:
    """The summary keys worth a column: accuracies first, then losses, then the rest."""
    keys = {key for record in records for key in record.summary}

    def rank(key: str) -> tuple[int, str]:
        return (0 if _FRACTION_KEY.search(key) else 1 if "loss" in key else 2, key)

    return sorted(keys, key=rank)[:limit]


def _choice(option: str, value: str | None, choices: Sequence[str]) -> str | None:
    if value is not None and value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=option)
    return value


def _console() -> Console:
    from rich.console import Console

    console = Console(markup=False, highlight=False)
    if not console.is_terminal:  # piped or captured: keep each row on one line
        console = Console(markup=False, highlight=False, width=PIPE_WIDTH)
    return console


def _status(record: RunRecord) -> RenderableType:
    from rich.text import Text

    if record.is_stale:
        return Text("RUNNING?", style="red")  # no heartbeat for minutes: the process died
    return Text(record.status, style=_STATUS_STYLE.get(record.status, ""))


def _table(*columns: str, numeric: Collection[str] = ()) -> Table:
    """A borderless table; the `numeric` columns are right-aligned."""
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, justify="right" if column in numeric else "left")
    return table


def _runs_table(records: Sequence[RunRecord], usage: dict[int, int]) -> Table:
    metrics = headline_keys(records)
    table = _table(
        "id",
        "kind",
        "parent",
        "method",
        "dataset",
        "status",
        *metrics,
        "duration",
        "started",
        "disk",
        numeric=("id", "parent", *metrics, "duration", "disk"),
    )
    for record in records:
        _add(
            table,
            str(record.id),
            record.kind,
            _or_dash(record.parent_id),
            record.method,
            record.dataset,
            _status(record),
            *(
                format_metric(key, record.summary[key]) if key in record.summary else "-"
                for key in metrics
            ),
            format_duration(record.duration_s),
            format_time(record.started_at),
            format_size(usage[record.id]) if usage.get(record.id) else "-",
        )
    return table


def _run_sections(record: RunRecord, children: list[int]) -> list[tuple[str, RenderableType]]:
    import yaml

    sections: list[tuple[str, RenderableType]] = [
        (f"run {record.id}", _header(record, children)),
        ("config", yaml.safe_dump(record.config, sort_keys=True).rstrip()),
        ("versions", ", ".join(f"{name} {v}" for name, v in record.versions.items() if v)),
    ]
    if record.metrics:
        sections.append(("metrics (last values)", _last_metrics_table(record)))
        if epoch_table := _epoch_table(record):
            sections.append(("metrics per epoch", epoch_table))
    if record.artifacts:
        sections.append(("artifacts", _artifacts_table(record)))
    return sections


def _header(record: RunRecord, children: list[int]) -> Table:
    from rich.table import Table

    git = record.git_commit[:12] if record.git_commit else "-"
    if record.git_dirty:
        git += " (dirty)"
    fields: list[tuple[str, Any]] = [
        ("kind", record.kind),
        ("parent", _or_dash(record.parent_id)),
        ("children", ", ".join(map(str, children)) or "-"),
        ("sweep", f"{record.sweep_id} trial {record.trial_number}" if record.sweep_id else None),
        ("method", record.method),
        ("dataset", record.dataset),
        ("backbone", _or_dash(record.backbone)),
        ("status", _status(record)),
        ("failure", record.failure_reason),
        ("summary", ", ".join(f"{k} {format_metric(k, v)}" for k, v in record.summary.items())),
        ("seed", str(record.seed)),
        ("config hash", record.config_hash),
        ("git", git),
        ("host", record.host if record.pid is None else f"{record.host} (pid {record.pid})"),
        ("run dir", record.run_dir),
        ("resumed", f"{record.resumes} time(s)" if record.resumes else None),
        ("device", f"{_or_dash(record.device)} x {record.world_size}"),
        ("created", format_time(record.created_at)),
        ("started", format_time(record.started_at)),
        ("ended", format_time(record.ended_at)),
        ("heartbeat", format_time(record.heartbeat_at)),
        ("duration", format_duration(record.duration_s)),
    ]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in fields:
        if value:  # optional lines (sweep, failure, summary) only when they say something
            _add(grid, label, value)
    return grid


def _last_metrics_table(record: RunRecord) -> Table:
    last = {row.key: row for row in record.metrics}  # rows come in logging order
    counts: dict[str, int] = {}
    for row in record.metrics:
        counts[row.key] = counts.get(row.key, 0) + 1
    table = _table(
        "key", "value", "epoch", "step", "points", numeric=("value", "epoch", "step", "points")
    )
    for key in sorted(last):
        row = last[key]
        _add(
            table,
            key,
            format_metric(key, row.value),
            _or_dash(row.epoch),
            _or_dash(row.step),
            str(counts[key]),
        )
    return table


def _epoch_table(record: RunRecord) -> Table | None:
    """The last value of each epoch-indexed key per epoch, at most `MAX_EPOCH_ROWS` epochs."""
    by_epoch: dict[int, dict[str, float]] = {}
    for row in record.metrics:
        if row.epoch is not None:
            by_epoch.setdefault(row.epoch, {})[row.key] = row.value
    if not by_epoch:
        return None
    epochs = sorted(by_epoch)
    if len(epochs) > MAX_EPOCH_ROWS:  # evenly spaced, always ending on the last epoch
        stride = math.ceil(len(epochs) / MAX_EPOCH_ROWS)
        epochs = epochs[::-1][::stride][::-1]
    keys = sorted({key for values in by_epoch.values() for key in values})
    table = _table("epoch", *keys, numeric=("epoch", *keys))
    for epoch in epochs:
        values = by_epoch[epoch]
        _add(
            table,
            str(epoch), *(format_metric(k, values[k]) if k in values else "-" for k in keys)
        )
    return table


def _artifacts_table(record: RunRecord) -> Table:
    table = _table("name", "path", "sha256", "size", numeric=("size",))
    for artifact in record.artifacts:
        _add(
            table,
            artifact.name, artifact.path, artifact.sha256[:12], format_size(artifact.size_bytes)
        )
    return table


def _add(table: Table, *cells: RenderableType) -> None:
    """A row whose text cells are shown as written: control characters (an escape sequence in
    a stored value) as their escapes."""
    from rich.text import Text

    table.add_row(*(Text(printable(c)) if isinstance(c, str) else c for c in cells))


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)
