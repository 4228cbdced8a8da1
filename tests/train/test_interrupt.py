"""SIGINT/SIGTERM handling: the first signal waits for a step boundary, a second one does not."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from sslbench.errors import RunKilled
from sslbench.train.interrupt import StopSignals


@pytest.fixture
def sigint_interrupts() -> Iterator[None]:
    """SIGINT as in an interactive shell (a background job, like a CI runner's, ignores it)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("sigint_interrupts")
def test_first_signal_is_deferred_a_second_stops_at_once() -> None:
    with StopSignals() as stop, stop.deferring():
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == signal.SIGINT  # noted; the loop stops at its next step
        with pytest.raises(RunKilled, match="second signal SIGINT") as raised:
            os.kill(os.getpid(), signal.SIGINT)
    assert raised.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_an_ignored_signal_stays_ignored() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignals() as stop, stop.deferring():
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.received is None
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_signal_outside_the_training_loop_stops_at_once() -> None:
    with StopSignals(), pytest.raises(RunKilled) as raised:
        os.kill(os.getpid(), signal.SIGTERM)
    assert raised.value.exit_code == 128 + signal.SIGTERM
    assert not isinstance(raised.value, Exception)  # no `except Exception` swallows it
