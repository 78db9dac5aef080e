"""augment: offline image augmentation and dataset expansion.

Holds out validation/test originals before any augmentation, materialises an N-times enlarged
training set to disk, and writes a manifest with content hashes and lineage.

    import augment
    summary = augment.expand("photos/", "out/", augment.ExpandOptions(times=5))
    report = augment.audit_output("out/")

The names below are imported on first use, so `import augment` stays cheap (no image
library is loaded until a run needs one).
"""

from __future__ import annotations

import importlib
import os

# Not `typing.TYPE_CHECKING`: the `augment` command holds its signals from the first line of
# augment/__main__.py, which runs after this module; importing typing here (~2 ms) would
# only widen the moment before it, in which a Ctrl-C is still Python's (a traceback).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# albumentations checks PyPI for a newer version on import; an offline batch tool must not
# make network calls, and the check would slow every worker process's start.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

# name -> the module that defines it. Not imported here, even for type checkers: those
# modules import `augment` (for __version__), and the package must not import them back.
_EXPORTS = {
    "expand": "augment.run",
    "ExpandOptions": "augment.model",
    "ExpandSummary": "augment.model",
    "audit_output": "augment.commands.audit",
    "audit_splits": "augment.commands.audit",
    "AuditOptions": "augment.commands.audit_report",
    "inspect_source": "augment.commands.inspect",
    "AugmentError": "augment.errors",
}
__all__ = [
    "AuditOptions",
    "AugmentError",
    "ExpandOptions",
    "ExpandSummary",
    "__version__",
    "audit_output",
    "audit_splits",
    "expand",
    "inspect_source",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'augment' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
