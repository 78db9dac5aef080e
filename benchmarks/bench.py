"""How fast is `augment expand`, next to the codec floor, a bare albumentations loop, imgaug,
torchvision and Augmentor, on the same photos with the same recipe, measured in one run?

    pip install -e ".[bench]"
    python benchmarks/bench.py            # about 2-4 minutes; prints a markdown report
    python benchmarks/bench.py --quick    # under a minute: fewer sources and repeats

The corpus is made at run time into a temporary folder: crops of scikit-image's bundled colour
photos, resized to 500x375 and saved as JPEG quality 90 (or pass `--corpus DIR`, a folder of
class folders). Every contender makes the same number of outputs (`--times` per source) at
the recipe's output size and quality, and writes them to disk:

- codec floor: read and decode each source once (at reduced scale when the output is
  smaller), resize it once to the output size, then encode and write `--times` copies: no
  augmentation, the fastest codec path available;
- albumentations loop: what a user would write with albumentations alone: cv2 decode,
  LongestMaxSize + PadIfNeeded (or the recipe's fit), the recipe's transforms with the
  project's own transforms swapped for albumentations' (GaussNoise, SaltAndPepper), cv2 encode;
- same work, no tool: `augment`'s own decode, preprocess, pipeline and encode in a plain loop,
  without hashing, planning, manifest or atomic writes (the tool's overhead is measured
  against this);
- augment expand at 1 worker and at all cores, then a rerun of the same command (a no-op);
- Augmentor `sample()`, single-threaded, with the closest operations it has (it has no noise),
  resized first (its best case: every operation then works at the output size);
- torchvision transforms.v2 on PIL images (benchmarks/torchvision_loop.py): in this process
  when torchvision is installed here, and as a command of its own in `--torchvision-python`,
  an interpreter that has torchvision (torch is gigabytes: it has an environment of its own),
  next to the `augment expand` commands, start-up included on both sides;
- imgaug's loop (benchmarks/imgaug_loop.py) as a command of its own in `--imgaug-python`, an
  interpreter that has imgaug (it needs numpy and OpenCV below the core's), as torchvision's.

The single-core contenders run in this process with OpenCV limited to one thread; measurements
are interleaved over `--repeats` rounds and the medians reported, so a noisy neighbour slows
all of them alike. Each is timed in wall seconds and CPU seconds (this process's, plus the
children it waited for: a command's, or the pool's once it has exited). Ratios come from the
same run. Peak memory is the summed RSS (and PSS) of an `augment expand --workers 2` process
tree over 1k and 10k small sources.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import functools
import gc
import importlib.metadata
import importlib.util
import io
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# The tree this script is in is the one measured, not an `augment` installed elsewhere (an
# editable install of another checkout would otherwise be imported: the script's own folder,
# not the tree's root, is first on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import albumentations as A
import cv2
import numpy as np
import PIL
import simplejpeg
from PIL import Image

import augment
from augment.defaults import default_workers
from augment.files import write_atomic
from augment.imaging.codec import decode, decode_with_pillow, encode
from augment.imaging.digests import sha256_bytes
from augment.imaging.threads import one_cv2_thread
from augment.model import ExpandOptions
from augment.recipe.build import Recipe, load_recipe, seed_pipeline
from augment.recipe.fused import fused_pipeline
from augment.recipe.preprocess import Preprocess, apply_preprocess
from augment.recipe.transforms import FastGaussianNoise, SaltAndPepperNoise
from augment.rerun.heap import reuse_image_buffers
from augment.run import expand
from augment.stages.plan import job_seed


def compile_tree() -> None:
    """Bytecode, up to date, for every module of this tree's `augment`, as pip compiles an
    installed package. An environment that writes none (`PYTHONDONTWRITEBYTECODE=1`, as a
    development one may set) makes every timed `augment` command compile the project's ~100
    modules again: ~60 ms of CPU a start that a user's installed `augment` does not pay, and
    most of a no-op rerun's cost at a thousand sources. Python still reads bytecode it finds,
    so compiling once puts each timed command where a user's is. It goes to the tree's
    `__pycache__` folders, which git ignores; the libraries have theirs from their install."""
    package = Path(__file__).resolve().parent.parent / "augment"
    if not compileall.compile_dir(package, quiet=1):
        raise SystemExit(f"could not compile {package}")


def _augmentor() -> tuple[Any, str]:
    """The Augmentor module, or None and why not. Imported on demand: the pool's processes
    import this script again as their __main__, and must not pay for Augmentor."""
    try:
        import Augmentor
    except Exception as exc:  # any import failure (e.g. under numpy 2) is reported, not fatal
        return None, f"cannot be imported ({type(exc).__name__}: {exc})"
    return Augmentor, ""


HERE = Path(__file__).resolve().parent


@functools.cache
def _torchvision() -> tuple[Any, str]:
    """benchmarks/torchvision_loop.py as a module, or None and why not (torchvision is an
    optional peer, not a dependency). Loaded by its path, as this script may be (the tests
    do): the folder it is in need not be on sys.path."""
    try:
        importlib.import_module("torchvision")
    except ImportError:
        return None, "not installed"
    spec = importlib.util.spec_from_file_location("torchvision_loop", HERE / "torchvision_loop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, ""


def missing_in(python: str, module: str) -> str:
    """Why `python` cannot run the loop that needs `module`, or "" when it can."""
    found = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
    return "" if found.returncode == 0 else f"not installed (no {module} module in {python})"


# Colour photos scikit-image ships in its wheel (no download needed).
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)
SOURCE_SIZE = (500, 375)
SOURCE_QUALITY = 90


# ---------------------------------------------------------------------------------------------
# Corpora
# ---------------------------------------------------------------------------------------------


def _photos() -> dict[str, np.ndarray]:
    from skimage import data

    out = {}
    for name in PHOTOS:
        image = getattr(data, name)()
        image = image[0] if isinstance(image, tuple) else image  # stereo pairs
        out[name] = np.ascontiguousarray(image[..., :3])
    return out


def make_corpus(root: Path, count: int, size: tuple[int, int], quality: int, seed: int = 0) -> Path:
    """`count` JPEGs of `size` cut from the photos, one class folder per photo."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    names = list(photos)
    width, height = size
    for i in range(count):
        name = names[i % len(names)]
        photo = photos[name]
        ph, pw = photo.shape[:2]
        # A random crop of the target's aspect ratio, 50-100% of the largest that fits.
        crop_w = min(pw, ph * width / height) * rng.uniform(0.5, 1.0)
        crop_h = crop_w * height / width
        x = int(rng.uniform(0, pw - crop_w))
        y = int(rng.uniform(0, ph - crop_h))
        crop = photo[y : y + int(crop_h), x : x + int(crop_w)]
        interpolation = cv2.INTER_AREA if crop.shape[1] >= width else cv2.INTER_CUBIC
        pixels = cv2.resize(crop, (width, height), interpolation=interpolation)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{name}_{i:05d}.jpg", "JPEG", quality=quality)
    return root


def corpus_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


# ---------------------------------------------------------------------------------------------
# Contenders: each makes len(files) * times outputs in `out` and returns nothing.
# ---------------------------------------------------------------------------------------------


@dataclass
class Setup:
    files: list[Path]
    corpus: Path
    recipe: Recipe
    recipe_arg: str  # as given: a bundled name or a path, for expand
    times: int
    quality: int
    workers: int
    scratch: Path
    # Each source's variant seeds as `expand` derives them (variant 0 draws nothing), taken
    # here, untimed: "same work, no tool" then draws exactly what expand draws.
    seeds: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.seeds:
            self.seeds = tool_seeds(self.files, self.times)

    @property
    def outputs(self) -> int:
        return len(self.files) * self.times


def tool_seeds(files: list[Path], times: int) -> list[list[int]]:
    seed = ExpandOptions.seed
    shas = [sha256_bytes(path.read_bytes()) for path in files]
    return [[job_seed(seed, sha, v) for v in range(times)] for sha in shas]


def _output_size(recipe: Recipe, image: np.ndarray) -> tuple[int, int]:
    return recipe.preprocess.size or (image.shape[1], image.shape[0])


def codec_floor(s: Setup, out: Path) -> None:
    out.mkdir(parents=True)
    for n, path in enumerate(s.files):
        data = path.read_bytes()
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
        size = s.recipe.preprocess.size or (width, height)
        # The fastest decode there is: libjpeg's reduced-scale IDCT down to the output size.
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_width=size[0], min_height=size[1], min_factor=2
        )
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR)
        for v in range(s.times):
            data = simplejpeg.encode_jpeg(
                pixels, quality=s.quality, colorspace="RGB", colorsubsampling="420"
            )
            (out / f"{n}_{v}.jpg").write_bytes(data)


def stock_transform(t: Any) -> Any:
    """The albumentations transform a user would reach for instead of the project's own."""
    if isinstance(t, FastGaussianNoise):
        low, high = t.sigma
        return A.GaussNoise(std_range=(low / 255, high / 255), per_channel=t.per_channel, p=t.p)
    if isinstance(t, SaltAndPepperNoise):
        return A.SaltAndPepper(
            amount=t.amount, salt_vs_pepper=(t.salt_vs_pepper, t.salt_vs_pepper), p=t.p
        )
    return t


def stock_fit(spec: Preprocess) -> list[Any]:
    if spec.size is None:
        return []
    width, height = spec.size
    if spec.fit == "stretch":
        return [A.Resize(height, width)]
    if spec.fit == "crop":
        return [A.SmallestMaxSize(max_size_hw=(height, width)), A.CenterCrop(height, width)]
    return [
        A.LongestMaxSize(max_size_hw=(height, width)),
        A.PadIfNeeded(height, width, border_mode=cv2.BORDER_REFLECT_101),
    ]


def albumentations_loop(s: Setup, out: Path) -> None:
    out.mkdir(parents=True)
    fit = A.Compose(stock_fit(s.recipe.preprocess))
    pipeline = A.Compose([stock_transform(t) for t in s.recipe.build_pipeline()], seed=0)
    params = [cv2.IMWRITE_JPEG_QUALITY, s.quality]
    for n, path in enumerate(s.files):
        image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        image = fit(image=image)["image"]
        for v in range(s.times):
            pixels = image if v == 0 else pipeline(image=image)["image"]
            ok, data = cv2.imencode(".jpg", pixels, params)
            assert ok
            (out / f"{n}_{v}.jpg").write_bytes(data.tobytes())


def same_work_no_tool(s: Setup, out: Path) -> None:
    """The worker's pixel work, in a plain loop: what the tool adds is everything else.

    Seeded as `expand` seeds each variant, so it draws the same transforms and makes the same
    bytes (tests/test_benchmark.py checks): the comparison is of the same pixel work, not of
    two random samples of it (which differ by several percent at 1,000 outputs)."""
    out.mkdir(parents=True)
    pipeline = fused_pipeline(s.recipe, None)  # as the worker runs it (a recipe without policies)
    for n, path in enumerate(s.files):
        spec = s.recipe.preprocess
        decoded = decode(path.read_bytes(), s.recipe.background, needed=spec.needed_source_size)
        prepared = apply_preprocess(decoded.pixels, s.recipe.preprocess)
        for v in range(s.times):
            if v == 0:
                pixels = prepared
            else:
                seed_pipeline(pipeline, s.seeds[n][v])
                pixels = np.ascontiguousarray(pipeline(image=prepared.copy())["image"])
            (out / f"{n}_{v}.jpg").write_bytes(encode(pixels, "jpg", s.quality))


def expand_options(s: Setup, workers: int, near_duplicates: bool = True) -> ExpandOptions:
    return ExpandOptions(
        times=s.times,
        recipe=s.recipe_arg,
        val=0,
        test=0,
        workers=workers,
        output_format="jpg",
        quality=s.quality,
        near_duplicates=ExpandOptions.near_duplicates if near_duplicates else -1,
    )


def run_expand(s: Setup, out: Path, workers: int, near_duplicates: bool = True) -> None:
    summary = expand(s.corpus, out, expand_options(s, workers, near_duplicates))
    assert summary.written == s.outputs, (summary.written, s.outputs, summary.rejected)


def rerun_expand(s: Setup, out: Path, workers: int) -> None:
    summary = expand(s.corpus, out, expand_options(s, workers))
    assert summary.written == 0 and summary.reused == s.outputs


def cli_expand(s: Setup, out: Path, workers: int) -> None:
    """The command a user types, in a new process: start-up and imports included."""
    command = [sys.executable, "-m", "augment", "expand", str(s.corpus), str(out), "--quiet"]
    command += ["--times", str(s.times), "--val", "0", "--test", "0", "--format", "jpg"]
    command += ["--quality", str(s.quality), "--recipe", s.recipe_arg, "--workers", str(workers)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def loop_command(script: str, s: Setup, out: Path, python: str) -> None:
    """A peer's loop (benchmarks/`script`) as a command in `python`, start-up included, as
    `cli_expand`: `script CORPUS OUT --times N --size W H --quality Q`."""
    width, height = s.recipe.preprocess.size or SOURCE_SIZE
    command = [python, str(HERE / script), str(s.corpus), str(out), "--times", str(s.times)]
    command += ["--size", str(width), str(height), "--quality", str(s.quality)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def imgaug_command(s: Setup, out: Path, python: str) -> None:
    loop_command("imgaug_loop.py", s, out, python)


def torchvision_command(s: Setup, out: Path, python: str) -> None:
    loop_command("torchvision_loop.py", s, out, python)


def torchvision_loop(s: Setup, out: Path) -> None:
    """benchmarks/torchvision_loop.py's loop in this process (torchvision installed here)."""
    module, _ = _torchvision()
    width, height = s.recipe.preprocess.size or SOURCE_SIZE
    module.make(s.files, out, s.times, (width, height), s.quality)


def augmentor_sample(s: Setup, out: Path) -> None:
    Augmentor, _ = _augmentor()
    width, height = s.recipe.preprocess.size or SOURCE_SIZE
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        p = Augmentor.Pipeline(str(s.corpus), output_directory=str(out), save_format="JPEG")
        p.resize(1.0, width, height)  # first, so the operations work at the output size
        p.flip_left_right(0.5)
        p.rotate(0.7, 12, 12)
        p.zoom(0.7, 1.0, 1.1)
        p.random_brightness(0.6, 0.8, 1.2)
        p.random_contrast(0.6, 0.8, 1.2)
        p.random_erasing(0.3, 0.2)
        p.sample(s.outputs, multi_threaded=False)
    made = sum(1 for _ in out.rglob("*.JPEG")) + sum(1 for _ in out.rglob("*.jpg"))
    assert made == s.outputs, (made, s.outputs)


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


@dataclass
class Timings:
    seconds: dict[str, list[float]] = field(default_factory=dict)
    cpu_seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: tuple[float, float]) -> None:
        self.seconds.setdefault(name, []).append(value[0])
        self.cpu_seconds.setdefault(name, []).append(value[1])

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def cpu(self, name: str) -> float:
        return statistics.median(self.cpu_seconds[name])


def cpu_now() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[Path], None], out: Path, clear: bool = True) -> tuple[float, float]:
    """(wall, CPU) seconds `fn(out)` takes; a cleared `out` first (not timed) unless clear is
    False.

    The garbage the earlier contenders left is collected first, untimed: a full collection
    of this long-lived process's heap takes ~30 ms, and would otherwise be charged to
    whichever contender happened to trigger it (a 10 ms no-op rerun, say)."""
    if clear:
        shutil.rmtree(out, ignore_errors=True)
    gc.collect()
    cpu, started = cpu_now(), time.perf_counter()
    fn(out)
    return time.perf_counter() - started, cpu_now() - cpu


@dataclass
class Peers:
    """Which optional peers this run times."""

    augmentor: bool
    torchvision: bool  # in this process
    imgaug_python: str | None  # an interpreter with imgaug, or None
    torchvision_python: str | None = None  # an interpreter with torchvision, or None
    missing: dict[str, str] = field(default_factory=dict)  # peer -> why it was not run


def find_peers(
    no_augmentor: bool, imgaug_python: str, torchvision_python: str | None = None
) -> Peers:
    """The peers this run can time; `torchvision_python`, when given, for the torchvision
    command (the in-process loop runs when torchvision imports here)."""
    why = {
        "Augmentor": "skipped (--no-augmentor)" if no_augmentor else _augmentor()[1],
        "torchvision": _torchvision()[1],
        "imgaug": missing_in(imgaug_python, "imgaug"),
    }
    if torchvision_python:
        why["torchvision command"] = missing_in(torchvision_python, "torchvision")
    missing = {peer: reason for peer, reason in why.items() if reason}
    return Peers(
        augmentor="Augmentor" not in missing,
        torchvision="torchvision" not in missing,
        imgaug_python=None if "imgaug" in missing else imgaug_python,
        torchvision_python=None if "torchvision command" in missing else torchvision_python,
        missing=missing,
    )


def throughput_rounds(s: Setup, repeats: int, peers: Peers, long_times: int) -> Timings:
    t = Timings()
    out = s.scratch / "out"
    long_run = replace(s, times=long_times)
    for r in range(repeats):
        print(f"  round {r + 1}/{repeats}", file=sys.stderr, flush=True)
        with one_cv2_thread():
            t.add("codec floor", timed(lambda o: codec_floor(s, o), out))
            t.add("albumentations loop", timed(lambda o: albumentations_loop(s, o), out))
            t.add("same work, no tool", timed(lambda o: same_work_no_tool(s, o), out))
            t.add("expand 1", timed(lambda o: run_expand(s, o, 1), out))
            t.add("rerun 1", timed(lambda o: rerun_expand(s, o, 1), out, clear=False))
            t.add("expand 1 no dup", timed(lambda o: run_expand(s, o, 1, False), out))
            if peers.augmentor:
                t.add("Augmentor", timed(lambda o: augmentor_sample(s, o), out))
            if peers.torchvision:
                t.add("torchvision", timed(lambda o: torchvision_loop(s, o), out))
        t.add("expand all", timed(lambda o: run_expand(s, o, s.workers), out))
        t.add("rerun all", timed(lambda o: rerun_expand(s, o, s.workers), out, clear=False))
        t.add("cli 1", timed(lambda o: cli_expand(s, o, 1), out))
        t.add("cli all", timed(lambda o: cli_expand(s, o, s.workers), out))
        t.add("cli rerun", timed(lambda o: cli_expand(s, o, s.workers), out, clear=False))
        if peers.imgaug_python:
            t.add("imgaug", timed(lambda o: imgaug_command(s, o, peers.imgaug_python or ""), out))
        if peers.torchvision_python:
            t.add(
                "torchvision command",
                timed(lambda o: torchvision_command(s, o, peers.torchvision_python or ""), out),
            )
        if long_times and r < 3:
            # Worker processes take about a second to start (importing albumentations): a
            # longer run shows the scaling once they are up.
            with one_cv2_thread():
                t.add("long 1", timed(lambda o: run_expand(long_run, o, 1), out))
            t.add("long all", timed(lambda o: run_expand(long_run, o, s.workers), out))
    shutil.rmtree(out, ignore_errors=True)
    return t


def per_call_ms(fn: Callable[[], object], inputs: int, repeats: int = 5) -> float:
    """Median over `repeats` of the mean time of `inputs` calls, in milliseconds."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(inputs):
            fn()
        samples.append((time.perf_counter() - started) / inputs)
    return statistics.median(samples) * 1e3


def op_costs(s: Setup, sample: int) -> list[tuple[str, float, str]]:
    """Milliseconds per image for each step a worker takes, on `sample` corpus images."""
    files = s.files[:: max(1, len(s.files) // sample)][:sample]
    blobs = [p.read_bytes() for p in files]
    sources = [decode(b).pixels for b in blobs]
    prepared = [apply_preprocess(x, s.recipe.preprocess) for x in sources]
    it = _cycler
    rows: list[tuple[str, float, str]] = []
    w, h = SOURCE_SIZE
    ow, oh = _output_size(s.recipe, prepared[0])
    with one_cv2_thread():
        nb, ns, npp = it(blobs), it(sources), it(prepared)
        rows.append(("read file", per_call_ms(lambda: files[0].read_bytes(), 50), "source"))
        rows.append(("sha256", per_call_ms(lambda: sha256_bytes(nb()), 50), "source bytes"))
        rows.append(("decode (augment)", per_call_ms(lambda: decode(nb()), 50), f"{w}x{h}"))
        needed = s.recipe.preprocess.needed_source_size
        rh, rw = decode(blobs[0], needed=needed).pixels.shape[:2]
        rows.append(
            (
                "decode (augment, reduced for the fit)",
                per_call_ms(lambda: decode(nb(), needed=needed), 50),
                f"{w}x{h} -> {rw}x{rh}",
            )
        )
        rows.append(
            ("decode (Pillow path)", per_call_ms(lambda: decode_with_pillow(nb()), 50), f"{w}x{h}")
        )
        rows.append(
            (
                "decode (cv2.imdecode)",
                per_call_ms(lambda: cv2.imdecode(np.frombuffer(nb(), np.uint8), 1), 50),
                f"{w}x{h}",
            )
        )
        spec = s.recipe.preprocess
        rows.append(
            (
                f"preprocess ({spec.fit}, {spec.pad_mode})",
                per_call_ms(lambda: apply_preprocess(ns(), spec), 50),
                f"{w}x{h} -> {ow}x{oh}",
            )
        )
        reduced = it([decode(b, needed=spec.needed_source_size).pixels for b in blobs])
        rows.append(
            (
                "preprocess, from the reduced decode",
                per_call_ms(lambda: apply_preprocess(reduced(), spec), 50),
                f"{rw}x{rh} -> {ow}x{oh}",
            )
        )
        for t in s.recipe.build_pipeline():
            always = _always(t)
            if always is None:
                continue
            name = type(t).__name__
            rows.append(
                (f"{name} (p=1)", per_call_ms(lambda c=always: c(image=npp()), 50), f"{ow}x{oh}")
            )
            stock = stock_transform(t)
            if stock is not t:
                stock_always = _always(stock)
                rows.append(
                    (
                        f"  albumentations {type(stock).__name__} (p=1)",
                        per_call_ms(lambda c=stock_always: c(image=npp()), 50),
                        f"{ow}x{oh}",
                    )
                )
                for label, transform in ((name, always), (type(stock).__name__, stock_always)):
                    rows.append(
                        (
                            f"  {label} at source size",
                            per_call_ms(lambda c=transform: c(image=ns()), 20),
                            f"{w}x{h}",
                        )
                    )
        pipeline = s.recipe.build_pipeline()
        counter = iter(range(10**9))

        def augment_once() -> None:
            seed_pipeline(pipeline, next(counter))
            pipeline(image=npp().copy())

        rows.append(("whole recipe (its p)", per_call_ms(augment_once, 100), f"{ow}x{oh}"))
        fused = fused_pipeline(s.recipe, None)

        def augment_fused() -> None:
            seed_pipeline(fused, next(counter))
            fused(image=npp().copy())

        rows.append(
            (
                "whole recipe (its p), leading geometry fused",
                per_call_ms(augment_fused, 100),
                f"{ow}x{oh}",
            )
        )
        q = s.quality
        rows.append(
            (
                f"encode jpg q{q} (augment)",
                per_call_ms(lambda: encode(npp(), "jpg", q), 50),
                f"{ow}x{oh}",
            )
        )
        rows.append(
            (
                f"encode jpg q{q} (Pillow)",
                per_call_ms(lambda: _pillow_jpeg(npp(), q), 50),
                f"{ow}x{oh}",
            )
        )
        data = encode(prepared[0], "jpg", q)
        folder = s.scratch / "ops"
        names = iter(range(10**9))
        # New files each time, as a run makes them: creating a file costs more than
        # overwriting one.
        rows.append(
            (
                "write new file (atomic)",
                per_call_ms(lambda: write_atomic(folder / f"a{next(names)}.jpg", data), 50),
                f"{len(data):,} bytes",
            )
        )
        rows.append(
            (
                "write new file (plain)",
                per_call_ms(lambda: (folder / f"p{next(names)}.jpg").write_bytes(data), 50),
                f"{len(data):,} bytes",
            )
        )
        rows.append(("sha256 of the output", per_call_ms(lambda: sha256_bytes(data), 50), ""))
    return rows


def _cycler(items: list[Any]) -> Callable[[], Any]:
    state = {"i": 0}

    def next_item() -> Any:
        state["i"] = (state["i"] + 1) % len(items)
        return items[state["i"]]

    return next_item


def _always(t: Any) -> A.Compose | None:
    """`t` alone with p=1 in a seeded Compose, or None for a composition."""
    if not isinstance(t, A.BasicTransform):
        return None
    args = {k: v for k, v in t.get_transform_init_args().items() if k != "p"}
    return A.Compose([type(t)(**args, p=1.0)], seed=0)


def _pillow_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality, subsampling=2)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Peak memory of a real CLI run, children included
# ---------------------------------------------------------------------------------------------

TINY_RECIPE = """\
description: the default recipe's transforms at 64x48, for the memory benchmark
preprocess: {size: [64, 48], fit: pad, pad_mode: blur}
augment:
  - HorizontalFlip: {p: 0.5}
  - Affine: {rotate: [-12, 12], scale: [0.9, 1.1], border_mode: reflect, p: 0.7}
  - RandomBrightnessContrast: {brightness_limit: 0.2, contrast_limit: 0.2, p: 0.6}
  - FastGaussianNoise: {sigma: [4, 12], p: 0.3}
  - CoarseDropout: {num_holes_range: [1, 3], p: 0.3}
"""


def run_sampled(command: list[str]) -> tuple[dict[str, float], bytes, float]:
    """Run `command`, sampling its process tree's memory every 50 ms: peaks in MB (RSS summed
    over the tree, PSS summed, the largest process, the main process), its standard output
    and its seconds. RuntimeError if it fails."""
    import psutil

    peaks = {"summed": 0.0, "pss": 0.0, "largest": 0.0, "main": 0.0}
    started = time.perf_counter()
    proc = psutil.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(psutil.Error):
                tree = [proc, *proc.children(recursive=True)]
                rss, pss = [], 0
                for p in tree:
                    with contextlib.suppress(psutil.Error):
                        info = p.memory_full_info()
                        rss.append(info.rss)
                        pss += getattr(info, "pss", info.rss)
                mb = 1024 * 1024
                peaks["summed"] = max(peaks["summed"], sum(rss) / mb)
                peaks["pss"] = max(peaks["pss"], pss / mb)
                peaks["largest"] = max(peaks["largest"], max(rss, default=0) / mb)
                peaks["main"] = max(peaks["main"], (rss[0] if rss else 0) / mb)
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"augment expand failed ({proc.returncode}): {err.decode()[-500:]}")
    return peaks, out, time.perf_counter() - started


def peak_memory(root: Path, sources: int, times: int) -> dict[str, float]:
    corpus = make_corpus(root / f"tiny{sources}", sources, (80, 60), SOURCE_QUALITY, seed=1)
    settle(corpus)
    recipe = root / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    out = root / f"tiny{sources}-out"
    command = [sys.executable, "-m", "augment", "expand", str(corpus), str(out)]
    command += ["--times", str(times), "--workers", "2", "--recipe", str(recipe)]
    peaks, summary, seconds = run_sampled(command)
    first = _run_seconds(summary.decode())
    # The same run again changes nothing: timed in this process (as the first run's own
    # time, start-up excluded) and as the command, medians of 3.
    options = ExpandOptions(times=times, recipe=str(recipe), workers=2)
    reruns = []
    for _ in range(3):
        gc.collect()  # as `timed` does
        begun = time.perf_counter()
        assert expand(corpus, out, options).written == 0
        middle = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        reruns.append((middle - begun, time.perf_counter() - middle))
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(corpus, ignore_errors=True)
    return {
        "rss": peaks["summed"],
        "pss": peaks["pss"],
        "one": peaks["largest"],
        "seconds": seconds,
        "run": first,
        "rerun": statistics.median(r[0] for r in reruns),
        "rerun command": statistics.median(r[1] for r in reruns),
    }


def _run_seconds(summary: str) -> float:
    """The seconds a run took by its own summary line (`... in 1.2s`): start-up excluded."""
    found = re.search(r" in ([0-9.]+)s", summary)
    if found is None:
        raise RuntimeError(f"no run time in the summary: {summary[-300:]}")
    return float(found.group(1))


def settle(root: Path) -> None:
    """Date every file an hour back, as a dataset that has sat on disk: augment does not
    trust the stamp of a file modified within the last seconds (its mtime could still
    change unseen), so a corpus made just now would be read again on the first rerun."""
    then = time.time_ns() - 3600 * 10**9
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(then, then))


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def versions(peers: Peers) -> dict[str, str]:
    out = {
        "python": platform.python_version(),
        "augment": augment.__version__,
        "numpy": np.__version__,
        "albumentations": A.__version__,
        "opencv": cv2.__version__,
        "Pillow": PIL.__version__,
        "simplejpeg": simplejpeg.__version__,
    }
    module, _ = _augmentor()
    out["Augmentor"] = getattr(module, "__version__", "?") if module else "unavailable"
    out["torchvision"] = peers.missing.get("torchvision", "")
    if peers.torchvision_python:  # the one timed as a command, when there is one
        vision, torch = versions_in(peers.torchvision_python, "torchvision", "torch")
        out["torchvision"] = f"{vision} (its own environment: torch {torch})"
    elif not out["torchvision"]:
        out["torchvision"] = importlib.metadata.version("torchvision")
    out["imgaug"] = peers.missing.get("imgaug", "")
    if peers.imgaug_python:
        imgaug, numpy, opencv = versions_in(peers.imgaug_python, "imgaug", "numpy", "cv2")
        out["imgaug"] = f"{imgaug} (its own environment: numpy {numpy}, opencv {opencv})"
    return out


def versions_in(python: str, *modules: str) -> list[str]:
    """The `__version__` of each of `modules` in the interpreter `python`."""
    code = f"import {', '.join(modules)}\nfor m in {', '.join(modules)},: print(m.__version__)"
    got = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return got.stdout.split()


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def filesystem(path: Path) -> str:
    """The type of the file system `path` is on (Linux), e.g. ext4 or tmpfs."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and str(path).startswith(fields[1]) and len(fields[1]) > len(best):
                best, kind = fields[1], fields[2]
    return kind


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def throughput_table(s: Setup, t: Timings, peers: Peers, long_times: int) -> list[str]:
    rows = [
        ("codec floor", "codec floor (decode once, resize, encode + write N)"),
        ("albumentations loop", "bare albumentations loop (GaussNoise)"),
        ("same work, no tool", "augment's pixel work, no tool (no hash/manifest/atomic)"),
        ("expand 1", "augment expand --workers 1"),
        ("expand 1 no dup", "augment expand --workers 1 --near-duplicates -1"),
        ("expand all", f"augment expand --workers {s.workers}"),
        ("rerun 1", "augment expand rerun, no-op (--workers 1)"),
        ("rerun all", f"augment expand rerun, no-op (--workers {s.workers})"),
        ("Augmentor", "Augmentor sample(), resized first, single-threaded"),
        ("torchvision", "torchvision transforms.v2 loop on PIL"),
        ("cli 1", "`augment expand --workers 1` command (start-up included)"),
        ("cli all", f"`augment expand --workers {s.workers}` command (start-up included)"),
        ("cli rerun", f"`augment expand --workers {s.workers}` command rerun, no-op"),
        ("imgaug", "imgaug loop command (start-up included)"),
        ("torchvision command", "torchvision v2 loop command (start-up included)"),
        ("long 1", f"augment expand --workers 1, --times {long_times}"),
        ("long all", f"augment expand --workers {s.workers}, --times {long_times}"),
    ]
    lines = [
        "| run | wall s | CPU s | outputs/s (wall) | CPU ms/output |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in rows:
        if key not in t.seconds:
            why = peers.missing.get(key)
            if why:
                lines.append(f"| {label} | {why} | | | |")
            continue
        sec, cpu = t.median(key), t.cpu(key)
        made = len(s.files) * long_times if key.startswith("long") else s.outputs
        lines.append(
            f"| {label} | {sec:.3f} | {cpu:.3f} | {made / sec:,.0f} | {cpu / made * 1e3:.3f} |"
        )
    return lines


def peer_targets(t: Timings, peers: Peers) -> list[tuple[str, str, str]]:
    """The issue's targets against the peers: CPU seconds decide (the ratios the issue
    states), wall seconds shown beside them. The loops compare with `expand` in this
    process; imgaug, a command, with the `augment expand --workers 1` command."""
    checks = [
        ("Augmentor", "expand 1", "augment (1 worker) vs Augmentor, resized first: >= 3x", 3.0),
        (
            "albumentations loop",
            "expand 1",
            "augment (1 worker) vs albumentations loop: >= 1.3x",
            1.3,
        ),
        ("imgaug", "cli 1", "`augment expand --workers 1` vs imgaug, as commands: >= 1.3x", 1.3),
    ]
    out = []
    for peer, ours, label, at_least in checks:
        if peer not in t.seconds:
            out.append((label, "n/a", f"{peer} {peers.missing.get(peer, 'not run')}"))
            continue
        r, wall = t.cpu(peer) / t.cpu(ours), t.median(peer) / t.median(ours)
        out.append((label, f"CPU {r:.2f}x (wall {wall:.2f}x)", verdict(r >= at_least)))
    out += torchvision_comparisons(t, peers)
    r = t.cpu("expand 1") / t.cpu("codec floor")
    wall = t.median("expand 1") / t.median("codec floor")
    out.append(
        (
            "augment (1 worker) / codec floor: <= 2x",
            f"CPU {r:.2f}x (wall {wall:.2f}x)",
            verdict(r <= 2),
        )
    )
    return out


def torchvision_comparisons(t: Timings, peers: Peers) -> list[tuple[str, str, str]]:
    """augment against torchvision v2, in this process and as commands: informational, the
    issue sets no target for torchvision."""
    out = []
    for peer, ours, label in (
        ("torchvision", "expand 1", "augment (1 worker) vs torchvision v2 loop"),
        (
            "torchvision command",
            "cli 1",
            "`augment expand --workers 1` vs torchvision v2 loop, as commands",
        ),
    ):
        if peer in t.seconds:
            r, wall = t.cpu(peer) / t.cpu(ours), t.median(peer) / t.median(ours)
            out.append((label, f"CPU {r:.2f}x (wall {wall:.2f}x)", "no target"))
        elif peer == "torchvision command" and peer in peers.missing:
            out.append((label, "n/a", f"torchvision {peers.missing[peer]}"))
    return out


def overhead_targets(t: Timings) -> list[tuple[str, str, str]]:
    """The tool's bookkeeping over the same pixel work, in CPU seconds as the peers are
    compared (wall beside it): on a shared machine a wall median is mostly the neighbours'."""
    out = []
    for ours, label in (
        ("expand 1", "tool overhead over the same work: <= 10%"),
        ("expand 1 no dup", "  the same, near-duplicate grouping off"),
    ):
        r = t.cpu(ours) / t.cpu("same work, no tool") - 1
        wall = t.median(ours) / t.median("same work, no tool") - 1
        out.append((label, f"CPU {r:+.1%} (wall {wall:+.1%})", verdict(r <= 0.10)))
    return out


def report(
    s: Setup,
    t: Timings,
    ops: list[tuple[str, float, str]],
    memory: dict,
    long_times: int,
    peers: Peers,
) -> str:
    n = s.outputs
    lines = [
        "### Machine",
        "",
        f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores, {s.workers} usable",
        "- " + ", ".join(f"{k} {v}" for k, v in versions(peers).items()),
        f"- corpus: {len(s.files)} JPEGs "
        f"({'made from skimage.data photos, ' + 'x'.join(map(str, SOURCE_SIZE)) + ' q90'})",
        f"- recipe `{s.recipe.name}`, --times {s.times} ({n} outputs per run), output JPEG "
        f"q{s.quality}, medians of {len(t.seconds['expand 1'])} interleaved rounds, outputs "
        f"written to {filesystem(s.scratch.resolve())}",
        "- every contender in this process runs with the heap tuning augment's workers use "
        "(image-sized buffers reused, not remapped)",
        "",
        "### Throughput",
        "",
        *throughput_table(s, t, peers, long_times),
    ]
    e1, ea = t.median("expand 1"), t.median("expand all")
    targets = peer_targets(t, peers)
    r = e1 / ea
    targets.append((f"{s.workers} workers vs 1 worker: >= 1.8x", f"{r:.2f}x", verdict(r >= 1.8)))
    if "long 1" in t.seconds:
        r = t.median("long 1") / t.median("long all")
        n_long = len(s.files) * long_times
        targets.append(
            (f"  the same, a longer run ({n_long:,} outputs)", f"{r:.2f}x", verdict(r >= 1.8))
        )
    r = t.median("cli 1") / t.median("cli all")
    targets.append(("  the same, as commands (start-up included)", f"{r:.2f}x", verdict(r >= 1.8)))
    r = t.median("rerun 1") / e1
    targets.append(("no-op rerun / first run (1 worker): <= 3%", f"{r:.1%}", verdict(r <= 0.03)))
    r = t.median("rerun all") / ea
    targets.append((f"  the same at {s.workers} workers", f"{r:.1%}", verdict(r <= 0.03)))
    r = t.median("cli rerun") / t.median("cli all")
    targets.append(("  the same, as commands (start-up included)", f"{r:.1%}", verdict(r <= 0.03)))
    targets += overhead_targets(t)
    for sources, m in memory.items():
        targets.append(
            (
                f"peak RSS, --workers 2, {sources:,} sources: <= 300 MB",
                f"RSS {m['rss']:.0f} MB (PSS {m['pss']:.0f}, largest process {m['one']:.0f})",
                verdict(m["rss"] <= 300) + f" (run {m['seconds']:.1f} s)",
            )
        )
    for sources, m in memory.items():
        r = m["rerun"] / m["run"]
        targets.append(
            (
                f"no-op rerun / first run, {sources:,} sources (--workers 2): <= 3%",
                f"{r:.1%} ({m['rerun']:.2f} s of {m['run']:.1f} s; command "
                f"{m['rerun command']:.2f} s)",
                verdict(r <= 0.03),
            )
        )
    if len(memory) >= 2:
        first, last = (memory[k]["rss"] for k in (min(memory), max(memory)))
        targets.append(
            (
                "peak RSS growth, smallest to largest: flat",
                f"{last - first:+.0f} MB",
                verdict(last - first <= 0.1 * first),
            )
        )
    lines += ["", "### Targets", "", "| target | measured | verdict |", "|---|---:|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in targets]
    lines += ["", "### Cost of each step, per image (1 core)", "", "| step | ms | size |"]
    lines += ["|---|---:|---|"]
    lines += [f"| {name} | {ms:.3f} | {size} |" for name, ms, size in ops]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer sources and repeats")
    parser.add_argument("--sources", type=int, help="corpus size (default 200; quick 60)")
    parser.add_argument("--times", type=int, default=5, help="outputs per source (default 5)")
    parser.add_argument("--repeats", type=int, help="interleaved rounds (default 5; quick 2)")
    parser.add_argument("--recipe", default="default", help="recipe name or path")
    parser.add_argument("--quality", type=int, default=95, help="output JPEG quality")
    parser.add_argument("--workers", type=int, default=default_workers(), help="all cores")
    parser.add_argument("--corpus", type=Path, help="use this folder of class folders")
    parser.add_argument(
        "--memory-sources",
        default=None,
        help="source counts for peak memory, comma-separated; '' skips it "
        "(default 1000,10000; quick 1000)",
    )
    parser.add_argument("--no-augmentor", action="store_true", help="skip Augmentor")
    parser.add_argument(
        "--imgaug-python",
        default=sys.executable,
        help="an interpreter that has imgaug, for the imgaug loop (default: this one)",
    )
    parser.add_argument(
        "--torchvision-python",
        help="an interpreter that has torchvision: its v2 loop is timed as a command there",
    )
    parser.add_argument(
        "--out-root",
        type=Path,
        help="where outputs are written (default: the temp folder); e.g. /dev/shm to take "
        "the disk out of the figures",
    )
    parser.add_argument(
        "--long-times",
        type=int,
        help="--times of the longer scaling run, 0 skips it (default 20; quick 0)",
    )
    args = parser.parse_args(argv)
    compile_tree()  # the timed commands start as an installed package's do
    sources = args.sources or (60 if args.quick else 200)
    repeats = args.repeats or (2 if args.quick else 5)
    memory_default = "1000" if args.quick else "1000,10000"
    memory_spec = memory_default if args.memory_sources is None else args.memory_sources
    memory_counts = [int(x) for x in memory_spec.split(",") if x.strip()]

    with (
        tempfile.TemporaryDirectory(prefix="augment-bench-") as tmp,
        tempfile.TemporaryDirectory(prefix="augment-bench-out-", dir=args.out_root) as out_tmp,
    ):
        scratch = Path(out_tmp)
        if args.corpus:
            corpus = args.corpus.resolve()
        else:
            print(f"making {sources} source JPEGs", file=sys.stderr, flush=True)
            corpus = make_corpus(Path(tmp) / "corpus", sources, SOURCE_SIZE, SOURCE_QUALITY)
        s = Setup(
            files=corpus_files(corpus),
            corpus=corpus,
            recipe=load_recipe(args.recipe),
            recipe_arg=args.recipe,
            times=args.times,
            quality=args.quality,
            workers=args.workers,
            scratch=scratch,
        )
        peers = find_peers(args.no_augmentor, args.imgaug_python, args.torchvision_python)
        # augment's workers keep image buffers on the heap (see augment/heap.py), and the
        # setting lasts for the rest of a process. Made here, before any contender runs, it
        # holds for all of them alike: the ratios compare the work, not the allocator.
        reuse_image_buffers()
        print("throughput", file=sys.stderr, flush=True)
        long_times = args.long_times if args.long_times is not None else (0 if args.quick else 20)
        timings = throughput_rounds(s, repeats, peers, long_times)
        print("cost of each step", file=sys.stderr, flush=True)
        ops = op_costs(s, sample=20)
        memory = {}
        for count in memory_counts:
            print(f"peak memory at {count} sources", file=sys.stderr, flush=True)
            memory[count] = peak_memory(scratch, count, times=2)
        print(report(s, timings, ops, memory, long_times, peers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
