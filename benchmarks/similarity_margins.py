"""Measure the audit's thresholds on the bundled sample data (the figures in the README).

    python benchmarks/similarity_margins.py [--recipe default] [--times 5] [--seeds 10]

For each sample set: the pHash distance between every two *different* originals (what must
stay above the near-duplicate threshold); over several seeds, the cross-split distances in an
`expand` output, train variants included (false positives at a few thresholds); and, on the
first seed, how far crafted copies of each held-out file land (JPEG re-encodes, resizes, a
mirror), with the block PSNR of the re-encodes.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import cv2
import numpy as np

from augment.commands.audit import audit_output
from augment.defaults import DEFAULT_MAX_DISTANCE
from augment.imaging.codec import decode, encode
from augment.imaging.digests import ImageHash
from augment.imaging.similarity import block_psnr, phash_bytes, phash_rgb
from augment.model import ExpandOptions
from augment.run import expand
from augment.stages.ingest import ingest
from augment.stages.manifest import Record, read_manifest

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = (4, 6, 8, 10)


def distance(a: ImageHash, b: ImageHash) -> int:
    """Distance as the audit sees it: direct, or against the mirror."""
    return min(bin(a.direct ^ b.direct).count("1"), bin(a.direct ^ b.mirror).count("1"))


def crafted_copies(
    records: list[Record], pixels: dict[str, np.ndarray], h: dict[str, ImageHash]
) -> dict[str, list[float]]:
    crafted: dict[str, list[float]] = {}
    for r in records:
        if r["split"] == "train":
            continue
        px, ref = pixels[r["path"]], h[r["path"]]
        for q in (30, 50, 70):
            again = decode(encode(px, "jpg", q)).pixels
            crafted.setdefault(f"jpeg q{q} bits", []).append(distance(phash_rgb(again), ref))
            crafted.setdefault(f"jpeg q{q} block PSNR dB", []).append(block_psnr(px, again))
        for scale in (0.5, 2.0):
            size = (round(px.shape[1] * scale), round(px.shape[0] * scale))
            resized = cv2.resize(px, size, interpolation=cv2.INTER_AREA)
            crafted.setdefault(f"resized x{scale} bits", []).append(
                distance(phash_rgb(resized), ref)
            )
        mirrored = np.ascontiguousarray(px[:, ::-1])
        crafted.setdefault("mirrored bits", []).append(distance(phash_rgb(mirrored), ref))
    return crafted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--times", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    for name in ("textures", "digits"):
        src = ROOT / "sample_data" / name
        dataset = ingest(src)
        hashes = [phash_bytes((src / o.path).read_bytes()) for o in dataset.originals]
        pairs = [distance(a, b) for a, b in itertools.combinations(hashes, 2)]
        print(f"== {name}: {len(hashes)} originals, {len(pairs)} pairs of different originals")
        print(
            f"   closest pair {min(pairs)} bits; mean {np.mean(pairs):.1f}; within "
            + ", ".join(f"{t}: {sum(d <= t for d in pairs)}" for t in THRESHOLDS)
        )
        closest: list[int] = []
        within = dict.fromkeys(THRESHOLDS, 0)
        total = 0
        clean = 0
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "out"
                options = ExpandOptions(times=args.times, recipe=args.recipe, seed=seed, workers=2)
                expand(src, out, options)
                records = read_manifest(out)
                pixels = {r["path"]: decode((out / r["path"]).read_bytes()).pixels for r in records}
                h = {p: phash_rgb(px) for p, px in pixels.items()}
                cross = [
                    distance(h[a["path"]], h[b["path"]])
                    for a, b in itertools.combinations(records, 2)
                    if a["split"] != b["split"]
                ]
                total += len(cross)
                closest.append(min(cross))
                for t in THRESHOLDS:
                    within[t] += sum(d <= t for d in cross)
                clean += audit_output(out).clean
                if seed == 0:
                    original_of = {
                        r["sources"][0]["path"]: r["path"] for r in records if r["variant"] == 0
                    }
                    own = [
                        distance(h[r["path"]], h[original_of[r["sources"][0]["path"]]])
                        for r in records
                        if r["variant"] > 0
                    ]
                    print(
                        f"   seed 0: train variants within {DEFAULT_MAX_DISTANCE} bits of "
                        f"their own original: {sum(d <= DEFAULT_MAX_DISTANCE for d in own)}"
                        f"/{len(own)}"
                    )
                    for key, values in crafted_copies(records, pixels, h).items():
                        worst = min(values) if "PSNR" in key else max(values)
                        print(
                            f"   seed 0: crafted copies of held-out files, {key}: worst {worst:.1f}"
                        )
        print(
            f"   expand --recipe {args.recipe} --times {args.times}, seeds 0-{args.seeds - 1}: "
            f"{total} cross-split pairs; closest per seed {closest}; within "
            + ", ".join(f"{t}: {n}" for t, n in within.items())
            + f"; audit clean on {clean}/{args.seeds} seeds"
        )


if __name__ == "__main__":
    main()
