"""The outputs of the sample sets are pinned: a change that moves code must not move a byte.

`golden/sample_outputs.json` holds, for `expand SET OUT --times 3 --recipe R --seed 7` on both
sample sets with the default and the mixup recipe, every file of OUT (the state folder aside)
with its sha256, recorded before the restructure of the expand path. File names are keyed by
content, recipe and seed alone, so they must match on any machine; the bytes also depend on
the pixel libraries, so they are compared where those are the versions recorded with them.

A change of outputs on purpose is re-recorded with `python -m tests.test_golden` from the
repository root (with the recorded pixel library versions), and said so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, augment_command

GOLDEN = json.loads((Path(__file__).parent / "golden" / "sample_outputs.json").read_text())


def _pixel_library_versions() -> dict[str, str]:
    import albumentations
    import cv2
    import numpy
    import PIL
    import simplejpeg

    return {
        "albumentations": albumentations.__version__,
        "cv2": cv2.__version__,
        "numpy": numpy.__version__,
        "Pillow": PIL.__version__,
        "simplejpeg": simplejpeg.__version__,
    }


@pytest.mark.parametrize(
    "run",
    [
        # The fast lane pins both recipes on one sample set; the digits runs are slow.
        pytest.param("digits-default", marks=pytest.mark.slow),
        pytest.param("digits-mixup", marks=pytest.mark.slow),
        "textures-default",
        "textures-mixup",
    ],
)
def test_sample_outputs_are_the_recorded_ones(run: str, tmp_path: Path) -> None:
    made = _sample_outputs(run, tmp_path / "out")
    recorded = GOLDEN["runs"][run]
    assert sorted(made) == sorted(recorded)
    if _pixel_library_versions() != GOLDEN["versions"]:
        pytest.skip(f"bytes recorded with {GOLDEN['versions']}; names matched")
    assert made == recorded


def _sample_outputs(run: str, out: Path) -> dict[str, str]:
    sample, recipe = run.split("-")
    command = augment_command(
        "expand", str(ROOT / "sample_data" / sample), str(out), "--times", "3",
        "--recipe", recipe, "--seed", "7", "-q",
    )  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and ".augment" not in p.relative_to(out).parts
    }


if __name__ == "__main__":  # re-record: python -m tests.test_golden
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        runs = {run: _sample_outputs(run, Path(tmp) / run) for run in GOLDEN["runs"]}
    recorded = {"runs": runs, "versions": _pixel_library_versions()}
    path = Path(__file__).parent / "golden" / "sample_outputs.json"
    path.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
