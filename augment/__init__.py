"""augment: offline image augmentation and dataset expansion.

Holds out validation/test originals before any augmentation, materialises an N-times enlarged
training set to disk, and writes a manifest with content hashes and lineage.
"""

import os

# albumentations checks PyPI for a newer version on import; an offline batch tool must not
# make network calls, and the check would slow every worker process's start.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
