"""Decoding Windows memory constants as telemetry spells them into the event model's masks.

The event model stores Windows protections as ``PAGE_*`` masks and allocation types as ``MEM_*``
masks (see ``unbacked.model.schema``). Telemetry spells them many ways: ETW renders ``UInt32``
fields as decimal or ``0x`` hex strings, some renderers print symbolic names
(``PAGE_EXECUTE_READWRITE``, ``MEM_COMMIT|MEM_RESERVE``), Elastic Defend writes ``RWX``/``R-X``
and ``COMMIT|RESERVE``, and ETW-TI v2 gives the VAD region type as ``MEM_PRIVATE``/``MEM_MAPPED``/
``MEM_IMAGE``. Every Windows source decodes through these functions so the same protection
always lands as the same mask, whatever the spelling. Unknown spellings decode to ``None`` (the
caller counts the record or leaves the column null) rather than guessing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# The masks themselves live with the event model (``unbacked.model.winconst``, which also names
# and classifies them); this module only decodes the spellings telemetry uses.
from unbacked.model.winconst import (
    MEM_COMMIT,
    MEM_IMAGE,
    MEM_LARGE_PAGES,
    MEM_MAPPED,
    MEM_PRIVATE,
    MEM_RESERVE,
    MEM_RESET,
    MEM_TOP_DOWN,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_EXECUTE_WRITECOPY,
    PAGE_GUARD,
    PAGE_NOACCESS,
    PAGE_NOCACHE,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_TARGETS_INVALID,
    PAGE_WRITECOMBINE,
    PAGE_WRITECOPY,
)

PAGE_NAMES: Mapping[str, int] = {
    "PAGE_NOACCESS": PAGE_NOACCESS,
    "PAGE_READONLY": PAGE_READONLY,
    "PAGE_READWRITE": PAGE_READWRITE,
    "PAGE_WRITECOPY": PAGE_WRITECOPY,
    "PAGE_EXECUTE": PAGE_EXECUTE,
    "PAGE_EXECUTE_READ": PAGE_EXECUTE_READ,
    "PAGE_EXECUTE_READWRITE": PAGE_EXECUTE_READWRITE,
    "PAGE_EXECUTE_WRITECOPY": PAGE_EXECUTE_WRITECOPY,
    "PAGE_GUARD": PAGE_GUARD,
    "PAGE_NOCACHE": PAGE_NOCACHE,
    "PAGE_WRITECOMBINE": PAGE_WRITECOMBINE,
    "PAGE_TARGETS_INVALID": PAGE_TARGETS_INVALID,
    "PAGE_TARGETS_NO_UPDATE": PAGE_TARGETS_INVALID,  # same bit, meaning depends on the call
}

#: Elastic Defend's three-letter protections (``process.Ext.api.parameters.protection``,
#: ``memory_region.*_protection``, call-stack frame ``protection``). ``C`` is copy-on-write.
SHORT_PROTECTIONS: Mapping[str, int] = {
    "---": PAGE_NOACCESS,
    "R--": PAGE_READONLY,
    "RW-": PAGE_READWRITE,
    "RC-": PAGE_WRITECOPY,
    "--X": PAGE_EXECUTE,
    "R-X": PAGE_EXECUTE_READ,
    "RWX": PAGE_EXECUTE_READWRITE,
    "RCX": PAGE_EXECUTE_WRITECOPY,
}

# -- MEM_* allocation types (VirtualAlloc flAllocationType, NtMapViewOfSection AllocationType)
MEM_REPLACE_PLACEHOLDER = 0x4000
MEM_RESERVE_PLACEHOLDER = 0x40000
MEM_WRITE_WATCH = 0x200000
MEM_PHYSICAL = 0x400000
MEM_ROTATE = 0x800000
MEM_DIFFERENT_IMAGE_BASE_OK = 0x800000
MEM_RESET_UNDO = 0x1000000
MEM_4MB_PAGES = 0x80000000

ALLOC_NAMES: Mapping[str, int] = {
    "COMMIT": MEM_COMMIT,
    "RESERVE": MEM_RESERVE,
    "REPLACE_PLACEHOLDER": MEM_REPLACE_PLACEHOLDER,
    "RESERVE_PLACEHOLDER": MEM_RESERVE_PLACEHOLDER,
    "RESET": MEM_RESET,
    "TOP_DOWN": MEM_TOP_DOWN,
    "WRITE_WATCH": MEM_WRITE_WATCH,
    "PHYSICAL": MEM_PHYSICAL,
    "ROTATE": MEM_ROTATE,
    "DIFFERENT_IMAGE_BASE_OK": MEM_DIFFERENT_IMAGE_BASE_OK,
    "RESET_UNDO": MEM_RESET_UNDO,
    "LARGE_PAGES": MEM_LARGE_PAGES,
    "4MB_PAGES": MEM_4MB_PAGES,
}

# -- VAD / MEMORY_BASIC_INFORMATION.Type (MEM_PRIVATE, MEM_MAPPED, MEM_IMAGE)

REGION_TYPES: Mapping[int, str] = {
    MEM_PRIVATE: "private",
    MEM_MAPPED: "mapped",
    MEM_IMAGE: "image",
}
_REGION_NAMES: Mapping[str, str] = {
    "MEM_PRIVATE": "private",
    "PRIVATE": "private",
    "MEM_MAPPED": "mapped",
    "MAPPED": "mapped",
    "MEM_IMAGE": "image",
    "IMAGE": "image",
}

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_INT_RE = re.compile(r"^\s*(-?)(0[xX][0-9a-fA-F]+|[0-9][0-9,_]*)\s*$")


def parse_uint(value: object, *, bits: int = 64) -> int | None:
    """An unsigned integer from JSON/XML: ``4096``, ``"4096"``, ``"4,096"``, ``"0x1000"``.

    TraceEvent-based consumers (SilkETW) render integers with thousands separators and pointers
    as ``0x`` hex; krabsetw-style consumers write JSON numbers. Negative numbers are accepted
    and wrapped (a pointer printed as signed); values wider than ``bits`` and non-numbers give
    ``None``. Booleans are not numbers here.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not value.is_integer():
            return None
        n = int(value)
    elif isinstance(value, str):
        m = _INT_RE.match(value)
        if m is None:
            return None
        sign, digits = m.groups()
        try:
            n = int(digits, 16) if digits[:2] in ("0x", "0X") else int(digits.replace(",", ""))
        except ValueError:
            return None
        if sign:
            n = -n
    elif isinstance(value, list) and len(value) == 1:
        # some consumers wrap pointers in a one-element list: {"BaseAddress": ["0x2c0ceb90000"]}
        return parse_uint(value[0], bits=bits)
    else:
        return None
    limit = (1 << bits) - 1
    if n < 0:
        if -n > (1 << (bits - 1)):
            return None
        n &= limit
    if n > limit:
        return None
    return n


def parse_protection(value: object) -> int | None:
    """A ``PAGE_*`` mask from a number, ``"0x40"``, ``"PAGE_EXECUTE_READWRITE|PAGE_GUARD"``,
    ``"RWX"`` or ``"EXECUTE_READWRITE"``."""
    n = parse_uint(value, bits=32)
    if n is not None or not isinstance(value, str):
        return n
    text = value.strip().upper()
    if text in SHORT_PROTECTIONS:
        return SHORT_PROTECTIONS[text]
    mask = 0
    for part in re.split(r"\s*[|,]\s*|\s+", text):
        if not part:
            continue
        key = part if part.startswith("PAGE_") else "PAGE_" + part
        if key not in PAGE_NAMES:
            short = SHORT_PROTECTIONS.get(part)
            if short is None:
                return None
            mask |= short
            continue
        mask |= PAGE_NAMES[key]
    return mask or None


def parse_alloc_type(value: object) -> int | None:
    """A ``MEM_*`` mask from a number, ``"0x3000"``, ``"MEM_COMMIT|MEM_RESERVE"`` or Elastic's
    ``"COMMIT|RESERVE"``."""
    n = parse_uint(value, bits=32)
    if n is not None or not isinstance(value, str):
        return n
    mask = 0
    for part in re.split(r"\s*[|,]\s*|\s+", value.strip().upper()):
        if not part:
            continue
        key = part.removeprefix("MEM_")
        if key not in ALLOC_NAMES:
            return None
        mask |= ALLOC_NAMES[key]
    return mask or None


def parse_region_type(value: object) -> str | None:
    """``"private"``/``"mapped"``/``"image"`` from a VAD type (``0x20000``, ``131072``,
    ``"MEM_PRIVATE"``, Elastic's ``"PRIVATE"``); ``None`` when unknown or zero (no VAD)."""
    n = parse_uint(value, bits=32)
    if n is not None:
        return REGION_TYPES.get(n)
    if isinstance(value, str):
        return _REGION_NAMES.get(value.strip().upper())
    return None
