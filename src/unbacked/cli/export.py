"""``unbacked export --parquet DIR``: write telemetry as an event lake (the Spark engine's input).

Layout (one directory per host, hive style, so a lake engine can prune by host)::

    DIR/host=<url-quoted host>/events-00000.parquet     (host=__HIVE_DEFAULT_PARTITION__ if none)

Every file is ``EVENT_SCHEMA`` Parquet (schema metadata ``unbacked.schema=event``) with the
``host`` column kept inside the file, plus one extra column, ``lake_seq``: the event's position
in the order the embedded engine read it. Per-process state depends on event order (first
occurrence of a behaviour, what happened next), so the Spark engine sorts each host by
``lake_seq`` to see exactly the order the embedded engine sees; the embedded engine reading the
lake drops the column and reads each host's file in that same order.

While it runs, the export stages each host's rows beside the lake (``.<lake>.staging-*``, in
TMPDIR when the lake's parent takes no new directory; lz4, ~90 MB per 10^6 events, about a
tenth of their size in Arrow) and writes the hosts' files when every input is read, in full
row groups.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import click
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from unbacked.cli._common import (
    Progress,
    loss_status,
    print_summary,
    tolerate_loss_option,
    write_run_report,
)
from unbacked.engine.spill import SPILL_OPTIONS
from unbacked.errors import InputError
from unbacked.model.schema import EVENT_SCHEMA
from unbacked.runreport import RunReport

#: column with the event's position in the embedded engine's read order
LAKE_SEQ = "lake_seq"
#: Spark's and Hive's name for a null partition value
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
LAKE_SCHEMA = EVENT_SCHEMA.append(pa.field(LAKE_SEQ, pa.int64(), nullable=False))
_ROWS_PER_FILE = 4_000_000
#: rows held back before they are staged: a write per host and input batch made one tiny row
#: group each (6 ms apiece: a 1,000-host export of 40,000 events took a minute)
_BUFFER_ROWS = 262_144
#: rows per Parquet row group of a host's file (the last one of a file holds the rest)
_ROW_GROUP_ROWS = 262_144
#: hosts whose files are written at once when the export closes
_WRITE_THREADS = 2


def host_directory(host: str | None) -> str:
    """The partition directory name of ``host`` (safe on every file system)."""
    return f"host={NULL_PARTITION if host is None else quote(host, safe='')}"


class LakeWriter:
    """Append event tables to a host-partitioned lake, one open Parquet file per host.

    Rows keep their order within a host, and ``lake_seq`` numbers them across the whole export,
    so the lake can be read back in the embedded engine's order by any engine. Rows are buffered
    between writes and staged per host (Arrow IPC, lz4, in a hidden directory beside the lake);
    ``close`` writes each host's Parquet from its stage in row groups of ``_ROW_GROUP_ROWS``.
    Written as they came, a host's rows made a row group per flush: with 50 hosts, groups of
    5,000 rows; with 500, of 500, and reading the lake back cost 1.5-6 times as much
    (docs/benchmarks.md). Use it as a context manager (or call ``close``) so what was given
    reaches the files also when the export stops on an error. An interrupt (Ctrl-C) stops it
    instead: nothing more is written, and what it wrote is removed (``abort``).
    """

    def __init__(self, directory: str | Path) -> None:
        self.root = Path(directory)
        if self.root.exists() and any(self.root.iterdir()):
            raise InputError(
                "the lake directory is not empty",
                source=str(self.root),
                hint="export into a new or empty directory",
            )
        self._created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        self._staging = _staging_directory(self.root)
        #: the hosts' directories this export made (what ``abort`` removes)
        self._written: list[Path] = []
        self.rows = 0
        self._stages: dict[str | None, tuple[ipc.RecordBatchStreamWriter, pa.NativeFile, Path]] = {}
        self._pending: dict[str | None, list[pa.Table]] = {}
        self._buffered = 0

    def write(self, table: pa.Table) -> None:
        from unbacked.detect.base import arange
        from unbacked.model.schema import conform

        table = conform(table)
        n = table.num_rows
        if n == 0:
            return
        seq = pc.add(arange(n), self.rows)
        table = pa.Table.from_arrays([*table.columns, seq], schema=LAKE_SCHEMA)
        self.rows += n
        # one stable sort by host, then a slice per host (not a filter of the whole table per
        # host: that is hosts x rows)
        hosts = pc.fill_null(table.column("host").cast(pa.string()), "\0")
        order = pc.sort_indices(hosts)
        table = table.take(order)
        runs = pc.run_end_encode(hosts.take(order).combine_chunks())
        start = 0
        for value, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist(), strict=True):
            host = None if value == "\0" else value
            self._pending.setdefault(host, []).append(table.slice(start, end - start))
            start = end
        self._buffered += n
        if self._buffered >= _BUFFER_ROWS:
            self._flush()

    def _flush(self) -> None:
        for host, parts in self._pending.items():
            self._append(host, pa.concat_tables(parts))
        self._pending.clear()
        self._buffered = 0

    def _append(self, host: str | None, part: pa.Table) -> None:
        stage = self._stages.get(host)
        if stage is None:
            path = self._staging / f"{len(self._stages):06d}.arrows"
            sink = pa.OSFile(str(path), "wb")
            stage = (ipc.new_stream(sink, LAKE_SCHEMA, options=SPILL_OPTIONS), sink, path)
            self._stages[host] = stage
        stage[0].write_table(part)

    def close(self) -> None:
        """Write the buffered rows and every host's file (also after an error: what was given
        is written), then remove the stage; an interrupt meanwhile aborts (``abort``)."""
        failed: Exception | None = None
        try:
            self._flush()
        except Exception as exc:  # what was staged before it is still written
            failed = exc
        except BaseException:
            self.abort()
            raise
        try:
            for writer, sink, _ in self._stages.values():
                writer.close()
                sink.close()
            # hosts' files on two threads (Arrow encodes and compresses without the GIL); on an
            # error the hosts not started are dropped, not waited for; on an interrupt, every
            # host's file too (a part of a lake is no lake)
            pool = ThreadPoolExecutor(_WRITE_THREADS)
            try:
                for future in [
                    pool.submit(self._write_host, h, p) for h, (_, _, p) in self._stages.items()
                ]:
                    future.result()
            except BaseException as exc:
                pool.shutdown(wait=True, cancel_futures=True)
                if not isinstance(exc, Exception):
                    self.abort()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            self._stages.clear()
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)
        if failed is not None:
            raise failed

    def abort(self) -> None:
        """Stop without writing: the stage and every host's directory this export made are
        removed, and the lake directory too when the export made it (an interrupted export
        leaves nothing a reader would take for a lake or a part of one)."""
        for writer, sink, _ in self._stages.values():
            with suppress(OSError, pa.ArrowException):
                writer.close()
            sink.close()
        self._stages.clear()
        self._pending.clear()
        shutil.rmtree(self._staging, ignore_errors=True)
        for directory in self._written:
            shutil.rmtree(directory, ignore_errors=True)
        self._written.clear()
        if self._created:
            with suppress(OSError):  # not empty: files someone else put there stay
                self.root.rmdir()

    def _write_host(self, host: str | None, stage: Path) -> None:
        """One host's staged rows as its Parquet file(s), in order, in full row groups."""
        out = self.root / host_directory(host)
        self._written.append(out)
        out.mkdir(exist_ok=True)
        file_no, in_file = 0, 0
        writer: pq.ParquetWriter | None = None
        try:
            for part in _row_groups(stage):
                if writer is None or in_file >= _ROWS_PER_FILE:
                    if writer is not None:
                        writer.close()
                        file_no += 1
                    path = out / f"events-{file_no:05d}.parquet"
                    writer = pq.ParquetWriter(str(path), LAKE_SCHEMA, compression="zstd")
                    in_file = 0
                writer.write_table(part, row_group_size=_ROW_GROUP_ROWS)
                in_file += part.num_rows
        finally:
            if writer is not None:
                writer.close()

    def __enter__(self) -> LakeWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):  # Ctrl-C
            self.abort()
        else:
            self.close()


def _staging_directory(root: Path) -> Path:
    """A new directory for the stage: beside the lake, not in it (an export cut short must not
    leave files a reader of the lake would take for part of it); in TMPDIR when the lake's
    parent takes no new directory (an empty lake directory given in a read-only one)."""
    for where in (root.parent, None):
        try:
            return Path(tempfile.mkdtemp(prefix=f".{root.name}.staging-", dir=where))
        except OSError as exc:
            error = exc
    raise InputError(
        f"no place to stage the export: {error}",
        source=str(root),
        hint="export into a directory whose parent is writable, or set TMPDIR",
    )


def _row_groups(stage: Path) -> Iterator[pa.Table]:
    """A host's staged rows, in order, in tables of ``_ROW_GROUP_ROWS`` (the last may be
    shorter): never more than one such table in memory."""
    held: list[pa.RecordBatch] = []
    rows = 0
    with pa.OSFile(str(stage), "rb") as source:
        for batch in ipc.open_stream(source):
            while batch.num_rows:
                take = batch.slice(0, _ROW_GROUP_ROWS - rows)
                batch = batch.slice(take.num_rows)
                held.append(take)
                rows += take.num_rows
                if rows == _ROW_GROUP_ROWS:
                    yield pa.Table.from_batches(held, schema=LAKE_SCHEMA)
                    held, rows = [], 0
    if held:
        yield pa.Table.from_batches(held, schema=LAKE_SCHEMA)


def export_lake(
    paths: list[str], directory: str | Path, report: RunReport, progress: Progress | None = None
) -> int:
    """Read ``paths`` with the embedded engine's readers and write them as a lake; event count."""
    from unbacked.sources import iter_event_tables

    with LakeWriter(directory) as writer:
        for table in iter_event_tables(paths, report):
            writer.write(table)
            if progress is not None and table.num_rows:
                name = table["src_file"][0].as_py() or ""
                progress(str(name), writer.rows, report.records_lately())
    return writer.rows


#: files a Parquet writer (Spark, Hadoop, a lake's own tools) leaves beside the data
_LAKE_SIDE_FILES = ("_SUCCESS", "_common_metadata", "_metadata")


def is_lake(path: str | Path) -> bool:
    """Whether ``path`` is what the Spark engine reads as it is: an object-store URL, a Parquet
    file, or a directory holding Parquet files and nothing else but a writer's side files
    (``_SUCCESS``, ``.crc`` checksums, hidden files)."""
    if "://" in str(path):
        return True
    p = Path(path)
    if p.is_file():
        return p.suffix == ".parquet"
    found = False
    for f in p.rglob("*"):
        if not f.is_file() or f.name.startswith(".") or f.name in _LAKE_SIDE_FILES:
            continue
        if f.suffix != ".parquet":
            return False
        found = True
    return found


@contextmanager
def spark_lake(
    paths: Sequence[str],
    report: RunReport,
    spill_dir: str | None = None,
    progress: Progress | None = None,
) -> Iterator[tuple[list[str], bool]]:
    """The lake ``--engine spark`` reads for ``paths``: the paths themselves when each is a
    Parquet lake, else every input exported into a temporary lake first (telemetry files,
    archives, mixed directories: nothing under a path is left unread), removed afterwards.
    Yields ``(lake paths, converted)``; a conversion's reading is counted in ``report`` as an
    export's is, and is announced on stderr (a large or repeated run exports once). Inputs
    without a single event yield no lake path: there is nothing to start Spark for, and the
    report says what was (not) found."""
    if all(is_lake(p) for p in paths):
        yield list(paths), False
        return
    tmp = Path(tempfile.mkdtemp(prefix="unbacked-lake-", dir=spill_dir))
    try:
        click.echo(
            "unbacked: --engine spark reads a Parquet event lake: converting the inputs to a "
            f"temporary one in {tmp} (for large or repeated runs, export once: "
            "unbacked export --parquet DIR PATH...)",
            err=True,
        )
        n = export_lake(list(paths), tmp / "lake", report, progress)
        yield ([str(tmp / "lake")] if n else []), True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@click.command("export")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--parquet", "directory", required=True, metavar="DIR",
              help="Lake directory to write (host-partitioned event Parquet).")  # fmt: skip
@click.option("--strict", is_flag=True, help="Fail on the first unreadable record or file.")
@click.option("--report", "report_path", metavar="FILE", help="Write the run report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
@click.option("-v", "--verbose", count=True, help="More detail on errors (-vv: traceback).")
@tolerate_loss_option
def command(
    paths: tuple[str, ...],
    directory: str,
    strict: bool,
    report_path: str | None,
    quiet: bool,
    verbose: int,
    tolerate_loss: bool,
) -> None:
    """Write telemetry as a host-partitioned Parquet event lake (for `--engine spark`)."""
    report = RunReport(strict=strict)
    with Progress(enabled=not quiet) as progress:
        n = export_lake(list(paths), directory, report, progress)
    report.finish()
    if not quiet:
        print_summary(report, [])
        click.echo(f"lake: {n:,} events -> {directory}", err=True)
    write_run_report(report_path, report)
    if strict and (report.failed_files or report.skipped):
        sys.exit(1)
    sys.exit(loss_status(report, tolerate_loss) or 0)
