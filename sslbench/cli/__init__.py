"""The `sslbench` command line. Thin: parse, validate, delegate, print.

Torch is never imported here at module level, so `sslbench --help` starts fast; each command
imports what it needs inside its body.
"""

from __future__ import annotations

import sys

import typer
from typer._click import exceptions as click_exc  # typer>=0.29 vendors click

from sslbench.errors import RunFailure, RunKilled, UserError
from sslbench.escape import printable, redact
from sslbench.process import signals_end_the_command

app = typer.Typer(
    name="sslbench",
    help="Pretrain, evaluate, sweep and compare self-supervised representation learners.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # help texts say "[default ...]": shown as written, not as markup
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Each module adds its commands to `app`; imported here so the order of --help is stable.
    from sslbench.cli import (  # noqa: F401
        bench,
        data,
        datasets,
        db,
        disk,
        evaluate,
        export,
        methods,
        pretrain,
        recipes,
        report,
        reproduce,
        runs,
        sweep,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (0 ok, 1 runtime, 2 bad input)."""
    try:
        with signals_end_the_command():
            _register()
            command = typer.main.get_command(app)
            result = command.main(args=argv, prog_name="sslbench", standalone_mode=False)
    except click_exc.NoArgsIsHelpError:
        return 0  # click has already printed the help text
    except click_exc.UsageError as exc:
        _say("error", exc.format_message())
        return 2
    except UserError as exc:
        _say("error", str(exc))
        return exc.exit_code
    except RunFailure as exc:
        _say("failed", str(exc))
        return exc.exit_code
    except RunKilled as exc:
        _say("killed", str(exc))
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    return result if isinstance(result, int) else 0


def _say(what: str, message: str) -> None:
    """The one line of an error: secrets masked, control characters (a newline, an escape
    sequence from a hostile value) shown as escapes."""
    typer.echo(f"{what}: {printable(redact(message))}", err=True)


if __name__ == "__main__":
    sys.exit(main())
