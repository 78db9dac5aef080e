"""OpenCV's own thread pool, held to one thread while the tool does pixel work."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_cv2_thread() -> Iterator[None]:
    """OpenCV on one thread inside the block. Each worker is one lane of parallelism, this
    process included: OpenCV's own threads would oversubscribe the cores (and make
    --workers 1 use them all). And a process that later forks workers must not have started
    OpenCV's thread pool: a forked worker's first OpenCV call would wait on it forever."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)
