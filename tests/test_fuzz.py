"""Fuzzing: random bytes as images, random YAML as recipes, random CSV/JSONL as labels.

The property is the same everywhere: a clean outcome (a value, a domain error, or a rejected
entry with its reason), never another exception and never a hang (each example has a
deadline). Example counts stay modest so the whole file runs in a few seconds.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from augment.errors import AugmentError, DatasetError, RecipeError
from augment.imaging.codec import UnreadableImage, decode
from augment.model import Original
from augment.recipe.build import parse_recipe
from augment.stages.ingest import ingest
from augment.stages.plan import Fingerprints, Plan
from augment.stages.worker import RunContext, Worker
from tests import faults

# AUGMENT_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py fuzzes longer, by hand.
EXAMPLES = int(os.environ.get("AUGMENT_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=5000,  # ms: generous for a loaded machine, but a hang still fails
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SMALL_LIMIT = 4_000_000  # pixels: a mutated header never makes the fuzzer allocate gigabytes


def _seed_images() -> list[bytes]:
    """One small real image per supported format, to mutate: random bytes alone rarely get
    past a decoder's magic number, mutated real files reach deep into it."""
    rgb = Image.fromarray(np.arange(12 * 10 * 3, dtype=np.uint8).reshape(10, 12, 3), "RGB")
    return [
        faults.encoded(rgb, "JPEG", quality=80),
        faults.encoded(rgb, "PNG"),
        faults.encoded(rgb.convert("P"), "GIF"),
        faults.encoded(rgb, "BMP"),
        faults.encoded(rgb, "TIFF"),
        faults.encoded(rgb, "WEBP"),
        faults.png16(),
        faults.cmyk_jpeg(),
        faults.animated_gif(),
    ]


SEEDS = _seed_images()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
            if not data:
                break
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _check_decode(data: bytes) -> None:
    try:
        decoded = decode(data, max_pixels=SMALL_LIMIT)
    except UnreadableImage as exc:
        assert str(exc)  # a reason for the summary
        return
    pixels = decoded.pixels
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert pixels.flags.c_contiguous


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_decode_cleanly(data: bytes) -> None:
    _check_decode(data)


@FUZZ
@given(mutated_images())
def test_mutated_images_decode_cleanly(data: bytes) -> None:
    _check_decode(data)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-ingest")
    (root / "cat").mkdir()
    (root / "cat" / "good.png").write_bytes(SEEDS[1])
    return root


@settings(FUZZ, max_examples=max(1, EXAMPLES * 2 // 3))
@given(mutated_images())
def test_ingest_then_worker_never_crash_on_a_bad_file(image_dir: Path, data: bytes) -> None:
    """What ingest accepts, the worker turns into outputs or a rejected entry."""
    (image_dir / "cat" / "fuzzed.png").write_bytes(data)
    dataset = ingest(image_dir, max_pixels=SMALL_LIMIT)
    reasons = {r.path: r.reason for r in dataset.rejected}
    accepted = [o for o in dataset.originals if o.path == "cat/fuzzed.png"]
    assert bool(accepted) != ("cat/fuzzed.png" in reasons)
    if not accepted:
        return
    recipe = parse_recipe("preprocess: {size: [16, 12]}\naugment: [HorizontalFlip]", "r", "r")
    fingerprints = Fingerprints("p", "r")
    split = {"cat/fuzzed.png": "train"}
    tasks = list(Plan(accepted, split, {"cat": (0, 1)}, fingerprints, 0, "png").tasks())
    with tempfile.TemporaryDirectory() as out:
        ctx = RunContext(image_dir, Path(out), recipe, fingerprints, "png", 90, SMALL_LIMIT)
        result = Worker(ctx).run(tasks)
        assert len(result.records) == 2 or [r.path for r in result.rejected] == ["cat/fuzzed.png"]
        written = sorted(p.name for p in Path(out).rglob("*.png"))
        assert len(written) == len(result.records)  # a rejection leaves no file behind


# --- recipes -------------------------------------------------------------------------------

TRANSFORM_NAMES = [
    "HorizontalFlip", "VerticalFlip", "Affine", "RandomBrightnessContrast", "CoarseDropout",
    "GaussNoise", "FastGaussianNoise", "SaltAndPepperNoise", "Rotate", "RandomCrop", "Resize",
    "OneOf", "SomeOf", "Sequential", "Blur", "HueSaturationValue", "NoSuchTransform", "",
    "ToFloat", "Normalize", "ToGray", "CenterCrop", "PadIfNeeded", "MedianBlur",
]  # fmt: skip
ARG_NAMES = [
    "p", "rotate", "scale", "border_mode", "interpolation", "transforms", "limit", "sigma",
    "num_holes_range", "height", "width", "n", "brightness_limit", "blur_limit", "amount",
    "fill", "bogus", "num_output_channels", "max_value",
]  # fmt: skip
PREPROCESS_KEYS = ["size", "fit", "pad_mode", "pad_color", "background", "interpolation", "x"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 300),
    st.floats(-2, 2),
    st.sampled_from([float("nan"), float("inf"), -1e9]),
    st.sampled_from(["reflect", "cubic", "pad", "blur", "crop", "#ff00aa", "", "nope"]),
    st.text(max_size=6),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(ARG_NAMES), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def transform_entries(draw: st.DrawFn, depth: int = 0) -> object:
    name = draw(st.sampled_from(TRANSFORM_NAMES))
    args = draw(st.dictionaries(st.sampled_from(ARG_NAMES), values, max_size=3))
    if name in ("OneOf", "SomeOf", "Sequential") and depth < 2 and draw(st.booleans()):
        args["transforms"] = draw(st.lists(transform_entries(depth + 1), max_size=3))
    return draw(st.sampled_from([{name: args}, name, [name], {name: args, "x": 1}]))


recipe_docs = st.one_of(
    values,
    st.fixed_dictionaries(
        {},
        optional={
            "description": scalars,
            "preprocess": st.one_of(
                values, st.dictionaries(st.sampled_from(PREPROCESS_KEYS), values, max_size=4)
            ),
            "augment": st.one_of(values, st.lists(transform_entries(), max_size=4)),
            "extra": scalars,
        },
    ),
)


@pytest.fixture(scope="module")
def recipe_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Original]:
    root = tmp_path_factory.mktemp("fuzz-recipe")
    (root / "cat").mkdir()
    (root / "cat" / "a.jpg").write_bytes(faults.photo())
    return root, ingest(root).originals[0]


def _check_recipe(text: str, source: tuple[Path, Original]) -> None:
    """A recipe either fails to load with RecipeError, or runs on a real image without
    anything but a domain error."""
    try:
        recipe = parse_recipe(text, "fuzz", "fuzz.yaml")
    except RecipeError as exc:
        assert "fuzz.yaml" in str(exc)
        return
    src, original = source
    fingerprints = Fingerprints("p", recipe.fingerprint("png", 90))
    split = {original.path: "train"}
    tasks = list(Plan([original], split, {"cat": (0, 1)}, fingerprints, 1, "png").tasks())
    with tempfile.TemporaryDirectory() as out:
        ctx = RunContext(src, Path(out), recipe, fingerprints, "png", 90, SMALL_LIMIT)
        try:
            result = Worker(ctx).run(tasks)
        except AugmentError as exc:
            assert isinstance(exc, RecipeError) and "fuzz" in str(exc)
            return
        files = list(Path(out).rglob("*.png"))
        if result.rejected:  # the recipe did not fit this image: rejected, nothing left
            assert "recipe cannot be applied" in result.rejected[0].reason
            assert not result.records and not files
        else:
            assert len(result.records) == 2 == len(files)


@FUZZ
@given(recipe_docs)
def test_random_recipe_documents_load_or_fail_cleanly(
    recipe_source: tuple[Path, Original], doc: object
) -> None:
    _check_recipe(yaml.safe_dump(doc), recipe_source)


@FUZZ
@given(st.text(max_size=200))
def test_random_recipe_text_loads_or_fails_cleanly(
    recipe_source: tuple[Path, Original], text: str
) -> None:
    _check_recipe(text, recipe_source)


# --- labels files --------------------------------------------------------------------------

cells = st.one_of(
    st.sampled_from(["cat/good.png", "cat/../cat/good.png", "../x.png", "/abs.png", "cat"]),
    st.sampled_from(["a", "b", "", " ", '"', ",", "\n", "\r", "\x00", "é", "../.."]),
    st.text(max_size=8),
)
headers = st.one_of(
    st.just(["path", "label"]),
    st.just(["path", "label", "group"]),
    st.lists(st.sampled_from(["path", "label", "group", "PATH", " label", "x", ""]), max_size=4),
)


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    header = draw(headers)
    rows = draw(st.lists(st.lists(cells, max_size=5), max_size=6))
    sep = draw(st.sampled_from([",", ";", "\t"]))
    return "\n".join(sep.join(r) for r in [header, *rows])


@st.composite
def jsonl_texts(draw: st.DrawFn) -> str:
    rows = draw(
        st.lists(
            st.one_of(
                st.dictionaries(
                    st.sampled_from(["path", "label", "group", "x"]), cells, max_size=3
                ),
                values,
            ),
            max_size=5,
        )
    )
    return "\n".join(json.dumps(r) for r in rows)


def _check_labels(image_dir: Path, name: str, content: bytes) -> None:
    (image_dir / name).write_bytes(content)
    try:
        dataset = ingest(image_dir / name)
    except DatasetError as exc:
        assert str(exc)
        return
    assert dataset.originals and all(o.path == "cat/good.png" for o in dataset.originals)
    assert all(r.reason for r in dataset.rejected)
    json.dumps([r.path for r in dataset.rejected])  # every status can go into augment.json


@FUZZ
@given(st.one_of(csv_texts(), st.text(max_size=120)), st.sampled_from(["utf-8", "utf-16"]))
def test_random_csv_labels_ingest_cleanly(image_dir: Path, text: str, encoding: str) -> None:
    _check_labels(image_dir, "labels.csv", text.encode(encoding, "surrogatepass"))


@FUZZ
@given(st.one_of(jsonl_texts(), st.binary(max_size=120).map(lambda b: b.decode("latin-1"))))
def test_random_jsonl_labels_ingest_cleanly(image_dir: Path, text: str) -> None:
    _check_labels(image_dir, "labels.jsonl", text.encode("utf-8", "surrogatepass"))


def test_fuzz_seeds_are_valid_images() -> None:
    """The mutation seeds themselves decode: otherwise the fuzzer would test little."""
    for data in SEEDS:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        assert decode(data).pixels.ndim == 3
