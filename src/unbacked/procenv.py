"""Settings a command makes for its own process only (Arrow's allocator, NumPy's BLAS
threads: ``cli.main``), set as environment variables before the libraries load. A program the
command starts (``unbacked record -- CMD``) gets the environment the user gave instead: the
recorded program must run as it would without unbacked."""

from __future__ import annotations

import os

_OWN: set[str] = set()


def set_for_this_process(name: str, value: str) -> bool:
    """Set ``name`` unless the user did; returns whether it was set."""
    if name in os.environ:
        return False
    os.environ[name] = value
    _OWN.add(name)
    return True


def for_programs_started() -> dict[str, str]:
    """The environment without what ``set_for_this_process`` added."""
    return {k: v for k, v in os.environ.items() if k not in _OWN}


__all__ = ["for_programs_started", "set_for_this_process"]
