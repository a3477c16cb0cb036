"""No silent loss: every input read or accounted for (issue #17).

JSON lines whose first lines are damaged are still recognised and read; archive members with a
bad CRC, truncated archives, nested archives and decompression bombs are reported per member;
every read input satisfies ``records == events + ignored + skipped``.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path

import pytest

from unbacked.errors import InputError
from unbacked.runreport import RunReport
from unbacked.sources import discovery, read_events

from .test_sysmon_json import ACCESS, export
from .util import jsonl

GOOD = [export(10, **ACCESS) for _ in range(20)]
BODY = jsonl(*GOOD)


def _read(path: Path, **kw: object) -> tuple[int, RunReport]:
    report = RunReport(**kw)  # type: ignore[arg-type]
    return read_events([path], report).num_rows, report


def _check_identity(report: RunReport) -> None:
    for f in report.files.values():
        if f.error is None:
            assert f.accounted, f.to_dict()


BAD_FIRST = {
    "truncated first line": BODY[: len(BODY) // 40] + b"\n" + BODY,
    "utf-8 bom": b"\xef\xbb\xbf" + BODY,
    "nan in line 1": b'{"EventID": NaN, "Channel": "x"}\n' + BODY,
    "nul bytes": b'{"EventID":\x00 10}\n' + BODY,
    "duplicate keys": b'{"EventID": 10, "EventID": "x", "Hostname": 1, "Hostname": {}}\n' + BODY,
    "200 KB first line": b'{"junk": "' + b"x" * 200_000 + b'"}\n' + BODY,
    "200 KB broken first line": b'{"junk": "' + b"x" * 200_000 + b"\n" + BODY,
}


@pytest.mark.parametrize("case", sorted(BAD_FIRST))
def test_a_mostly_valid_json_lines_file_is_read(tmp_path: Path, case: str) -> None:
    d = tmp_path / "d"
    d.mkdir()
    f = d / "events.json"
    f.write_bytes(BAD_FIRST[case])
    for target in (f, d):  # named explicitly and found in a directory
        n, report = _read(target)
        rep = report.files[str(f)]
        assert rep.format == "sysmon-jsonl", (case, report.to_dict())
        assert n == len(GOOD), case
        assert rep.accounted, rep.to_dict()
        assert report.lost == []


def test_lines_of_240_kb_each_are_read(tmp_path: Path) -> None:
    big = [export(10, **{**ACCESS, "CallTrace": "ntdll.dll+1|" * 20_000}) for _ in range(6)]
    assert all(len(jsonl(o)) > 230_000 for o in big)
    f = tmp_path / "big.json"
    f.write_bytes(jsonl(*big))
    n, report = _read(f)
    assert n == 6 and report.files[str(f)].accounted


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> None:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _corrupt_crc(path: Path, member: str) -> None:
    """Flip the CRC in the local header and the central directory of ``member``."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    bad = struct.pack("<I", info.CRC ^ 0xDEADBEEF)
    data[info.header_offset + 14 : info.header_offset + 18] = bad
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) != -1:
        nlen = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + nlen] == member.encode():
            data[pos + 16 : pos + 20] = bad
        pos += 4
    path.write_bytes(bytes(data))


def test_bad_crc_is_reported_per_member_and_the_data_kept(tmp_path: Path) -> None:
    z = tmp_path / "crc.zip"
    _zip(z, {"a.json": BODY, "b.json": BODY})
    _corrupt_crc(z, "b.json")
    n, report = _read(z)
    assert n == 2 * len(GOOD)  # the lines before the check were read
    b = report.files[f"{z}!b.json"]
    assert b.skipped.get("archive member CRC mismatch") == 1
    assert not report.files[f"{z}!a.json"].skipped
    _check_identity(report)
    with pytest.raises(InputError):
        _read(z, strict=True)


def test_nested_archives_are_read_to_a_bounded_depth(tmp_path: Path) -> None:
    inner = io.BytesIO()
    _zip(inner, {"deep.json": BODY})  # type: ignore[arg-type]
    level = inner.getvalue()
    for _ in range(discovery.MAX_ARCHIVE_DEPTH):
        buf = io.BytesIO()
        _zip(buf, {"in.zip": level, "x.json": BODY})  # type: ignore[arg-type]
        level = buf.getvalue()
    z = tmp_path / "nest.zip"
    z.write_bytes(level)
    n, report = _read(z)
    assert n == discovery.MAX_ARCHIVE_DEPTH * len(GOOD)
    assert f"{z}!x.json" in report.files and f"{z}!in.zip!x.json" in report.files
    deep = [u for u in report.unread if "beyond depth" in u.reason]
    assert len(deep) == 1 and deep[0].lost
    assert report.lost == [deep[0].path]


def test_a_zip_of_zeros_is_bounded_and_reported(tmp_path: Path) -> None:
    z = tmp_path / "zeros.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.json", "w") as fh:
        block = b"\x00" * (1 << 20)
        for _ in range(200):
            fh.write(block)
    assert z.stat().st_size < 1 << 20
    n, report = _read(z)
    assert n == 0
    assert next(u.reason for u in report.unread if u.lost).startswith("decompression bomb")


def test_total_inflated_bytes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # many members, each harmless, together past the archive's budget (overlapping-file bombs
    # look like this): reading stops with a clear reason per member, bounded work
    monkeypatch.setattr(discovery, "MAX_ARCHIVE_BYTES", 1 << 20)
    monkeypatch.setattr(discovery, "RATIO_GRACE_BYTES", 1 << 18)
    z = tmp_path / "many.zip"
    _zip(z, {f"m{i:02d}.json": BODY * 6 for i in range(10)})  # ~350 KB each
    n, report = _read(z)
    cut = [f for f in report.files.values() if f.skipped.get("decompression bomb")]
    refused = [f for f in report.failed_files if "decompression bomb" in (f.error or "")]
    assert len(cut) + len(refused) >= 5  # every member past the budget says why
    assert report.lost == [f.path for f in refused]
    assert 0 < n < 10 * 6 * len(GOOD)
    _check_identity(report)


def test_truncated_zip_is_read_by_its_local_headers(tmp_path: Path) -> None:
    z = tmp_path / "cut.zip"
    _zip(z, {"a.json": BODY, "b.json": BODY, "c.json": BODY * 50})
    data = z.read_bytes()
    with zipfile.ZipFile(z) as zf:
        c = zf.getinfo("c.json")
    cut = c.header_offset + 30 + len("c.json") + (c.compress_size // 2)
    z.write_bytes(data[:cut])
    n, report = _read(z)
    assert f"{z}!a.json" in report.files and f"{z}!b.json" in report.files
    crep = report.files[f"{z}!c.json"]
    assert crep.skipped.get("archive member truncated") == 1
    assert crep.events > 0
    assert n == 2 * len(GOOD) + crep.events
    assert str(z) in report.lost
    _check_identity(report)
    # only the central directory missing: every member read, nothing lost
    z2 = tmp_path / "nocd.zip"
    z2.write_bytes(data[: data.find(b"PK\x01\x02")])
    n2, report2 = _read(z2)
    assert n2 == 52 * len(GOOD) and report2.lost == []


def test_truncated_zip_with_data_descriptors(tmp_path: Path) -> None:
    z = tmp_path / "stream.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("a.json", "b.json"):
            with zf.open(name, "w") as fh:  # streamed: sizes in a data descriptor
                fh.write(BODY)
    data = z.read_bytes()
    z.write_bytes(data[: data.find(b"PK\x01\x02")])
    n, report = _read(z)
    assert n == 2 * len(GOOD)
    _check_identity(report)


def test_an_archive_is_opened_once_for_all_its_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # reopening the archive per member (parsing its central directory each time) made reading
    # quadratic in members; bench/archive_members.py times it
    z = tmp_path / "many.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(2_000):
            zf.writestr(f"m/{i:05d}.json", jsonl(export(10, **ACCESS)))
            zf.writestr(f"t/{i:05d}.txt", b"not telemetry %d\n" % i)
    opened: list[object] = []
    real = zipfile.ZipFile._RealGetContents  # type: ignore[attr-defined]

    def counting(self: zipfile.ZipFile) -> None:
        opened.append(self)
        real(self)

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", counting)
    n, report = _read(z)
    assert n == 2_000 and len(opened) == 1
    assert len([u for u in report.unread if not u.lost]) == 2_000
    _check_identity(report)


def test_empty_files_fifos_and_unrecognised_are_listed(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "README").write_text("hello\n")
    (tmp_path / "broken.evtx").write_bytes(b"ElfFilX\x00" + b"\x00" * 200)
    os.mkfifo(tmp_path / "pipe")
    report = RunReport()
    read_events([tmp_path], report)
    why = {Path(u.path).name: (u.reason, u.lost) for u in report.unread}
    assert why["empty.json"] == ("empty", False)
    assert why["README"][1] is False
    assert why["pipe"][0].startswith("not a regular file")
    assert why["broken.evtx"][1] is True
    assert report.lost == [str(tmp_path / "broken.evtx")]
    assert not report.found_telemetry
    d = report.to_dict()
    assert d["no_telemetry"] and len(d["unread"]) == 4


def test_strict_fails_on_a_lost_input(tmp_path: Path) -> None:
    (tmp_path / "broken.evtx").write_bytes(b"ElfFilX\x00" + b"\x00" * 200)
    with pytest.raises(InputError):
        read_events([tmp_path], RunReport(strict=True))


# found by bench/fuzz_campaign.py: DuckDB quoted the input in its error message, cut inside a
# UTF-8 sequence, and decoding that message raised UnicodeDecodeError out of the source
_DUCKDB_MESSAGE_MUTANT = (
    "eNrt2EtqwzAQBuDQZY4xaxGstCXgLkOP0F3ACFupRWXLeOQ0xuhkXfRIvUJtJX3Qhi4LCf+38SBGo0EGLWag3Crm"
    "rDMFpTJJbgWp3Jud8X02Lt1JQbny+tG1fda9vbzGNEHeVHoMVsknGTe6ltKBmtblmjmGx7ohCKpc0Vk9rW7N4dso"
    "X1JK63Sz2S8KaymEMJ8PP3paffR0b7frsn6afe/p2NAMAAAAztcVrgAAJsM/wC0DAACcA983+ms4mFyfGkcmggq9"
    "M3kcM5aOfa2mFHpmSeHvUaWgWJsexpjEqVnlWNgu9F5P40rxq8RyKnE8zrJiPqTGQztls0a3lWE2rh733Ei5DPil"
    "AICX/dJe9nfrNfNZ"
)


def test_a_query_error_with_an_undecodable_message_is_counted() -> None:
    import base64
    import zlib

    from tests.support.mutate import run_source
    from unbacked.sources.ocsf import OcsfJsonSource

    data = zlib.decompress(base64.b64decode("".join(_DUCKDB_MESSAGE_MUTANT)))
    out = run_source(OcsfJsonSource, data)
    assert out.ok, out.problems
    assert out.records > 0


def test_an_encrypted_member_is_listed_as_lost(tmp_path: Path) -> None:
    z = tmp_path / "enc.zip"
    _zip(z, {"a.json": BODY, "b.json": BODY}, zipfile.ZIP_STORED)
    data = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("b.json")
    data[info.header_offset + 6] |= 1  # the "encrypted" flag, local header
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) != -1:  # and central directory
        nlen = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + nlen] == b"b.json":
            data[pos + 8] |= 1
        pos += 4
    z.write_bytes(bytes(data))
    n, report = _read(z)
    assert n == len(GOOD)
    assert report.lost == [f"{z}!b.json"]
    assert "encrypted" in report.unread[0].reason


def _no_members(data: bytes) -> bytes:
    """A zip whose central directory lists no members (its local headers still hold them)."""
    cd = data.find(b"PK\x01\x02")
    return data[:cd] + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0, 0, 0, cd, 0)


def test_a_central_directory_listing_no_members_is_not_a_silent_loss(tmp_path: Path) -> None:
    # found by bench/fuzz_campaign.py: such an archive was neither read nor listed
    z = tmp_path / "none.zip"
    _zip(z, {"a.json": BODY, "b.json": BODY})
    z.write_bytes(_no_members(z.read_bytes()))
    n, report = _read(tmp_path)
    assert n == 2 * len(GOOD) and report.lost == []
    assert "lists no members" in report.unread[0].reason and report.unread[0].path == str(z)
    _check_identity(report)
    # a sound archive holding nothing to read is listed as such
    z.unlink()
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("logs/", b"")
        zf.writestr("__MACOSX/._x.json", b"\x00\x05\x16\x07")
    n, report = _read(tmp_path)
    assert n == 0 and [(u.path, u.reason) for u in report.unread] == [
        (str(tmp_path / "empty.zip"), "empty zip archive (no members)")
    ]
    # inside another archive: listed as lost (its members cannot be walked in memory)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("a.json", BODY)
    outer = tmp_path / "outer.zip"
    _zip(outer, {"inner.zip": _no_members(inner.getvalue()), "b.json": BODY})
    n, report = _read(outer)
    assert n == len(GOOD) and report.lost == [f"{outer}!inner.zip"]


def test_a_member_with_an_empty_name_is_read(tmp_path: Path) -> None:
    # found by bench/fuzz_campaign.py: ZipInfo.is_dir() raised IndexError for it
    z = tmp_path / "noname.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(zipfile.ZipInfo(""), BODY)
        zf.writestr("b.json", BODY)
    n, report = _read(z)
    assert n == 2 * len(GOOD) and set(report.files) == {f"{z}!", f"{z}!b.json"}
    _check_identity(report)
