"""What does a run's start-up cost, and how much of it is the project's own?

    python benchmarks/startup.py                      # medians of 10 interleaved rounds
    python benchmarks/startup.py --rounds 3
    python benchmarks/startup.py --baseline OLD_TREE  # each augment row for both trees

Each row is a fresh interpreter, timed as a whole command: CPU seconds (user + system, of
the process and the children it waited for) and wall seconds, medians over interleaved
rounds so a noisy neighbour slows every row alike. The rows go from nothing (`python -c
pass`) through the libraries a run needs to a real `augment expand --times 1` on 10 small
JPEGs, so what the project adds on top of its libraries is the difference between rows.
The last rows are a 1,000-output run (200 JPEGs of 500x375, `--times 5`) as a command and
the same run in a process that has imported everything already: their difference is what
a command costs beyond the run's own work (imports, the first run's warm-up, teardown).
`python -X importtime -c "import augment.full_run"` shows where the imports go.

The tree measured is the one this script is in (commands run from its root, so its
`augment` is imported); `--baseline` names another checkout, run in the same rounds.

Modules are imported from bytecode, as from an installed package: the commands write it to
a temporary cache in a first round that is not counted, even where the environment says
not to (PYTHONDONTWRITEBYTECODE, which makes every start compile the project's modules
again, ~60 ms); `--as-is` measures the environment as it is.
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

ROOT = Path(__file__).resolve().parent.parent

# The 1,000-output run in a process that imported everything first; the timed part is the
# run alone, printed as CPU seconds (this process's and its workers').
_IN_PROCESS = """
import resource, shutil, sys
import augment.cli, augment.full_run
from augment import ExpandOptions, expand
def cpu():
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
started = cpu()
expand(sys.argv[1], sys.argv[2], ExpandOptions(times=5, workers=1))
print(cpu() - started)
"""


def _rows(small: Path, photos: Path, out: Path) -> dict[str, list[str]]:
    python = [sys.executable]
    expand = [*python, "-m", "augment", "expand"]
    return {
        "python -c pass": [*python, "-c", "pass"],
        "import numpy, cv2, PIL": [*python, "-c", "import numpy, cv2, PIL.Image"],
        "import albumentations": [*python, "-c", "import albumentations"],
        # Its import alone: the interpreter's shutdown (collecting what it made) skipped.
        "import albumentations, no teardown": [
            *python,
            *("-c", "import os, albumentations; os._exit(0)"),
        ],
        "augment --help": [*python, "-m", "augment", "--help"],
        "import augment.full_run": [*python, "-c", "import augment.full_run"],
        "import augment.stages.worker": [*python, "-c", "import augment.stages.worker"],
        "augment expand --times 1, 10 images, --workers 1": [
            *expand,
            *(str(small), str(out), "--times", "1", "--workers", "1", "--quiet"),
        ],
        "augment expand, 1,000 outputs, --workers 1": [
            *expand,
            *(str(photos), str(out), "--times", "5", "--workers", "1", "--quiet"),
        ],
        "same run in process, imports done (run only)": [
            *python,
            *("-c", _IN_PROCESS, str(photos), str(out)),
        ],
    }


# Rows that run the project's code: the ones --baseline repeats in the other tree.
_OWN = ("augment", "import augment", "same run")


def make_corpus(root: Path, count: int = 10, size: tuple[int, int] = (200, 150)) -> Path:
    """`count` JPEGs of smooth noise of `size` in two class folders."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (15, 20, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC)
        image.save(folder / f"{i:03d}.jpg", "JPEG", quality=90)
    return root


def run_once(command: list[str], out: Path, tree: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of `command` in a fresh process, `out` cleared first;
    for the in-process row, the CPU seconds it prints (the run alone)."""
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, check=True, cwd=tree, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    printed = done.stdout.strip()
    return (float(printed) if command[-3:-2] == [_IN_PROCESS] else cpu), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure alongside")
    parser.add_argument("--as-is", action="store_true", help="bytecode as the environment has it")
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    trees = [("", ROOT)] + ([(" (baseline)", args.baseline.resolve())] if args.baseline else [])
    with tempfile.TemporaryDirectory(prefix="augment-startup-") as tmp:
        if not args.as_is:  # a cache of its own: nothing is written into the trees
            os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
            os.environ["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "bytecode")
        small = make_corpus(Path(tmp) / "small")
        photos = make_corpus(Path(tmp) / "photos", 200, (500, 375))
        out = Path(tmp) / "out"
        rows = {
            name + label: (command, tree)
            for name, command in _rows(small, photos, out).items()
            for label, tree in trees
            if not label or name.startswith(_OWN)
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
        for r in range(0 if args.as_is else -1, args.rounds):
            print(f"  round {r + 1 or 'warm-up'}/{args.rounds}", file=sys.stderr, flush=True)
            for name, (command, tree) in rows.items():
                sample = run_once(command, out, tree)
                if r >= 0:  # round 0 writes the bytecode
                    samples[name].append(sample)
    bytecode = "as the environment has it" if args.as_is else "cached"
    print(f"| command (medians of {args.rounds}; bytecode {bytecode}) | CPU s | wall s |")
    print("|---|---:|---:|")
    for name, got in samples.items():
        cpu = statistics.median(c for c, _ in got)
        wall = statistics.median(w for _, w in got)
        print(f"| `{name}` | {cpu:.3f} | {wall:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
