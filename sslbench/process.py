"""Process trees that stop together: a parent (a sweep, a distributed launcher) forwards SIGINT
and SIGTERM to its workers, waits for them, and exits with 128 + the signal; a worker leaves the
terminal's process group (so a Ctrl-C reaches it once, through its parent, not twice) and dies
with its parent if the parent is killed outright (kill -9). Linux; elsewhere the worker side is a
no-op. No heavy imports."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from sslbench.errors import RunKilled

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_PR_SET_PDEATHSIG = 1


def become_worker(parent_pid: int, on_parent_death: signal.Signals = signal.SIGTERM) -> None:
    """Called first in a worker process: its own process group, and ``on_parent_death`` when
    ``parent_pid`` dies (at once if it already has)."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(on_parent_death), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request above
        os.kill(os.getpid(), on_parent_death)


@contextlib.contextmanager
def forwarding_signals(children: Callable[[], list[int]]) -> Iterator[list[signal.Signals]]:
    """While the block runs (main thread only), each SIGINT / SIGTERM is sent on to the
    ``children()`` pids instead of stopping this process; the list yielded holds the signals
    received, so the parent can wait for its workers and then exit with the first one."""
    received: list[signal.Signals] = []
    previous: dict[int, object] = {}

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum))
        for pid in children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, forward)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


@contextlib.contextmanager
def signals_end_the_command() -> Iterator[None]:
    """While a command runs (main thread only), SIGINT / SIGTERM raise :class:`RunKilled`
    wherever it is (loading data, building a model, reading the database), so that the command
    ends with one line and 130 / 143 rather than a traceback or a bare signal death. A run, a
    launcher or a sweep installs its own handling inside and puts this back when done."""
    previous: dict[int, object] = {}

    def stop(signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        raise RunKilled(f"stopped by {sig.name}", signum)

    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
