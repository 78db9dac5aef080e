"""The checks `augment audit` makes by decoding images, across splits and never within one:
`exact-duplicates` (identical decoded pixels, or the same picture re-encoded) and
`near-duplicates` (perceptual hash within a Hamming threshold, the mirror included; and a
crop or shifted copy of one file in another split: its hash near one of the other's crop
windows, then checked by the pixels, see augment/imaging/crops.py). With the crop search off
(`AuditOptions.crop_search`) no crop window is hashed or held, and no pair is searched."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import combinations

import cv2
import numpy as np

from augment.commands.audit_report import AuditOptions, Finding, ImageFile
from augment.defaults import default_workers
from augment.errors import UnreadableImage
from augment.imaging.codec import decode
from augment.imaging.crops import CropFit, core_hash, crop_fit, crop_window_hashes, window_boxes
from augment.imaging.digests import ImageHash
from augment.imaging.hash_index import near_pairs, pair_arrays
from augment.imaging.similarity import block_psnr, phash_gray, pixel_digest
from augment.model import Phase

# Crop windows a pair's closest hash matches are checked by pixels in, at most: a real crop
# passes at its closest window; a look-alike fails them all.
_CHECKS_PER_PAIR = 1
# Pairs checked by pixels per held-out file (per pair of splits), its closest by bits: a set
# of look-alikes (digits, video frames, crops of a few photos) has hundreds of candidates
# per file, and each check costs milliseconds (docs/audit.md has the figures).
_PAIRS_PER_FILE = 3


@dataclass(frozen=True, eq=False)
class _Fingerprint:
    shape: tuple[int, ...]
    digest: str
    hash: ImageHash
    crops: np.ndarray  # its crop windows' hashes (uint64)
    windows: np.ndarray  # and their numbers in crops.window_boxes (uint8)
    core: ImageHash | None  # without its uniform borders (a shifted copy's filled band)


@dataclass(frozen=True)
class _CropHit:
    """A file whose hash (whole or trimmed, mirrored or not) is near a crop window of
    another file."""

    distance: int
    copy: int  # the file that may be a crop or a shifted copy
    original: int  # the file whose window it matched
    window: int  # its number in crops.window_boxes of the original's size
    mirrored: bool
    how: str  # "a crop", "a shifted copy"


def _decode_pixels(image: ImageFile) -> np.ndarray:
    return decode(image.read_bytes()).pixels


# A fingerprint's windows when the crop search is off: one pair of empty arrays for all.
_NO_CROPS = np.empty(0, np.uint64)
_NO_WINDOWS = np.empty(0, np.uint8)


def _try_fingerprint(
    image: ImageFile, crop_search: bool = True
) -> _Fingerprint | OSError | UnreadableImage:
    try:
        pixels = _decode_pixels(image)
    except (OSError, UnreadableImage) as exc:
        return exc
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    crops, windows = _NO_CROPS, _NO_WINDOWS
    core: ImageHash | None = None
    if crop_search:
        crops, windows = crop_window_hashes(gray)
        core = core_hash(gray)
    return _Fingerprint(pixels.shape, pixel_digest(pixels), phash_gray(gray), crops, windows, core)


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
        fingerprint = partial(_try_fingerprint, crop_search=options.crop_search)
        for result in pool.map(fingerprint, files):
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
        if not options.crop_search:  # no window was hashed: the whole-image checks only
            continue
        candidates = _crop_hits(left, right, prints, options.max_distance, seen)
        for found in _checked_all(candidates, files, prints, options):
            i, j = pair(found[0], found[1])
            seen.add((i, j))
            findings.append(_cropped(files[i], files[j], *found[2:]))
    return sorted(findings, key=lambda f: (f.check, f.paths))


def _checked_all(
    candidates: list[list[_CropHit]],
    files: Sequence[ImageFile],
    prints: dict[int, _Fingerprint],
    options: AuditOptions,
) -> list[tuple[int, int, int, str, CropFit]]:
    """(copy, original, bits, how, fit) for each pair of files one of whose candidate lists
    (either way round) passes the pixel check, checked on the audit's threads (OpenCV
    releases the GIL). A pair's lists are checked in the given order, on one thread: the
    first that passes is the one reported, as if checked one after the other."""
    jobs: dict[tuple[int, int], list[list[_CropHit]]] = defaultdict(list)
    for hits in candidates:
        a, b = hits[0].copy, hits[0].original
        jobs[(min(a, b), max(a, b))].append(hits)
    # Each file's grey pixels are decoded once for all its checks while it is among the
    # recent files: the jobs are taken file by file.
    work = sorted(jobs.values(), key=lambda lists: (lists[0][0].original, lists[0][0].copy))

    @lru_cache(maxsize=256)
    def gray(i: int) -> np.ndarray:
        return cv2.cvtColor(_decode_pixels(files[i]), cv2.COLOR_RGB2GRAY)

    def check(lists: list[list[_CropHit]]) -> tuple[int, int, int, str, CropFit] | None:
        for hits in lists:
            found = _checked(hits, gray, prints)
            if found is not None:
                return (hits[0].copy, hits[0].original, *found)
        return None

    if len(work) < 2:
        return [f for f in map(check, work) if f is not None]
    with ThreadPoolExecutor(max_workers=options.workers or default_workers()) as pool:
        return [f for f in pool.map(check, work) if f is not None]


def _checked(
    hits: list[_CropHit], gray: Callable[[int], np.ndarray], prints: dict[int, _Fingerprint]
) -> tuple[int, str, CropFit] | None:
    """(bits, how, fit) of the first of a pair's closest hits whose copy, placed over the
    other file's pixels, agrees with them (`CropFit.matches`); None if none does."""
    for hit in hits:
        boxes = window_boxes(prints[hit.original].shape[:2])
        top, left, height, width = (int(v) for v in boxes[hit.window])
        window = (top, left, height, width)
        fit = crop_fit(gray(hit.copy), gray(hit.original), window, hit.mirrored)
        if fit.matches:
            how = f"{hit.how}, mirrored," if hit.mirrored else hit.how
            return hit.distance, how, fit
    return None


_HOW = ("a crop", "a shifted copy")


def _probes(side: list[int], prints: dict[int, _Fingerprint]) -> tuple[np.ndarray, np.ndarray]:
    """The hashes each file of `side` is looked up by (whole and trimmed, mirrored or not),
    and for each, its file, whether mirrored, and how (a number in `_HOW`) as rows of an
    n x 3 array."""
    hashes, probe_of = [], []
    for i in side:
        fp = prints[i]
        wholes = [(fp.hash, 0)] + ([(fp.core, 1)] if fp.core else [])
        for whole, how in wholes:
            hashes += [whole.direct, whole.mirror]
            probe_of += [(i, 0, how), (i, 1, how)]
    return np.array(hashes, dtype=np.uint64), np.array(probe_of, dtype=np.int64).reshape(-1, 3)


def _crop_hits(
    left: list[int],
    right: list[int],
    prints: dict[int, _Fingerprint],
    max_distance: int,
    seen: set[tuple[int, int]],
) -> list[list[_CropHit]]:
    """The candidates of the pixel check: pairs (not in `seen`, either way round) where one
    file, whole or without its uniform borders, mirrored or not, is within `max_distance`
    bits of a crop window of the other. Each pair's closest `_CHECKS_PER_PAIR` hits, closest
    first; for each file of `right` (the later split), its `_PAIRS_PER_FILE` closest pairs;
    the pairs with the closest hits first. Held in arrays until then: a set of look-alikes
    has millions of hits."""
    found = [_hit_arrays(a, b, prints, max_distance) for a, b in ((left, right), (right, left))]
    hits = np.stack([np.concatenate(c) for c in zip(*found, strict=True)])
    copy, original = hits[0], hits[1]
    if len(seen) and hits.shape[1]:
        done = np.array([p for q in seen for p in (q, q[::-1])], dtype=np.int64)
        hits = hits[:, ~np.isin(copy << 32 | original, done[:, 0] << 32 | done[:, 1])]
    copy, original, distance, mirrored, how, window = hits
    # A pair's hits, closest first (then not mirrored, ...): its closest few are checked.
    order = np.lexsort((window, how, mirrored, distance, original, copy))
    hits = hits[:, order[_ranks(copy[order] << 32 | original[order]) < _CHECKS_PER_PAIR]]
    copy, original, distance, mirrored, how, window = hits
    # Each held-out file's closest pairs (by their closest hit), whichever way round.
    held = np.where(np.isin(copy, right), copy, original)
    closest = np.flatnonzero(_ranks(copy << 32 | original) == 0)
    by_held = closest[
        np.lexsort((original[closest], copy[closest], distance[closest], held[closest]))
    ]
    kept = by_held[_ranks(held[by_held]) < _PAIRS_PER_FILE]
    keep = np.isin(copy << 32 | original, copy[kept] << 32 | original[kept])
    pairs: list[list[_CropHit]] = []
    for row in hits[:, keep].T.tolist():
        hit = _CropHit(row[2], row[0], row[1], row[5], bool(row[3]), _HOW[row[4]])
        if pairs and (pairs[-1][0].copy, pairs[-1][0].original) == (hit.copy, hit.original):
            pairs[-1].append(hit)
        else:
            pairs.append([hit])
    return sorted(pairs, key=lambda hits: (hits[0].distance, hits[0].copy, hits[0].original))


def _ranks(groups: np.ndarray) -> np.ndarray:
    """Each element's place (0, 1, ...) in its run of equal values of `groups`."""
    if not len(groups):
        return np.empty(0, np.int64)
    starts = np.flatnonzero(np.append(True, groups[1:] != groups[:-1]))
    return np.arange(len(groups)) - np.repeat(starts, np.diff(np.append(starts, len(groups))))


def _hit_arrays(
    probes_side: list[int], windows_side: list[int], prints: dict[int, _Fingerprint], bits: int
) -> tuple[np.ndarray, ...]:
    """Every hit of a probe of `probes_side` on a window of `windows_side`, as arrays: the
    copy, the original, the distance, mirrored, how, the window's number."""
    probes, probe_of = _probes(probes_side, prints)
    counts = [len(prints[j].crops) for j in windows_side]
    if not len(probes) or not sum(counts) or bits < 0:
        empty = np.empty(0, np.int64)
        return empty, empty, empty, empty, empty, empty
    windows = np.concatenate([prints[j].crops for j in windows_side])
    numbers = np.concatenate([prints[j].windows for j in windows_side])
    window_of = np.repeat(np.array(windows_side, dtype=np.int64), counts)
    p, w, distance = pair_arrays(probes, windows, bits)
    copy, mirrored, how = probe_of[p].T
    return copy, window_of[w], distance.astype(np.int64), mirrored, how, numbers[w].astype(np.int64)


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
