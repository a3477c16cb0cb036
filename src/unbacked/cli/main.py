"""The ``unbacked`` command: a click group whose subcommands live one per module in this package.

Exit codes (DESIGN.md §7): 0 ran, no alert at/above --fail-on; 3 alerts at/above it; 2 usage
error; 1 runtime error.
"""

from __future__ import annotations

import importlib
import sys

import click

from unbacked import __version__
from unbacked.errors import UnbackedError

#: subcommand modules, each exposing a click command named ``command``
SUBCOMMANDS = ("hunt", "train", "detect", "sensor", "record", "scan", "report", "eval", "export")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unbacked")
def cli() -> None:
    """Catch reflective code loading: executable memory that no file backs."""


def _register() -> None:
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"unbacked.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"unbacked.cli.{name}":
                continue  # not built yet
            raise
        cli.add_command(mod.command, name)


_register()


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="unbacked", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        return 2
    except click.Abort:
        click.echo("aborted", err=True)
        return 1
    except SystemExit as exc:  # commands signal their exit code this way
        return int(exc.code or 0)
    except UnbackedError as exc:
        render_error(exc, verbose=_verbosity(argv))
        return 1
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


def _verbosity(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return sum(a.count("v") for a in args if a.startswith("-v") and set(a[1:]) == {"v"})


def render_error(exc: UnbackedError, *, verbose: int = 0) -> None:
    """Print an error as "what happened / where / what to do"; traceback only with -vv."""
    click.secho(f"error: {exc.message}", fg="red", err=True)
    if exc.source is not None:
        where = exc.source + (f" at offset {exc.offset}" if exc.offset is not None else "")
        click.echo(f"  where: {where}", err=True)
    if exc.__cause__ is not None:
        click.echo(f"  cause: {type(exc.__cause__).__name__}: {exc.__cause__}", err=True)
    if exc.hint:
        click.echo(f"  what to do: {exc.hint}", err=True)
    if verbose >= 2:
        import traceback

        traceback.print_exception(exc)


if __name__ == "__main__":
    sys.exit(main())
