"""Interrupted runs: a real `augment expand` process killed (SIGKILL) or interrupted
(Ctrl-C, SIGINT to its process group) after k files appear, then rerun, ends byte-identical
to an uninterrupted run, with no temporary file left."""

from __future__ import annotations

import csv
import gc
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from augment.files import TEMP_MARK
from augment.model import ExpandOptions
from augment.run import expand
from tests.helpers import (
    DIGITS,
    SMALL_RECIPE,
    as_from_a_terminal,
    augment_command,
    file_tree,
    tiny_source,
)


def images(out: Path) -> set[str]:
    return {
        p.relative_to(out).as_posix()
        for p in out.rglob("*.png")
        if not any(part.startswith(".") for part in p.relative_to(out).parts)
    }


def command(out: Path, recipe: Path) -> list[str]:
    return augment_command(
        "expand",
        str(DIGITS),
        str(out),
        "--times",
        "3",
        "--recipe",
        str(recipe),
        "-j",
        "2",
        "--quiet",
    )


def interrupt_after(
    out: Path, recipe: Path, new_files: int, sig: signal.Signals
) -> subprocess.CompletedProcess[str]:
    """Start `augment expand`, send `sig` to its process group once `new_files` image files
    that were not there before have appeared, and wait for it to end."""
    before = images(out) if out.exists() else set()
    proc = subprocess.Popen(
        command(out, recipe),
        start_new_session=True,  # its own process group, like a terminal job
        preexec_fn=as_from_a_terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and len(images(out) - before) >= new_files:
            break
        time.sleep(0.002)
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def finish(out: Path, recipe: Path) -> None:
    """The rerun that completes the work (in this process: it is the same library call)."""
    summary = expand(DIGITS, out, ExpandOptions(times=3, recipe=str(recipe), workers=1))
    assert not summary.rejected


def assert_clean(out: Path) -> None:
    assert not [p for p in out.rglob("*") if TEMP_MARK in p.name]
    assert not (out / ".augment" / "journal").exists()


@pytest.fixture(scope="module")
def recipes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("interrupt-recipes")
    a, b = folder / "a.yaml", folder / "b.yaml"
    a.write_text(SMALL_RECIPE)
    b.write_text(SMALL_RECIPE.replace("rotate: [-12, 12]", "rotate: [-25, 25]"))
    return a, b


@pytest.fixture(scope="module")
def clean_runs(
    tmp_path_factory: pytest.TempPathFactory, recipes: tuple[Path, Path]
) -> dict[str, dict[str, bytes]]:
    """Uninterrupted outputs of DIGITS with each recipe (the worker count changes no byte)."""
    trees = {}
    for recipe in recipes:
        out = tmp_path_factory.mktemp("clean") / "out"
        expand(DIGITS, out, ExpandOptions(times=3, recipe=str(recipe), workers=1))
        trees[recipe.name] = file_tree(out)
    return trees


@pytest.mark.parametrize(  # of 140 outputs; the fast lane kills after the first
    "after",
    [1, pytest.param(70, marks=pytest.mark.slow), pytest.param(125, marks=pytest.mark.slow)],
)
@pytest.mark.slow
def test_sigkill_then_rerun_is_identical_to_a_clean_run(
    tmp_path: Path,
    recipes: tuple[Path, Path],
    clean_runs: dict[str, dict[str, bytes]],
    after: int,
) -> None:
    out = tmp_path / "out"
    killed = interrupt_after(out, recipes[0], after, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    finish(out, recipes[0])
    assert file_tree(out) == clean_runs["a.yaml"]
    assert_clean(out)


@pytest.mark.slow
def test_sigkill_during_a_recipe_change_then_rerun_is_identical(
    tmp_path: Path, recipes: tuple[Path, Path], clean_runs: dict[str, dict[str, bytes]]
) -> None:
    out = tmp_path / "out"
    expand(DIGITS, out, ExpandOptions(times=3, recipe=str(recipes[0]), workers=1))
    killed = interrupt_after(out, recipes[1], 40, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    finish(out, recipes[1])
    assert file_tree(out) == clean_runs["b.yaml"]
    assert_clean(out)


@pytest.mark.slow
def test_ctrl_c_leaves_a_consistent_output_and_resumes(
    tmp_path: Path, recipes: tuple[Path, Path], clean_runs: dict[str, dict[str, bytes]]
) -> None:
    out = tmp_path / "out"
    interrupted = interrupt_after(out, recipes[0], 80, signal.SIGINT)
    assert interrupted.returncode == 130
    assert "rerun the same command to resume" in interrupted.stderr
    assert "Traceback" not in interrupted.stderr
    # Consistent: no temporary file, and the manifest and metadata.csv list exactly the
    # image files on disk.
    assert not [p for p in out.rglob("*") if TEMP_MARK in p.name]
    listed = set(file_tree(out)) - {"manifest.jsonl"}
    listed = {p for p in listed if not p.endswith("metadata.csv")}
    manifest = (out / "manifest.jsonl").read_text().splitlines()
    assert {json.loads(line)["path"] for line in manifest} == images(out) == listed
    for split in ("train", "validation", "test"):
        if (out / split / "metadata.csv").exists():
            with (out / split / "metadata.csv").open() as f:
                rows = {f"{split}/{row['file_name']}" for row in csv.DictReader(f)}
            assert rows == {p for p in images(out) if p.startswith(f"{split}/")}
    assert images(out)  # it was interrupted part-way, not before the first shard

    finish(out, recipes[0])
    assert file_tree(out) == clean_runs["a.yaml"]
    assert_clean(out)


@pytest.fixture()
def own_signals() -> Iterator[None]:
    """This test process's handlers as they were, whatever the test installs."""
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)
    gc.unfreeze()  # a finished command leaves its objects to the exit (interrupts._finished)


def test_an_interrupt_wrapped_while_a_class_is_made_is_an_interrupt(
    capsys: pytest.CaptureFixture[str], own_signals: None
) -> None:
    # A Ctrl-C during `import albumentations` can arrive inside pydantic's __set_name__,
    # which Python re-raises as a RuntimeError: it must still end as an interrupt (130),
    # with the message, not a traceback.
    from augment import interrupts

    def starting() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__ on 'PydanticDescriptorProxy'") from exc

    with pytest.raises(SystemExit) as exited:
        interrupts.run(starting)
    assert exited.value.code == 130
    assert interrupts.MESSAGE in capsys.readouterr().err

    def failing() -> None:
        raise RuntimeError("a real error")

    with pytest.raises(RuntimeError, match="a real error"):
        interrupts.run(failing)


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_a_signal_before_the_command_is_ready_stops_it_when_it_is(
    capsys: pytest.CaptureFixture[str], own_signals: None, sig: signal.Signals, code: int
) -> None:
    # Issue 20, case 23: the entry point holds the signals from its first line; one that
    # arrives then (in the middle of an import) is raised where the command can stop on it.
    from augment import interrupts

    # As from a terminal, not a script's background job nor under nohup.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    interrupts.hold()
    os.kill(os.getpid(), sig)  # delivered at once to this, the main thread: nothing raised
    ran: list[str] = []
    with pytest.raises(SystemExit) as exited:
        interrupts.run(lambda: ran.append("command"))
    assert exited.value.code == code
    assert ran == []
    assert interrupts.MESSAGE in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_during_a_large_times_keeps_what_was_made(
    tmp_path: Path, recipes: tuple[Path, Path]
) -> None:
    """Issue 20, case 20: --times 1500 on two sources. A source's outputs are made in pieces,
    each journaled when done, so Ctrl-C keeps what was made and the rerun makes the rest:
    the result is a clean run's."""
    src = tiny_source(tmp_path / "src", ("cat",), 2)
    args = ["expand", str(src), "--times", "1500", "--val", "0", "--test", "0"]
    args += ["--recipe", str(recipes[0]), "-j", "2", "--quiet"]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        augment_command(*args[:2], str(out), *args[2:]),
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and len(images(out)) >= 400:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    kept = images(out)
    assert 300 <= len(kept) < 3000  # what was made is kept, listed in the manifest
    listed = {json.loads(line)["path"] for line in (out / "manifest.jsonl").open()}
    assert listed == kept
    rerun = subprocess.run(augment_command(*args[:2], str(out), *args[2:]), timeout=300)
    assert rerun.returncode == 0
    clean = tmp_path / "clean"
    made = subprocess.run(augment_command(*args[:2], str(clean), *args[2:]), timeout=300)
    assert made.returncode == 0
    assert file_tree(out) == file_tree(clean)
    assert kept <= images(out)
    assert_clean(out)
