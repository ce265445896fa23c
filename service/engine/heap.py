"""Hand memory freed by a replaced model back to the operating system.

glibc keeps what a program frees for its own later use: the weights and arena chunks of a model
that a reload replaced stay resident, and a service that reloads every hour would look, from
the outside, like one that leaks. `malloc_trim(0)` returns the free pages of every malloc arena.
Other C libraries (musl) return large blocks on their own and have no such call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("bertserve.engine")


def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim()


def trim() -> bool:
    """Return the free heap pages to the OS; whether there was a call to do it with."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
