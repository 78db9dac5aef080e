"""The checks `augment audit` makes by decoding images, across splits and never within one:
`exact-duplicates` (identical decoded pixels, or the same picture re-encoded) and
`near-duplicates` (perceptual hash within a Hamming threshold, the mirror included; and a
crop or shifted copy of one file in another split: its hash near one of the other's crop
windows, then checked by the pixels, see augment/imaging/crops.py)."""

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
from augment.imaging.crops import CropFit, core_hash, crop_fit, crop_windows
from augment.imaging.digests import ImageHash
from augment.imaging.hash_index import near_pairs
from augment.imaging.similarity import block_psnr, phash_gray, pixel_digest
from augment.model import Phase

# Crop windows a pair's closest hash matches are checked by pixels in, at most: a real crop
# passes at its closest window; a look-alike fails them all.
_CHECKS_PER_PAIR = 3


@dataclass(frozen=True, eq=False)
class _Fingerprint:
    shape: tuple[int, ...]
    digest: str
    hash: ImageHash
    crops: np.ndarray  # its crop windows' hashes (uint64)
    boxes: np.ndarray  # and their boxes (top, left, height, width)
    core: ImageHash | None  # without its uniform borders (a shifted copy's filled band)


@dataclass(frozen=True)
class _CropHit:
    """A file whose hash (whole or trimmed, mirrored or not) is near a crop window of
    another file."""

    distance: int
    copy: int  # the file that may be a crop or a shifted copy
    original: int  # the file whose window it matched
    window: tuple[int, int, int, int]
    mirrored: bool
    how: str  # "a crop", "a shifted copy"


def _decode_pixels(image: ImageFile) -> np.ndarray:
    return decode(image.read_bytes()).pixels


def _try_fingerprint(image: ImageFile) -> _Fingerprint | OSError | UnreadableImage:
    try:
        pixels = _decode_pixels(image)
    except (OSError, UnreadableImage) as exc:
        return exc
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    crops, boxes = crop_windows(gray)
    return _Fingerprint(
        pixels.shape, pixel_digest(pixels), phash_gray(gray), crops, boxes, core_hash(gray)
    )


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _fingerprints(
    files: Sequence[ImageFile], options: AuditOptions, phase: Phase | None
) -> tuple[dict[int, _Fingerprint], list[Finding]]:
    """Each readable file's fingerprint by its index, and a finding for each unreadable one."""
    # Pillow and OpenCV release the GIL while decoding and resizing: threads use the cores.
    with ThreadPoolExecutor(max_workers=options.workers or default_workers()) as pool:
        advance = phase("decoding", len(files)) if phase is not None and files else None
        fingerprints = []
        for result in pool.map(_try_fingerprint, files):
            fingerprints.append(result)
            if advance is not None:
                advance(1)
    prints: dict[int, _Fingerprint] = {}
    findings = []
    for i, (f, result) in enumerate(zip(files, fingerprints, strict=True)):
        if isinstance(result, _Fingerprint):
            prints[i] = result
            continue
        message = f"{f.name}: cannot compare: {result}"
        findings.append(Finding("exact-duplicates", "unreadable", message, (f.name,)))
    return prints, findings


def duplicate_findings(
    files: Sequence[ImageFile],
    splits: Sequence[str],
    options: AuditOptions,
    phase: Phase | None = None,
) -> list[Finding]:
    """Compare every file with every file of the *other* splits (never within a split)."""
    prints, findings = _fingerprints(files, options, phase)
    # Pixels are decoded once for the fingerprints and again only for the candidate pairs
    # that need a PSNR or a pixel check; the cache is local to this audit, so it never holds
    # stale files.
    pixels = lru_cache(maxsize=64)(_decode_pixels)
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
        for crop_hits in _crop_hits(left, right, prints, options.max_distance):
            i, j = pair(crop_hits[0].copy, crop_hits[0].original)
            if (i, j) in seen:
                continue
            found = _checked(crop_hits, files, pixels)
            if found is not None:
                seen.add((i, j))
                findings.append(_cropped(files[i], files[j], *found))
    return sorted(findings, key=lambda f: (f.check, f.paths))


def _gray(image: ImageFile, pixels: Callable[[ImageFile], np.ndarray]) -> np.ndarray:
    return cv2.cvtColor(pixels(image), cv2.COLOR_RGB2GRAY)


def _checked(
    hits: list[_CropHit], files: Sequence[ImageFile], pixels: Callable[[ImageFile], np.ndarray]
) -> tuple[int, str, CropFit] | None:
    """(bits, how, fit) of the first of a pair's closest hits whose copy, placed over the
    other file's pixels, agrees with them (`CropFit.matches`); None if none does."""
    for hit in hits[:_CHECKS_PER_PAIR]:
        copy, original = _gray(files[hit.copy], pixels), _gray(files[hit.original], pixels)
        fit = crop_fit(copy, original, hit.window, hit.mirrored)
        if fit.matches:
            how = f"{hit.how}, mirrored," if hit.mirrored else hit.how
            return hit.distance, how, fit
    return None


def _probes(
    side: list[int], prints: dict[int, _Fingerprint]
) -> tuple[np.ndarray, list[tuple[int, bool, str]]]:
    """The hashes each file of `side` is looked up by (whole and trimmed, mirrored or not),
    and for each, (file, mirrored, how)."""
    hashes, probe_of = [], []
    for i in side:
        fp = prints[i]
        wholes = [(fp.hash, "a crop")] + ([(fp.core, "a shifted copy")] if fp.core else [])
        for whole, how in wholes:
            hashes += [whole.direct, whole.mirror]
            probe_of += [(i, False, how), (i, True, how)]
    return np.array(hashes, dtype=np.uint64), probe_of


def _crop_hits(
    left: list[int], right: list[int], prints: dict[int, _Fingerprint], max_distance: int
) -> list[list[_CropHit]]:
    """For each pair where one file, whole or without its uniform borders, mirrored or not,
    is within `max_distance` bits of a crop window of the other: its hits, closest first;
    the pairs with the closest hits first."""
    by_pair: dict[tuple[int, int], list[_CropHit]] = defaultdict(list)
    for probes_side, windows_side in ((left, right), (right, left)):
        probes, probe_of = _probes(probes_side, prints)
        counts = [len(prints[j].crops) for j in windows_side]
        if not len(probes) or not sum(counts) or max_distance < 0:
            continue
        windows = np.concatenate([prints[j].crops for j in windows_side])
        boxes = np.concatenate([prints[j].boxes for j in windows_side])
        window_of = np.repeat(np.array(windows_side), counts)
        for p, w, distance in near_pairs(probes, windows, max_distance):
            i, mirrored, how = probe_of[p]
            top, left_, height, width = (int(v) for v in boxes[w])
            hit = _CropHit(
                distance, i, int(window_of[w]), (top, left_, height, width), mirrored, how
            )
            by_pair[(i, hit.original)].append(hit)
    pairs = [sorted(hits, key=lambda h: (h.distance, h.mirrored)) for hits in by_pair.values()]
    return sorted(pairs, key=lambda hits: (hits[0].distance, hits[0].copy, hits[0].original))


def _cropped(a: ImageFile, b: ImageFile, distance: int, how: str, fit: CropFit) -> Finding:
    return Finding(
        "near-duplicates",
        "shifted" if "shifted" in how else "cropped",
        f"{a.name} ({a.split}) and {b.name} ({b.split}): one is {how} of the other "
        f"(pHash {distance} bits from a crop window; placed, the pixels correlate "
        f"{fit.correlation:.3f}, residual {fit.residual:.1f} grey levels)"
        f"{_labels(a, b)}",
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
