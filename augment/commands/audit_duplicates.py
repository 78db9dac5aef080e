"""The checks `augment audit` makes by decoding images, across splits and never within one:
`exact-duplicates` (identical decoded pixels, or the same picture re-encoded) and
`near-duplicates` (perceptual hash within a Hamming threshold, the mirror included; and a
crop or shifted copy of one file in another split: its hash near one of the other's crop
windows, see augment/imaging/similarity.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import cv2
import numpy as np

from augment.commands.audit_report import AuditOptions, Finding, ImageFile
from augment.defaults import default_workers
from augment.errors import UnreadableImage
from augment.imaging.codec import decode
from augment.imaging.digests import ImageHash
from augment.imaging.hash_index import near_pairs
from augment.imaging.similarity import (
    block_psnr,
    core_hash,
    crop_hashes,
    phash_gray,
    pixel_digest,
)
from augment.model import Phase

# Bits taken off --max-distance for a crop match: each file is compared with a hundred
# windows of the other, so a hundred times the chances of an unrelated look-alike.
CROP_MARGIN = 2


@dataclass(frozen=True)
class _Fingerprint:
    shape: tuple[int, ...]
    digest: str
    hash: ImageHash
    crops: tuple[int, ...]  # its crop windows' hashes
    core: ImageHash | None  # without its uniform borders (a shifted copy's filled band)


def _decode_pixels(image: ImageFile) -> np.ndarray:
    return decode(image.read_bytes()).pixels


def _try_fingerprint(image: ImageFile) -> _Fingerprint | OSError | UnreadableImage:
    try:
        pixels = _decode_pixels(image)
    except (OSError, UnreadableImage) as exc:
        return exc
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    crops = tuple(crop_hashes(gray))
    return _Fingerprint(
        pixels.shape, pixel_digest(pixels), phash_gray(gray), crops, core_hash(gray)
    )


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
        for result in pool.map(_try_fingerprint, files):
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
        threshold = options.max_distance - CROP_MARGIN
        for a, b, distance, how in _crop_hits(left, right, prints, threshold):
            i, j = pair(a, b)
            if (i, j) not in seen:
                seen.add((i, j))
                findings.append(_cropped(files[i], files[j], distance, how))
    return sorted(findings, key=lambda f: (f.check, f.paths))


def _crop_hits(
    left: list[int], right: list[int], prints: dict[int, _Fingerprint], max_distance: int
) -> list[tuple[int, int, int, str]]:
    """(file, file, bits, how) for each pair where one file, whole or without its uniform
    borders, mirrored or not, is within `max_distance` bits of a crop window of the other:
    the closest match per pair, closest pairs first."""
    best: dict[tuple[int, int], tuple[int, str]] = {}
    for probes_side, windows_side in ((left, right), (right, left)):
        probes, probe_of = [], []
        for i in probes_side:
            fp = prints[i]
            wholes = [(fp.hash, "a crop")] + ([(fp.core, "a shifted copy")] if fp.core else [])
            for whole, how in wholes:
                probes += [whole.direct, whole.mirror]
                probe_of += [(i, how), (i, f"{how}, mirrored,")]
        windows = [h for j in windows_side for h in prints[j].crops]
        window_of = [j for j in windows_side for _ in prints[j].crops]
        if not probes or not windows or max_distance < 0:
            continue
        found = near_pairs(
            np.array(probes, dtype=np.uint64), np.array(windows, dtype=np.uint64), max_distance
        )
        for p, w, distance in found:
            (i, how), j = probe_of[p], window_of[w]
            key = (i, j) if probes_side is left else (j, i)
            if key not in best or distance < best[key][0]:
                best[key] = (distance, how)
    hits = [(i, j, d, how) for (i, j), (d, how) in best.items()]
    return sorted(hits, key=lambda h: (h[2], h[0], h[1]))


def _cropped(a: ImageFile, b: ImageFile, distance: int, how: str) -> Finding:
    return Finding(
        "near-duplicates",
        "shifted" if "shifted" in how else "cropped",
        f"{a.name} ({a.split}) and {b.name} ({b.split}): one is {how} of the other "
        f"(pHash {distance} bits from a crop window){_labels(a, b)}",
        (a.name, b.name),
    )


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
    pixels: Callable[[ImageFile], np.ndarray],
) -> Finding:
    shape_a, shape_b = print_a.shape, print_b.shape
    if not mirrored and shape_a == shape_b:
        quality = block_psnr(pixels(a), pixels(b))
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
