"""benchmarks/torchvision_loop.py, the torchvision contender of benchmarks/bench.py: the
command bench.py times (`--torchvision-python`) makes what every contender makes, and
bench.py's in-process row, the same definition, makes the same bytes.

torchvision pulls torch (gigabytes) and lives in an environment of its own: these tests run
in the annotated consumers' environment (.ci/run) and skip elsewhere, saying why."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from tests.helpers import ROOT, TEXTURES, benchmark_script

pytest.importorskip("torchvision", reason="torchvision needs its own environment (torch): .ci/run")

SCRIPT = ROOT / "benchmarks" / "torchvision_loop.py"
TIMES, SIZE, QUALITY = 3, (224, 160), 95
# Grey and colour; landscape, portrait and square; smaller than the output or not.
SOURCES = (
    "brick/brick_01.jpg",
    "brick/brick_06.jpg",
    "histology/histology_01.jpg",
    "deep_space/deep_space_06.jpg",
)


@pytest.fixture(scope="module")
def loop() -> ModuleType:
    return benchmark_script("torchvision_loop")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for name in SOURCES:
        (root / name).parent.mkdir(exist_ok=True)
        shutil.copyfile(TEXTURES / name, root / name)
    return root


@pytest.fixture(scope="module")
def made(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The command as bench.py runs it."""
    out = tmp_path_factory.mktemp("command") / "out"
    width, height = SIZE
    args = [str(corpus), str(out), "--times", str(TIMES), "--size", str(width), str(height)]
    subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--quality", str(QUALITY)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def _tables(jpeg: Path | io.BytesIO) -> dict[int, list[int]]:
    """A JPEG's quantization tables: what its quality was."""
    with Image.open(jpeg) as img:
        assert isinstance(img, JpegImageFile)
        return dict(img.quantization)


def _pillow_tables(quality: int) -> dict[int, list[int]]:
    """The quantization tables Pillow writes at `quality`."""
    buf = io.BytesIO()
    Image.new("RGB", SIZE).save(buf, "JPEG", quality=quality)
    return _tables(buf)


def test_the_torchvision_loop_command_makes_n_outputs_at_the_size_and_quality(
    loop: ModuleType, corpus: Path, made: Path
) -> None:
    names = sorted(p.name for p in made.iterdir())
    expected = sorted(f"{n}_{v}.jpg" for n in range(len(SOURCES)) for v in range(TIMES))
    assert names == expected
    tables = _pillow_tables(QUALITY)
    for path in made.iterdir():
        with Image.open(path) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", SIZE), path.name
        assert _tables(path) == tables, path.name  # quality 95
    # Variant 0 is the fit alone, as every contender's; the others are augmented.
    files = loop.corpus_files(corpus)
    changed = 0
    for n, source in enumerate(files):
        with Image.open(source) as opened:
            buf = io.BytesIO()
            loop.fit(opened, *SIZE).save(buf, "JPEG", quality=QUALITY)
        first = (made / f"{n}_0.jpg").read_bytes()
        assert first == buf.getvalue(), source.name
        changed += sum((made / f"{n}_{v}.jpg").read_bytes() != first for v in range(1, TIMES))
    assert changed >= len(files)  # of 8; a variant comes out untouched with p ~ 0.03


def test_torchvision_in_process_makes_the_commands_bytes(
    loop: ModuleType, corpus: Path, made: Path, tmp_path: Path
) -> None:
    """bench.py's in-process row calls the same `make`: one definition, seeded, one thread."""
    loop.make(loop.corpus_files(corpus), tmp_path / "out", TIMES, SIZE, QUALITY)
    for path in made.iterdir():
        assert (tmp_path / "out" / path.name).read_bytes() == path.read_bytes(), path.name
