"""Synthetic fleet telemetry fitted from real captures, with injected attacks at a known rate.

What it is for: scaling curves (`train`/`hunt` time and memory from 10^5 to 10^7 events) and
precision at low base rates (how many false alerts per 10,000 benign instances when attacks are
rare). What it is **not**: evidence that the detector works. Every synthetic event is a real
event resampled, so the synthetic fleet cannot show anything the real captures do not already
hold; detection quality is measured on the real labelled corpora (docs/detection.md).

How the fleet is made
---------------------
* **Fit** (`fit`): the real corpora are read with the normal sources. Rows of process instances
  that a label lists as malicious, possible or other-malicious are removed; what remains is the
  *benign pool*, grouped by program (OS + image basename) and by process instance, in time order.
  Per program the model keeps the instances' lengths (events per instance), every row (so the
  joint distribution of kind, activity, size, protection, caller, call-trace shape, backing and
  header kind is the empirical one, not a product of marginals) and the gap of every row to the
  previous row of its instance (rates, JIT churn bursts). The labelled malicious instances of
  the project's own positive controls become *attack shapes*: their recorded rows, in order.
* **Generate** (`generate`): hosts (a share Linux, the rest Windows) × days; instances are drawn
  per host with the programs' empirical frequencies on that OS. An instance takes a random real
  instance of its program as template (its launch row and its length), then fills its length
  with a block bootstrap of that template: runs of ``BLOCK`` consecutive rows from random
  positions (so allocate → write → protect → thread sequences stay intact), each block shifted
  by its own random page-aligned address offset, times rebuilt from the resampled gaps. Blocks
  never mix instances: a browser's zygote must not inherit its renderers' JIT region (mixing
  roles made benign processes look like loaders in a first version). A known number of
  instances (``attack_rate`` of all instances) additionally get an attack shape replayed into
  them at a random point of their life: the shape's rows with the host process's identity, in
  the program's own image (so the attack happens *inside* a normal program, as an injection
  does). Labels in the shared format name exactly those instances.
* Everything per row is numpy/Arrow (`take`, `repeat`, `cumsum`); strings are built per
  instance, not per row. Output is written in chunks of hosts (one Parquet or JSON-lines file
  per chunk), so generation memory is bounded by the chunk size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unbacked.evaluate.labels import LabelFile, load_labels, norm_guid, norm_image
from unbacked.evaluate.metrics import data_file_of
from unbacked.model.schema import EVENT_SCHEMA, conform

#: Rows per bootstrap block: long enough to keep a loader's or a JIT's act sequence together.
BLOCK = 8
SYNTH_FORMAT = "unbacked-synth"
_PAGE_SHIFT = 12
_USER_SPACE = 1 << 47  # addresses above this (kernel) are left alone
_NS = 1_000_000_000
_DAY_NS = 86_400 * _NS
_ADDRESS_COLUMNS = ("base_address", "alloc_base", "start_address")
_DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Corpus:
    """A labelled real corpus to fit from: data paths, their labels and the labels' data root.

    ``attacks`` says whether its labelled malicious instances become attack shapes (the
    project's own positive controls do; third-party attacks with cross-process acts do not
    replay into one synthetic process faithfully).
    """

    paths: tuple[str, ...]
    labels: str | None
    data_root: str
    attacks: bool = False


def default_corpora(repo: str | Path = ".") -> list[Corpus]:
    """The project's own corpora, plus ``../shared/data/windows`` when it is there."""
    root = Path(repo)
    own = tuple(
        str(p) for p in (root / "samples" / "linux", root / "tests/fixtures/windows") if p.exists()
    )
    labels = root / "samples" / "labels"
    out = [Corpus(own, str(labels) if labels.is_dir() else None, str(root), attacks=True)]
    shared = root.resolve().parent / "shared" / "data"
    if (shared / "windows").is_dir() and (shared / "labels").is_dir():
        out.append(Corpus((str(shared / "windows"),), str(shared / "labels"), str(shared)))
    return out


@dataclass(frozen=True, slots=True)
class AttackShape:
    """The recorded rows of one labelled positive control, replayed into synthetic processes."""

    source: str  # the data file the control was recorded in
    os: str
    lo: int  # row range in ``FleetModel.attack_pool``
    hi: int
    image: str | None  # the control's program image (rewritten to the host program's)
    technique: str
    attack_ids: tuple[str, ...]


@dataclass(slots=True)
class FleetModel:
    """Empirical per-program distributions of the benign pool and the attack shapes."""

    pool: pa.Table  # benign rows: grouped by program, then instance, time order inside
    program_os: list[str]
    program_name: list[str]
    prog_inst_lo: np.ndarray  # instance range per program
    prog_inst_hi: np.ndarray
    inst_start: np.ndarray  # first pool row of each instance
    inst_len: np.ndarray
    row_gap: np.ndarray  # ns since the previous row of the same instance (0 for the first)
    row_inst: np.ndarray  # instance of each pool row
    attack_pool: pa.Table
    attack_gap: np.ndarray  # ns since the shape's first row
    attacks: list[AttackShape]
    sources: list[str] = field(default_factory=list)
    _source: pa.Table | None = None

    @property
    def programs(self) -> int:
        return len(self.program_name)

    def summary(self) -> dict[str, Any]:
        """Per-program figures of what was fitted (for the manifest and the docs)."""
        kinds = self.pool.column("kind").cast(pa.string()).to_numpy(zero_copy_only=False)
        prot = self.pool.column("protection").to_numpy(zero_copy_only=False)
        size = self.pool.column("region_size").to_numpy(zero_copy_only=False)
        unb = self.pool.column("caller_unbacked").to_numpy(zero_copy_only=False)
        progs = []
        for p in range(self.programs):
            ilo, ihi = self.prog_inst_lo[p], self.prog_inst_hi[p]
            lens = self.inst_len[ilo:ihi]
            rlo = self.inst_start[ilo]
            rhi = rlo + int(lens.sum())
            k = kinds[rlo:rhi]
            mem = k == "memory"
            sizes = np.array([s for s in size[rlo:rhi][mem] if s is not None], dtype=float)
            prots = [x for x in prot[rlo:rhi][mem] if x is not None]
            gaps = self.row_gap[rlo:rhi][1:]
            progs.append(
                {
                    "os": self.program_os[p],
                    "program": self.program_name[p],
                    "instances": int(ihi - ilo),
                    "events": int(rhi - rlo),
                    "events_per_instance_median": float(np.median(lens)),
                    "events_per_instance_max": int(lens.max()),
                    "kinds": {
                        str(v): int(c)
                        for v, c in zip(*np.unique(k, return_counts=True), strict=True)
                    },
                    "memory_size_median": float(np.median(sizes)) if sizes.size else None,
                    "protections": len(set(prots)),
                    "caller_unbacked_rows": int(sum(1 for x in unb[rlo:rhi] if x)),
                    "median_gap_ms": float(np.median(gaps) / 1e6) if gaps.size else None,
                }
            )
        return {
            "sources": self.sources,
            "benign_rows": self.pool.num_rows,
            "benign_instances": int(self.inst_len.size),
            "programs": progs,
            "attack_shapes": [
                {"source": a.source, "os": a.os, "rows": a.hi - a.lo, "attack_ids": a.attack_ids}
                for a in self.attacks
            ],
        }


# -- fitting -----------------------------------------------------------------------------------


def _labelled_keys(
    labels: dict[str, LabelFile],
) -> tuple[set[tuple[str, str]], dict[str, list[Any]]]:
    """(file, guid) keys and per-file instance lists of everything not benign."""
    guids: set[tuple[str, str]] = set()
    per_file: dict[str, list[Any]] = {}
    for key, lab in labels.items():
        insts = list(lab.known())
        per_file[key] = insts
        for i in insts:
            if i.guid:
                guids.add((key, i.guid))
    return guids, per_file


def _instance_table(events: pa.Table, data_root: Path) -> tuple[np.ndarray, list[str | None]]:
    """Per row: the label key of its data file (via the dictionary, not per row)."""
    src = events.column("src_file").combine_chunks()
    if not pa.types.is_dictionary(src.type):
        src = src.dictionary_encode()
    keys = [
        data_file_of(str(s), data_root) if s is not None else None
        for s in src.dictionary.to_pylist()
    ]
    idx = src.indices.to_numpy(zero_copy_only=False)
    return np.nan_to_num(idx, nan=-1).astype(np.int64), keys


def _read(corpus: Corpus) -> pa.Table:
    from unbacked.runreport import RunReport
    from unbacked.sources import read_events

    return read_events(list(corpus.paths), RunReport())


def fit(corpora: Sequence[Corpus]) -> FleetModel:
    """Learn the benign pool and the attack shapes from labelled real corpora."""
    benign_parts: list[pa.Table] = []
    attack_rows: list[pa.Table] = []
    attack_meta: list[tuple[str, str, str | None, str, tuple[str, ...]]] = []
    sources: list[str] = []
    for corpus in corpora:
        events = _read(corpus)
        events = events.filter(pc.is_valid(events.column("process_uid")))
        if events.num_rows == 0:
            continue
        sources.extend(corpus.paths)
        labels = load_labels(corpus.labels) if corpus.labels else {}
        root = Path(corpus.data_root)
        file_idx, file_keys = _instance_table(events, root)
        guids, per_file = _labelled_keys(labels)
        uid = events.column("process_uid").to_numpy(zero_copy_only=False)
        host = events.column("host").cast(pa.string()).to_numpy(zero_copy_only=False)
        pid = events.column("pid").to_numpy(zero_copy_only=False)
        image = events.column("image").to_numpy(zero_copy_only=False)
        # one decision per (file, instance), then broadcast to rows
        inst_key = np.array(
            [f"{file_idx[i]}\x00{uid[i]}" for i in range(events.num_rows)], dtype=object
        )
        uniq, first, inverse = np.unique(inst_key, return_index=True, return_inverse=True)
        bad = np.zeros(uniq.size, dtype=bool)
        mal_of: dict[int, tuple[str, Any]] = {}
        seen: set[str] = set()
        matched: set[tuple[str, int]] = set()
        for u, r in enumerate(first):
            fkey = file_keys[file_idx[r]] if file_idx[r] >= 0 else None
            if fkey is None or fkey not in per_file:
                continue
            seen.add(fkey)
            g = norm_guid(uid[r])
            insts = per_file[fkey]
            hit = next(
                (
                    i
                    for i in insts
                    if (g is not None and (fkey, g) in guids and i.guid == g)
                    or i.matches(uid[r], host[r], pid[r], image[r])
                ),
                None,
            )
            if hit is not None:
                bad[u] = True
                matched.add((fkey, id(hit)))
                if corpus.attacks and any(hit is m for m in labels[fkey].malicious):
                    mal_of[u] = (fkey, hit)
        # in the own corpora (labels made from the recording recipe, every labelled instance
        # acts), a label naming an instance its file does not hold is stale: the capture was
        # re-recorded and its attack would silently join the benign pool, so refuse. Third-party
        # labels also list instances seen only as parent or target; they are not checked.
        stale = sorted(
            f"{k} ({i.guid or i.pid})"
            for k in (seen if corpus.attacks else ())
            for i in labels[k].malicious
            if (k, id(i)) not in matched
        )
        if stale:
            raise ValueError(
                "labels do not match the data (re-run scripts/label-samples.py): "
                + ", ".join(stale)
            )
        row_bad = bad[inverse]
        benign_parts.append(events.filter(pa.array(~row_bad)))
        for u, (fkey, inst) in sorted(mal_of.items(), key=lambda kv: kv[1][0]):
            rows = np.flatnonzero(inverse == u)
            shape = events.take(pa.array(rows)).sort_by([("time", "ascending")])
            act = shape.column("activity").cast(pa.string()).to_pylist()
            keep = [
                i
                for i, a in enumerate(act)
                if a != "terminate" and not (i == 0 and a in ("launch", "exec"))
            ]
            shape = shape.take(pa.array(keep, pa.int64()))
            if shape.num_rows == 0:
                continue
            os_name = shape.column("os")[0].as_py() or "unknown"
            attack_rows.append(shape)
            attack_meta.append((fkey, os_name, inst.image, inst.technique, tuple(inst.attack_ids)))
    if not benign_parts:
        raise ValueError("no events to fit from")
    return _assemble(pa.concat_tables(benign_parts), attack_rows, attack_meta, sources)


def _assemble(
    benign: pa.Table,
    attack_rows: list[pa.Table],
    attack_meta: list[tuple[str, str, str | None, str, tuple[str, ...]]],
    sources: list[str],
) -> FleetModel:
    os_col = benign.column("os").cast(pa.string()).fill_null("unknown")
    img = benign.column("image").to_pylist()
    os_list = os_col.to_pylist()
    prog_key = np.array(
        [f"{o}\x00{norm_image(i) or '?'}" for o, i in zip(os_list, img, strict=True)], dtype=object
    )
    inst = np.array(
        [
            f"{s}\x00{u}"
            for s, u in zip(
                benign.column("src_file").cast(pa.string()).to_pylist(),
                benign.column("process_uid").to_pylist(),
                strict=True,
            )
        ],
        dtype=object,
    )
    # an instance belongs to the program of its first row (exec may rename it later)
    t = benign.column("time").cast(pa.int64()).to_numpy()
    line = benign.column("src_line").fill_null(0).to_numpy()
    order0 = np.lexsort((line, t, inst))
    inst_sorted = inst[order0]
    starts = np.flatnonzero(np.r_[True, inst_sorted[1:] != inst_sorted[:-1]])
    inst_prog_key = prog_key[order0][starts]
    prog_names, inst_prog = np.unique(inst_prog_key, return_inverse=True)
    inst_id_sorted = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, inst_sorted.size]))
    # final order: program, instance, time
    order = order0[np.lexsort((np.arange(order0.size), inst_prog[inst_id_sorted]))]
    inst_of_row = np.empty(order0.size, dtype=np.int64)
    inst_of_row[order0] = inst_id_sorted
    row_inst_old = inst_of_row[order]
    # renumber instances in their new order
    new_starts = np.flatnonzero(np.r_[True, row_inst_old[1:] != row_inst_old[:-1]])
    inst_len = np.diff(np.r_[new_starts, row_inst_old.size]).astype(np.int64)
    inst_prog_new = inst_prog[row_inst_old[new_starts]]
    row_inst = np.repeat(np.arange(new_starts.size), inst_len)
    pool = benign.take(pa.array(order)).combine_chunks()
    tt = t[order]
    gap = np.diff(tt, prepend=tt[:1])
    gap[new_starts] = 0
    gap = np.clip(gap, 0, None)
    n_prog = prog_names.size
    prog_inst_lo = np.searchsorted(inst_prog_new, np.arange(n_prog), side="left")
    prog_inst_hi = np.searchsorted(inst_prog_new, np.arange(n_prog), side="right")
    # attack shapes
    shapes: list[AttackShape] = []
    gaps: list[np.ndarray] = []
    lo = 0
    for rows, (fkey, os_name, image, tech, ids) in zip(attack_rows, attack_meta, strict=True):
        st = rows.column("time").cast(pa.int64()).to_numpy()
        gaps.append(st - st[0])
        img0 = rows.column("image").drop_null()
        rec_image = img0[0].as_py() if len(img0) else image
        shapes.append(AttackShape(fkey, os_name, lo, lo + rows.num_rows, rec_image, tech, ids))
        lo += rows.num_rows
    attack_pool = (
        pa.concat_tables([conform(r) for r in attack_rows]).combine_chunks()
        if attack_rows
        else EVENT_SCHEMA.empty_table()
    )
    return FleetModel(
        pool=conform(pool),
        program_os=[str(k).split("\x00", 1)[0] for k in prog_names],
        program_name=[str(k).split("\x00", 1)[1] for k in prog_names],
        prog_inst_lo=prog_inst_lo,
        prog_inst_hi=prog_inst_hi,
        inst_start=new_starts.astype(np.int64),
        inst_len=inst_len,
        row_gap=gap.astype(np.int64),
        row_inst=row_inst,
        attack_pool=attack_pool,
        attack_gap=np.concatenate(gaps) if gaps else np.zeros(0, np.int64),
        attacks=shapes,
        sources=sources,
    )


# -- generating --------------------------------------------------------------------------------


@dataclass(slots=True)
class FleetResult:
    """What ``generate`` wrote."""

    files: list[Path]
    label_files: list[Path]
    events: int
    instances: int
    attacks: int
    hosts: int
    days: int
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": [str(p) for p in self.files],
            "label_files": [str(p) for p in self.label_files],
            "events": self.events,
            "instances": self.instances,
            "attacks": self.attacks,
            "hosts": self.hosts,
            "days": self.days,
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class _Plan:
    """Per synthetic instance: who, where, when, what it replays."""

    host: np.ndarray
    prog: np.ndarray
    template: np.ndarray  # pool instance whose launch row and length it takes
    length: np.ndarray
    start: np.ndarray  # ns
    pid: np.ndarray
    shape: np.ndarray  # attack shape index, -1 for none


def _program_weights(model: FleetModel, os_name: str) -> tuple[np.ndarray, np.ndarray]:
    progs = np.array([i for i, o in enumerate(model.program_os) if o == os_name], dtype=np.int64)
    w = (model.prog_inst_hi[progs] - model.prog_inst_lo[progs]).astype(float)
    return progs, w / w.sum() if w.sum() else w


def _plan(
    model: FleetModel,
    rng: np.random.Generator,
    events: int,
    hosts: int,
    days: int,
    linux_share: float,
    attack_rate: float,
    start_ns: int,
) -> tuple[_Plan, list[str]]:
    oses = sorted({o for o in model.program_os})
    host_os: list[str] = []
    if "linux" in oses and "windows" in oses:
        n_linux = round(hosts * linux_share)
        host_os = ["linux"] * n_linux + ["windows"] * (hosts - n_linux)
    else:
        host_os = [oses[0]] * hosts
    parts: list[tuple[np.ndarray, ...]] = []
    for os_name in sorted(set(host_os)):
        progs, w = _program_weights(model, os_name)
        host_ids = np.array([h for h, o in enumerate(host_os) if o == os_name], dtype=np.int64)
        mean_len = float(
            sum(
                w[k] * model.inst_len[model.prog_inst_lo[p] : model.prog_inst_hi[p]].mean()
                for k, p in enumerate(progs)
            )
        )
        target = events * host_ids.size / hosts
        # draw more instances than needed, keep them until the target is reached: heavy-tailed
        # instance lengths (svchost, explorer) would otherwise miss it by tens of percent
        m = max(1, math.ceil(1.5 * target / mean_len) + 16)
        prog = progs[rng.choice(progs.size, size=m, p=w)]
        lo, hi = model.prog_inst_lo[prog], model.prog_inst_hi[prog]
        template = lo + (rng.random(m) * (hi - lo)).astype(np.int64)
        m = min(m, int(np.searchsorted(np.cumsum(model.inst_len[template]), target)) + 1)
        prog, template = prog[:m], template[:m]
        host = host_ids[rng.integers(0, host_ids.size, m)]
        parts.append((host, prog, template))
    host = np.concatenate([p[0] for p in parts])
    prog = np.concatenate([p[1] for p in parts])
    template = np.concatenate([p[2] for p in parts])
    m = host.size
    day = rng.integers(0, days, m)
    start = start_ns + day * _DAY_NS + rng.integers(0, _DAY_NS, m)
    pid = rng.integers(300, 4_000_000, m) & ~np.int64(3)  # multiple of 4 (fine on Linux too)
    shape = np.full(m, -1, dtype=np.int64)
    # exactly round(rate x instances) attacked instances (at least one when the rate is not 0),
    # drawn among the instances of hosts whose OS has attack shapes
    n_att = 0 if attack_rate <= 0 else max(1, round(attack_rate * m))
    host_os_arr = np.array(host_os, dtype=object)[host]
    eligible = np.flatnonzero(
        np.isin(host_os_arr, np.array([a.os for a in model.attacks], dtype=object))
    )
    chosen = rng.choice(eligible, size=min(n_att, eligible.size), replace=False)
    for os_name in sorted(set(host_os)):
        cands = np.array([k for k, a in enumerate(model.attacks) if a.os == os_name])
        mine = chosen[host_os_arr[chosen] == os_name]
        if cands.size and mine.size:
            shape[mine] = cands[rng.integers(0, cands.size, mine.size)]
    order = np.lexsort((start, host))
    plan = _Plan(
        host=host[order],
        prog=prog[order],
        template=template[order],
        length=model.inst_len[template[order]],
        start=start[order],
        pid=pid[order],
        shape=shape[order],
    )
    return plan, host_os


def _ranges(lo: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(lo[i], lo[i] + counts[i])`` for every i, vectorized."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    out: np.ndarray = np.repeat(lo, counts) + (np.arange(total) - starts)
    return out


def _chunk_rows(
    model: FleetModel, plan: _Plan, sel: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Benign rows of instances ``sel``: (pool row, instance of row, time ns, address offset)."""
    n = plan.length[sel]
    extra = n - 1
    blocks = (extra + BLOCK - 1) // BLOCK
    b_inst = np.repeat(sel, blocks)
    # blocks come from the template instance itself: a synthetic process is a reshuffled
    # variant of one real process, so roles stay coherent (a browser's zygote never inherits
    # its renderers' JIT region) while the fleet mixes over all real instances
    src_inst = plan.template[b_inst]
    s_start = model.inst_start[src_inst]
    s_len = model.inst_len[src_inst]
    pos = 1 + (rng.random(b_inst.size) * (s_len - 1)).astype(np.int64)
    b_off = rng.integers(0, 1 << 24, b_inst.size).astype(np.uint64) << np.uint64(_PAGE_SHIFT)
    k = np.tile(np.arange(BLOCK), b_inst.size)
    rows_b = (
        np.repeat(s_start, BLOCK)
        + 1
        + (np.repeat(pos - 1, BLOCK) + k) % np.repeat(s_len - 1, BLOCK)
    )
    inst_b = np.repeat(b_inst, BLOCK)
    off_b = np.repeat(b_off, BLOCK)
    # keep the first (n - 1) block rows of each instance
    first_block = np.cumsum(blocks) - blocks
    idx_in_inst = np.arange(inst_b.size) - np.repeat(first_block * BLOCK, blocks * BLOCK)
    keep = idx_in_inst < np.repeat(extra, blocks * BLOCK)
    rows_b, inst_b, off_b = rows_b[keep], inst_b[keep], off_b[keep]
    # interleave: launch row first, then the block rows
    rows = np.empty(int(n.sum()), dtype=np.int64)
    inst = np.repeat(sel, n)
    first_pos = np.cumsum(n) - n
    is_first = np.zeros(rows.size, dtype=bool)
    is_first[first_pos] = True
    rows[first_pos] = model.inst_start[plan.template[sel]]
    rows[~is_first] = rows_b
    off = np.zeros(rows.size, dtype=np.uint64)
    off[~is_first] = off_b
    gap = model.row_gap[rows]
    gap[first_pos] = 0
    csum = np.cumsum(gap)
    t = np.repeat(plan.start[sel], n) + csum - np.repeat(csum[first_pos], n)
    return rows, inst, t, off


def _source(model: FleetModel) -> pa.Table:
    """Pool rows then attack rows, plain string columns dictionary-encoded: one ``take`` per
    chunk then moves indices, not the (long) command lines and paths themselves."""
    if model._source is None:
        both = pa.concat_tables([model.pool, model.attack_pool]).combine_chunks()
        for i, f in enumerate(both.schema):
            if pa.types.is_string(f.type):
                both = both.set_column(i, f.name, both.column(i).dictionary_encode())
        model._source = both.combine_chunks()
    return model._source


def _offset(col: pa.ChunkedArray | pa.Array, off: np.ndarray) -> pa.Array:
    vals = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    mask = pc.fill_null(pc.less(vals, pa.scalar(_USER_SPACE, pa.uint64())), False)
    return pc.if_else(mask, pc.add(vals, pa.array(off, pa.uint64())), vals)


def _build_chunk(
    model: FleetModel,
    plan: _Plan,
    sel: np.ndarray,
    hostnames: list[str],
    host_os: list[str],
    rng: np.random.Generator,
    src_file: str,
) -> tuple[pa.Table, list[dict[str, Any]]]:
    rows, inst, t, off = _chunk_rows(model, plan, sel, rng)
    n_pool = model.pool.num_rows
    tmpl = model.inst_start[plan.template[inst]]
    img_rows = rows.copy()  # where image / cmd_line come from
    # attack rows, replayed into their host instance at a random point of its life
    att = sel[plan.shape[sel] >= 0]
    mal: list[dict[str, Any]] = []
    if att.size:
        shp = plan.shape[att]
        lo = np.array([model.attacks[s].lo for s in shp], dtype=np.int64)
        cnt = np.array([model.attacks[s].hi - model.attacks[s].lo for s in shp], dtype=np.int64)
        a_rows = _ranges(lo, cnt)
        a_inst = np.repeat(att, cnt)
        last = np.zeros(plan.host.size, dtype=np.int64)
        np.maximum.at(last, inst, t)
        span = np.maximum(last[att] - plan.start[att], 0)
        at = plan.start[att] + (rng.random(att.size) * span).astype(np.int64)
        a_t = np.repeat(at, cnt) + model.attack_gap[a_rows]
        a_off = np.repeat(
            rng.integers(0, 1 << 24, att.size).astype(np.uint64) << np.uint64(_PAGE_SHIFT), cnt
        )
        # the control's own program becomes the host program (image and command line)
        rec_img = np.array(
            model.attack_pool.column("image").take(pa.array(a_rows)).to_pylist(), dtype=object
        )
        shape_img = np.repeat(np.array([model.attacks[s].image for s in shp], dtype=object), cnt)
        a_tmpl = model.inst_start[plan.template[a_inst]]
        a_img = np.where(rec_img == shape_img, a_tmpl, n_pool + a_rows)
        rows = np.concatenate([rows, n_pool + a_rows])
        img_rows = np.concatenate([img_rows, a_img])
        inst = np.concatenate([inst, a_inst])
        t = np.concatenate([t, a_t])
        off = np.concatenate([off, a_off])
        tmpl = np.concatenate([tmpl, a_tmpl])
        for j, s in enumerate(shp):
            mal.append({"inst": int(att[j]), "shape": int(s), "time": int(at[j])})
    order = np.argsort(t, kind="stable")
    rows, img_rows, inst, t, off, tmpl = (a[order] for a in (rows, img_rows, inst, t, off, tmpl))
    src = _source(model)
    table = src.take(pa.array(rows))
    names = src.schema.names
    # identities: strings per instance, rows by dictionary index
    uniq, local = np.unique(inst, return_inverse=True)
    hosts = [hostnames[h] for h in plan.host[uniq]]
    uids = [f"{h}:{p}:{s}" for h, p, s in zip(hosts, plan.pid[uniq], plan.start[uniq], strict=True)]
    local32 = pa.array(local.astype(np.int32))
    host_arr = pa.DictionaryArray.from_arrays(local32, pa.array(hosts))
    pid_new = plan.pid[inst]
    pool_pid = table.column("pid").to_numpy(zero_copy_only=False).astype(float)
    pool_tid = table.column("tid").to_numpy(zero_copy_only=False).astype(float)
    tid = np.where(
        np.isnan(pool_tid) | np.isnan(pool_pid),
        pid_new,
        pid_new + np.nan_to_num(pool_tid - pool_pid).astype(np.int64),
    )
    img_idx = pa.array(img_rows)
    tgt = table.column("target_uid").cast(pa.string())
    tgt_new = pc.if_else(
        pc.is_valid(tgt), pc.binary_join_element_wise(host_arr.cast(pa.string()), tgt, "|"), tgt
    )
    ts = pa.timestamp("ns", tz="UTC")
    n = table.num_rows
    zeros = pa.array(np.zeros(n, np.int32))
    cols: dict[str, Any] = {
        "time": pa.array(t, pa.int64()).cast(ts),
        "host": host_arr,
        "process_uid": pa.DictionaryArray.from_arrays(local32, pa.array(uids)),
        "pid": pa.array(pid_new),
        "tid": pa.array(tid),
        "process_start": pa.array(plan.start[inst], pa.int64()).cast(ts),
        "parent_uid": pa.DictionaryArray.from_arrays(
            local32, pa.array([f"{h}:session" for h in hosts])
        ),
        "image": src.column("image").take(img_idx),
        "cmd_line": src.column("cmd_line").take(img_idx),
        "target_uid": tgt_new,
        "os": pa.DictionaryArray.from_arrays(
            local32, pa.array([host_os[h] for h in plan.host[uniq]])
        ),
        "src_format": pa.DictionaryArray.from_arrays(zeros, pa.array([SYNTH_FORMAT])),
        "src_file": pa.DictionaryArray.from_arrays(zeros, pa.array([src_file])),
        "src_record": pa.array(np.arange(n, dtype=np.int64)),
        "src_line": pa.array(np.arange(1, n + 1, dtype=np.int64)),
    }
    for c in _ADDRESS_COLUMNS:
        cols[c] = _offset(table.column(c), off)
    arrays = []
    for f in EVENT_SCHEMA:
        arr = cols.get(f.name)
        if arr is None:
            arr = table.column(names.index(f.name))
        if pa.types.is_dictionary(arr.type) and not pa.types.is_dictionary(f.type):
            arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
            arr = arr.dictionary.take(arr.indices)  # faster than cast for long strings
        if arr.type != f.type:
            arr = arr.cast(f.type)
        arrays.append(arr)
    out = pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)
    labels = []
    for m in mal:
        i = m["inst"]
        shape = model.attacks[m["shape"]]
        k = int(np.searchsorted(uniq, i))
        when = datetime.fromtimestamp(m["time"] / _NS, UTC)
        labels.append(
            {
                "role": "self-injected",
                "host": hosts[k],
                "process_guid": uids[k],
                "pid": int(plan.pid[i]),
                "image": model.pool.column("image")[
                    int(model.inst_start[plan.template[i]])
                ].as_py(),
                "technique": f"synthetic replay of {shape.source}: {shape.technique}",
                "attack_ids": list(shape.attack_ids),
                "disk_backed": False,
                "confidence": "confirmed",
                "evidence": [
                    {
                        "event_id": None,
                        "channel": SYNTH_FORMAT,
                        "record_id": None,
                        "utc_time": when.strftime("%Y-%m-%d %H:%M:%S.%f"),
                        "what": f"first replayed row of the control recorded in {shape.source}",
                    }
                ],
                "notes": "injected by unbacked.evaluate.synth",
            }
        )
    return out, labels


def _instances_in(table: pa.Table) -> int:
    uids: set[str] = set()
    for c in ("process_uid", "parent_uid", "target_uid"):
        uids.update(v for v in pc.unique(table.column(c)).to_pylist() if v)
    return len(uids)


def generate(
    model: FleetModel,
    out_dir: str | Path,
    *,
    events: int = 1_000_000,
    hosts: int | None = None,
    days: int = 1,
    attack_rate: float = 1e-3,
    linux_share: float = 0.5,
    seed: int = 0,
    chunk_events: int = 1_000_000,
    fmt: str = "parquet",
    start: datetime = _DEFAULT_START,
) -> FleetResult:
    """Write about ``events`` synthetic events under ``out_dir/data`` and their labels under
    ``out_dir/labels`` (``file`` relative to ``out_dir``, so ``unbacked eval OUT/data --labels
    OUT/labels --data-root OUT`` measures them), plus ``out_dir/fleet.json`` (parameters, counts
    and the fitted per-program figures).

    ``attack_rate`` is the share of process instances an attack shape is replayed into;
    ``hosts`` defaults to one per 20,000 events.
    """
    import time as _time

    from unbacked.sources.native import EventWriter

    t0 = _time.perf_counter()
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"format {fmt!r}: use parquet or jsonl")
    out = Path(out_dir).resolve()
    data_dir, label_dir = out / "data", out / "labels" / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    hosts = hosts or max(1, events // 20_000)
    rng = np.random.default_rng(seed)
    start_ns = int(start.timestamp()) * _NS
    plan, host_os = _plan(model, rng, events, hosts, days, linux_share, attack_rate, start_ns)
    width = max(4, len(str(hosts)))
    hostnames = [f"{o[:3]}-{h:0{width}d}" for h, o in enumerate(host_os)]
    # files: runs of whole hosts with about chunk_events rows each
    per_host = np.bincount(plan.host, weights=plan.length, minlength=hosts)
    file_of_host = (np.cumsum(per_host) - per_host) // max(chunk_events, 1)
    file_of_inst = file_of_host[plan.host].astype(np.int64)
    files, label_files = [], []
    total = 0
    n_att = 0
    suffix = ".parquet" if fmt == "parquet" else ".jsonl"
    for f in np.unique(file_of_inst):
        sel = np.flatnonzero(file_of_inst == f)
        path = data_dir / f"part-{int(f):05d}{suffix}"
        table, mal = _build_chunk(model, plan, sel, hostnames, host_os, rng, str(path))
        with EventWriter(path) as w:
            w.write(table)
        rel = path.relative_to(out).as_posix()
        label = {
            "file": rel,
            "format": f"{SYNTH_FORMAT} ({fmt})",
            "scope": "synthetic fleet (benign resampled from real captures, attacks replayed)",
            "dataset_metadata": None,
            "generator": "unbacked.evaluate.synth",
            "events": table.num_rows,
            "parse_errors": 0,
            "hosts": {hostnames[h]: int(c) for h, c in _host_counts(plan, sel)},
            "time_range_sysmon_utc": None,
            "time_range_record_time": None,
            "process_instances": _instances_in(table),
            "malicious_count": len(mal),
            "malicious": mal,
            "possible": [],
            "other_malicious_not_injection": [],
            "must_not_label": [],
            "noise_stats": {},
            "rationale": "Synthetic: every benign row is a real benign row resampled; the "
            "malicious instances are exactly those an attack shape was replayed into.",
        }
        lpath = label_dir / f"part-{int(f):05d}.json"
        lpath.write_text(json.dumps(label, indent=1) + "\n", encoding="utf-8")
        files.append(path)
        label_files.append(lpath)
        total += table.num_rows
        n_att += len(mal)
    result = FleetResult(
        files=files,
        label_files=label_files,
        events=total,
        instances=int(plan.host.size),
        attacks=n_att,
        hosts=hosts,
        days=days,
        seconds=_time.perf_counter() - t0,
    )
    manifest = {
        "generator": "unbacked.evaluate.synth",
        "parameters": {
            "events": events,
            "hosts": hosts,
            "days": days,
            "attack_rate": attack_rate,
            "linux_share": linux_share,
            "seed": seed,
            "chunk_events": chunk_events,
            "format": fmt,
            "start": start.isoformat(),
            "block": BLOCK,
        },
        "result": result.to_dict(),
        "model": model.summary(),
    }
    (out / "fleet.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return result


def _host_counts(plan: _Plan, sel: np.ndarray) -> list[tuple[int, int]]:
    h, c = np.unique(np.repeat(plan.host[sel], plan.length[sel]), return_counts=True)
    return [(int(a), int(b)) for a, b in zip(h, c, strict=True)]
