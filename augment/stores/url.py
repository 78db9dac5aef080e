"""Is SRC or OUT a store URL (`s3://`, `gs://`, `memory://`, `file://`)? Text only, so
the CLI can ask without importing fsspec."""

from __future__ import annotations

import re

_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)


def protocol_of(text: str) -> str | None:
    """`s3` for "s3://bucket/key"; None for a local path (a Windows drive is not a URL)."""
    found = _URL.match(str(text))
    return found.group(1).lower() if found else None


def is_url(text: object) -> bool:
    return protocol_of(str(text)) is not None


def join(url: str, path: str) -> str:
    return f"{url.rstrip('/')}/{path}" if path else url


class StoreUrl(str):
    """OUT as a URL where a path would be: `url / "augment.json"` names an object in it."""

    def __truediv__(self, name: str) -> StoreUrl:
        return StoreUrl(join(self, name))
