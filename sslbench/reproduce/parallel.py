"""The cells of a reproduction's grid in worker processes, ``--jobs N`` at a time.

Tschannen et al.'s grids are many independent runs of one core each (most of a run is the
single-threaded SAGA probe), so a machine with N cores finishes the grid about N times sooner
running N cells at once. Each worker is a fresh process (``spawn``: no forked torch threads) that
loads the same data (the same seed chooses the same images), opens the store itself and runs
:func:`run_cell`, which records, checkpoints and resumes exactly as in one process; what a cell
stores does not depend on ``--jobs`` (tested).

Stopping: the workers ignore SIGINT; a Ctrl-C or SIGTERM to the command reaches this process,
which sends SIGTERM once to every worker: each saves its checkpoint at the next step and ends its
run KILLED, and the command exits as killed. The same command again continues every cell.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from typing import Any

from sslbench.errors import RunFailure, RunKilled
from sslbench.reproduce import Echo, ReproSettings
from sslbench.reproduce.protocol import Cell, Evaluate, Halves, Schedule, load_halves, run_cell
from sslbench.store import RunRecord, Store
from sslbench.train.interrupt import StopSignals

# What a cell measures beyond the probe and the bound, built from the data in each process (a
# closure over tensors cannot be sent to a worker; a module-level function, or a partial of one,
# can).
ExtraFactory = Callable[[Halves], Evaluate]


def run_cells(store: Store, parent_id: int, reproduction: str, cells: list[tuple[str, Cell]],
              data: Halves, schedule: Schedule, s: ReproSettings, echo: Echo,
              extra: ExtraFactory | None = None,
              cost: Callable[[Cell], float] | None = None) -> dict[str, list[RunRecord]]:
    """Every ``(group, cell)`` run (or skipped, or continued) as a child of ``parent_id``; the
    stored runs by group, in the order of ``cells``. With ``s.jobs`` > 1 the cells run in that
    many worker processes, the costliest first (``cost``: a cell's relative duration), so that
    the long ones do not end up last on one core."""
    if s.jobs <= 1 or len(cells) <= 1:
        evaluate = extra(data) if extra is not None else None
        return _by_group(cells, [run_cell(store, parent_id, reproduction, cell, data, schedule,
                                          s, echo, evaluate) for _, cell in cells])
    order = sorted(range(len(cells)), key=lambda i: -cost(cells[i][1]) if cost else 0)
    workers = min(s.jobs, len(cells))
    threads = max(1, (os.cpu_count() or 1) // workers)
    echo(f"  {len(cells)} runs, {workers} at a time ({threads} thread{'s' * (threads > 1)} each)")
    ids: dict[int, int] = {}
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(threads,))
    try:
        with StopSignals():  # a signal here raises RunKilled at once
            futures: dict[Future[tuple[str, Any]], int] = {
                pool.submit(_cell_in_worker, s, parent_id, reproduction, cells[i][1], schedule,
                            extra): i for i in order}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    kind, value = future.result()
                    if kind != "run":
                        raise _reraised(kind, value)
                    ids[futures[future]] = value
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return _by_group(cells, [store.get_run(ids[i]) for i in range(len(cells))])


def _by_group(cells: list[tuple[str, Cell]], runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = {}
    for (group, _), run in zip(cells, runs, strict=True):
        out.setdefault(group, []).append(run)
    return out


def _start_worker(threads: int) -> None:
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command forwards one SIGTERM instead
    torch.set_num_threads(threads)


def _cell_in_worker(s: ReproSettings, parent_id: int, reproduction: str, cell: Cell,
                    schedule: Schedule, extra: ExtraFactory | None) -> tuple[str, Any]:
    """One cell in a worker: ``("run", id)``, or what stopped it (an exception raised here might
    not survive the way back, so it is sent as ``(kind, (message, code))``)."""
    from sslbench.train.device import resolve_device

    echo = functools.partial(print, flush=True)
    try:
        data = load_halves(s, resolve_device(s.gpus))
        with Store.open(s.db) as store:
            run = run_cell(store, parent_id, reproduction, cell, data, schedule, s, echo,
                           extra(data) if extra is not None else None)
        return "run", run.id
    except RunKilled as exc:
        return "killed", (str(exc), exc.exit_code - 128)
    except BaseException as exc:
        return "failed", (f"{cell.label}: {type(exc).__name__}: {exc}", 1)


def _reraised(kind: str, value: tuple[str, int]) -> BaseException:
    message, code = value
    return RunKilled(message, code) if kind == "killed" else RunFailure(message)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM to every live worker: each checkpoints at its next step and ends its run KILLED."""
    for process in list((pool._processes or {}).values()):
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
