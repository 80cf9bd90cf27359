"""Command-line shell. Every command is a thin wrapper over library functions.

Errors the user can fix are AutofunscriptError: printed as one line, exit 2. Ctrl+C exits 130.
"""

from __future__ import annotations

import logging
import sys
import click

from autofunscript import __version__
from autofunscript.errors import AutofunscriptError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _OneLineHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


def _setup_logging(verbose: bool) -> None:
    logger = logging.getLogger("autofunscript")
    logger.handlers[:] = [_OneLineHandler()]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autofunscript")
@click.option("-v", "--verbose", is_flag=True, help="Print debug messages.")
def cli(verbose: bool) -> None:
    """Watch a video, write a funscript."""
    _setup_logging(verbose)


def parse_pair(text: str, what: str, cast=float) -> tuple:
    try:
        a, b = (cast(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{what} must be two numbers like 10,90, got {text!r}") from None
    return a, b


# ----------------------------------------------------------------------------------------------
# commands (each adds itself below this line)
# ----------------------------------------------------------------------------------------------


def main() -> None:
    """Console entry point: run the group, turning expected failures into one-line errors."""
    try:
        result = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AutofunscriptError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except MemoryError:
        click.echo("error: out of memory", err=True)
        sys.exit(EXIT_USER_ERROR)
    # commands return an int exit code when "done, but not everything succeeded" (batch, check)
    sys.exit(result if isinstance(result, int) else 0)
