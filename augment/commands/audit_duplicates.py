"""The checks `augment audit` makes by decoding images, across splits and never within one:
`exact-duplicates` (identical decoded pixels, or the same picture re-encoded) and
`near-duplicates` (perceptual hash within a Hamming threshold, the mirror included)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from pathlib import Path

import numpy as np

from augment.commands.audit_report import AuditOptions, Finding, ImageFile
from augment.defaults import default_workers
from augment.errors import UnreadableImage
from augment.imaging.codec import decode
from augment.imaging.digests import ImageHash
from augment.imaging.hash_index import near_pairs
from augment.imaging.similarity import block_psnr, phash_rgb, pixel_digest
from augment.model import Phase


@dataclass(frozen=True)
class _Fingerprint:
    shape: tuple[int, ...]
    digest: str
    hash: ImageHash


def _decode_pixels(path: Path) -> np.ndarray:
    return decode(path.read_bytes()).pixels


def _try_fingerprint(path: Path) -> _Fingerprint | OSError | UnreadableImage:
    try:
        pixels = _decode_pixels(path)
    except (OSError, UnreadableImage) as exc:
        return exc
    return _Fingerprint(pixels.shape, pixel_digest(pixels), phash_rgb(pixels))


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def duplicate_findings(
    files: Sequence[ImageFile],
    splits: Sequence[str],
    options: AuditOptions,
    phase: Phase | None = None,
) -> list[Finding]:
    """Compare every file with every file of the *other* splits (never within a split)."""
    findings: list[Finding] = []
    prints: dict[int, _Fingerprint] = {}
    # Pixels are decoded once for the fingerprints and again only for the candidate pairs
    # that need a PSNR; the cache is local to this audit, so it never holds stale files.
    pixels = lru_cache(maxsize=64)(_decode_pixels)
    # Pillow and OpenCV release the GIL while decoding and resizing: threads use the cores.
    with ThreadPoolExecutor(max_workers=options.workers or default_workers()) as pool:
        advance = phase("decoding", len(files)) if phase is not None and files else None
        fingerprints = []
        for result in pool.map(_try_fingerprint, (f.file for f in files)):
            fingerprints.append(result)
            if advance is not None:
                advance(1)
    for i, (f, result) in enumerate(zip(files, fingerprints, strict=True)):
        if isinstance(result, _Fingerprint):
            prints[i] = result
            continue
        message = f"{f.name}: cannot compare: {result}"
        findings.append(Finding("exact-duplicates", "unreadable", message, (f.name,)))
    order = {s: n for n, s in enumerate(splits)}
    seen: set[tuple[int, int]] = set()

    def pair(i: int, j: int) -> tuple[int, int]:
        # Report the earlier split (train first) first, whichever side found it.
        return (i, j) if order[files[i].split] <= order[files[j].split] else (j, i)

    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, fp in prints.items():
        by_digest[fp.digest].append(i)
    for members in by_digest.values():
        for a, b in combinations(members, 2):
            if files[a].split != files[b].split:
                i, j = pair(a, b)
                seen.add((i, j))
                findings.append(_exact(files[i], files[j], "identical decoded pixels"))

    indices = {s: [i for i in prints if files[i].split == s] for s in splits}
    for left_split, right_split in combinations(splits, 2):
        left, right = indices[left_split], indices[right_split]
        if not left or not right:
            continue
        direct = np.array([prints[i].hash.direct for i in left], dtype=np.uint64)
        other = np.array([prints[j].hash.direct for j in right], dtype=np.uint64)
        mirror = np.array([prints[j].hash.mirror for j in right], dtype=np.uint64)
        hits = [(a, b, d, False) for a, b, d in near_pairs(direct, other, options.max_distance)]
        hits += [(a, b, d, True) for a, b, d in near_pairs(direct, mirror, options.max_distance)]
        for a, b, distance, mirrored in sorted(hits, key=lambda h: (h[3], h[2], h[0], h[1])):
            i, j = pair(left[a], right[b])
            if (i, j) in seen:
                continue
            seen.add((i, j))
            findings.append(
                _near_or_reencoded(
                    files[i], files[j], prints[i], prints[j], distance, mirrored, options, pixels
                )
            )
    return sorted(findings, key=lambda f: (f.check, f.paths))


def _labels(a: ImageFile, b: ImageFile) -> str:
    """One picture filed under two classes is label noise as well as a leak: say so."""
    return "" if a.label == b.label else f"; filed as class {a.label!r} and {b.label!r}"


def _exact(a: ImageFile, b: ImageFile, why: str) -> Finding:
    return Finding(
        "exact-duplicates",
        "identical" if why.startswith("identical") else "re-encoded",
        f"{a.name} ({a.split}) and {b.name} ({b.split}): {why}{_labels(a, b)}",
        (a.name, b.name),
    )


def _near_or_reencoded(
    a: ImageFile,
    b: ImageFile,
    print_a: _Fingerprint,
    print_b: _Fingerprint,
    distance: int,
    mirrored: bool,
    options: AuditOptions,
    pixels: Callable[[Path], np.ndarray],
) -> Finding:
    shape_a, shape_b = print_a.shape, print_b.shape
    if not mirrored and shape_a == shape_b:
        quality = block_psnr(pixels(a.file), pixels(b.file))
        if quality >= options.min_psnr:
            return _exact(a, b, f"the same pixels re-encoded (PSNR {quality:.1f} dB)")
    what = "mirrored copies" if mirrored else "near duplicates"
    size = "" if shape_a == shape_b else f", sizes {_size(shape_a)} and {_size(shape_b)}"
    return Finding(
        "near-duplicates",
        "mirrored" if mirrored else ("resized" if size else "similar"),
        f"{a.name} ({a.split}) and {b.name} ({b.split}): {what} "
        f"(pHash {distance} bits apart{size}){_labels(a, b)}",
        (a.name, b.name),
    )
