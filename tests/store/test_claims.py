"""Claims: every change of a run's state and every write is conditional on the process holding
it, so two processes never both own a run (issue 17)."""

from __future__ import annotations

import pytest

from sslbench.errors import ClaimLost, UserError
from sslbench.store import Store


def _killed_run(store: Store) -> int:
    run_id = store.create_run(kind="pretrain", method="simclr", dataset="mnist", config={},
                              seed=0, provenance={"host": "h"})
    store.log_metrics(run_id, {"loss": 2.0}, epoch=1)
    store.log_metrics(run_id, {"loss": 1.0}, epoch=2)
    assert store.finish_run(run_id, "KILLED", failure_reason="SIGTERM")
    return run_id


def test_of_two_processes_resuming_a_run_the_second_is_refused(store: Store) -> None:
    run_id = _killed_run(store)
    with Store.open(store.url, create=False) as first, \
            Store.open(store.url, create=False) as second:
        first.resume_run(run_id, epochs_done=1)
        with pytest.raises(UserError, match=f"run {run_id} is RUNNING .held by process"):
            second.resume_run(run_id, epochs_done=1)
        run = first.get_run(run_id)
        assert (run.status, run.resumes) == ("RUNNING", 1)
        assert [m.epoch for m in run.metrics] == [1]  # epoch 2 is logged again, once


def test_a_process_that_lost_its_run_writes_nothing_more(store: Store) -> None:
    run_id = _killed_run(store)
    with Store.open(store.url, create=False) as old, Store.open(store.url, create=False) as new:
        old.resume_run(run_id, epochs_done=2)
        # the old holder is taken for dead (stale) and reaped, then another process resumes it
        assert new.reap_run(run_id, "KILLED", "lost", from_statuses=("RUNNING",),
                            claim=new.claim_of(run_id))
        new.resume_run(run_id, epochs_done=2)
        with pytest.raises(ClaimLost, match="no longer held by this process"):
            old.log_metrics(run_id, {"loss": 0.5}, epoch=3)
        with pytest.raises(ClaimLost):
            old.record_artifact(run_id, "checkpoint", "/x", "0" * 64, 1, replace=True)
        assert not old.finish_run(run_id, "COMPLETED")
        new.log_metrics(run_id, {"loss": 0.5}, epoch=3)
        assert new.finish_run(run_id, "COMPLETED")
        run = new.get_run(run_id)
    assert run.status == "COMPLETED" and [m.epoch for m in run.metrics] == [1, 2, 3]
    assert run.artifacts == []


def test_reaping_is_conditional_on_the_claim_that_was_seen(store: Store) -> None:
    run_id = _killed_run(store)
    seen = store.claim_of(run_id)
    with Store.open(store.url, create=False) as other:
        other.resume_run(run_id, epochs_done=2)  # resumed between the look and the mark
    assert not store.reap_run(run_id, "KILLED", "lost", from_statuses=("RUNNING",), claim=seen)
    assert store.get_run(run_id).status == "RUNNING"
