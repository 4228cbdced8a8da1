"""Fill a run database with fabricated runs, for the report's benchmark and tests.

The runs look like real ones (pretrain runs with linear, kNN and semi-supervised children, per-epoch
loss curves) but their numbers are drawn from a seeded generator; ``dataset="fabricated"`` and the
host ``fabricated`` make them impossible to mistake for measurements.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from sslbench.store import Store
from sslbench.store.api import canonical_json, config_hash
from sslbench.store.models import Metric, Run

METHODS = ("simclr", "byol", "moco", "simsiam", "barlow", "vicreg", "swav")


def _row(run_id: int, kind: str, method: str, seed: int, config: dict[str, Any],
         summary: dict[str, Any], start: datetime, parent: int | None) -> dict[str, Any]:
    return {
        "id": run_id, "kind": kind, "parent_id": parent, "sweep_id": None, "trial_number": None,
        "method": method, "dataset": "fabricated", "backbone": "convnet", "status": "COMPLETED",
        "config_json": canonical_json(config), "config_hash": config_hash(config), "seed": seed,
        "git_commit": None, "git_dirty": None, "host": "fabricated", "device": "cpu",
        "world_size": 1, "versions_json": "{}", "created_at": start, "started_at": start,
        "ended_at": start + timedelta(seconds=60 + seed), "heartbeat_at": start,
        "failure_reason": None, "summary_json": json.dumps(summary),
    }


def fabricate(store: Store, n_pretrain: int, *, seed: int = 0, epochs: int = 5) -> int:
    """Insert ``n_pretrain`` pretrain runs, each with linear, kNN and semi:10 children and
    ``epochs`` loss values; returns the number of rows added to the runs table."""
    rng = random.Random(seed)
    with store.bulk_session() as session:
        next_id = (session.scalar(select(func.max(Run.id))) or 0) + 1
    base = datetime(2026, 1, 1, tzinfo=UTC)
    runs: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    for i in range(n_pretrain):
        method = METHODS[i % len(METHODS)]
        run_seed = i // len(METHODS) % 5
        skill = 0.80 + 0.01 * METHODS.index(method)
        start = base + timedelta(minutes=i)
        config = {"method": {"name": method, "ema_decay": rng.choice([0.99, 0.996])},
                  "train": {"epochs": epochs, "batch_size": rng.choice([256, 512])}}
        pid = next_id
        runs.append(_row(pid, "pretrain", method, run_seed, config,
                         {"loss": rng.uniform(0.1, 3.0), "img_per_s": rng.uniform(500, 1500)},
                         start, None))
        for kind, cfg, drop in (("linear", {"protocol": "linear"}, 0.0),
                                ("knn", {"protocol": "knn"}, 0.02),
                                ("semisup", {"labels_pct": 10}, 0.05)):
            next_id += 1
            score = min(0.99, skill - drop + rng.gauss(0, 0.01))
            runs.append(_row(next_id, kind, method, run_seed, cfg, {f"{kind}_top1": score},
                             start, pid))
        for epoch in range(1, epochs + 1):
            metrics.append({"run_id": pid, "key": "loss", "step": epoch * 100, "epoch": epoch,
                            "value": 3.0 / epoch, "time": start})
        next_id += 1
    with store.bulk_session() as session, session.begin():
        for chunk in range(0, len(runs), 5000):
            session.execute(insert(Run), runs[chunk:chunk + 5000])
        for chunk in range(0, len(metrics), 5000):
            session.execute(insert(Metric), metrics[chunk:chunk + 5000])
    return len(runs)
