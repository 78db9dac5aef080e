"""One run reads its recipe file once: what the rerun digest records and what the pixels are
made from are the same text, even when the file is saved again while the run goes on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SMALL_RECIPE, TEXTURES, file_tree

# Runs expand in a process of its own (an audit hook cannot be removed again): counts the
# opens of the recipe file, and with "edit", saves another recipe the moment the first
# source is read, as an editor saving the file mid-run would. Prints the opens and whether
# the run after it took the fast path.
_RUN = """
import json, sys
from pathlib import Path
from augment.run import expand
from augment.model import ExpandOptions
from augment.stages.executor import in_process

src, out, recipe, edited = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
opens = []
pending_edit = [edited != "-"]

def hook(event, args):
    if event != "open" or not isinstance(args[0], (str, bytes, Path)):
        return
    path = str(args[0])
    if path == recipe:
        opens.append(path)
    elif pending_edit[0] and path.startswith(str(src)) and path.endswith(".jpg"):
        pending_edit[0] = False
        Path(recipe).write_text(Path(edited).read_text())

sys.addaudithook(hook)
options = ExpandOptions(times=2, recipe=recipe, val=0.2, test=0, workers=1)
expand(src, out, options, executor=in_process)
first_opens = len(opens)
again = expand(src, out, options, executor=in_process)
print(json.dumps({"opens": first_opens, "fast_path": again.fast_path}))
"""


def _run(src: Path, out: Path, recipe: Path, edited: Path | None = None) -> dict[str, object]:
    args = [str(src), str(out), str(recipe), str(edited) if edited else "-"]
    done = subprocess.run(
        [sys.executable, "-c", _RUN, *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
def test_a_run_opens_its_recipe_file_once(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(SMALL_RECIPE)
    assert _run(TEXTURES, tmp_path / "out", recipe)["opens"] == 1


@pytest.mark.slow
def test_a_recipe_saved_mid_run_remakes_the_outputs_on_the_next_run(tmp_path: Path) -> None:
    recipe, edited = tmp_path / "r.yaml", tmp_path / "edited.yaml"
    recipe.write_text(SMALL_RECIPE)
    edited.write_text(SMALL_RECIPE.replace("rotate: [-12, 12]", "rotate: [-30, 30]"))
    result = _run(TEXTURES, tmp_path / "out", recipe, edited)
    # The first run made its images from the text it read; the file now says another
    # thing, so the next run may not take the fast path, and must end as a clean run of it.
    assert result["fast_path"] is False
    clean, same_name = tmp_path / "clean", tmp_path / "again" / "r.yaml"  # the name is recorded
    same_name.parent.mkdir()
    same_name.write_text(edited.read_text())
    _run(TEXTURES, clean, same_name)
    assert file_tree(tmp_path / "out") == file_tree(clean)
