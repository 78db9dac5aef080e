"""The project's modules compiled before anything is timed, as pip compiles an installed package.

An environment that writes no bytecode (`PYTHONDONTWRITEBYTECODE=1`, as a development one may
set) makes every `augment` command compile the project's ~100 modules again: ~60 ms of CPU a
start that a user's installed `augment` does not pay, and most of a no-op rerun's cost at a
thousand sources. Python still reads bytecode it finds there, so compiling the tree once puts
each timed command where a user's is. The bytecode goes to the tree's `__pycache__` folders,
which git ignores; the libraries have theirs from their own installation.
"""

from __future__ import annotations

import compileall
from pathlib import Path

TREE = Path(__file__).resolve().parent.parent


def compile_tree() -> None:
    """Bytecode, up to date, for every module of this tree's `augment` package."""
    if not compileall.compile_dir(TREE / "augment", quiet=1):
        raise SystemExit(f"could not compile {TREE / 'augment'}")
