"""What does a run's start-up cost, and how much of it is the project's own?

    python benchmarks/startup.py              # medians of 10 interleaved rounds, ~1 minute
    python benchmarks/startup.py --rounds 3

Each row is a fresh interpreter, timed as a whole command: CPU seconds (user + system, of
the process and the children it waited for) and wall seconds, medians over interleaved
rounds so a noisy neighbour slows every row alike. The rows go from nothing (`python -c
pass`) through the libraries a run needs to a real `augment expand --times 1` on 10 small
JPEGs, so what the project adds on top of its libraries is the difference between rows.
`python -X importtime -c "import augment.full_run"` shows where the rest goes.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _rows(corpus: Path, out: Path) -> dict[str, list[str]]:
    python = [sys.executable]
    expand = ["-m", "augment", "expand", str(corpus), str(out), "--times", "1"]
    return {
        "python -c pass": [*python, "-c", "pass"],
        "import numpy, cv2, PIL": [*python, "-c", "import numpy, cv2, PIL.Image"],
        "import albumentations": [*python, "-c", "import albumentations"],
        "augment --help": [*python, "-m", "augment", "--help"],
        "import augment.full_run": [*python, "-c", "import augment.full_run"],
        "import augment.stages.worker": [*python, "-c", "import augment.stages.worker"],
        "augment expand --times 1, 10 images, --workers 1": [
            *python,
            *expand,
            "--workers",
            "1",
            "--quiet",
        ],
    }


def make_corpus(root: Path, count: int = 10) -> Path:
    """`count` 200x150 JPEGs of smooth noise in two class folders."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (15, 20, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((200, 150), Image.Resampling.BICUBIC)
        image.save(folder / f"{i:02d}.jpg", "JPEG", quality=90)
    return root


def run_once(command: list[str], out: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of `command` in a fresh process, `out` cleared first."""
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    with tempfile.TemporaryDirectory(prefix="augment-startup-") as tmp:
        corpus = make_corpus(Path(tmp) / "corpus")
        out = Path(tmp) / "out"
        rows = _rows(corpus, out)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
        for r in range(args.rounds):
            print(f"  round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
            for name, command in rows.items():
                samples[name].append(run_once(command, out))
    print(f"| command (medians of {args.rounds}) | CPU s | wall s |")
    print("|---|---:|---:|")
    for name, got in samples.items():
        cpu = statistics.median(c for c, _ in got)
        wall = statistics.median(w for _, w in got)
        print(f"| `{name}` | {cpu:.3f} | {wall:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
