"""The store side of a reproduction: its run row, its points, its figure, its summary."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sslbench.errors import UserError
from sslbench.reproduce import Echo, ReproSettings
from sslbench.run.lifecycle import recording
from sslbench.store import Store, config_hash


@contextlib.contextmanager
def reproduction_run(name: str, settings: ReproSettings, config: dict[str, Any],
                     dataset: str, echo: Echo, *, resumable: bool = False
                     ) -> Iterator[tuple[Store, int]]:
    """A ``reproduce`` run that ends COMPLETED, or FAILED with the reason.

    ``resumable``: the newest ``reproduce`` run of the same name and config is taken up again
    (its cells, children of it, skip what they finished) instead of starting a new one.
    """
    full = {"reproduction": name, **config}
    with Store.open(settings.db, create=True) as store:
        earlier = [r for r in store.list_runs(kind="reproduce", method=name)
                   if resumable and r.config_hash == config_hash(full)]
        if earlier and earlier[0].status == "RUNNING":
            raise UserError(f"run {earlier[0].id} (reproduce {name}, the same settings) is "
                            f"running in another process (pid {earlier[0].pid} on "
                            f"{earlier[0].host}); wait for it, or change the settings")
        if earlier:
            run_id = earlier[0].id
            store.resume_run(run_id, epochs_done=0,
                             from_statuses=("KILLED", "FAILED", "COMPLETED"))
            echo(f"run {run_id}: reproduce {name}, taken up again ({earlier[0].status} before)")
        else:
            run_id = store.create_run(kind="reproduce", method=name, dataset=dataset,
                                      config=full, seed=settings.seed)
            echo(f"run {run_id}: reproduce {name}")
        with recording(store, run_id):
            yield store, run_id


def add_figure(store: Store, run_id: int, path: Path, echo: Echo) -> None:
    """Record the figure (once: a reproduction taken up again redraws the same file)."""
    known = {(a.name, a.path) for a in store.get_run(run_id).artifacts}
    if ("figure", str(path.absolute())) not in known:
        store.add_artifact(run_id, "figure", path)
    echo(f"run {run_id}: figure {path}")
