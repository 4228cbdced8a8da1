"""optuna-dashboard opens a sweep's study as docs/sweeps.md says: `optuna-dashboard
./sslbench.optuna.log`, the journal file sslbench writes beside the results database."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import optuna
import pytest

from sslbench.store import resolve_db_url
from sslbench.sweep.study import open_storage


def _get(app: Callable[..., Iterable[bytes]], path: str) -> tuple[str, bytes]:
    """One GET request through the WSGI application, no server."""
    status: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
               "SERVER_NAME": "test", "SERVER_PORT": "80", "wsgi.input": io.BytesIO(),
               "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO()}
    body = b"".join(app(environ, lambda s, headers, *exc: status.append(s)))
    return status[0], body


def test_optuna_dashboard_reads_the_sweep_journal(tmp_path: Path) -> None:
    dashboard = pytest.importorskip("optuna_dashboard")
    storage, _ = open_storage(None, resolve_db_url(str(tmp_path / "sslbench.sqlite")))
    study = optuna.create_study(study_name="byol-fashion-mnist", storage=storage,
                                direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("lr", 1e-4, 1e-2, log=True), n_trials=3)
    journal = tmp_path / "sslbench.optuna.log"
    assert journal.is_file()
    status, body = _get(dashboard.wsgi(str(journal)), "/api/studies")
    assert status.startswith("200")
    (summary,) = json.loads(body)["study_summaries"]
    assert summary["study_name"] == "byol-fashion-mnist"
