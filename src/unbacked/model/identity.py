"""Program identity by file identity, not by name alone.

Programs are baselined and trusted (JIT allowances) by their normalized name, the image's
basename. A binary that takes a known program's name — a loader copied to ``/tmp/x/node`` — must
not inherit that program's baseline or its JIT allowance. An instance is *foreign* to its name:

* with a learned baseline that knows where the program lives (``process.image`` facts: the
  image paths seen, ``process.file``: ELF build-ids or content hashes seen), when its image
  path is none of those paths, or its file identity is known and none of those identities —
  unless the image lies in a system location only root writes to (``/usr``, ``/bin``,
  ``/sbin``, ``/lib*``, ``/opt``, ``/snap``, ``/nix/store``): there a new build-id or path is
  a package upgrade or another installed version (Debian's security updates change
  chromium's, node's, java's build-ids), and whoever can write there needs no masquerade;
* always, when the name is a JIT engine's (whose allowances are the prize) and the image runs
  from a temporary, world-writable place (``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run/user``)
  or from a memfd.

On Windows, what telemetry says of an image (its path; Sysmon/Elastic hashes and signature) is
not enough to learn paths or contents per program: the same program legitimately has several
hashes across hosts and versions, and user profiles put the same program under many paths. So
only what is abnormal everywhere makes an instance foreign:

* the name of a Windows system program (``svchost.exe``, ``lsass.exe``, ``rundll32.exe``,
  ``powershell.exe``, ...) on an image outside the system directories (``\\Windows\\System32``,
  ``SysWOW64``, ``WinSxS``; ``explorer.exe`` in ``\\Windows``);
* a JIT engine's name (``node.exe``, ``java.exe``, ``chrome.exe``, ...) on an image in a
  temporary place (``AppData\\Local\\Temp``, ``\\Windows\\Temp``, ``\\Users\\Public``,
  the recycle bin).

Images known by name only (no directory) are never foreign.

Foreign instances get the program key ``NAME [PATH]`` (a program of its own for the baseline:
it backs off to the population) and their own executable as calling module stops matching the
JIT patterns (rules ``UNB-L-005`` / ``UNB-W-007`` say so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unbacked.model.jit import JIT_PROGRAMS
from unbacked.model.rows import from_numpy

if TYPE_CHECKING:
    from unbacked.detect.baseline import ProgramBaseline

#: executable names of JIT engines (their allowances are what a masquerading loader wants)
JIT_PROGRAM_RE = rf"^({'|'.join(JIT_PROGRAMS)})$"  # from the one table, ``model.jit``
#: places anyone may write to: a JIT engine's name there is not the engine
TEMP_PATH_RE = r"^(/tmp/|/var/tmp/|/dev/shm/|/run/user/|/memfd:)"
#: Windows programs that live in the system directories only
WIN_SYSTEM_PROGRAM_RE = (
    r"^(svchost|lsass|lsaiso|lsm|services|csrss|smss|wininit|winlogon|spoolsv|taskhost|"
    r"taskhostw|taskeng|dllhost|conhost|rundll32|regsvr32|wmiprvse|searchindexer|"
    r"searchprotocolhost|searchfilterhost|sihost|fontdrvhost|dwm|ctfmon|userinit|mshta|"
    r"wscript|cscript|cmd|powershell|werfault|msiexec|explorer)\.exe$"
)
#: where those live (drive, ``\\??\\``, ``\\\\?\\`` or volume-device prefixes)
WIN_SYSTEM_DIR_RE = (
    r"(?i)^(\\\?\?\\|\\\\\?\\)?"
    r"((([a-z]:|\\device\\harddiskvolume[0-9]+)?\\(windows|winnt)|\\systemroot|%systemroot%)"
    r"\\(system32|syswow64|sysnative|winsxs|servicing)\\"
    r"|([a-z]:|\\device\\harddiskvolume[0-9]+)?\\(windows|winnt)\\explorer\.exe$)"
)
#: Windows JIT engines' executables
WIN_JIT_PROGRAM_RE = r"^(node|java|javaw|chrome|msedge|firefox|dotnet|pwsh|electron)\.exe$"
#: places anyone may write to on Windows
WIN_TEMP_PATH_RE = (
    r"(?i)\\appdata\\local\\temp\\|^([a-z]:)?\\windows\\temp\\|\\users\\public\\"
    r"|^([a-z]:)?\\\$recycle\.bin\\"
)
#: places only root writes to (package-managed): a new build-id or path there is an upgrade
SYSTEM_PATH_RE = r"^/(usr|bin|sbin|lib|lib32|lib64|libx32|opt|snap|nix/store)/"
SEP = " ["  # "node [/tmp/x/node]": the path closed, so no name pattern matches its end


def known_identities(baseline: ProgramBaseline | None) -> tuple[pa.Table, pa.Table]:
    """(program, value) of the image paths and file identities a baseline learned."""
    empty = pa.table({"program": pa.array([], pa.string()), "value": pa.array([], pa.string())})
    counts = getattr(baseline, "counts_", None)
    if counts is None or counts.num_rows == 0:
        return empty, empty
    feat = counts["feature"].cast(pa.string())
    paths = counts.filter(pc.equal(feat, "process.image")).select(["program", "value"])
    files = counts.filter(pc.equal(feat, "process.file")).select(["program", "value"])
    return paths, files


def _codes(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The distinct values of ``values`` and, per row, the index of its value among them (a
    null row indexes a null entry)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    enc = pc.dictionary_encode(values, null_encoding="encode")
    return enc.dictionary, enc.indices.to_numpy(zero_copy_only=False)


def _per_row(verdict: pa.Array, idx: np.ndarray) -> np.ndarray:
    """A verdict on distinct values (nulls: False), per row."""
    per_value = np.asarray(pc.fill_null(verdict, False), dtype=bool)
    return np.take(per_value, idx)


def _unknown_pairs(
    prog: tuple[pa.Array, np.ndarray], other: tuple[pa.Array, np.ndarray], known: pa.Table,
    lower: bool,
) -> np.ndarray:  # fmt: skip
    """Per row: its (program, value) pair is not among ``known``'s (``program``, ``value``)
    rows (values compared lower-cased when ``lower``); a null value is never known. Each
    distinct pair is looked up once."""
    (prog_values, prog_idx), (values, idx) = prog, other
    pair = prog_idx.astype(np.int64) * max(len(values), 1) + idx
    distinct = pc.dictionary_encode(from_numpy(pair))
    codes = distinct.dictionary.to_numpy()
    seen_values = values.take(from_numpy(codes % max(len(values), 1)))
    if lower:
        seen_values, known_values = pc.utf8_lower(seen_values), pc.utf8_lower(known["value"])
    else:
        known_values = known["value"]
    key = pc.binary_join_element_wise(
        prog_values.take(from_numpy(codes // max(len(values), 1))), seen_values, "\x00"
    )
    known_key = pc.binary_join_element_wise(known["program"], known_values, "\x00")
    unknown = pc.invert(pc.is_in(key, value_set=known_key))
    return _per_row(unknown, distinct.indices.to_numpy(zero_copy_only=False))


def foreign_mask(
    events: pa.Table, program: pa.Array | pa.ChunkedArray, baseline: ProgramBaseline | None
) -> pa.Array:
    """Per event: the actor's image is foreign to its program name (see the module doc). Each
    test runs once per distinct image, program or (program, image) pair: a run has thousands
    of events per image."""
    n = events.num_rows
    if n == 0:
        return pa.array([], pa.bool_())
    os_col = pc.fill_null(events["os"].cast(pa.string()), "")
    linux = pc.equal(os_col, "linux")
    windows = pc.equal(os_col, "windows")
    has_linux = pc.any(linux).as_py()
    if not has_linux and not pc.any(windows).as_py():
        return pa.array([False] * n, pa.bool_())
    images, image_idx = image = _codes(pc.fill_null(events["image"].cast(pa.string()), ""))
    win = pc.and_(windows, from_numpy(_per_row(_windows_foreign(images), image_idx)))
    if not has_linux:
        return win.combine_chunks() if isinstance(win, pa.ChunkedArray) else win
    programs, prog_idx = prog = _codes(pc.fill_null(program, ""))
    foreign = _per_row(pc.match_substring_regex(programs, JIT_PROGRAM_RE), prog_idx) & _per_row(
        pc.match_substring_regex(images, TEMP_PATH_RE), image_idx
    )
    paths, files = known_identities(baseline)
    if paths.num_rows or files.num_rows:
        # what a baseline did not see counts only outside the system locations (see the doc)
        user_place = ~_per_row(pc.match_substring_regex(images, SYSTEM_PATH_RE), image_idx)
    if paths.num_rows:
        known_prog = _per_row(pc.is_in(programs, value_set=paths["program"].unique()), prog_idx)
        unseen = user_place & _unknown_pairs(prog, image, paths, lower=True)
        foreign |= known_prog & unseen
    if files.num_rows:
        fids, fid_idx = fid = _codes(pc.coalesce(events["image_build_id"], events["image_hash"]))
        known_prog = _per_row(pc.is_in(programs, value_set=files["program"].unique()), prog_idx)
        other = (
            _per_row(pc.is_valid(fids), fid_idx)
            & user_place
            & _unknown_pairs(prog, fid, files, lower=False)
        )
        foreign |= known_prog & other
    out = pc.and_(linux, from_numpy(_per_row(pc.not_equal(images, ""), image_idx) & foreign))
    out = pc.or_(out, win)
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def _windows_foreign(paths: pa.Array) -> pa.Array:
    """Windows verdicts on distinct image paths: a system program's name outside the system
    directories, or a JIT engine's name in a temporary place (only images with a directory: a
    bare name says nothing)."""
    from unbacked.model.state import program_column

    prog = pc.fill_null(program_column(paths), "")
    has_dir = pc.match_substring(paths, "\\")
    system_name = pc.match_substring_regex(prog, WIN_SYSTEM_PROGRAM_RE)
    in_system = pc.and_(
        pc.match_substring_regex(paths, WIN_SYSTEM_DIR_RE),
        pc.invert(pc.match_substring(paths, "\\..\\")),
    )
    jit = pc.and_(
        pc.match_substring_regex(prog, WIN_JIT_PROGRAM_RE),
        pc.match_substring_regex(paths, WIN_TEMP_PATH_RE),
    )
    return pc.and_(has_dir, pc.or_(pc.and_(system_name, pc.invert(in_system)), jit))


def _tag(name: pa.Array | pa.ChunkedArray, image: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``NAME [PATH]``."""
    return pc.binary_join_element_wise(pc.binary_join_element_wise(name, image, SEP), "]", "")


def apply_identity(
    events: pa.Table, program: pa.Array | pa.ChunkedArray, baseline: ProgramBaseline | None
) -> tuple[pa.Table, pa.Array | pa.ChunkedArray]:
    """Events with ``image_foreign`` and, for foreign instances, the program key ``NAME [PATH]``
    and their own executable as caller renamed the same way (no JIT allowance by name)."""
    mask = foreign_mask(events, program, baseline)
    if events.num_rows == 0 or not pc.any(mask).as_py():
        return events, program
    image = events["image"].cast(pa.string())
    tagged = _tag(program, image)
    program = pc.if_else(mask, tagged, program)
    col = events.schema.get_field_index("caller_module")
    caller = events["caller_module"].cast(pa.string())
    own = pc.equal(
        pc.utf8_lower(pc.replace_substring_regex(caller, r"^.*[\\/]", "")),
        pc.utf8_lower(pc.replace_substring_regex(image, r"^.*[\\/]", "")),
    )
    renamed = pc.if_else(
        pc.and_(mask, pc.fill_null(own, False)),
        _tag(caller, image),
        caller,
    )
    events = events.set_column(
        col, events.schema.field(col), renamed.cast(events.schema.field(col).type)
    )
    return events, program


__all__ = [
    "JIT_PROGRAM_RE",
    "SYSTEM_PATH_RE",
    "TEMP_PATH_RE",
    "WIN_JIT_PROGRAM_RE",
    "WIN_SYSTEM_DIR_RE",
    "WIN_SYSTEM_PROGRAM_RE",
    "WIN_TEMP_PATH_RE",
    "apply_identity",
    "foreign_mask",
    "known_identities",
]
