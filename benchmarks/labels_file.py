"""A labels file of millions of rows: time and peak memory of reading it, against the csv
module reading the same file in the same run.

    python benchmarks/labels_file.py                      # 2.3 M rows (about 100 MB)
    python benchmarks/labels_file.py --rows 230000 --rerun 5000

The file is made in a temporary folder: `path,label` rows of ImageNet-like paths
(`images/n0123/n0123_00001234.jpg`, 1,000 classes). The first `--real` rows name real PNG
images made beside it, which ingest reads and hashes; the others name files that do not
exist, each rejected as a missing file (a real user has the images; two million of them
cannot be made here in reasonable time). So the figures are the tool's own cost per row,
with the image reading of a real run left out: a real first run also reads every image.

Each line is measured in a process of its own:
- `csv.reader`: the file read row by row by the csv module, nothing kept (the floor);
- `labels file`: augment's labels-file stage, every row checked and handed on, nothing kept;
- `ingest`: `augment.stages.ingest.ingest` on the file, as `expand` and `inspect` call it:
  the rows, each file's lstat and containment check, the real images read, every
  rejection kept (its path and reason: the run reports each);
- `inspect`, `expand`: the real commands, as a user runs them (`expand ... --times 2
  --format png -j 2`: the 2,000 real images made into outputs, every rejection listed in
  OUT/augment.json and counted there), their peak RSS that of the whole process tree
  (sampled every 50 ms: the main process and its workers, shared pages counted in each);
- `expand again`: the same command again into that OUT (a rerun: it reads the last
  run's augment.json).

`--rerun N`: N real images listed in a labels file, then as class folders: a first
`expand` and its no-op rerun, timed (each the median of 3 reruns).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = 1000
# The library measured is this tree's, whatever `augment` the environment has installed.
TREE = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TREE), os.environ.get("PYTHONPATH", "")])}


def row_path(i: int) -> str:
    c = i % CLASSES
    return f"images/n{c:04d}/n{c:04d}_{i:08d}.jpg"


def tiny_png(i: int) -> bytes:
    """An 8 x 8 PNG whose pixels encode `i`: every image distinct (no exact duplicates)."""
    from PIL import Image

    img = Image.new("RGB", (8, 8), (i & 255, (i >> 8) & 255, (i >> 16) & 255))
    img.putpixel((i % 8, (i // 8) % 8), (255 - (i & 255), 0, 0))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def make_labels(folder: Path, rows: int, real: int) -> Path:
    for i in range(real):
        image = folder / row_path(i)
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(tiny_png(i))
    labels = folder / "labels.csv"
    with labels.open("w", encoding="utf-8", newline="") as f:
        f.write("path,label\n")
        for start in range(0, rows, 100_000):
            stop = min(rows, start + 100_000)
            f.write("".join(f"{row_path(i)},class_{i % CLASSES:04d}\n" for i in range(start, stop)))
    return labels


def measure(mode: str, labels: Path) -> tuple[float, float, float, int]:
    """(seconds, CPU seconds, peak RSS in MB, rows handed on or judged) of one mode, in this
    process. CPU seconds too: on a shared machine the clock also counts others' work."""
    started, cpu = time.perf_counter(), time.process_time()
    if mode == "csv.reader":
        with labels.open(encoding="utf-8", newline="") as f:
            count = sum(1 for _ in csv.reader(f))
    elif mode == "labels file":
        from augment.model import Dataset
        from augment.stages.labels_file import read_labels_file

        dataset = Dataset(root=labels.parent, kind="labels")
        count = sum(1 for _ in read_labels_file(labels, dataset, (None, None)))
    elif mode == "ingest":
        from augment.stages.ingest import ingest

        dataset = ingest(labels)
        count = len(dataset.originals) + len(dataset.rejected)
    else:  # the real command, in processes of its own
        return run_command(mode, labels)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return seconds, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, count


def run_command(mode: str, labels: Path) -> tuple[float, float, float, int]:
    """`augment expand` or `augment inspect` on the labels file, as a user runs it: (seconds,
    CPU seconds of the process and its workers, peak RSS of the process tree in MB, rows
    the output lists: originals written and rejections)."""
    out = labels.parent.parent / "out"  # beside the source, not in it
    command = mode.split()[0]  # "expand again": the rerun into the same OUT
    call = [sys.executable, "-m", "augment", command, str(labels)]
    if command == "expand":
        call += [str(out), "--times", "2", "--format", "png", "-j", "2", "--force"]
    printed = labels.parent.parent / f"{mode.replace(' ', '-')}.txt"
    started = time.perf_counter()
    with printed.open("w") as sink:
        process = subprocess.Popen(call, stdout=sink, stderr=subprocess.STDOUT, env=ENV)
        peak = 0
        while process.poll() is None:
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.05)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # this process's only child's tree
    assert process.returncode == 0, printed.read_text()[-2000:]
    # The largest single process, should the tree end between two samples.
    peak_mb = max(peak / 1024, usage.ru_maxrss / 1024)
    if command == "expand":  # every row is in augment.json (read a line at a time)
        count = 0
        with (out / "augment.json").open(encoding="utf-8") as header:
            for line in header:
                if line.startswith('      "reason": '):  # a rejection
                    count += 1
                elif line.startswith('    "originals": '):  # the source's
                    count += int(line.split()[1].rstrip(","))
    else:  # "would reject N files", and the originals' total line
        text = printed.read_text()
        count = int(text.split("would reject ")[1].split()[0])
        total = next(line for line in text.splitlines() if line.startswith("  total "))
        count += sum(int(n) for n in total.split()[1:])
    return seconds, usage.ru_utime + usage.ru_stime, peak_mb, count


def tree_rss(pid: int) -> int:
    """KB resident in the process `pid` and all its descendants, now (0 once it is gone).
    Pages a forked worker shares with its parent count in both: an upper bound."""
    total, todo = 0, [pid]
    while todo:
        here = todo.pop()
        try:
            with open(f"/proc/{here}/status") as status:
                total += next(
                    (int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0
                )
            for task in os.listdir(f"/proc/{here}/task"):
                with open(f"/proc/{here}/task/{task}/children") as children:
                    todo.extend(int(c) for c in children.read().split())
        except (OSError, ValueError):
            continue
    return total


def rerun_times(folder: Path, images: int) -> list[tuple[str, float, float]]:
    """(source kind, first run s, no-op rerun s) for `images` real images."""
    labels = make_labels(folder / "listed", images, images)
    tree = folder / "tree"
    for i in range(images):  # the same images as SRC/<class>/<image>
        image = tree / row_path(i).split("/", 1)[1]
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(tiny_png(i))
    time.sleep(2.1)  # sources modified within 2 s of a run are re-read (the racy rule)
    found = []
    for kind, src in (("labels file", labels), ("class folders", tree)):
        out = folder / f"out-{kind.replace(' ', '-')}"
        call = [sys.executable, "-m", "augment", "expand", str(src), str(out), "--quiet"]
        call += ["--times", "1", "--val", "0", "--test", "0", "--format", "png", "-j", "2"]
        started = time.perf_counter()
        subprocess.run(call, check=True, env=ENV)
        first = time.perf_counter() - started
        reruns = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(call, check=True, env=ENV)
            reruns.append(time.perf_counter() - started)
        found.append((kind, first, statistics.median(reruns)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_300_000)
    parser.add_argument("--real", type=int, default=2_000, help="rows naming real images")
    parser.add_argument("--rerun", type=int, default=0, help="images for the rerun timing")
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "LABELS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:  # one line of the table, in a process of its own
        print(*measure(args.measure[0], Path(args.measure[1])))
        return 0
    with tempfile.TemporaryDirectory(prefix="augment-labels-") as tmp:
        (Path(tmp) / "source").mkdir()
        labels = make_labels(Path(tmp) / "source", args.rows, args.real)
        size = labels.stat().st_size / 1e6
        print(f"{args.rows:,} rows ({size:.1f} MB), {args.real:,} of them real images")
        print(f"{'':14} {'seconds':>8} {'CPU s':>7} {'peak RSS MB':>12} {'CPU us/row':>10}")
        modes = ("csv.reader", "labels file", "ingest", "inspect", "expand", "expand again")
        for mode in modes:
            call = [sys.executable, __file__, "--measure", mode, str(labels)]
            done = subprocess.run(call, check=True, capture_output=True, text=True, env=ENV)
            line = done.stdout
            seconds, cpu, rss, count = (float(v) for v in line.split())
            per_row = cpu / args.rows * 1e6
            print(f"{mode:14} {seconds:8.1f} {cpu:7.1f} {rss:12.0f} {per_row:10.1f}")
            assert count >= args.rows - args.rows // 1000, (mode, count)  # every row judged
        if args.rerun:
            print(f"\n{args.rerun:,} real images: first run and no-op rerun (seconds)")
            for kind, first, rerun in rerun_times(Path(tmp) / "rerun", args.rerun):
                print(f"{kind:14} {first:8.1f} {rerun:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
