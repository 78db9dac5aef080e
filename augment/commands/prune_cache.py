"""`augment prune-cache CACHE OUT`: drop a downstream cache's entries for outputs that are gone.

Trainers cache one entry per image, named after the image's file name: TF-Hub's
`retrain.py` keeps `bottleneck_dir/<label>/<file name>_<module>.txt`, others keep
`<file name>.npy` or `<file name>.pt`. augment's output names are content-keyed
(`<stem>_nohash_<12 hex digits>.<ext>`), so such a cache never serves features of an old image
under a new name; it only keeps entries whose output no longer exists. This removes them.

An entry is *recognised* when its file name starts with an output-style name
(`<stem>_nohash_<key>.jpg|png|webp`, or `<stem>__<key>...` as earlier versions named
outputs) followed by anything (`_<module>.txt`, `.npy`, or nothing).
It is *stale* when no output of OUT's manifest has that name. Only recognised, stale,
regular files are deleted: anything else in CACHE (other files, folders, symbolic links)
is never touched.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from augment.defaults import FORMAT_CHOICES
from augment.errors import OutputError
from augment.layout import HEADER_NAME, MANIFEST_NAME, STATE_DIR
from augment.stages.manifest import read_manifest
from augment.stages.plan import KEY_LENGTH, NAME_SEPARATOR

_EXTENSIONS = "|".join(re.escape(f) for f in FORMAT_CHOICES if f != "same")
ENTRY_NAME = re.compile(
    rf"^(?P<output>.+(?:__|{NAME_SEPARATOR})[0-9a-f]{{{KEY_LENGTH}}}\.(?:{_EXTENSIONS}))"
)


@dataclass
class PruneResult:
    stale: list[str] = field(default_factory=list)  # relative to CACHE, removed (or would be)
    kept: int = 0  # recognised entries whose output is current
    ignored: int = 0  # files that are not recognised cache entries: left alone
    dry_run: bool = False


def is_augment_output(folder: Path) -> bool:
    return (folder / HEADER_NAME).is_file() or (folder / STATE_DIR).is_dir()


def output_name_of(entry_name: str) -> str | None:
    """The output file name a cache entry was made for, or None if it is not an entry."""
    match = ENTRY_NAME.match(entry_name)
    return match.group("output") if match else None


def prune_cache(cache: Path, out: Path, dry_run: bool = False) -> PruneResult:
    """Remove (or with `dry_run`, only list) the entries of CACHE whose output is not in
    OUT's manifest any more."""
    if not cache.is_dir():
        raise OutputError(f"cache folder {cache} does not exist or is not a folder")
    cache_root, out_root = cache.resolve(), out.resolve()
    if cache_root.is_relative_to(out_root) or out_root.is_relative_to(cache_root):
        raise OutputError(f"cache folder {cache} overlaps the output {out}; give the cache itself")
    if is_augment_output(cache_root) or (cache_root / MANIFEST_NAME).exists():
        # Its images have output-style names: every one would look like a stale entry.
        raise OutputError(
            f"{cache} is an augment output, not a cache: nothing deleted. The order is "
            "`augment prune-cache CACHE OUT` (the trainer's cache first, the current output "
            "second); to remove an old output, delete its folder yourself"
        )
    current = {PurePosixPath(r["path"]).name for r in read_manifest(out)}
    result = PruneResult(dry_run=dry_run)
    # followlinks=False and no symlinked files: a link may point at anything, even OUT.
    for dirpath, dirnames, filenames in os.walk(cache_root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            output = output_name_of(name)
            if output is None or path.is_symlink() or not path.is_file():
                result.ignored += 1
            elif output in current:
                result.kept += 1
            else:
                result.stale.append(path.relative_to(cache_root).as_posix())
                if not dry_run:
                    path.unlink()
    return result
