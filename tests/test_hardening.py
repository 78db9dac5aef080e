"""Hardening (issue 20): the source is never written, whatever its paths look like; no input
hangs or crashes the tool; every state an earlier run left recovers.

Each test drives the real command in a child process (`augment ...`) with the real fault:
a real bind mount, real symbolic links, a real FIFO and character device, real signals.
Each asserts the exit code, the message, that no traceback is shown, that the source tree
(content, modes, mtimes, link targets) is unchanged, and, where the run can go on, that the
result is byte-identical to a clean run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    ROOT,
    as_from_a_terminal,
    augment_command,
    file_tree,
    peak_rss_of,
    source_state,
    tiny_source,
)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        augment_command(*args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def expand_args(src: Path, out: Path, recipe: Path, *extra: str) -> list[str]:
    return ["expand", str(src), str(out), "--times", "2", "-r", str(recipe), "-j", "1", *extra]


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2 with a message holding `words`, and no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture()
def src(tmp_path: Path) -> Path:
    return tiny_source(tmp_path / "src")


@pytest.fixture()
def bind_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(folder, mount point): a real bind mount of `folder`, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(folder: Path, at: Path) -> None:
        at.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "--bind", str(folder), str(at)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"this machine cannot bind-mount: {done.stderr.decode().strip()}")
        mounted.append(at)

    yield mount  # type: ignore[misc]
    for at in reversed(mounted):
        subprocess.run(["umount", str(at)], check=False)


# --- 1. OUT bind-mounted from a folder inside SRC ------------------------------------------


@pytest.mark.slow
def test_out_bind_mounted_inside_the_source_is_refused(
    tmp_path: Path, src: Path, small_recipe: Path, bind_mount
) -> None:
    (src / "aug").mkdir()
    out = tmp_path / "out"
    bind_mount(src / "aug", out)
    before = source_state(src)
    result = run_cli(*expand_args(src, out, small_recipe))
    refused(result, "is inside the source", "device and inode")
    assert source_state(src) == before


@pytest.mark.slow
def test_a_split_folder_bind_mounted_from_the_source_is_refused(
    tmp_path: Path, src: Path, small_recipe: Path, bind_mount
) -> None:
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    bind_mount(src / "cat", out / "train")
    before = source_state(src)
    result = run_cli(*expand_args(src, out, small_recipe, "--force"))
    refused(result, "is a folder of the source")
    assert source_state(src) == before


# --- 2. a split or class folder in OUT that is a link into SRC ----------------------------


@pytest.mark.slow
def test_a_class_folder_linked_into_the_source_is_never_written_through(
    tmp_path: Path, src: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    assert run_cli(*expand_args(src, out, small_recipe)).returncode == 0
    # The user swaps a class folder of OUT for a link into SRC; the rerun must remake its
    # outputs, and would write them into SRC/cat by the link.
    for path in (out / "train" / "cat").iterdir():
        path.unlink()
    (out / "train" / "cat").rmdir()
    (out / "train" / "cat").symlink_to(src / "cat")
    before = source_state(src)
    refused(run_cli(*expand_args(src, out, small_recipe)), "is a symbolic link")
    assert source_state(src) == before


@pytest.mark.slow
def test_a_split_folder_linked_into_the_source_is_refused_with_force(
    tmp_path: Path, src: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "train").symlink_to(src / "dog")
    before = source_state(src)
    refused(run_cli(*expand_args(src, out, small_recipe, "--force")), "is a symbolic link")
    assert source_state(src) == before


# --- 3. preview -o into SRC ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cat/preview.png", "cat/0.png"], ids=["new-file", "a-source"])
def test_preview_never_writes_into_the_source(
    tmp_path: Path, src: Path, small_recipe: Path, name: str
) -> None:
    before = source_state(src)
    result = run_cli("preview", str(src), "-r", str(small_recipe), "-o", str(src / name))
    refused(result, "inside the source")
    assert source_state(src) == before


@pytest.mark.slow
def test_preview_into_the_source_by_a_link_is_refused(
    tmp_path: Path, src: Path, small_recipe: Path
) -> None:
    (tmp_path / "sheets").symlink_to(src / "dog")
    before = source_state(src)
    target = tmp_path / "sheets" / "p.png"
    refused(run_cli("preview", str(src), "-r", str(small_recipe), "-o", str(target)), "inside")
    assert source_state(src) == before


# --- 4. a source edited in place, size and mtime kept ----------------------------------------


@pytest.mark.slow
def test_a_source_edited_in_place_with_size_and_mtime_kept_is_read_again(
    tmp_path: Path, src: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    assert run_cli(*expand_args(src, out, small_recipe)).returncode == 0
    edited, other = src / "cat" / "0.png", src / "cat" / "3.png"
    new = other.read_bytes()
    old = edited.stat()
    assert len(new) == old.st_size
    with edited.open("r+b") as f:  # the same inode, the same size
        f.write(new)
    other.unlink()  # 3.png's bytes now live at 0.png only (no duplicate rejection)
    os.utime(edited, ns=(old.st_atime_ns, old.st_mtime_ns))  # `touch -r`
    assert run_cli(*expand_args(src, out, small_recipe)).returncode == 0
    clean = tmp_path / "clean"
    assert run_cli(*expand_args(src, clean, small_recipe)).returncode == 0
    assert file_tree(out) == file_tree(clean)
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    sha = hashlib.sha256(new).hexdigest()
    assert any(s["sha256"] == sha for r in records for s in r["sources"])


# --- 13. --force keeps a user's hidden files that look like temporaries ------------------------


@pytest.mark.slow
def test_force_keeps_a_users_hidden_files_named_like_temporaries(
    tmp_path: Path, src: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    (out / "photos").mkdir(parents=True)
    (out / ".notes.tmp-keep").write_text("mine")
    (out / "photos" / ".draft.tmp-2023").write_text("mine too")
    result = run_cli(*expand_args(src, out, small_recipe, "--force"))
    assert result.returncode == 0, result.stderr
    assert (out / ".notes.tmp-keep").read_text() == "mine"
    assert (out / "photos" / ".draft.tmp-2023").read_text() == "mine too"


# --- 5. a FIFO, a character device, a socket named like images ------------------------------


@pytest.mark.slow
def test_fifo_device_and_socket_named_like_images_are_rejected_without_hanging(
    tmp_path: Path, src: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.mkfifo(src / "cat" / "pipe.jpg")  # reading it would block for ever
    try:  # /dev/zero's numbers: reading it would never end
        os.mknod(src / "dog" / "zero.png", 0o644 | stat.S_IFCHR, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("this machine cannot make a device node (not root)")
    monkeypatch.chdir(src / "dog")  # a socket's path is short (108 bytes at most)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("sock.png")
    before = source_state(src)
    out = tmp_path / "out"
    try:
        result = run_cli(*expand_args(src, out, small_recipe), timeout=60)
        again = run_cli(*expand_args(src, out, small_recipe), timeout=60)
    finally:
        listener.close()
    assert result.returncode == 0 and again.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + again.stderr
    assert "cat/pipe.jpg: a FIFO (named pipe), not an image file" in result.stdout
    assert "dog/zero.png: a character device, not an image file" in result.stdout
    assert "dog/sock.png: a socket, not an image file" in again.stdout
    assert source_state(src) == before
    for special in ("cat/pipe.jpg", "dog/zero.png", "dog/sock.png"):
        (src / special).unlink()
    assert run_cli(*expand_args(src, out, small_recipe)).returncode == 0
    clean = tmp_path / "clean"
    assert run_cli(*expand_args(src, clean, small_recipe)).returncode == 0
    assert file_tree(out) == file_tree(clean)


# --- 6. YAML alias bombs and deep nesting -----------------------------------------------------

ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)
DEEP = 50_000  # levels: past any recursive reader's stack


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (ALIAS_BOMB, "an alias bomb"),
        ("augment: " + "[" * DEEP + "]" * DEEP, "nested deeper than 100 levels"),
    ],
    ids=["alias-bomb", "deep"],
)
@pytest.mark.slow
def test_a_recipe_bomb_is_a_quick_clear_error(
    tmp_path: Path, src: Path, recipe: str, message: str
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(recipe)
    before = source_state(src)
    result = run_cli(*expand_args(src, tmp_path / "out", path), timeout=30)
    refused(result, "not valid YAML", message)
    assert source_state(src) == before


@pytest.mark.slow
def test_deeply_nested_labels_jsonl_is_a_clear_error(tmp_path: Path, src: Path) -> None:
    labels = src / "labels.jsonl"
    labels.write_text(
        '{"path": "cat/0.png", "label": "cat"}\n{"path": ' + "[" * DEEP + "]" * DEEP + "}\n"
    )
    before = source_state(src)
    result = run_cli("expand", str(labels), str(tmp_path / "out"), "-j", "1", timeout=30)
    refused(result, "labels.jsonl line 2: not JSON", "nested too deeply")
    assert source_state(src) == before


# --- 6, 10, 12. a damaged manifest, header or state: taken as absent, rebuilt ------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "manifest-truncated": ("manifest.jsonl", _truncate),
    "manifest-garbled": ("manifest.jsonl", lambda p: p.write_bytes(b"\x00\xff garbage\n" * 3)),
    "manifest-deep": ("manifest.jsonl", lambda p: p.write_text("[" * DEEP + "]" * DEEP)),
    "header-deep": ("augment.json", lambda p: p.write_text("[" * DEEP + "]" * DEEP)),
    "header-truncated": ("augment.json", _truncate),
    "header-counts-a-number": (
        "augment.json",
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "counts": 5})),
    ),
    "header-holdout-of-numbers": (
        "augment.json",
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "holdout": [1, 2]})),
    ),
    "header-a-list": ("augment.json", lambda p: p.write_text("[1, 2, 3]")),
    "state-deep": (".augment/state.json", lambda p: p.write_text("[" * DEEP + "]" * DEEP)),
    "state-garbled": (".augment/state.json", lambda p: p.write_bytes(b"\xff{{")),
}


# One of each file in the fast lane; the other kinds of damage run in the slow lane.
FAST_DAMAGE = {"manifest-truncated", "header-counts-a-number", "state-deep"}


@pytest.mark.parametrize(
    "damage",
    [d if d in FAST_DAMAGE else pytest.param(d, marks=pytest.mark.slow) for d in DAMAGE],
)
@pytest.mark.slow
def test_a_damaged_file_in_out_is_taken_as_absent_and_rebuilt(
    tmp_path: Path, src: Path, small_recipe: Path, damage: str
) -> None:
    out = tmp_path / "out"
    assert run_cli(*expand_args(src, out, small_recipe)).returncode == 0
    name, spoil = DAMAGE[damage]
    spoil(out / name)
    before = source_state(src)
    audit = run_cli("audit", str(out))
    assert "Traceback" not in audit.stderr, audit.stderr
    if not name.startswith(".augment"):  # the audit reads no state
        assert audit.returncode == 2 and name in audit.stderr, audit.stderr
    result = run_cli(*expand_args(src, out, small_recipe))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    if not name.startswith(".augment"):  # a damaged state only costs a rehash
        warned = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
        assert any(str(out / name) in line for line in warned), result.stdout
    assert source_state(src) == before
    clean = tmp_path / "clean"
    assert run_cli(*expand_args(src, clean, small_recipe)).returncode == 0
    assert file_tree(out) == file_tree(clean)


# --- 7. output sizes past the format's limits or the memory budget ---------------------------


@pytest.mark.parametrize(
    ("size", "fmt", "message"),
    [
        ("[70000, 4]", "jpg", "a JPEG image is at most 65500 pixels a side"),
        ("[20000, 8]", "webp", "a WebP image is at most 16383 pixels a side"),
        ("[100000, 100000]", "png", "10,000,000,000 pixels an image, over the limit"),
    ],
    ids=["jpeg-side", "webp-side", "memory"],
)
@pytest.mark.slow
def test_a_size_no_output_can_have_is_refused_at_recipe_load(
    tmp_path: Path, src: Path, size: str, fmt: str, message: str
) -> None:
    recipe = tmp_path / "huge.yaml"
    recipe.write_text(f"preprocess: {{size: {size}}}\naugment: []\n")
    before = source_state(src)
    out = tmp_path / "out"
    refused(run_cli(*expand_args(src, out, recipe, "--format", fmt)), "preprocess.size", message)
    assert source_state(src) == before
    assert not out.exists()  # refused before OUT is made


@pytest.mark.slow
def test_a_source_too_wide_for_the_format_kept_at_its_size_is_rejected(
    tmp_path: Path, src: Path
) -> None:
    from PIL import Image

    Image.new("RGB", (17000, 4), (9, 9, 9)).save(src / "cat" / "wide.png")
    recipe = tmp_path / "own-size.yaml"
    recipe.write_text("preprocess: {}\naugment: [{HorizontalFlip: {p: 0.5}}]\n")
    before = source_state(src)
    out = tmp_path / "out"
    args = expand_args(src, out, recipe, "--format", "webp")
    result = run_cli(*args)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "cat/wide.png: cannot be written as webp: 17000x4: a WebP image is at most" in (
        result.stdout
    )
    assert source_state(src) == before
    again = run_cli(*args)
    assert again.returncode == 0 and "cat/wide.png: cannot be written as webp" in again.stdout
    clean = tmp_path / "clean"
    assert run_cli(*expand_args(src, clean, recipe, "--format", "webp")).returncode == 0
    assert file_tree(out) == file_tree(clean)


# --- 8. --val inf ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("value", ["inf", "1e400", "-inf", "nan"])
def test_a_holdout_amount_that_is_not_finite_is_a_clear_error(
    tmp_path: Path, src: Path, small_recipe: Path, value: str
) -> None:
    result = run_cli(*expand_args(src, tmp_path / "out", small_recipe, "--val", value))
    refused(result, "--val must be a finite fraction or count")
    result = run_cli("preview", str(src), "--test", value, "-o", str(tmp_path / "p.png"))
    refused(result, "--test must be a finite fraction or count")


# --- 21. non-finite recipe arguments --------------------------------------------------------


@pytest.mark.parametrize(
    ("recipe", "where"),
    [
        ("augment:\n  - Affine: {rotate: [-.inf, .inf], p: 1}\n", "augment[0].Affine.rotate"),
        ("augment:\n  - HorizontalFlip: {p: .nan}\n", "augment[0].HorizontalFlip.p"),
        ("preprocess: {size: 32, pad_color: .inf}\naugment: []\n", "preprocess.pad_color"),
    ],
    ids=["rotate-inf", "p-nan", "preprocess"],
)
@pytest.mark.slow
def test_a_recipe_number_that_is_not_finite_is_refused(
    tmp_path: Path, src: Path, recipe: str, where: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(recipe)
    refused(run_cli(*expand_args(src, tmp_path / "out", path)), where, "must be a finite number")


# --- 11, 23. SIGTERM, SIGHUP, SIGKILL of the main process; Ctrl-C during start-up ------------


def _start(src: Path, out: Path, recipe: Path, times: str = "12") -> subprocess.Popen[str]:
    return subprocess.Popen(
        augment_command(
            "expand", str(src), str(out), "--times", times, "-r", str(recipe), "-j", "3", "-q"
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for_images(proc: subprocess.Popen[str], out: Path, n: int) -> None:
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and len(list(out.glob("train/*/*.png"))) >= n:
            return
        time.sleep(0.005)
    raise AssertionError("the run ended before it could be signalled")


@pytest.fixture()
def digits_src(tmp_path: Path) -> Path:
    import shutil

    from tests.helpers import DIGITS

    return Path(shutil.copytree(DIGITS, tmp_path / "digits"))


@pytest.mark.parametrize(
    ("sig", "code"),
    [
        pytest.param(signal.SIGTERM, 143, id="TERM"),
        pytest.param(signal.SIGHUP, 129, id="HUP", marks=pytest.mark.slow),
    ],
)
@pytest.mark.slow
def test_sigterm_and_sighup_stop_the_run_as_ctrl_c_does(
    tmp_path: Path, digits_src: Path, small_recipe: Path, sig: signal.Signals, code: int
) -> None:
    out = tmp_path / "out"
    before = source_state(digits_src)
    proc = _start(digits_src, out, small_recipe)
    _wait_for_images(proc, out, 100)
    workers = _children(proc.pid)
    proc.send_signal(sig)  # the main process alone, as `kill PID` does
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "rerun the same command to resume" in stderr
    time.sleep(0.2)
    assert not [w for w in workers if _alive(w)]
    # Consistent: the manifest lists exactly the images on disk (none: no shard had ended).
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text().splitlines() if manifest.exists() else []
    listed = {json.loads(line)["path"] for line in lines}
    assert listed == {p.relative_to(out).as_posix() for p in out.glob("*/*/*.png")}
    assert source_state(digits_src) == before
    args = expand_args(digits_src, out, small_recipe)
    args[args.index("2")] = "12"
    assert run_cli(*args).returncode == 0
    args[2] = str(tmp_path / "clean")
    assert run_cli(*args).returncode == 0
    assert file_tree(out) == file_tree(tmp_path / "clean")


@pytest.mark.slow
def test_workers_die_with_a_killed_main_process_and_print_nothing(
    tmp_path: Path, digits_src: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    proc = _start(digits_src, out, small_recipe, times="40")
    _wait_for_images(proc, out, 20)
    workers = _children(proc.pid)
    assert workers
    proc.kill()  # SIGKILL, the main process alone
    _, stderr = proc.communicate(timeout=30)  # every writer of the pipe gone
    assert stderr == ""
    deadline = time.monotonic() + 2
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [w for w in workers if _alive(w)]
    written = len(list(out.glob("*/*/*.png")))
    time.sleep(0.5)
    assert len(list(out.glob("*/*/*.png"))) == written  # nothing writes on


def _handles_sigterm(pid: int) -> bool:
    """The tool has taken the signals over: its entry point's first line has run."""
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1)


def _has_loaded(pid: int, library: str) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return library in f.read()


# Moments of start-up, each observed in the process itself rather than guessed from a delay
# (a loaded machine shifts a delay anywhere): the tool's first line, then a library of each
# layer mapped in, so the signal lands while that layer is still being imported.
START_UP_MOMENTS = {
    "first-line": _handles_sigterm,
    "numpy": lambda pid: _has_loaded(pid, "_multiarray_umath"),
    "opencv": lambda pid: _has_loaded(pid, "/cv2/"),
    "pydantic": lambda pid: _has_loaded(pid, "_pydantic_core"),
    "scipy": lambda pid: _has_loaded(pid, "scipy/special/_ufuncs"),
}


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(m, marks=[] if m in ("first-line", "pydantic") else pytest.mark.slow)
        for m in START_UP_MOMENTS
    ],
)
def test_ctrl_c_during_start_up_is_a_message_not_a_traceback(
    tmp_path: Path, src: Path, small_recipe: Path, moment: str
) -> None:
    """Issue 20, case 23: a Ctrl-C at any moment of start-up stops the run as one later
    does: the message and 130, never a traceback nor click's "Aborted!" (exit 1)."""
    reached = START_UP_MOMENTS[moment]
    proc = _start(src, tmp_path / "out", small_recipe, times="2")
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, f"the run ended before {moment}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{moment} never reached"
        with contextlib.suppress(FileNotFoundError, StopIteration):
            if reached(proc.pid):
                break
        time.sleep(0.0005)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole job
    _, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 130, stderr
    assert "interrupted: finished work is kept" in stderr


# --- 14, 22. class names that clash as folders --------------------------------------------


@pytest.mark.parametrize(
    ("classes", "words"),
    [
        (("a:b", "a_b"), ["'a:b'", "'a_b'", "would both be written to the folder 'a_b'"]),
        (("x" * 120 + "1", "x" * 120 + "2"), ["would both be written to the folder"]),
        (("cat", "metadata.csv"), ["class 'metadata.csv'", "labels file"]),
    ],
    ids=["cleaned-alike", "long-alike", "metadata-csv"],
)
@pytest.mark.slow
def test_class_names_that_clash_as_folders_are_refused_before_writing(
    tmp_path: Path, small_recipe: Path, classes: tuple[str, ...], words: list[str]
) -> None:
    src = tiny_source(tmp_path / "src", classes)
    before = source_state(src)
    out = tmp_path / "out"
    refused(run_cli(*expand_args(src, out, small_recipe)), *words)
    assert source_state(src) == before
    assert not out.exists()  # refused before OUT is made


# --- 15. orphans of an interrupted run ------------------------------------------------------


def _killed_midway(src: Path, out: Path, recipe: Path, *extra: str) -> None:
    proc = subprocess.Popen(
        augment_command(
            "expand", str(src), str(out), "--times", "12", "-r", str(recipe), "-j", "3", *extra
        ),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_for_images(proc, out, 60)  # type: ignore[arg-type]
    os.killpg(proc.pid, signal.SIGKILL)  # main and workers, mid-shard
    proc.wait(timeout=30)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param("recipe", id="other-recipe"),
        pytest.param("seed", id="other-seed", marks=pytest.mark.slow),
        pytest.param("format", id="other-format", marks=pytest.mark.slow),
    ],
)
@pytest.mark.slow
def test_what_a_killed_run_wrote_is_removed_by_the_next_run_whatever_changed(
    tmp_path: Path, digits_src: Path, small_recipe: Path, change: str
) -> None:
    out = tmp_path / "out"
    _killed_midway(digits_src, out, small_recipe)
    assert list(out.glob("train/*/*.png"))
    recipe, extra = small_recipe, ["--times", "12"]
    if change == "recipe":
        recipe = tmp_path / "b.yaml"
        recipe.write_text(small_recipe.read_text().replace("sigma: [4, 12]", "sigma: [5, 9]"))
    elif change == "seed":
        extra += ["--seed", "5"]
    else:
        extra += ["--format", "jpg"]
    before = source_state(digits_src)
    args = [*expand_args(digits_src, out, recipe), *extra]
    result = run_cli(*args)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert source_state(digits_src) == before
    clean = tmp_path / "clean"
    args[2] = str(clean)
    assert run_cli(*args).returncode == 0
    assert file_tree(out) == file_tree(clean)


# --- 17. SRC that is an augment output; 24. OUT made from another SRC -----------------------


@pytest.mark.slow
def test_an_augment_output_given_as_the_source_is_refused(
    tmp_path: Path, src: Path, small_recipe: Path
) -> None:
    first = tmp_path / "first"
    assert run_cli(*expand_args(src, first, small_recipe)).returncode == 0
    before = source_state(first)
    result = run_cli(*expand_args(first, tmp_path / "again", small_recipe))
    refused(result, "is an augment output", "give the source it was made from")
    assert source_state(first) == before


@pytest.mark.slow
def test_an_output_made_from_another_source_is_refused(
    tmp_path: Path, src: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    assert run_cli(*expand_args(src, out, small_recipe)).returncode == 0
    # Another source whose files have the same names (cat/0.png ...) and other pixels.
    other = tmp_path / "other"
    for path in src.rglob("*.png"):
        target = other / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_other_png(path))
    before, kept = source_state(other), file_tree(out)
    refused(run_cli(*expand_args(other, out, small_recipe)), "was made from another source")
    assert source_state(other) == before and file_tree(out) == kept


def _other_png(path: Path) -> bytes:
    import io

    from PIL import Image

    with Image.open(path) as img:
        buf = io.BytesIO()
        img.transpose(Image.Transpose.ROTATE_180).save(buf, "PNG")
    return buf.getvalue()


# --- 18. the audit sees what the consumers train on -----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hidden-file", "linked-folder", "ppm", "pgm"])
def test_the_audit_sees_images_a_consumer_reads(
    tmp_path: Path, src: Path, small_recipe: Path, kind: str
) -> None:
    from PIL import Image

    out = tmp_path / "out"
    assert run_cli(*expand_args(src, out, small_recipe)).returncode == 0
    assert run_cli("audit", str(out)).returncode == 0
    held_out = next(out.glob("validation/*/*.png"))  # a validation image, copied into train
    with Image.open(held_out) as img:
        if kind == "hidden-file":
            img.save(out / "train" / "cat" / ".copy.png")
        elif kind == "linked-folder":
            (tmp_path / "extra").mkdir()
            img.save(tmp_path / "extra" / "copy.png")
            (out / "train" / "extra").symlink_to(tmp_path / "extra")
        else:
            img.convert("L" if kind == "pgm" else "RGB").save(out / "train" / "cat" / f"c.{kind}")
    result = run_cli("audit", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "an image the manifest does not list" in result.stdout
    assert "clean: no findings" not in result.stdout


@pytest.fixture(scope="module")
def textures_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample_data/textures expanded by the command (read-only: tests copy it)."""
    from tests.helpers import SMALL_RECIPE, TEXTURES

    folder = tmp_path_factory.mktemp("textures")
    (folder / "r.yaml").write_text(SMALL_RECIPE)
    out = folder / "out"
    assert run_cli(*expand_args(TEXTURES, out, folder / "r.yaml")).returncode == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["crop", "shift"])
def test_a_crop_or_shift_of_a_held_out_image_in_train_is_found(
    tmp_path: Path, textures_out: Path, kind: str
) -> None:
    """90 % of a validation image, or the image moved by a tenth of its sides with the band
    left black (Affine's default fill), saved into train: the audit names the pair. The
    clean output has no finding."""
    import shutil

    from PIL import Image

    out = tmp_path / "out"
    shutil.copytree(textures_out, out, symlinks=True)
    clean = run_cli("audit", str(out))
    assert clean.returncode == 0 and "clean: no findings" in clean.stdout, clean.stdout
    held_out = sorted(out.glob("validation/grass/*.jpg"))[0]
    with Image.open(held_out) as img:
        w, h = img.size
        if kind == "crop":
            left, top = w // 20, h // 25  # off-centre: no crop window starts there exactly
            copy = img.crop((left, top, left + w * 9 // 10, top + h * 9 // 10))
        else:
            copy = Image.new("RGB", img.size)
            copy.paste(img, (w // 10, -h // 10))
        copy.save(out / "train" / "grass" / "copy.png")
    result = run_cli("audit", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout
    what = "a crop of the other" if kind == "crop" else "a shifted copy of the other"
    pair = f"train/grass/copy.png (train) and {held_out.relative_to(out)} (validation)"
    assert f"{pair}: one is {what}" in result.stdout, result.stdout


# --- 19. a labels file of hundreds of thousands of rows --------------------------------------


@pytest.mark.slow
def test_a_labels_file_of_many_rows_costs_little_memory_per_row(tmp_path: Path) -> None:
    """`augment inspect` on 20,000 and on 220,000 rows (ten real images, the other rows
    naming missing files, each rejected): the 200,000 rows more cost under 420 bytes each,
    the rejection each keeps included (they cost 520, and took 19 s instead of 4). The
    figures at 2.3 M rows: benchmarks/labels_file.py."""
    from tests.helpers import DIGITS

    images = sorted(DIGITS.rglob("*.png"))[:10]
    peaks = []
    for rows in (20_000, 220_000):
        root = tmp_path / str(rows)
        (root / "real").mkdir(parents=True)
        listed = []
        for i, image in enumerate(images):
            (root / "real" / f"{i}.png").write_bytes(image.read_bytes())
            listed.append(f"real/{i}.png,c{i % 2}")
        listed += [f"images/n{i % 1000:04d}/{i:08d}.jpg,c{i % 2}" for i in range(rows - 10)]
        (root / "labels.csv").write_text("path,label\n" + "\n".join(listed) + "\n")
        peaks.append(peak_rss_of("inspect", str(root / "labels.csv")))
    per_row = (peaks[1] - peaks[0]) / 200_000
    assert per_row < 420, f"{per_row:.0f} bytes per row"


# --- 16. a 20 GB sparse file whose header declares 100000 x 100000 ----------------------------


@pytest.mark.slow
def test_a_huge_sparse_image_file_is_rejected_without_reading_it(
    tmp_path: Path, src: Path, small_recipe: Path
) -> None:
    import resource
    import struct

    tags = [(256, 100_000), (257, 100_000), (258, 8), (259, 1), (262, 1), (273, 4096)]
    tags += [(277, 1), (278, 100_000), (279, 2**32 - 1)]
    ifd = b"".join(struct.pack("<HHII", tag, 4, 1, value) for tag, value in tags)
    big = src / "cat" / "big.tif"
    with big.open("wb") as f:
        f.write(b"II*\x00" + struct.pack("<IH", 8, len(tags)) + ifd + struct.pack("<I", 0))
        f.truncate(20 * 2**30)  # sparse: no disk used
    before = source_state(src)

    def limit_memory() -> None:  # 3 GB of address space: reading the file would fail
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    result = subprocess.run(
        augment_command(*expand_args(src, tmp_path / "out", small_recipe)),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        preexec_fn=limit_memory,
        check=False,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "cat/big.tif: 21,474,836,480 bytes, more than any image within --max-pixels" in (
        result.stdout
    )
    assert source_state(src) == before


# --- 9. fork refused; the temporary folder full while records spill --------------------------


@pytest.mark.slow
def test_a_full_temporary_folder_is_a_clear_error_and_the_rerun_resumes(
    tmp_path: Path, small_recipe: Path
) -> None:
    from tests.helpers import DIGITS

    tiny = tmp_path / "tmp"
    tiny.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(tiny)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"this machine cannot mount a small tmpfs: {done.stderr.decode().strip()}")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("preprocess: {size: [16, 16]}\naugment: [{HorizontalFlip: {p: 0.5}}]\n")
    out = tmp_path / "out"
    # 4,000 records: past the memory budget, so they spill to TMPDIR, which fills.
    args = ["expand", str(DIGITS), str(out), "--times", "100", "-r", str(recipe), "-j", "2"]
    try:
        full = subprocess.run(
            augment_command(*args),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            env={**os.environ, "TMPDIR": str(tiny)},
            check=False,
        )
    finally:
        subprocess.run(["umount", str(tiny)], check=False)
    refused(full, "cannot write the run's records to the temporary folder", "rerun the same")
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert " unchanged" in again.stdout and not again.stdout.count(" 0 unchanged")
    args[2] = str(tmp_path / "clean")
    assert run_cli(*args).returncode == 0
    assert file_tree(out) == file_tree(tmp_path / "clean")


def _under_a_process_limit(*args: str, tasks: int = 1) -> subprocess.CompletedProcess[str]:
    """`augment ARGS` allowed `tasks` tasks (processes and threads) in all. Root is exempt from the
    limit (by its real user id, and by CAP_SYS_RESOURCE or CAP_SYS_ADMIN), so as root the
    command runs with the real user id of `nobody` and without those two capabilities;
    its effective id stays root's, so it can still run this Python and write tmp_path.
    OpenBLAS and OpenMP start no threads of their own: the limit is met where the tool
    starts its own threads and processes."""
    import ctypes
    import resource

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_sys_admin, cap_sys_resource = 24, 21, 24

    def limited() -> None:
        if os.geteuid() == 0:
            for cap in (cap_sys_admin, cap_sys_resource):
                if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
            os.setresuid(65534, 0, 0)
        resource.setrlimit(resource.RLIMIT_NPROC, (tasks, tasks))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    try:
        return subprocess.run(
            augment_command(*args),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            preexec_fn=limited,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:  # a hang is the tool's failure, not the machine's
        raise
    except subprocess.SubprocessError as exc:  # the limit could not be set up here
        pytest.skip(f"cannot run a command under a process limit here: {exc}")


@pytest.fixture()
def shared_tmp() -> Iterator[Path]:
    """A folder that the real user id of `_under_a_process_limit` may read and write (click
    checks SRC and OUT with access(2), which asks for the real user id); pytest's own is
    the owner's alone."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="augment-limit-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def bigger_src(shared_tmp: Path) -> Path:
    # 24 originals, 3 outputs each: two shards of work, so `-j 3` starts a pool.
    return tiny_source(shared_tmp / "src", classes=("cat", "dog", "owl"), per_class=8)


@pytest.mark.slow
def test_a_refused_fork_leaves_the_run_to_the_main_process(
    shared_tmp: Path, bigger_src: Path, small_recipe: Path
) -> None:
    """A process limit makes fork() fail: the run goes on in its own process, and makes
    what a run with a pool makes."""
    before = source_state(bigger_src)
    out = shared_tmp / "out"
    args = expand_args(bigger_src, out, small_recipe)[:-1]
    result = _under_a_process_limit(*args, "3", "--times", "3", "--near-duplicates", "-1")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    clean = shared_tmp / "clean"
    args[2] = str(clean)
    assert run_cli(*args, "3", "--times", "3", "--near-duplicates", "-1").returncode == 0
    assert file_tree(out) == file_tree(clean)
    assert source_state(bigger_src) == before


@pytest.mark.slow
def test_a_refused_thread_is_a_clear_error_and_the_rerun_resumes(
    shared_tmp: Path, bigger_src: Path, small_recipe: Path
) -> None:
    """The near-duplicate hashing's threads refused: exit 2 and the cause, no traceback;
    the same command without the limit then makes what a clean run makes."""
    before = source_state(bigger_src)
    out = shared_tmp / "out"
    args = [*expand_args(bigger_src, out, small_recipe)[:-1], "3", "--times", "3"]
    refused(
        _under_a_process_limit(*args),
        "the system refused a new thread",
        "a limit on processes is reached (ulimit -u",
        "rerun the same command to resume",
    )
    assert source_state(bigger_src) == before
    assert run_cli(*args).returncode == 0
    args[2] = str(shared_tmp / "clean")
    assert run_cli(*args).returncode == 0
    assert file_tree(out) == file_tree(shared_tmp / "clean")


@pytest.mark.slow
def test_a_process_limit_met_mid_run_keeps_the_work_done(
    shared_tmp: Path, bigger_src: Path, small_recipe: Path
) -> None:
    """Room for the main process and its two workers, not for the pool's own threads: the
    main process has made every output alone when the pool's failure surfaces. Exit 2 with
    the cause; the rerun without the limit writes nothing again, and equals a clean run."""
    out = shared_tmp / "out"
    args = expand_args(bigger_src, out, small_recipe)[:-1]
    args += ["3", "--times", "3", "--near-duplicates", "-1"]
    refused(
        _under_a_process_limit(*args, tasks=4),
        "the system refused a new thread",
        "finished work is kept: rerun the same command to resume",
    )
    made = {p.name for p in out.rglob("*.png")}
    assert made, "nothing was made before the limit was met"
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert f"0 files written, {len(made)} unchanged" in again.stdout, again.stdout
    args[2] = str(shared_tmp / "clean")
    assert run_cli(*args).returncode == 0
    assert file_tree(out) == file_tree(shared_tmp / "clean")


@pytest.mark.slow
def test_a_pool_cut_short_by_a_process_limit_neither_hangs_nor_loses_work(
    shared_tmp: Path, bigger_src: Path, small_recipe: Path
) -> None:
    """Room for one worker of two: the pool's first fork succeeds and its second fails.
    The pool then ends the worker it started and waits for it; a worker born with the main
    process's own signal handlers did not end, and the run waited forever. The run goes on
    without a pool and makes what a clean run makes."""
    out = shared_tmp / "out"
    args = expand_args(bigger_src, out, small_recipe)[:-1]
    args += ["3", "--times", "3", "--near-duplicates", "-1"]
    result = _under_a_process_limit(*args, tasks=2)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    args[2] = str(shared_tmp / "clean")
    assert run_cli(*args).returncode == 0
    assert file_tree(out) == file_tree(shared_tmp / "clean")
