"""The run store: every run, its provenance, metrics and artifacts, in SQLite or PostgreSQL.

Never imports torch. Typical use::

    store = Store.open(db, create=True)
    run_id = store.create_run(kind="pretrain", method="byol", dataset="fashion-mnist",
                              config=config, seed=0)
    store.log_metrics(run_id, {"loss": 0.42}, epoch=1)
    store.finish_run(run_id, "COMPLETED")
"""

from sslbench.store.api import (
    STALE_HEARTBEAT_S,
    ArtifactRow,
    MetricRow,
    RunRecord,
    Store,
    config_hash,
)
from sslbench.store.db import DB_ENV_VAR, DEFAULT_DB, resolve_db_url
from sslbench.store.models import FINAL_STATUSES, RUN_KINDS, RUN_STATUSES

__all__ = [
    "DB_ENV_VAR",
    "DEFAULT_DB",
    "FINAL_STATUSES",
    "RUN_KINDS",
    "RUN_STATUSES",
    "STALE_HEARTBEAT_S",
    "ArtifactRow",
    "MetricRow",
    "RunRecord",
    "Store",
    "config_hash",
    "resolve_db_url",
]
