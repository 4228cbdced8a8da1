"""SIGINT/SIGTERM handling: the first signal waits for a step boundary, a second one does not."""

from __future__ import annotations

import os
import signal

import pytest

from sslbench.errors import RunKilled
from sslbench.train.interrupt import StopSignals


def test_first_signal_is_deferred_a_second_stops_at_once() -> None:
    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as stop, stop.deferring():
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == signal.SIGINT  # noted; the loop stops at its next step
        with pytest.raises(RunKilled, match="second signal SIGINT") as raised:
            os.kill(os.getpid(), signal.SIGINT)
    assert raised.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) == before  # handlers restored


def test_a_signal_outside_the_training_loop_stops_at_once() -> None:
    with StopSignals(), pytest.raises(RunKilled) as raised:
        os.kill(os.getpid(), signal.SIGTERM)
    assert raised.value.exit_code == 128 + signal.SIGTERM
    assert not isinstance(raised.value, Exception)  # no `except Exception` swallows it
