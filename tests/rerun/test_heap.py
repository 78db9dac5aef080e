"""The C heap and the garbage collector in a process doing pixel work: image-sized buffers are
reused, not remapped, and a run's collections pass over what existed before it."""

from __future__ import annotations

import gc
import platform
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from augment.model import ExpandOptions
from augment.rerun import heap
from augment.run import expand
from tests.helpers import TEXTURES

# One output's worth of image buffers (a 224 x 224 output: uint8 copies and float32 noise
# of 150-600 kB), allocated and freed 50 times in a tuned process; prints the page faults
# per round.
_ROUNDS = """
import resource
import sys
import numpy as np
from augment.rerun import heap as heap

if sys.argv[1] == "tuned":
    heap.reuse_image_buffers()
else:  # a program that calls the library, as the user's own process
    import tempfile
    from pathlib import Path
    from augment.run import expand
    from augment.model import ExpandOptions

    out = Path(tempfile.mkdtemp()) / "out"
    expand(sys.argv[2], out, ExpandOptions(times=3, workers=1))

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def one_output():
    buffers = [np.ones(600_000, np.uint8) for _ in range(10)]
    del buffers

one_output()
before = faults()
for _ in range(50):
    one_output()
print((faults() - before) / 50)
"""


def _faults_per_round(*args: str) -> float:
    # A process of its own: the tuning lasts for the rest of a process, this one included.
    done = subprocess.run(
        [sys.executable, "-c", _ROUNDS, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning is glibc's mallopt")
def test_image_buffers_freed_and_allocated_again_cost_no_page_faults() -> None:
    # Each fault costs a few microseconds on a virtual machine; untuned, glibc hands the
    # freed buffers back and faults them in again: ~1,400 faults a round (checked by hand).
    assert _faults_per_round("tuned") < 5


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning is glibc's mallopt")
def test_a_library_caller_keeps_its_allocator_as_it_was() -> None:
    # expand() in the caller's own process (one worker: the pixel work runs there too) must
    # not tune the caller's heap: the same rounds then fault as in any untuned process.
    assert _faults_per_round("library", str(TEXTURES)) > 100


class _Cycle:
    """Garbage only the collector frees: it refers to itself."""

    def __init__(self) -> None:
        self.me = self


def _garbage_cycle() -> weakref.ref[_Cycle]:
    return weakref.ref(_Cycle())


def test_objects_older_than_the_block_are_collected_once_the_outermost_block_ends() -> None:
    assert gc.get_freeze_count() == 0
    with heap.objects_kept_out_of_collections():
        older = _garbage_cycle()
        with heap.objects_kept_out_of_collections():  # as the pool's fork inside a run
            gc.collect()
            assert older() is not None  # frozen: the collections pass it by
        gc.collect()
        assert older() is not None  # the inner block's end gives nothing back
        newer = _garbage_cycle()
        gc.collect()
        assert newer() is None  # made inside the block: collected as usual
    gc.collect()
    assert older() is None
    assert gc.get_freeze_count() == 0


def test_what_a_caller_froze_stays_frozen() -> None:
    kept = _garbage_cycle()
    gc.freeze()
    try:
        with heap.objects_kept_out_of_collections():
            pass
        assert gc.get_freeze_count() > 0
        gc.collect()
        assert kept() is not None
    finally:
        gc.unfreeze()
    gc.collect()
    assert kept() is None


@pytest.mark.parametrize("workers", [1, 2])
def test_a_library_caller_has_its_garbage_collected_after_a_run(
    tmp_path: Path, workers: int
) -> None:
    garbage = _garbage_cycle()  # the caller's, from before the run
    expand(TEXTURES, tmp_path / "out", ExpandOptions(times=2, workers=workers))
    gc.collect()
    assert garbage() is None
    assert gc.get_freeze_count() == 0
