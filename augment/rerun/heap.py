"""How the C heap (glibc only; elsewhere no-ops) and Python's garbage collector serve a process
that does pixel work.

Every transform allocates an image-sized array and frees it moments later: an output of
224 x 224 needs a dozen buffers of 150-600 kB. glibc maps blocks above its mmap threshold
afresh and unmaps them on free, and returns the top of the heap to the system once more than
its trim threshold is free there. Both start at 128 kB and adapt to the blocks freed, which
for this pattern does not reliably keep up: a run's later outputs paid ~90 page faults each,
~15% of its time on a virtual machine. Fixed thresholds above image-sized buffers keep them
on the heap, where a freed block is reused at once.

The garbage collector's full collections examine every object the process holds, most of them
albumentations' and pydantic's classes, which live as long as the process: a run held them out
of those collections (`objects_kept_out_of_collections`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import sys
import threading
from collections.abc import Iterator

# Blocks up to this size come from the heap. 32 MiB is glibc's own upper bound for its
# adaptive threshold: it covers the buffers of outputs up to ~2,800 x 2,800 (float32 noise
# included); a larger source decode still gets a mapping of its own, returned when freed.
MMAP_THRESHOLD = 32 << 20
# Free memory at the top of the heap kept for reuse, not returned: one large output's set of
# buffers. What a process keeps this way is what its own working set already reached.
TRIM_THRESHOLD = 64 << 20

# mallopt parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux":
        return None
    libc = ctypes.CDLL(None)
    # musl and other C libraries have neither function: nothing to tune there.
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    return libc


def reuse_image_buffers() -> None:
    """Keep image-sized blocks on the heap in this process (and in processes it forks).

    Setting the thresholds ends glibc's adaptive ones for the rest of the process: a caller
    of `expand()` keeps up to TRIM_THRESHOLD of freed heap for reuse afterwards.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def return_free_heap() -> None:
    """Hand the C heap's free pages back to the system.

    malloc keeps the memory this process freed resident: the near-duplicate hashing
    threads' decode buffers and the planning's transient lists, ~10 MB, more with more
    sources. Called before forking: a forked worker's RSS counts every resident page it
    inherits, so without this that memory is counted once more in each worker.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


_frozen_lock = threading.Lock()
_frozen_depth = 0  # blocks of objects_kept_out_of_collections open, in any thread
_unfreeze_at_end = False  # nothing was frozen when the first of them began


@contextlib.contextmanager
def objects_kept_out_of_collections() -> Iterator[None]:
    """The objects that exist now are left out of the garbage collector's passes until the
    block ends (`gc.freeze`): a full collection examines every object, and a run sets off a
    few every thousand sources. Blocks nest (the pool's fork opens one inside a run's); the
    last to end gives the objects back to the collector (`gc.unfreeze`), so a caller of
    `expand()` has its own objects collected as before, unless it had frozen some itself:
    then they stay frozen, as it left them. Objects made inside the block are collected as
    usual, and objects without cycles are freed as usual throughout."""
    global _frozen_depth, _unfreeze_at_end
    with _frozen_lock:
        if _frozen_depth == 0:
            _unfreeze_at_end = gc.get_freeze_count() == 0
        gc.freeze()
        _frozen_depth += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_depth -= 1
            if _frozen_depth == 0 and _unfreeze_at_end:
                gc.unfreeze()
