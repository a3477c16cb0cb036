"""``unbacked record``: run one command under the live sensor and write its events.

    unbacked record -o run.parquet -- CMD ARGS...     (or -o run.jsonl)

Records the command and all its descendants (followed in the kernel through fork), every act
that procures executable memory, memfd creation, exec, connect and process lifecycle, as
``EVENT_SCHEMA`` rows. Needs root. Exit code: the command's own (1 when the sensor fails).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from unbacked.sensor.live import DEFAULT_RING_MB, SensorOptions


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Event file to write: .parquet or .jsonl (EVENT_SCHEMA).",
)
@click.option(
    "--ring-mb",
    default=DEFAULT_RING_MB,
    show_default=True,
    help="Kernel ring buffer size in MiB (power of two).",
)
@click.option(
    "--rate-limit",
    "rate_burst",
    default=20_000,
    show_default=True,
    help="Records per (process, caller, syscall) per second before the excess is "
    "only counted; 0 turns the limit off.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    help="Write the run summary (events, sensor counters) as JSON.",
)
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def command(
    output: str,
    ring_mb: int,
    rate_burst: int,
    report_path: str | None,
    quiet: bool,
    cmd: tuple[str, ...],
) -> None:
    """Record CMD and its descendants into OUTPUT (Parquet or JSON lines)."""
    from unbacked.sensor.record import record_command

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    opts = SensorOptions(ring_mb=ring_mb, follow_tree=True, rate_burst=rate_burst)
    result = record_command(list(cmd), output, options=opts)
    summary = result.summary()
    if report_path:
        Path(report_path).write_text(json.dumps(summary, indent=2) + "\n")
    if not quiet:
        s = result.stats
        click.echo(
            f"recorded {result.events} events of {cmd[0]} in {result.seconds:.2f}s → {output} "
            f"(lost {s.get('lost', 0)}, rate-limited {s.get('suppressed', 0)})",
            err=True,
        )
    code = result.exit_code if result.exit_code is not None else 1
    sys.exit(code if code >= 0 else 128 - code)
