"""Which checkpoints a pretraining run keeps: ``train.keep_checkpoints``.

The loop writes ``checkpoint.pt`` after every epoch (what `sslbench resume` needs) and hands it to
a :class:`CheckpointKeeper`, which keeps more or fewer of them:

- ``last`` (default): ``checkpoint.pt``, the last epoch's.
- ``all``: also ``epoch-NNNN.pt`` for every epoch, hard links to each epoch's checkpoint (no copy:
  the next epoch's atomic write replaces the name ``checkpoint.pt``, not the linked file).
- ``best``: the epoch with the lowest pretraining loss: linked as ``best.pt`` while training, it
  becomes ``checkpoint.pt`` at the end, and the evaluations evaluate it. The loss is the one
  per-epoch number that reads no test data (the online kNN monitor reads the test split, and
  nothing that chooses may); for a self-supervised loss it is a weak criterion, and a validation
  score would be a better one.
- ``none-after-eval``: ``checkpoint.pt`` until the evaluation protocols have run, then nothing
  (the run keeps its rows and numbers; it can no longer be resumed, re-evaluated or exported).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

BEST_NAME = "best.pt"


def epoch_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}.pt"


class CheckpointKeeper:
    """Called by the loop after each epoch's checkpoint (``keeper(epoch, path, loss)``).

    ``losses``: the (epoch, loss) of epochs already done, when a run is resumed (their
    ``best.pt`` / ``epoch-*.pt`` files are on disk already).
    """

    def __init__(self, policy: str, losses: Iterable[tuple[int, float]] = ()) -> None:
        self.policy = policy
        self.best_loss, self.best_epoch = math.inf, None
        self.epochs: list[int] = []
        for epoch, loss in losses:
            self._saw(epoch, loss)

    def _saw(self, epoch: int, loss: float) -> bool:
        """Note an epoch; whether its loss is the best so far."""
        self.epochs.append(epoch)
        if loss < self.best_loss:  # a NaN loss is never the best
            self.best_loss, self.best_epoch = loss, epoch
            return True
        return False

    def __call__(self, epoch: int, checkpoint: Path, loss: float) -> None:
        best = self._saw(epoch, loss)
        if self.policy == "all":
            _link(checkpoint, checkpoint.with_name(epoch_name(epoch)))
        elif self.policy == "best" and best:
            _link(checkpoint, checkpoint.with_name(BEST_NAME))

    def finish(self, checkpoint: Path) -> dict[str, Path]:
        """Once training is done: the files to record as the run's artifacts, by name
        (``checkpoint`` is the one evaluations and exports use). With ``best``, the best epoch's
        checkpoint is moved to ``checkpoint``'s place."""
        if self.policy == "all":
            return {"checkpoint": checkpoint,
                    **{f"checkpoint-epoch-{e}": checkpoint.with_name(epoch_name(e))
                       for e in sorted(set(self.epochs))}}
        best = checkpoint.with_name(BEST_NAME)
        if self.policy == "best" and best.exists():
            if best.samefile(checkpoint):  # the last epoch was the best
                best.unlink()
            else:
                os.replace(best, checkpoint)
        return {"checkpoint": checkpoint}


def _link(source: Path, target: Path) -> None:
    """``target`` becomes another name of ``source``'s file (a copy where links are not
    supported), replacing what was there."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)
