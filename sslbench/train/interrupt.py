"""SIGINT and SIGTERM during a run: stop cleanly at the next step, or at once on a second signal.

While the training loop is running (``deferring()``), the first signal only records its name; the
loop sees it after the current step, saves a checkpoint and raises :class:`RunKilled`. Anywhere
else, and for any second signal, the handler raises :class:`RunKilled` at once, so the run is still
marked KILLED on the way out (a second Ctrl-C never waits for a checkpoint to be written).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from sslbench.errors import RunKilled

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Installs the handlers for its ``with`` block (main thread only; elsewhere a no-op). A
    signal the process ignores (SIGINT of a background job) stays ignored."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._deferred = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup, `&` in a script
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        """Signals inside this block wait for the loop to reach a step boundary."""
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self._deferred and self.received is None:
            self.received = sig
            return
        what = "second signal" if self.received is not None else "signal"
        # what is kept (the last checkpoint, or none yet) the run's record says (lifecycle)
        raise RunKilled(f"stopped at once by {what} {sig.name}",
                        signum)
