"""What `augment audit` reports and looks at: its checks, options, findings and report, and
the image files of a split folder. Shared by the checks (`audit_manifest`,
`audit_duplicates`) and the command (`audit`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augment.defaults import DEFAULT_MAX_DISTANCE, IMAGE_EXTENSIONS, REENCODE_MIN_PSNR
from augment.errors import DatasetError
from augment.layout import STATE_DIR

CHECKS: dict[str, str] = {
    "lineage": "train files come only from train originals",
    "exact-duplicates": "no image in two splits (same decoded pixels)",
    "near-duplicates": "no near-duplicate image in two splits (perceptual hash)",
    "integrity": "files, hashes, manifest and augment.json agree",
    "balance": "every class present in every split",
    # Only for annotated outputs (see audit_annotations.py).
    "annotations": "boxes inside their image, of a known class; annotation files agree",
}
ANNOTATIONS = "annotations"
FOLDER_CHECKS = ("exact-duplicates", "near-duplicates", "balance")
# What a check can be told to leave out, by name (as `--json` lists it under the check's
# `skipped`), and what the text report says of it: a check that passed without it has not
# cleared what it left out.
CROP_SEARCH = "crop-search"
SKIPPED: dict[str, str] = {
    CROP_SEARCH: "crops and shifted copies not searched (--no-crop-search)",
}


@dataclass(frozen=True)
class AuditOptions:
    max_distance: int = DEFAULT_MAX_DISTANCE  # pHash bits
    min_psnr: float = REENCODE_MIN_PSNR  # dB over 4x4 block means: "re-encoded" duplicates
    workers: int | None = None  # decoding threads; None: all cores
    # An annotated output's source: held-out objects compared with its originals' labels
    # (audit_held_out.py); None: not compared.
    source: Path | None = None
    # Near duplicates: also look for crops and shifted copies of a file in another split
    # (crop windows, then a pixel check: audit_duplicates.py). Off, the whole-image checks
    # run alone, at a fraction of the CPU and memory.
    crop_search: bool = True


@dataclass(frozen=True)
class Finding:
    check: str
    kind: str
    message: str
    paths: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "kind": self.kind,
            "message": self.message,
            "paths": list(self.paths),
        }


@dataclass
class AuditReport:
    target: str
    mode: str  # "manifest" | "folders"
    checks: tuple[str, ...]
    options: AuditOptions
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> files
    findings: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def findings_of(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def skipped_of(self, check: str) -> list[str]:
        """What `check` was told to leave out (names in `SKIPPED`)."""
        if check == "near-duplicates" and not self.options.crop_search:
            return [CROP_SEARCH]
        return []

    @property
    def skipped(self) -> list[str]:
        """What any of the report's checks left out."""
        return [part for check in self.checks for part in self.skipped_of(check)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mode": self.mode,
            "clean": self.clean,
            "settings": {
                "max_distance": self.options.max_distance,
                "min_psnr": self.options.min_psnr,
                "crop_search": self.options.crop_search,
            },
            "checks": [
                {
                    "name": name,
                    "description": CHECKS[name],
                    "passed": not self.findings_of(name),
                    "skipped": self.skipped_of(name),
                    "findings": [f.to_dict() for f in self.findings_of(name)],
                }
                for name in self.checks
            ],
            "sizes": {split: sum(counts.values()) for split, counts in self.counts.items()},
            "counts": self.counts,
        }


@dataclass(frozen=True)
class ImageFile:
    name: str  # as reported: relative to OUT, or "<split>:<path in its folder>"
    split: str
    label: str  # the class folder ("" when the file sits directly in the split folder)
    file: Path
    # A sample inside a shard (audit_shards.py): its bytes read from the shard when asked
    # for, never copied to disk; `file` then only names it.
    reader: Callable[[], bytes] | None = field(default=None, compare=False)

    def read_bytes(self) -> bytes:
        return self.reader() if self.reader is not None else self.file.read_bytes()


def _unreadable(exc: OSError) -> None:
    # A folder the audit cannot list would silently shrink a split: refuse to run instead.
    raise DatasetError(f"cannot read folder {exc.filename}: {exc.strerror}")


# What the consumers read as images: torchvision's ImageFolder (.ppm, .pgm too), Keras and
# Hugging Face imagefolder. The audit sees every file any of them would train on.
CONSUMER_EXTENSIONS = IMAGE_EXTENSIONS | {".ppm", ".pgm", ".pbm", ".pnm", ".jfif", ".tga"}


def image_files(folder: Path, split: str, prefix: str) -> list[ImageFile]:
    """Image files under a split folder, sorted, as the most eager consumer finds them:
    torchvision's ImageFolder reads hidden files and folders and follows linked folders, so
    the audit does too (each folder once: a link loop ends there). Only augment's own state
    folder at the top of OUT is left out."""
    found: list[ImageFile] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, onerror=_unreadable, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        rel_dir = Path(dirpath).relative_to(folder)
        dirnames[:] = sorted(d for d in dirnames if rel_dir.parts or d != STATE_DIR)
        for name in sorted(filenames):
            if Path(name).suffix.lower() not in CONSUMER_EXTENSIONS:
                continue
            rel = (rel_dir / name).as_posix()
            label = rel_dir.parts[0] if rel_dir.parts else ""
            found.append(ImageFile(f"{prefix}{rel}", split, label, Path(dirpath) / name))
    return found
