"""The benchmark script still runs against the current library (it is not run in CI, so this
keeps it from rotting): every contender makes the outputs it claims, on a tiny real corpus."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import albumentations as A
import pytest
from PIL import Image

from augment.recipe.build import load_recipe
from augment.recipe.transforms import FastGaussianNoise
from tests.helpers import ROOT, benchmark_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return benchmark_script("bench")


def _setup(bench: ModuleType, corpus: Path, tmp_path: Path, times: int) -> Any:
    """The default recipe at quality 90 on one worker, as the contenders are compared."""
    return bench.Setup(
        files=bench.corpus_files(corpus),
        corpus=corpus,
        recipe=load_recipe("default"),
        recipe_arg="default",
        times=times,
        quality=90,
        workers=1,
        scratch=tmp_path / "scratch",
    )


@pytest.mark.slow
def test_contenders_make_what_they_claim(bench: ModuleType, tmp_path: Path) -> None:
    corpus = bench.make_corpus(tmp_path / "corpus", 4, (120, 90), 90)
    files = bench.corpus_files(corpus)
    assert len(files) == 4
    with Image.open(files[0]) as img:
        assert img.format == "JPEG" and img.size == (120, 90)
    s = _setup(bench, corpus, tmp_path, times=3)
    peers = bench.find_peers(no_augmentor=False, imgaug_python=sys.executable)
    contenders = [
        ("codec floor", bench.codec_floor),
        ("albumentations loop", bench.albumentations_loop),
        ("same work, no tool", bench.same_work_no_tool),
    ]
    if peers.augmentor:
        contenders.append(("Augmentor", bench.augmentor_sample))
    if peers.torchvision:
        contenders.append(("torchvision", bench.torchvision_loop))
    if peers.imgaug_python:
        contenders.append(("imgaug", lambda s, o: bench.imgaug_command(s, o, sys.executable)))
    timings = bench.Timings()
    for name, contender in contenders:
        out = tmp_path / name
        timings.add(name, bench.timed(lambda o, c=contender: c(s, o), out))
        made = sorted(p for p in out.rglob("*") if p.is_file())
        assert len(made) == s.outputs, name
        with Image.open(made[-1]) as img:
            assert img.size == (224, 224), name  # the recipe's output size
    out = tmp_path / "expand"
    timings.add("expand 1", bench.timed(lambda o: bench.run_expand(s, o, 1), out))
    bench.rerun_expand(s, out, 1)  # asserts the rerun wrote nothing
    if peers.imgaug_python:  # imgaug, a command, is compared with the command
        timings.add("cli 1", bench.timed(lambda o: bench.cli_expand(s, o, 1), out))
    # Every peer target gets a verdict with its ratio, or says why its peer was not run.
    targets = {
        label: (measured, verdict)
        for label, measured, verdict in bench.peer_targets(timings, peers)
    }
    for peer in ("Augmentor", "albumentations loop", "imgaug"):
        (measured, verdict), *_ = [v for k, v in targets.items() if peer in k]
        if peer in timings.seconds:
            assert measured.startswith("CPU ") and verdict in ("met", "**missed**")
        else:
            assert measured == "n/a" and ("not installed" in verdict or "cannot" in verdict)
    assert any("codec floor: <= 2x" in label for label in targets)


def test_the_tool_overhead_baseline_does_exactly_the_tools_pixel_work(
    bench: ModuleType, tmp_path: Path
) -> None:
    """The "same work, no tool" row is what the tool's overhead is measured against: it must make
    the very bytes `expand` makes (same seeds, same draws), or the overhead figure measures
    a different random sample of pixel work as well."""
    corpus = bench.make_corpus(tmp_path / "corpus", 3, (120, 90), 90)
    s = _setup(bench, corpus, tmp_path, times=4)
    bench.same_work_no_tool(s, tmp_path / "loop")
    bench.run_expand(s, tmp_path / "expand", 1, near_duplicates=False)

    def digests(out: Path) -> list[str]:
        return sorted(bench.sha256_bytes(p.read_bytes()) for p in out.rglob("*.jpg"))

    made = digests(tmp_path / "expand")
    assert len(made) == s.outputs and len(set(made)) == s.outputs
    assert digests(tmp_path / "loop") == made


def test_the_tool_overhead_is_judged_in_cpu_seconds(bench: ModuleType) -> None:
    """As the peers are: a neighbour's load shows in wall seconds, not in the run's CPU."""
    timings = bench.Timings()
    timings.add("same work, no tool", (2.0, 1.0))  # (wall, CPU)
    timings.add("expand 1", (2.1, 1.3))  # wall +5%, CPU +30%
    timings.add("expand 1 no dup", (3.0, 1.05))  # wall +50%, CPU +5%
    (_, all_on, missed), (_, no_dup, met) = bench.overhead_targets(timings)
    assert all_on == "CPU +30.0% (wall +5.0%)" and missed == "**missed**"
    assert no_dup == "CPU +5.0% (wall +50.0%)" and met == "met"


def test_missing_peers_say_so_and_are_not_run(bench: ModuleType) -> None:
    peers = bench.find_peers(no_augmentor=True, imgaug_python=sys.executable)
    assert not peers.augmentor and peers.missing["Augmentor"] == "skipped (--no-augmentor)"
    has_imgaug = importlib.util.find_spec("imgaug") is not None
    assert (peers.imgaug_python == sys.executable) is has_imgaug
    assert has_imgaug or peers.missing["imgaug"].startswith("not installed")
    has_torchvision = importlib.util.find_spec("torchvision") is not None
    assert peers.torchvision is has_torchvision
    assert has_torchvision or peers.missing["torchvision"] == "not installed"


def test_a_torchvision_interpreter_without_torchvision_is_reported_not_run(
    bench: ModuleType,
) -> None:
    """`--torchvision-python PY` where PY has no torchvision (this environment: torch has one
    of its own): the row and the comparison say so; without the option, no command row.
    benchmarks/torchvision_loop.py itself is run by tests/test_benchmark_torchvision.py,
    where torchvision is installed."""
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here: tests/test_benchmark_torchvision.py runs it")
    peers = bench.find_peers(True, sys.executable, torchvision_python=sys.executable)
    why = f"not installed (no torchvision module in {sys.executable})"
    assert peers.torchvision_python is None and peers.missing["torchvision command"] == why
    assert bench.torchvision_comparisons(bench.Timings(), peers) == [
        (
            "`augment expand --workers 1` vs torchvision v2 loop, as commands",
            "n/a",
            f"torchvision {why}",
        )
    ]
    assert bench.versions(peers)["torchvision"] == "not installed"
    without = bench.find_peers(True, sys.executable)
    assert "torchvision command" not in without.missing
    assert bench.torchvision_comparisons(bench.Timings(), without) == []


def test_the_torchvision_command_has_a_row_and_an_informational_ratio(
    bench: ModuleType, tmp_path: Path
) -> None:
    """Timed, the command gets its throughput row and a ratio to the `augment expand
    --workers 1` command, both start-up included, with no verdict: the issue sets no target
    for torchvision."""
    timings = bench.Timings()
    timings.add("cli 1", (2.0, 1.5))  # (wall, CPU)
    timings.add("torchvision command", (5.0, 4.5))
    peers = bench.Peers(augmentor=False, torchvision=False, imgaug_python=None)
    assert bench.torchvision_comparisons(timings, peers) == [
        (
            "`augment expand --workers 1` vs torchvision v2 loop, as commands",
            "CPU 3.00x (wall 2.50x)",
            "no target",
        )
    ]
    s = bench.Setup(
        files=[tmp_path / "a.jpg"],
        corpus=tmp_path,
        recipe=load_recipe("default"),
        recipe_arg="default",
        times=5,
        quality=95,
        workers=2,
        scratch=tmp_path,
        seeds=[[0] * 5],  # not drawn: no outputs are made here
    )
    table = bench.throughput_table(s, timings, peers, long_times=0)
    row = "| torchvision v2 loop command (start-up included) | 5.000 | 4.500 | 1 | 900.000 |"
    assert row in table


@pytest.mark.slow
def test_a_command_is_timed_in_cpu_seconds_with_its_children(
    bench: ModuleType, tmp_path: Path
) -> None:
    """A whole command's CPU time is counted by the process that waited for it: at least
    the CPU time the command itself reports (wall time would not do on a loaded machine)."""
    busy = "import time; sum(range(10**7)); print(time.process_time())"
    reported = []

    def command(out: Path) -> None:
        done = subprocess.run([sys.executable, "-c", busy], check=True, capture_output=True)
        reported.append(float(done.stdout))

    wall, cpu = bench.timed(command, tmp_path / "x")
    assert cpu >= reported[0] > 0.05 and wall > 0


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
    detection = benchmark_script("detection")
    classes = bench.make_corpus(tmp_path / "classes", 3, (120, 90), 90)
    made = detection.make_yolo(classes, tmp_path / "yolo")
    recipe = load_recipe(str(detection.RECIPE))
    detection.bbox_loop(recipe, made, 2, tmp_path / "loop")
    assert len(list((tmp_path / "loop").glob("*.jpg"))) == 6
    assert all(p.read_text().strip() for p in (tmp_path / "loop").glob("*_0.txt"))


@pytest.mark.slow
def test_the_bookkeeping_breakdown_runs_and_names_its_parts(tmp_path: Path) -> None:
    """benchmarks/bookkeeping.py (docs/performance.md's per-part table), in a process of its
    own: it wraps the library's functions to time them."""
    script = ROOT / "benchmarks" / "bookkeeping.py"
    args = ["--sources", "4", "--times", "2", "--runs", "1", "--out-root", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, str(script), *args], check=True, capture_output=True, text=True
    )
    assert "| overhead |" in done.stdout
    for part in ("atomic write", "record as JSON", "end of run (total)", "ingest"):
        assert f"| {part}" in done.stdout, part
    assert list(tmp_path.iterdir()) == []  # its outputs cleaned up
