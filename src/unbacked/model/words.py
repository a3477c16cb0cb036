"""Feature values in words, for analysts: what an access mask grants, what a call-trace class
says about where the unbacked code sat. The machine value stays as it is (OCSF ``value``); the
words go beside it (``value_text``, messages, the console table, the HTML report)."""

from __future__ import annotations

import re

from unbacked.model.winconst import process_access_names

#: call-trace classes of ``open.unbacked`` (``detect.features.TRACE_CLASS_SQL``) in words
TRACE_CLASS_WORDS = {
    "none": "no unbacked frame in the call trace",
    "kernel": "only kernel-address frames unresolved (no unbacked user-mode code)",
    "managed": "unbacked frames beside a JIT runtime's modules (managed code)",
    "only": "every frame unbacked (a direct system call from unbacked code)",
    "image-range": "unbacked frames in the x64 image range (a runtime's code beside its modules)",
    "api": "unbacked frame right before the API call",
    "truncated": "only system DLL frames: the stack walk stopped at code without unwind data",
    "hosted": "unbacked code called by the application's own modules",
    "other": "unbacked frames elsewhere in the stack (hooks, callbacks)",
}

_HEX = re.compile(r"0x[0-9a-fA-F]+")


def value_words(feature: str | None, value: str | None) -> str | None:
    """``value`` of ``feature`` in words, or None when the value says it plainly already."""
    if not feature or value is None:
        return None
    if feature == "open.unbacked":
        return TRACE_CLASS_WORDS.get(value)
    if feature == "open.access":
        # "<target program>:0x1438"
        m = _HEX.search(value.rsplit(":", 1)[-1])
        return process_access_names(int(m.group(0), 16)) if m else None
    return None


def with_words(message: str, value: str | None, words: str | None) -> str:
    """``message`` with ``words`` after the first mention of ``value`` (or at its end)."""
    if not words or value is None or words in message:
        return message
    quoted = f"'{value}')"
    if quoted in message:
        return message.replace(quoted, f"'{value}': {words})", 1)
    if value in message:
        return message.replace(value, f"{value} ({words})", 1)
    return f"{message} ({words})"
