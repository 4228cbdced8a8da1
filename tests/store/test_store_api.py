"""The Store API: what is written comes back, filters select, failures are recorded."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sslbench.errors import UserError
from sslbench.store import Store, config_hash

PROVENANCE = {
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "git_dirty": True,
    "host": "testhost",
    "versions": {"python": "3.11.7", "torch": "2.14.1"},
}
CONFIG = {"method": {"name": "byol", "ema_decay": 0.99}, "train": {"epochs": 3, "lr": 0.3}}


def _pretrain(store: Store, **overrides: object) -> int:
    fields: dict = {
        "kind": "pretrain",
        "method": "byol",
        "dataset": "fashion-mnist",
        "config": CONFIG,
        "seed": 0,
        "provenance": PROVENANCE,
    } | overrides
    return store.create_run(**fields)


def test_round_trip(store: Store, tmp_path: Path) -> None:
    run_id = _pretrain(store, backbone="convnet", device="cpu", world_size=2)
    for epoch in range(3):
        store.log_metrics(
            run_id,
            {"loss": 1.0 / (epoch + 1), "knn_top1": 0.5 + epoch / 10},
            step=10 * (epoch + 1),
            epoch=epoch,
        )
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"weights" * 100_000)
    store.add_artifact(run_id, "checkpoint", checkpoint)
    store.update_summary(run_id, loss=0.33)
    store.update_summary(run_id, linear_top1=0.87)
    store.finish_run(run_id, "COMPLETED")

    run = store.get_run(run_id)
    assert (run.kind, run.method, run.dataset, run.backbone) == (
        "pretrain",
        "byol",
        "fashion-mnist",
        "convnet",
    )
    assert run.status == "COMPLETED" and run.failure_reason is None
    assert run.config == CONFIG and run.config_hash == config_hash(CONFIG)
    assert (run.seed, run.device, run.world_size) == (0, "cpu", 2)
    assert run.git_commit == PROVENANCE["git_commit"] and run.git_dirty is True
    assert run.host == "testhost" and run.versions == PROVENANCE["versions"]
    assert run.summary == {"loss": 0.33, "linear_top1": 0.87}
    assert [(m.key, m.step, m.epoch) for m in run.metrics] == [
        ("loss", 10, 0),
        ("knn_top1", 10, 0),
        ("loss", 20, 1),
        ("knn_top1", 20, 1),
        ("loss", 30, 2),
        ("knn_top1", 30, 2),
    ]
    assert run.metrics[-1].value == pytest.approx(0.7)
    [artifact] = run.artifacts
    assert artifact.name == "checkpoint" and artifact.path == str(checkpoint.absolute())
    assert artifact.sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert artifact.size_bytes == checkpoint.stat().st_size
    for moment in (run.created_at, run.started_at, run.ended_at, run.heartbeat_at):
        assert moment is not None and moment.tzinfo is not None
        assert abs(datetime.now(UTC) - moment) < timedelta(minutes=1)
    assert run.ended_at >= run.started_at and 0 <= run.duration_s < 60
    assert json.loads(json.dumps(run.to_dict()))["summary"]["linear_top1"] == 0.87


def test_config_hash_ignores_key_order() -> None:
    assert config_hash({"a": 1, "b": {"c": 2, "d": 3}}) == config_hash(
        {"b": {"d": 3, "c": 2}, "a": 1}
    )
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert len(config_hash({})) == 16


def test_failed_run_keeps_its_reason(store: Store) -> None:
    run_id = _pretrain(store)
    store.log_metrics(run_id, {"loss": math.nan}, step=1)
    store.finish_run(run_id, "FAILED", failure_reason="non-finite loss at step 1")
    run = store.get_run(run_id)
    assert run.status == "FAILED" and run.failure_reason == "non-finite loss at step 1"
    assert math.isnan(run.metrics[0].value)  # SQLite has no NaN: stored as NULL, read back as NaN
    assert run.to_dict()["metrics"][0]["value"] is None  # valid JSON


def test_queued_run_starts_later(store: Store) -> None:
    run_id = _pretrain(store, kind="trial", status="QUEUED", sweep_id="byol-1", trial_number=4)
    queued = store.get_run(run_id)
    assert queued.started_at is None and queued.duration_s is None
    store.start_run(run_id)
    running = store.get_run(run_id)
    assert running.status == "RUNNING" and running.started_at is not None
    assert (running.sweep_id, running.trial_number) == ("byol-1", 4)


def test_list_filters_and_children(store: Store) -> None:
    parent = _pretrain(store)
    other = _pretrain(store, method="simclr", dataset="mnist")
    linear = _pretrain(store, kind="linear", parent_id=parent)
    knn = _pretrain(store, kind="knn", parent_id=parent)
    store.update_summary(linear, linear_top1=0.8)
    store.finish_run(linear, "COMPLETED")

    assert [r.id for r in store.list_runs()] == [knn, linear, other, parent]  # newest first
    assert [r.id for r in store.list_runs(kind="pretrain")] == [other, parent]
    assert [r.id for r in store.list_runs(method="simclr")] == [other]
    assert [r.id for r in store.list_runs(dataset="fashion-mnist", kind="knn")] == [knn]
    assert [r.id for r in store.list_runs(status="COMPLETED")] == [linear]
    assert [r.id for r in store.list_runs(limit=2)] == [knn, linear]
    assert store.list_runs(status="COMPLETED")[0].summary == {"linear_top1": 0.8}
    assert [r.id for r in store.children(parent)] == [linear, knn]
    assert store.children(other) == []


def test_heartbeat_and_staleness(store: Store) -> None:
    run_id = _pretrain(store)
    store.heartbeat(run_id)
    assert not store.get_run(run_id).is_stale


def test_missing_run_is_a_user_error(store: Store) -> None:
    with pytest.raises(UserError, match="no run with id 42 in DB"):
        store.get_run(42)


def test_bad_kind_or_status_is_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="kind"):
        _pretrain(store, kind="finetune")
    run_id = _pretrain(store)
    with pytest.raises(ValueError, match="final status"):
        store.finish_run(run_id, "RUNNING")


def test_provenance_is_collected_when_not_given(store: Store) -> None:
    run_id = store.create_run(kind="bench", method="simclr", dataset="synthetic", config={}, seed=1)
    run = store.get_run(run_id)
    assert run.host and run.versions["python"]
