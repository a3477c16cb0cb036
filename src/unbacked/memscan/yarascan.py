"""Optional YARA over suspicious regions only (the ``[yara]`` extra).

Running YARA over all of a process is what makes full-memory scanners slow and noisy; we run it
only over regions the structural analysis already finds suspicious, chunk by chunk under the
scanner contract. When ``yara-python`` is missing, ``load_rules`` raises ``DependencyError`` and
the CLI says how to install it; library callers can check ``available()`` first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from unbacked.errors import DependencyError, InputError
from unbacked.memscan.scanner import Hit, ScannerInterface


def available() -> bool:
    try:
        import yara  # noqa: F401
    except ImportError:
        return False
    return True


def load_rules(paths: Sequence[str | os.PathLike[str]]) -> Any:
    """Compile YARA rule files (one namespace per file)."""
    try:
        import yara
    except ImportError as exc:
        raise DependencyError(
            "YARA rules were given but yara-python is not installed",
            hint="pip install 'unbacked[yara]', or run without --yara",
        ) from exc
    try:
        return yara.compile(filepaths={f"r{i}": os.fspath(p) for i, p in enumerate(paths)})
    except yara.Error as exc:
        raise InputError(
            f"YARA rules do not compile: {exc}",
            source=os.fspath(paths[0]),
            hint="fix the rule file",
        ) from exc


class YaraScanner(ScannerInterface):
    """Yields one hit per (rule, string instance) that starts outside the overlap, as
    volatility3's yarascan does: the same locations whatever the chunking.

    Compiled rules can be matched from several threads at once, so the scanner is
    thread-safe; ``timeout`` bounds each chunk's match time.
    """

    name = "yara"
    description = "YARA rules over suspicious regions only."
    thread_safe = True
    needs = ("yara",)
    extra = "yara"
    examples = (b"\x00" * 700 + b"unbacked-yara-sample" + b"\x00" * 5000 + b"unbacked-yara-sample",)

    def __init__(self, rules: Any, *, timeout: int = 10, **kw: Any) -> None:
        super().__init__(**kw)
        self.rules = rules
        self.timeout = timeout

    @classmethod
    def sample(cls, **kw: Any) -> YaraScanner:
        """A scanner with one rule that matches ``examples``."""
        import yara

        rules = yara.compile(
            source='rule unbacked_sample { strings: $a = "unbacked-yara-sample" condition: $a }'
        )
        return cls(rules, **kw)

    def __call__(self, data: bytes, data_offset: int, *, last: bool = True) -> Iterator[Hit]:
        limit = self.limit(data, last)
        hits = set()
        for m in self.rules.match(data=data, timeout=self.timeout):
            for s in m.strings:
                for i in s.instances:
                    if i.offset < limit:
                        hits.add((i.offset, m.rule))
        for offset, rule in sorted(hits):
            yield Hit(data_offset + offset, "yara", rule)
