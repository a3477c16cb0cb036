"""A lake already split by host, read as groups of whole hosts straight from its files: no spill.

Above ``memory_events`` events the embedded engine detects one group of whole hosts at a time
(``engine.spill``). When the inputs hold unbacked event Parquet files whose rows all belong to
one host (what `unbacked export --parquet` writes: a directory per host) and those alone hold
more than ``memory_events`` events, the lake is already partitioned: ``HostLake`` plans the
same groups the spill would (a host's bucket is the CRC-32 of its name; consecutive buckets are
packed to ``group_rows`` events), and reads each group's files when the engine asks for it,
through the sources (the same accounting per file). Every other input (new telemetry beside
the lake, a file of several hosts, a README) is read first and spilled by host as before
(``read_others``), and each group takes its hosts' events from both. A group is then exactly
the events the spill of every input would have given, without writing the lake's events to
disk and reading them back. Its hosts come one after another, each host's events in the
canonical order (``canonical_order(hosts_first=True)``): the spill interleaves hosts by file
and line, which detection, seeing hosts apart, does not depend on, and a group of files each
in order is then laid end to end instead of gathered row by row. What a pass keeps for the
next (``put``/``get``) goes to the same spill directory.

Finding out costs each file's footer, then its ``host`` column alone (a dictionary page per
row group): 0.5 s for a 500-host lake of 10^7 events.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from unbacked.engine.order import canonical_order
from unbacked.engine.spill import BUCKETS, HostSpill, host_bucket, pack_buckets
from unbacked.model.schema import EVENT_SCHEMA
from unbacked.runreport import RunReport


class HostLake:
    """Groups of whole hosts read from a lake's own files and a spill of the other inputs
    (module docs); the same interface as ``HostSpill`` for the partitioned run; ``close``
    removes the spill."""

    def __init__(
        self,
        files: Sequence[tuple[str, str | None, int]],
        report: RunReport,
        *,
        others: Sequence[tuple[str, bool]] = (),
        spill_dir: str | Path | None = None,
        buckets: int = BUCKETS,
    ) -> None:
        """``files``: (path, its one host, its rows > 0) in the order the inputs were walked;
        ``others``: (path, found under a directory) of every other input, for ``read_others``."""
        self.report = report
        #: the lake files' events
        self.rows = sum(rows for _, _, rows in files)
        self.files = len(files)
        self.others = list(others)
        self._files: dict[int, list[str]] = {}
        self._rows_per_bucket = np.zeros(buckets, np.int64)
        for path, host, rows in files:
            bucket = host_bucket(host, buckets)
            self._files.setdefault(bucket, []).append(path)
            self._rows_per_bucket[bucket] += rows
        self._spill_dir = spill_dir
        self._buckets = buckets
        self._spill: HostSpill | None = None

    @classmethod
    def find(
        cls,
        paths: Sequence[str | os.PathLike[str]],
        report: RunReport,
        *,
        more_than: int = 0,
        spill_dir: str | Path | None = None,
    ) -> HostLake | None:
        """The lake under ``paths`` when its unbacked event Parquet files of one host each
        (module docs) hold more than ``more_than`` events, else None. Each file's footer is
        read first, then (when the events are enough) its hosts. Nothing is reported here:
        reading does that."""
        from unbacked.sources.discovery import walk_files
        from unbacked.sources.native import event_parquet_hosts, event_parquet_rows

        sized: list[tuple[Path, int, bool]] = []
        for p in paths:
            path = Path(p)
            walked = path.is_dir()
            if not (walked or path.is_file()):
                return None  # a missing path or a device: reading says so
            for f in walk_files(path) if walked else [path]:
                if not f.is_file():
                    return None  # a pipe or a device under a directory: the walk lists it
                # only a file named so is looked into (a directory of JSON is not opened twice)
                rows = event_parquet_rows(f) if f.suffix.lower() == ".parquet" else None
                sized.append((f, -1 if rows is None else rows, walked))
        if sum(max(rows, 0) for _, rows, _ in sized) <= more_than:
            return None
        files: list[tuple[str, str | None, int]] = []
        others: list[tuple[str, bool]] = []
        for f, rows, walked in sized:
            # a file without rows is read with the others, so that it is accounted for
            hosts = event_parquet_hosts(f) if rows > 0 else None
            if hosts is None or len(hosts) != 1:
                others.append((str(f), walked))
            else:
                files.append((str(f), next(iter(hosts)), rows))
        if sum(rows for _, _, rows in files) <= more_than:
            return None
        return cls(files, report, others=others, spill_dir=spill_dir)

    def read_others(self, progress: Callable[[str, int], None] | None = None) -> None:
        """Read every input that is not a lake file and spill it by host (``progress``: each
        table's file name and the events read so far); found under a directory, an input is
        accounted for as the directory's walk accounts for it."""
        from unbacked.sources.discovery import iter_event_tables

        spill = self._kept()
        for walked in (True, False):
            paths = [p for p, w in self.others if w is walked]
            for table in iter_event_tables(paths, self.report, encoded=True, walked=walked):
                spill.add(table)
                if progress is not None:
                    progress(str(table["src_file"][0].as_py() or ""), spill.rows)
        spill.finish()
        self._rows_per_bucket = self._rows_per_bucket + spill.rows_per_bucket

    @property
    def spilled(self) -> int:
        """Events of the other inputs, spilled."""
        return 0 if self._spill is None else self._spill.rows

    # -- reading ---------------------------------------------------------------------------
    def group_plan(self, group_rows: int) -> list[list[int]]:
        """The buckets packed into groups of whole hosts (``pack_buckets``), as the spill of
        every input would pack them."""
        return pack_buckets(self._rows_per_bucket, group_rows)

    def groups(self, group_rows: int) -> Iterator[pa.Table]:
        """Tables of whole hosts, the hosts one after another and each host's events in the
        canonical order, every file read once."""
        from unbacked.sources.discovery import iter_event_tables

        for buckets in self.group_plan(group_rows):
            files = [f for b in buckets for f in self._files.get(b, [])]
            tables = list(iter_event_tables(files, self.report, encoded=True))
            if self._spill is not None:
                tables += self._spill.bucket_tables(buckets)
            yield (
                canonical_order(tables, hosts_first=True) if tables else EVENT_SCHEMA.empty_table()
            )

    # -- what a pass computed per group, for the next pass ---------------------------------
    def _kept(self) -> HostSpill:
        if self._spill is None:
            self._spill = HostSpill(self._spill_dir, buckets=self._buckets)
        return self._spill

    def put(self, group: int, name: str, table: pa.Table) -> None:
        self._kept().put(group, name, table)

    def get(self, group: int, name: str) -> pa.Table:
        return self._kept().get(group, name)

    @property
    def bytes_on_disk(self) -> int:
        return 0 if self._spill is None else self._spill.bytes_on_disk

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        """Remove the spill."""
        if self._spill is not None:
            self._spill.close()
