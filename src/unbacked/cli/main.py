"""The ``unbacked`` command: a click group whose subcommands live one per module in this package.

Exit codes (DESIGN.md §7): 0 ran, no alert at/above --fail-on; 3 alerts at/above it; 2 usage
error; 1 runtime error.
"""

from __future__ import annotations

import errno
import sys

import click

from unbacked import __version__
from unbacked.errors import UnbackedError
from unbacked.plugins import Registry
from unbacked.procenv import set_for_this_process

#: subcommand modules, each exposing a click command named ``command``, with the one-line
#: summary ``unbacked --help`` lists (pinned to the command's own by tests/cli/test_startup.py).
#: A subcommand's module is imported only when that subcommand runs: ``--help`` loads none and
#: ``hunt`` never loads the memory scanner, the sensor or the report's plotting.
SUBCOMMANDS: dict[str, str] = {
    "detect": "Detect with a trained baseline (calibrated per program).",
    "eval": "Measure caught / missed / false alerts against ground-truth labels.",
    "export": "Write telemetry as a host-partitioned Parquet event lake (for `--engine spark`).",
    "hunt": "Hunt for reflective code loading in telemetry files or directories.",
    "record": "Record CMD and its descendants into OUTPUT (Parquet or JSON lines).",
    "report": "Write ALERTS (OCSF JSON lines from `unbacked hunt -o FILE`) as one HTML file.",
    "scan": "Scan minidumps or live processes for executable memory that no file backs.",
    "sensor": "Run the live eBPF sensor system-wide.",
    "plugins": "List the installed plug-ins of every kind, where from, and why any is unusable.",
    "train": "Learn what is normal for each program from (benign) telemetry.",
}

#: subcommands that convert Python values to Arrow: pyarrow is told before they run that no
#: pandas object will come its way (model.rows.keep_pandas_out_of_arrow), sparing ~0.3 s of
#: pandas import per run; ``report`` (bokeh) and ``plugins`` are left with pyarrow's defaults
ARROW_COMMANDS = frozenset({"detect", "eval", "export", "hunt", "record", "scan", "train"})

#: the subcommands as plug-ins of kind ``commands``: declared by module, imported when run
COMMANDS: Registry[click.Command] = Registry("commands", base=click.Command)
for _name, _summary in SUBCOMMANDS.items():
    COMMANDS.declare(_name, f"unbacked.cli.{_name}:command", summary=_summary)


def keep_huge_pages_out_of_arrow() -> bool:
    """Tell Arrow's allocator (mimalloc, pyarrow's default) not to ask for transparent huge
    pages, before pyarrow loads; returns whether it was told (False when pyarrow is already
    loaded or ``MIMALLOC_ALLOW_THP`` is set: the user's choice stands).

    mimalloc marks each 1 GiB arena it reserves ``MADV_HUGEPAGE`` and gives memory back in
    64 KiB pieces a second after it is freed; a later allocation there faults in a fresh
    2 MiB page, which the kernel zeroes whole. A command that builds and drops tables of
    hundreds of megabytes spends seconds of kernel time on it: ``detect --baseline`` on 10^6
    events 4.0-5.8 s of system CPU with it, 2.4-3.0 s without (docs/benchmarks.md).
    """
    if "pyarrow" in sys.modules:
        return False
    return set_for_this_process("MIMALLOC_ALLOW_THP", "0")


def keep_blas_single_threaded() -> bool:
    """Tell NumPy's BLAS (OpenBLAS in NumPy's wheels) to start no threads of its own, before
    NumPy loads; returns whether it was told (False when NumPy is already loaded or
    ``OPENBLAS_NUM_THREADS`` is set: the user's choice stands).

    unbacked does no linear algebra, but OpenBLAS starts a thread per core when it loads and
    each spins for a while waiting for work: ~0.09 s of CPU per process on 2 cores, taken from
    the command's own threads (a small hunt 0.94 -> 0.77 CPU s, docs/benchmarks.md). A
    program the command starts does not inherit it (``procenv``).
    """
    if "numpy" in sys.modules:
        return False
    return set_for_this_process("OPENBLAS_NUM_THREADS", "1")


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (``COMMANDS``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS.declared(), *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS.declared():
            keep_huge_pages_out_of_arrow()
            keep_blas_single_threaded()
            self.add_command(COMMANDS.require(cmd_name), cmd_name)
            if cmd_name in ARROW_COMMANDS:
                from unbacked.model.rows import keep_pandas_out_of_arrow

                keep_pandas_out_of_arrow()
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, with the summaries of the commands not imported taken from
        ``SUBCOMMANDS`` (shortened to the width as click shortens a command's help)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            cmd = self.commands.get(name)
            if cmd is None:
                # shortened as click shortens a command's own help (public API only:
                # click.utils.make_default_short_help is deprecated from click 8.2)
                stub = click.Command(name, help=SUBCOMMANDS[name])
                rows.append((name, stub.get_short_help_str(limit)))
            elif not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unbacked")
def cli() -> None:
    """Catch reflective code loading: executable memory that no file backs."""


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="unbacked", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        render_error(exc)
        return 2
    except click.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("interrupted", err=True)
            return 130
        click.echo("aborted", err=True)
        return 1
    except SystemExit as exc:  # commands signal their exit code this way
        return int(exc.code or 0)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # ours (UnbackedError) and everything else: never a bare traceback
        render_error(exc, verbose=_verbosity(argv))
        return 1
    return 0


def _verbosity(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return sum(a.count("v") for a in args if a.startswith("-v") and set(a[1:]) == {"v"})


def _lines(what: str, *details: tuple[str, str | None]) -> None:
    click.secho(f"error: {what}", fg="red", err=True)
    for label, text in details:
        if text:
            click.echo(f"  {label}: {text}", err=True)


def _usage(exc: click.UsageError) -> None:
    if type(exc).__name__ == "NoArgsIsHelpError":  # bare ``unbacked``: the help is the answer
        click.echo(exc.format_message(), err=True)
        return
    ctx = exc.ctx
    usage = ctx.get_usage().replace("Usage: ", "", 1) if ctx is not None else None
    name = ctx.command_path if ctx is not None else "unbacked"
    _lines(exc.format_message(), ("usage", usage),
           ("what to do", f"see '{name} --help' for the arguments and options"))  # fmt: skip


def _oserror(exc: OSError) -> None:
    if exc.errno == errno.EPIPE:  # the reader of our output went away (``| head``): not an error
        return
    path = exc.filename if exc.filename is not None else None
    reason = exc.strerror or str(exc)
    causes = {
        "ENOENT": "the file or directory does not exist (any more)",
        "EACCES": "this user may not read or write it",
        "EPERM": "the operation is not permitted for this user",
        "ENOSPC": "the disk is full",
        "EISDIR": "a directory was given where a file is needed",
        "ENOTDIR": "a file was given where a directory is needed",
    }
    code = errno.errorcode.get(exc.errno or -1, "")
    _lines(f"{reason}" + (f": {path}" if path else ""), ("why", causes.get(code, code or None)),
           ("what to do", "check the path and its permissions (and free space for outputs); "
                          "-vv shows where it happened"))  # fmt: skip


def render_error(exc: BaseException, *, verbose: int = 0) -> None:
    """Print an error as "what happened / where / why / what to do"; traceback only with -vv.

    Our own errors carry their source and hint. Usage errors name the usage and the help.
    Operating-system errors say which path and the likely cause. Anything else is unexpected:
    a bug or an input unbacked does not handle yet, and the hint is to rerun with -vv for the
    traceback and report it.
    """
    if isinstance(exc, click.UsageError):
        _usage(exc)
    elif isinstance(exc, UnbackedError):
        where = None
        if exc.source is not None:
            where = exc.source + (f" at offset {exc.offset}" if exc.offset is not None else "")
        cause = exc.__cause__
        why = f"{type(cause).__name__}: {cause}" if cause is not None else None
        _lines(exc.message, ("where", where), ("why", why), ("what to do", exc.hint))
    elif isinstance(exc, OSError):
        _oserror(exc)
    elif isinstance(exc, MemoryError):
        _lines("out of memory", ("why", "the inputs of one run did not fit in memory"),
               ("what to do", "hunt fewer inputs per run, or use the Spark engine"))  # fmt: skip
    else:
        _lines(f"unexpected {type(exc).__name__}: {exc}",
               ("why", "a bug in unbacked, or an input it does not handle yet"),
               ("what to do", "rerun with -vv for the traceback and report it with the "
                              "command line"))  # fmt: skip
    if verbose >= 2:
        import traceback

        traceback.print_exception(exc)


if __name__ == "__main__":
    sys.exit(main())
