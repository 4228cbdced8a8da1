"""The store side of a reproduction: its run row, its points, its figure, its summary."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sslbench.reproduce import Echo, ReproSettings
from sslbench.run.lifecycle import recording
from sslbench.store import Store


@contextlib.contextmanager
def reproduction_run(name: str, settings: ReproSettings, config: dict[str, Any],
                     dataset: str, echo: Echo) -> Iterator[tuple[Store, int]]:
    """A ``reproduce`` run that ends COMPLETED, or FAILED with the reason."""
    with Store.open(settings.db, create=True) as store:
        run_id = store.create_run(kind="reproduce", method=name, dataset=dataset,
                                  config={"reproduction": name, **config}, seed=settings.seed)
        echo(f"run {run_id}: reproduce {name}")
        with recording(store, run_id):
            yield store, run_id


def add_figure(store: Store, run_id: int, path: Path, echo: Echo) -> None:
    store.add_artifact(run_id, "figure", path)
    echo(f"run {run_id}: figure {path}")
