"""The benchmark script still runs against the current library (it is not run in CI, so this
keeps it from rotting): every contender makes the outputs it claims, on a tiny real corpus."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import albumentations as A
import pytest
from PIL import Image

from augment.recipe.build import load_recipe
from augment.recipe.transforms import FastGaussianNoise
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module
    spec.loader.exec_module(module)
    return module


def test_contenders_make_what_they_claim(bench: ModuleType, tmp_path: Path) -> None:
    corpus = bench.make_corpus(tmp_path / "corpus", 4, (120, 90), 90)
    files = bench.corpus_files(corpus)
    assert len(files) == 4
    with Image.open(files[0]) as img:
        assert img.format == "JPEG" and img.size == (120, 90)
    s = bench.Setup(
        files=files,
        corpus=corpus,
        recipe=load_recipe("default"),
        recipe_arg="default",
        times=3,
        quality=90,
        workers=1,
        scratch=tmp_path / "scratch",
    )
    for name, contender in [
        ("floor", bench.codec_floor),
        ("albumentations", bench.albumentations_loop),
        ("no-tool", bench.same_work_no_tool),
    ]:
        out = tmp_path / name
        contender(s, out)
        made = sorted(out.iterdir())
        assert len(made) == s.outputs
        with Image.open(made[-1]) as img:
            assert img.size == (224, 224)  # the recipe's output size
    out = tmp_path / "expand"
    bench.run_expand(s, out, 1)  # asserts every output was written
    bench.rerun_expand(s, out, 1)  # asserts the rerun wrote nothing


def test_the_albumentations_loop_uses_stock_noise_of_the_same_strength(bench: ModuleType) -> None:
    stock = bench.stock_transform(FastGaussianNoise(sigma=(4, 12), p=0.3))
    assert isinstance(stock, A.GaussNoise)
    assert stock.std_range == pytest.approx((4 / 255, 12 / 255)) and stock.p == 0.3


@pytest.mark.slow
def test_the_memory_run_is_measured_and_its_rerun_writes_nothing(
    bench: ModuleType, tmp_path: Path
) -> None:
    """The memory measurement drives the real command (pool processes included) and times a
    rerun, which asserts it wrote nothing."""
    m = bench.peak_memory(tmp_path, 24, times=2)
    assert 20 < m["one"] <= m["rss"]  # MB: the largest process is one of the tree
    assert m["run"] >= 0 and 0 < m["rerun"] < m["rerun command"]
    assert not any(tmp_path.glob("tiny24*"))  # corpus and output cleaned up


def test_the_detection_benchmark_contenders_make_what_they_claim(
    bench: ModuleType, tmp_path: Path
) -> None:
    spec = importlib.util.spec_from_file_location(
        "detection_bench", ROOT / "benchmarks" / "detection.py"
    )
    assert spec is not None and spec.loader is not None
    detection = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(detection)
    classes = bench.make_corpus(tmp_path / "classes", 3, (120, 90), 90)
    made = detection.make_yolo(classes, tmp_path / "yolo")
    recipe = load_recipe(str(detection.RECIPE))
    detection.bbox_loop(recipe, made, 2, tmp_path / "loop")
    assert len(list((tmp_path / "loop").glob("*.jpg"))) == 6
    assert all(p.read_text().strip() for p in (tmp_path / "loop").glob("*_0.txt"))
