"""Progress display: a rich bar (loss, img/s, ETA) on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType


class TrainProgress:
    """Shows training progress; ``update`` is called every ``log_every`` steps, not every step.
    The total may be unknown at first (a wall-clock budget): ``set_total`` gives it later."""

    def __init__(self, total_steps: int | None, steps_per_epoch: int, *,
                 enabled: bool = True) -> None:
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.enabled = enabled
        self.interactive = enabled and sys.stderr.isatty()
        self._bar = None
        self._task = None
        self._start = time.perf_counter()

    def __enter__(self) -> TrainProgress:
        self._start = time.perf_counter()
        if self.interactive:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"),
                TextColumn("{task.fields[ips]:.0f} img/s"),
                TimeRemainingColumn(), transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(
                "train", total=self.total_steps, epoch=1, loss=float("nan"), ips=0.0
            )
        return self

    def set_total(self, total_steps: int) -> None:
        self.total_steps = total_steps
        if self._bar is not None:
            self._bar.update(self._task, total=total_steps)

    def update(self, step: int, epoch: int, loss: float, images_per_s: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, epoch=epoch, loss=loss, ips=images_per_s)

    def epoch_end(self, epoch: int, epochs: int | None, metrics: dict[str, float],
                  step: int) -> None:
        if not self.enabled or self.interactive:
            return
        elapsed = time.perf_counter() - self._start
        eta = ("?" if self.total_steps is None else
               f"{elapsed / max(step, 1) * (self.total_steps - step):.0f}s")
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        print(f"epoch {epoch}/{'?' if epochs is None else epochs}  {shown}  "
              f"elapsed {elapsed:.0f}s  eta {eta}", file=sys.stderr, flush=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
