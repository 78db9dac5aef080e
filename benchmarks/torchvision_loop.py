"""The loop a torchvision user writes for the default recipe, as a command of its own.

    python benchmarks/torchvision_loop.py CORPUS OUT --times 5 --size 224 224 --quality 95

benchmarks/bench.py runs it with an interpreter that has torchvision (`--torchvision-python`):
PyPI's torch is the CUDA build, gigabytes of wheels, so torchvision lives in an environment
of its own and is timed as a whole command, start-up included, next to the `augment expand`
command. Where torchvision imports in bench.py's own environment, bench.py also runs `make`
in its process (the same definition, the same bytes).

Pillow decode and encode; the fit as a Pillow user writes it (the longer side resized to the
output size, centred on black); then the default recipe (pipelines/default.yaml) in
transforms.v2 on the PIL image. v2's noise and erasing work on tensors only (uint8 noise since
torchvision 0.24), so the image goes to a uint8 tensor and back for them. One torch thread
and a fixed seed: v2 draws from torch's global generator, which is this command's own.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2

SEED = 0


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """The longer side to the output size, the rest padded black around the centre."""
    contained = ImageOps.contain(image.convert("RGB"), (width, height))
    canvas = Image.new("RGB", (width, height))
    canvas.paste(contained, ((width - contained.width) // 2, (height - contained.height) // 2))
    return canvas


def default_recipe() -> v2.Compose:
    """The default recipe in transforms.v2, as close as v2 has: RandomAffine fills with black
    (v2 has no reflected border), GaussianNoise has one sigma (the middle of the recipe's
    4-12) and RandomErasing one hole (CoarseDropout's hole sides, 8-20% of the image's)."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(0.5),
            v2.RandomApply(
                [
                    v2.RandomAffine(
                        degrees=12,
                        translate=(0.06, 0.06),
                        scale=(0.9, 1.1),
                        # Bilinear, as albumentations' Affine and imgaug's (v2's default is
                        # nearest): the same pixel work.
                        interpolation=v2.InterpolationMode.BILINEAR,
                    )
                ],
                p=0.7,
            ),
            v2.RandomApply([v2.ColorJitter(brightness=0.2, contrast=0.2)], p=0.6),
            v2.PILToTensor(),
            v2.RandomApply([v2.GaussianNoise(sigma=8 / 255)], p=0.3),
            v2.RandomErasing(p=0.3, scale=(0.08**2, 0.2**2), ratio=(0.4, 2.5), value=0),
            v2.ToPILImage(),
        ]
    )


def corpus_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def make(files: Sequence[Path], out: Path, times: int, size: tuple[int, int], quality: int) -> None:
    """`times` outputs per source in `out`, named `{source}_{variant}.jpg`; variant 0 is the
    fit alone, as every contender makes it."""
    # Set here, not only in main(): bench.py calls this in its own process too.
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    width, height = size
    pipeline = default_recipe()
    out.mkdir(parents=True)
    for n, path in enumerate(files):
        with Image.open(path) as opened:
            image = fit(opened, width, height)
        for v in range(times):
            pixels = image if v == 0 else pipeline(image)
            pixels.save(out / f"{n}_{v}.jpg", "JPEG", quality=quality)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--times", type=int, default=5)
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224))
    parser.add_argument("--quality", type=int, default=95)
    args = parser.parse_args()
    size = (args.size[0], args.size[1])
    make(corpus_files(args.corpus), args.out, args.times, size, args.quality)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
