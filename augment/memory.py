"""Giving the memory a stage has freed back to the system.

glibc's malloc keeps what is freed in its heaps (an arena for each thread that allocated)
for later use: a stage that held a large transient, the near-duplicate graph, would leave
the process that much larger for the rest of the run, and every worker forked after it
would count those pages in its own resident size. `malloc_trim` hands the free pages back.
Elsewhere (musl, macOS, Windows) there is no such call, and nothing is done.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only here: a run that frees nothing large does not load it

    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # the C library in use
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


def release_freed_memory() -> None:
    """Return the process's free heap pages to the system, where the C library can."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
