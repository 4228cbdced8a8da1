"""Error types that map to exit codes: bad input is 2, a runtime failure is 1."""


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2, nothing written."""

    exit_code = 2


class ConfigError(UserError):
    """A config key, value or file that does not validate."""


class RunFailure(Exception):
    """A run that started and then failed (non-finite loss, out of memory...): exit code 1."""

    exit_code = 1


class StoreUnavailable(RunFailure):
    """The database cannot be used now (locked by another writer for longer than the busy
    timeout, read-only, unreachable): exit code 1, the run row untouched."""


class ClaimLost(RunFailure):
    """This process no longer holds the run it was writing (another process reaped or resumed
    it): it stops without writing anything more to that run."""


class RunPruned(Exception):
    """A sweep trial stopped early by the pruner: its run ends PRUNED (not a failure)."""


class RunKilled(BaseException):
    """A run stopped by SIGINT or SIGTERM: its run ends KILLED, exit code 128 + the signal number.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` on the way
    out swallows it (and not a ``KeyboardInterrupt``, which Typer turns into a bare exit code).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
