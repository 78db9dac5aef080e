"""The audit's crop and shift search: what it finds, and what it finds that it should not.

    PYTHONPATH=. python benchmarks/crop_search.py [--seeds 10] [--times 5]

(PYTHONPATH=.: the library measured is this tree's, not another installed `augment`.)

- Sample sets (`sample_data/textures`, `digits`): over `--seeds` seeds, `expand` (default
  recipe), then `augment audit`'s near-duplicate check on the clean output: its findings
  there are false positives, counted apart for the crop search (kinds `cropped`, `shifted`)
  and the whole-image hash. On the first seed, every held-out file is copied into train as a
  crop (90 % and 85 % of its sides, at a place drawn per file) and as a copy shifted by 10 %
  of its sides (the band filled black, as Affine's default does), one audit per kind of copy:
  the share found is the recall.
- Bundled photos (every scikit-image photo, and each cut into nine distinct tiles) and
  scikit-learn's 8 x 8 digits: two made-up splits of different pictures, audited as an
  output of PNG files; every finding is a false positive. The crafted copies as above.
- Each copy also as a 90 % crop scaled back to the picture's size and saved as JPEG 70; and
  the range of the pixel checks the audit made (correlation, residual in grey levels): on
  the clean outputs (look-alikes, rejected) and on the copies (passed).
- The audit's cost: CPU seconds of the whole `augment audit OUT` command (a child process,
  `--workers 1`) on the first seed's output of each sample set, median of three runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from augment.commands import audit_duplicates
from augment.commands.audit_duplicates import duplicate_findings
from augment.commands.audit_report import AuditOptions, Finding, ImageFile
from augment.imaging.codec import decode
from augment.imaging.crops import CropFit, crop_fit
from augment.model import ExpandOptions
from augment.run import expand
from augment.stages.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
CROP_KINDS = {"cropped", "shifted"}
Copy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def crop(share: float) -> Copy:
    def made(px: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = px.shape[:2]
        ch, cw = round(h * share), round(w * share)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return np.ascontiguousarray(px[y : y + ch, x : x + cw])

    return made


def shift(px: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = px.shape[:2]
    dx, dy = (int(v) * int(rng.choice([-1, 1])) for v in (w // 10, h // 10))
    move = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(px, move, (w, h), borderMode=cv2.BORDER_CONSTANT)


def crop_resized_jpeg(px: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 90 % crop scaled back to the picture's size and saved as JPEG quality 70."""
    h, w = px.shape[:2]
    made = cv2.resize(crop(0.9)(px, rng), (w, h), interpolation=cv2.INTER_LINEAR)
    _, data = cv2.imencode(
        ".jpg", cv2.cvtColor(made, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 70]
    )
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


COPIES: dict[str, Copy] = {
    "crop 90%": crop(0.9),
    "crop 85%": crop(0.85),
    "shift 10%": shift,
    "crop 90% resized, JPEG 70": crop_resized_jpeg,
}
# Every pixel check the audit makes (audit_duplicates.crop_fit), recorded here.
FITS: list[CropFit] = []


def _recorded(*args: Any, **kwargs: Any) -> CropFit:
    fit = crop_fit(*args, **kwargs)
    FITS.append(fit)
    return fit


audit_duplicates.crop_fit = _recorded


def fits_seen(fits: list[CropFit]) -> str:
    """The pixel checks' range: the closest of those rejected, the worst of those passed."""
    text = f"pixel checks {len(fits)}"
    for group in (False, True):
        chosen = [f for f in fits if f.matches is group]
        if chosen:
            # The most alike rejected and the least alike passed: the margins.
            # Each extreme on its own (not of one pair).
            if group:
                least, most = min(f.correlation for f in chosen), max(f.residual for f in chosen)
                text += f"; passed {len(chosen)}: min correlation {least:.3f}, "
                text += f"max residual {most:.1f}"
            else:
                most, least = max(f.correlation for f in chosen), min(f.residual for f in chosen)
                text += f"; rejected {len(chosen)}: max correlation {most:.3f}, "
                text += f"min residual {least:.1f}"
    return text


def write_png(path: Path, px: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(px, cv2.COLOR_RGB2BGR))


def audit(files: list[ImageFile]) -> list[Finding]:
    splits = sorted({f.split for f in files}, key=["train", "validation", "test"].index)
    found = duplicate_findings(files, splits, AuditOptions(workers=2))
    return [f for f in found if f.check == "near-duplicates"]


def counts(found: list[Finding]) -> tuple[int, int]:
    crops = sum(f.kind in CROP_KINDS for f in found)
    return crops, len(found) - crops


def recall(out: Path, files: list[ImageFile], held: list[ImageFile]) -> dict[str, str]:
    """Each held-out file copied into train, as each kind of copy: the share found."""
    found_share = {}
    FITS.clear()
    for name, copy in COPIES.items():
        rng = np.random.default_rng(0)
        made = []
        for f in held:
            px = copy(decode(f.file.read_bytes()).pixels, rng)
            target = out / "train" / "crafted" / f"{f.file.stem}.png"
            write_png(target, px)
            made.append(ImageFile(f"train/crafted/{target.name}", "train", f.label, target))
        hits = {p for finding in audit(files + made) for p in finding.paths}
        found_share[name] = f"{sum(m.name in hits for m in made)}/{len(made)}"
        for m in made:
            m.file.unlink()
    found_share["checks"] = fits_seen(FITS)
    return found_share


def audit_cpu(out: Path) -> float:
    """CPU seconds (user + system) of `augment audit OUT --workers 1`, median of three."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    spent = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        command = [sys.executable, "-m", "augment", "audit", str(out), "--workers", "1"]
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode not in (0, 1):  # 1: findings
            raise SystemExit(f"augment audit failed: {done.stderr}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(spent)


def sample_sets(seeds: int, times: int) -> None:
    for name in ("textures", "digits"):
        false_crop = false_whole = 0
        clean_fits: list[CropFit] = []
        for seed in range(seeds):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "out"
                options = ExpandOptions(times=times, seed=seed, workers=1)
                expand(ROOT / "sample_data" / name, out, options)
                files = [
                    ImageFile(r["path"], r["split"], r["label"], out / r["path"])
                    for r in read_manifest(out)
                ]
                FITS.clear()
                crops, whole = counts(audit(files))
                clean_fits += FITS
                false_crop, false_whole = false_crop + crops, false_whole + whole
                if seed == 0:
                    held = [f for f in files if f.split != "train"]
                    print(f"{name}: {len(files)} files, {len(held)} held out; seed 0 recall:")
                    print("   ", recall(out, files, held))
                    print(f"    seed 0: `augment audit OUT -j 1` took {audit_cpu(out):.2f} CPU s")
        print(
            f"    seeds 0-{seeds - 1}: false positives of the crop search {false_crop}, "
            f"of the whole-image hash {false_whole}; {fits_seen(clean_fits)}"
        )


def bundled_pictures() -> dict[str, list[np.ndarray]]:
    import skimage.data
    from sklearn.datasets import load_digits

    photos = []
    for name in skimage.data.__all__:
        if name in {"download_all", "lbp_frontal_face_cascade_filename", "data_dir"}:
            continue
        try:
            # binary_blobs is random unless given a seed: the same blobs on every run.
            made = getattr(skimage.data, name)
            image = np.asarray(made(rng=0) if name == "binary_blobs" else made())
        except Exception:  # a dataset that needs a download: not bundled
            continue
        if image.ndim not in (2, 3) or min(image.shape[:2]) < 64 or image.dtype.kind not in "biu":
            continue
        if image.dtype == bool or image.max() <= 1:
            image = image.astype(np.uint8) * 255
        image = image.astype(np.uint8)
        photos.append(np.dstack([image] * 3) if image.ndim == 2 else image[..., :3].copy())
    tiles = [
        np.ascontiguousarray(p[y : y + p.shape[0] // 3, x : x + p.shape[1] // 3])
        for p in photos
        for y in (0, p.shape[0] // 3, 2 * p.shape[0] // 3)
        for x in (0, p.shape[1] // 3, 2 * p.shape[1] // 3)
    ]
    digits = [np.dstack([(d * 255 / 16).astype(np.uint8)] * 3) for d in load_digits().images[:1000]]
    return {"scikit-image photos and tiles": photos + tiles, "scikit-learn digits": digits}


def bundled(pictures: list[np.ndarray], tmp: Path) -> list[ImageFile]:
    files = []
    for n, px in enumerate(pictures):
        split = "train" if n % 2 == 0 else "validation"
        path = tmp / split / "x" / f"{n:05d}.png"
        write_png(path, px)
        files.append(ImageFile(f"{split}/x/{path.name}", split, "x", path))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--times", type=int, default=5)
    args = parser.parse_args()
    sample_sets(args.seeds, args.times)
    for name, pictures in bundled_pictures().items():
        with tempfile.TemporaryDirectory() as tmp:
            files = bundled(pictures, Path(tmp))
            FITS.clear()
            crops, whole = counts(audit(files))
            checked = fits_seen(FITS)
            pairs = sum(f.split == "train" for f in files) * sum(
                f.split == "validation" for f in files
            )
            print(f"{name}: {len(files)} pictures, {pairs:,} cross-split pairs")
            print(
                f"    false positives of the crop search {crops}, of the whole-image hash {whole}; "
                + checked
            )
            held = [f for f in files if f.split == "validation"]
            print("    recall:", recall(Path(tmp), files, held))


if __name__ == "__main__":
    main()
