"""TensorBoard curves of runs: written live while a run trains (``--tensorboard DIR``) and after the
fact from the database (`sslbench runs export-tensorboard`), with the same tags and steps, so the
curves of any runs overlay in ``tensorboard --logdir DIR``.

Each run gets its own folder, ``DIR/run<ID>-<method>-<dataset>``; a point is a metric at the
run's global optimizer step (the step every epoch metric is stored with). Tags group what a run
logs: ``train/`` (loss, learning rate, throughput, the method's own logs), ``knn/val_top1`` (the
online monitor, on the validation split), ``diagnostics/`` (collapse, RankMe, alignment,
uniformity, InfoNCE, entropy) and ``eval/`` (the evaluations' test top-1, at the last step).

Event files are written with TensorBoard's own writer (no torch): ``pip install
'sslbench[tensorboard]'``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sslbench.errors import UserError
from sslbench.paths import writable_folder

_DIAGNOSTICS = ("collapse", "rankme", "alignment", "uniformity", "infonce", "entropy", "er_",
                "ib_")
# the online kNN monitor: on the validation split (``val_knn_top1``); runs recorded before the
# split existed scored the test split (``knn_top1``)
_MONITOR = {"val_knn_top1": "knn/val_top1", "knn_top1": "knn/top1"}
EVENT_GLOB = "events.out.tfevents.*"


def tag_of(key: str) -> str:
    """The TensorBoard tag of a stored metric key."""
    if key in _MONITOR:
        return _MONITOR[key]
    if key.startswith(_DIAGNOSTICS):
        return f"diagnostics/{key}"
    return f"train/{key}"


def run_folder(root: str | os.PathLike[str], run_id: int, method: str, dataset: str) -> Path:
    """The folder of one run's event files under ``root``."""
    return Path(root) / f"run{run_id}-{method}-{dataset}"


def check_available() -> None:
    """A one-line UserError naming the extra when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError("TensorBoard curves need the tensorboard package: pip install "
                        "'sslbench[tensorboard]'") from None


def check_folder(root: str | os.PathLike[str]) -> Path:
    """``root`` made (if needed) and writable, with the package available; else a UserError."""
    check_available()
    return writable_folder(Path(root).expanduser().absolute(), "TensorBoard folder",
                           "pass a writable folder")


class ScalarWriter:
    """Appends scalars to one run's event file (a new file per writer, as TensorBoard expects)."""

    def __init__(self, folder: Path) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._writer = EventFileWriter(str(folder))

    def add(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        """One point per stored key (tagged by :func:`tag_of`) at ``step``."""
        self.add_tagged({tag_of(k): v for k, v in values.items()}, step, wall_time)

    def add_tagged(self, values: dict[str, float], step: int,
                   wall_time: float | None = None) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        if not values:
            return
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(v))
                                 for tag, v in values.items()])
        self._writer.add_event(Event(summary=summary, step=int(step),
                                     wall_time=time.time() if wall_time is None else wall_time))
        self._writer.flush()  # live: TensorBoard shows the point as soon as it is written

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> ScalarWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def existing_events(folder: Path) -> bool:
    """Whether ``folder`` already holds event files (another export, or the live curves)."""
    return folder.is_dir() and any(folder.glob(EVENT_GLOB))


def write_stored_run(root: Path, run: Any, children: Iterable[Any]) -> tuple[Path, int]:
    """A stored run (a ``RunRecord`` with its metric rows) and its evaluations' scores (its
    children's records) as the live writer writes them; the run's folder and the points written.
    """
    by_step: dict[int, dict[str, float]] = {}
    times: dict[int, float] = {}
    for row in run.metrics:
        step = row.step if row.step is not None else row.epoch or 0
        by_step.setdefault(step, {})[row.key] = row.value
        times.setdefault(step, row.time.timestamp())
    folder = run_folder(root, run.id, run.method, run.dataset)
    scores = evaluation_scalars(children)
    with ScalarWriter(folder) as writer:
        for step in sorted(by_step):
            writer.add(by_step[step], step, times[step])
        end = run.ended_at.timestamp() if run.ended_at is not None else None
        writer.add_tagged(scores, max(by_step, default=0), end)
    return folder, sum(map(len, by_step.values())) + len(scores)


def evaluation_scalars(children: Iterable[Any]) -> dict[str, float]:
    """``eval/<key>`` for the test top-1 and top-5 in the summaries of a run's COMPLETED
    evaluations (store records); a semi-supervised one's key names its labels
    (``eval/semi_finetune_top1@1%``), the newest evaluation of a kind wins."""
    out = {}
    for child in children:
        if child.status != "COMPLETED":
            continue
        labels = child.config.get("labels")
        for key, value in child.summary.items():
            if key.endswith(("top1", "top5")) and isinstance(value, int | float) \
                    and math.isfinite(value):
                out[f"eval/{key}" + (f"@{labels}" if labels else "")] = float(value)
    return out
