"""Prevention in `expand`: duplicate and near-duplicate originals in SRC are held out
together, reruns reuse their hashes, and an earlier run's split is never silently moved."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from augment.cli import main
from augment.commands.audit import audit_output
from augment.defaults import DEFAULT_MAX_DISTANCE
from augment.imaging.similarity import phash_bytes
from augment.model import ExpandOptions
from augment.run import expand
from augment.stages.duplicates import SourceHasher, group_duplicates, hash_originals
from augment.stages.holdout import _known_hashes
from augment.stages.ingest import ingest
from tests import faults
from tests.helpers import MIRRORED, PAIRS, RESIZED, TEXTURES, straddling_seed


@pytest.fixture()
def src(tmp_path: Path) -> Path:
    """The textures set plus a half-size re-encoded copy and a mirrored copy of two photos."""
    root = tmp_path / "src"
    shutil.copytree(TEXTURES, root)
    with Image.open(root / "brick" / "brick_03.jpg") as img:
        img.resize((img.width // 2, img.height // 2)).save(root / RESIZED, quality=80)
    with Image.open(root / "grass" / "grass_07.jpg") as img:
        ImageOps.mirror(img).save(root / MIRRORED)
    return root


def options(
    small_recipe: Path, seed: int, near_duplicates: int = DEFAULT_MAX_DISTANCE
) -> ExpandOptions:
    return ExpandOptions(
        times=2,
        recipe=str(small_recipe),
        val=0.2,
        test=0.1,
        seed=seed,
        workers=1,
        near_duplicates=near_duplicates,
    )


def splits_of(out: Path) -> dict[str, str]:
    header = json.loads((out / "augment.json").read_text())
    return {h["path"]: h["split"] for h in header["holdout"]}


@pytest.mark.slow
def test_near_duplicate_pairs_end_in_one_split(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    seed = straddling_seed(src)
    out = tmp_path / "out"
    summary = expand(src, out, options(small_recipe, seed))
    assert [c.paths for c in summary.duplicates] == [tuple(sorted(p)) for p in PAIRS]
    split = splits_of(out)
    for a, b in PAIRS:
        assert split[a] == split[b]
    assert split[PAIRS[0][0]] != "train" or split[PAIRS[0][1]] == "train"
    assert audit_output(out).clean
    header = json.loads((out / "augment.json").read_text())
    assert all(len(h["phash"]) == 32 for h in header["holdout"])


def test_without_grouping_the_pair_leaks_and_audit_finds_it(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    summary = expand(src, out, options(small_recipe, straddling_seed(src), near_duplicates=-1))
    assert summary.duplicates == []
    header = json.loads((out / "augment.json").read_text())
    assert not any("phash" in h for h in header["holdout"])  # off: not even hashed
    split = splits_of(out)
    straddling = {Path(p).stem for pair in PAIRS if split[pair[0]] != split[pair[1]] for p in pair}
    assert {"brick_03", "brick_03_small"} <= straddling
    # Preprocessed to one size, the half-size copy may even count as the same pixels.
    leaks = [f for f in audit_output(out).findings if f.check.endswith("duplicates")]
    found = {Path(p).parts[-1].split("_nohash_")[0] for f in leaks for p in f.paths}
    assert found == straddling


def test_earlier_split_is_kept_and_the_conflict_reported(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    seed = straddling_seed(src)
    out = tmp_path / "out"
    expand(src, out, options(small_recipe, seed, near_duplicates=-1))
    before = splits_of(out)
    summary = expand(src, out, options(small_recipe, seed))
    assert splits_of(out) == before  # sticky: nothing moved
    apart = [tuple(sorted(pair)) for pair in PAIRS if before[pair[0]] != before[pair[1]]]
    together = [tuple(sorted(pair)) for pair in PAIRS if before[pair[0]] == before[pair[1]]]
    assert [c.paths for c in summary.duplicate_conflicts] == apart
    assert summary.duplicate_conflicts[0].previous_splits == {p: before[p] for p in PAIRS[0]}
    assert [c.paths for c in summary.duplicates] == together


def test_rerun_reuses_stored_hashes(src: Path, tmp_path: Path, small_recipe: Path) -> None:
    out = tmp_path / "out"
    expand(src, out, options(small_recipe, 0))
    header = json.loads((out / "augment.json").read_text())
    dataset = ingest(src)
    again = group_duplicates(
        dataset.root, dataset.originals, DEFAULT_MAX_DISTANCE, _known_hashes(header)
    )
    assert again.hashed == 0
    fresh = group_duplicates(dataset.root, dataset.originals, DEFAULT_MAX_DISTANCE)
    assert fresh.hashed == len(dataset.originals)
    assert again.hashes == fresh.hashes


def test_groups_chain_and_exact_copies_join(src: Path) -> None:
    # An exact byte copy filed under another class, and a --group-by group: all one group.
    shutil.copy(src / "brick" / "brick_03.jpg", src / "gravel" / "copied.jpg")
    dataset = ingest(src)
    originals = [
        replace(o, group="shoot-1")
        if o.path in ("gravel/copied.jpg", "gravel/gravel_01.jpg")
        else o
        for o in dataset.originals
    ]
    grouping = group_duplicates(dataset.root, originals, DEFAULT_MAX_DISTANCE)
    group = {o.path: o.group for o in grouping.originals}
    assert (
        group["brick/brick_03.jpg"]
        == group[RESIZED]
        == group["gravel/copied.jpg"]
        == group["gravel/gravel_01.jpg"]
    )
    assert group["brick/brick_04.jpg"] == "brick/brick_04.jpg"  # untouched
    cluster = next(c for c in grouping.clusters if "gravel/copied.jpg" in c.paths)
    assert cluster.paths == ("brick/brick_03.jpg", RESIZED, "gravel/copied.jpg")
    assert cluster.labels == ("brick", "gravel")  # one picture, two classes


def test_no_clusters_in_the_sample_data() -> None:
    for root in (TEXTURES, TEXTURES.parent / "digits"):
        dataset = ingest(root)
        assert (
            group_duplicates(dataset.root, dataset.originals, DEFAULT_MAX_DISTANCE).clusters == []
        )


def test_expand_summary_lists_the_clusters(src: Path, tmp_path: Path, small_recipe: Path) -> None:
    args = ["expand", str(src), str(tmp_path / "out"), "-n", "2", "-r", str(small_recipe)]
    result = CliRunner().invoke(main, [*args, "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "duplicate originals kept in one split (2 clusters):" in result.output
    assert f"  {RESIZED.replace('_small', '')}, {RESIZED}" in result.output


def _look_alikes(families: int, per_family: int, seed: int) -> tuple[list, dict]:
    """Originals whose hashes come in families a few bits apart (handwritten digits, video
    frames): many near pairs per original. Hashes are given (sha256 -> hash): nothing is
    decoded."""
    import numpy as np

    from augment.imaging.digests import ImageHash
    from augment.model import Original

    rng = np.random.default_rng(seed)
    originals, known = [], {}
    for f in range(families):
        base = int(rng.integers(0, 2**63)) << 1
        for m in range(per_family):
            flips = rng.choice(64, size=int(rng.integers(0, 6)), replace=False)
            direct = base ^ sum(1 << int(b) for b in flips)
            sha = f"{f:06d}{m:04d}".ljust(64, "0")
            path = f"c{f % 3}/{f:06d}_{m:04d}.png"
            originals.append(Original(path, f"c{f % 3}", path, sha, "PNG", 64, 64))
            known[sha] = ImageHash(direct, int(rng.integers(0, 2**63)))
    return originals, known


def _stars_by_the_rule(originals: list, known: dict, max_distance: int) -> list[list[str]]:
    """The documented rule, spelled out: near pairs (direct or mirror, the pair's smaller
    bits), then the node with the most weight (8 - bits, at most 7 off) of neighbours not
    yet taken (at equal weight the fewer, so closer, neighbours), then the first path,
    takes them all; and again."""
    order = sorted(range(len(originals)), key=lambda i: originals[i].path)
    hashes = [known[originals[i].sha256] for i in order]
    near: dict[int, dict[int, int]] = {}
    for a, ha in enumerate(hashes):
        for b, hb in enumerate(hashes):
            bits = min(bin(ha.direct ^ hb.direct).count("1"), bin(ha.direct ^ hb.mirror).count("1"))
            if a != b and bits <= max_distance:
                near.setdefault(a, {})[b] = min(bits, near.get(a, {}).get(b, bits))
                near.setdefault(b, {})[a] = near[a][b]
    left, stars = set(near), []
    while left:

        def rank(n: int) -> tuple[int, int, int]:
            rest = [bits for m, bits in near[n].items() if m in left]
            return -sum(8 - min(bits, 7) for bits in rest), len(rest), n

        centre = min(left, key=rank)
        left.discard(centre)
        members = sorted(m for m in near[centre] if m in left)
        left.difference_update(members)
        if members:
            stars.append(sorted(originals[order[i]].path for i in [centre, *members]))
    return sorted(stars)


def test_look_alike_clusters_follow_the_star_rule() -> None:
    originals, known = _look_alikes(families=40, per_family=12, seed=3)
    grouping = group_duplicates(Path("."), originals, DEFAULT_MAX_DISTANCE, known=known)
    found = sorted(sorted(c.paths) for c in grouping.clusters)
    assert found == _stars_by_the_rule(originals, known, DEFAULT_MAX_DISTANCE)


@pytest.mark.slow
def test_near_pairs_are_held_compactly() -> None:
    """40,000 originals in families of 40 look-alikes: ~800,000 near pairs. Held as Python
    dicts they cost ~150 bytes each (a 122 MB peak); in arrays about 50."""
    import tracemalloc

    originals, known = _look_alikes(families=1_000, per_family=40, seed=5)
    tracemalloc.start()
    try:
        grouping = group_duplicates(Path("."), originals, DEFAULT_MAX_DISTANCE, known=known)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(grouping.clusters) >= 1_000
    assert peak < 60_000_000, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("threads", [1, 2])
def test_hashes_taken_while_reading_are_those_of_the_files(src: Path, threads: int) -> None:
    # A copy of a photo (one hash for both) and a truncated JPEG: its header reads, so it is
    # an original, but it does not decode, so it has no hash (the worker rejects it).
    shutil.copy(src / "brick" / "brick_03.jpg", src / "gravel" / "copied.jpg")
    (src / "gravel" / "truncated.jpg").write_bytes(faults.truncated_jpeg())
    before = threading.active_count()
    hasher = SourceHasher(threads)
    dataset = ingest(src, hasher=hasher)
    by_sha256 = hasher.finish()
    assert threading.active_count() == before  # ended: the worker pool forks after this
    from_files, decoded = hash_originals(dataset.root, dataset.originals, {})
    assert decoded == len(dataset.originals)
    assert {o.path: by_sha256[o.sha256] for o in dataset.originals if o.sha256 in by_sha256} == (
        from_files
    )
    assert "gravel/truncated.jpg" not in from_files
    assert len(by_sha256) == len({o.sha256 for o in dataset.originals}) - 1


def test_a_first_run_hashes_as_it_reads(src: Path, tmp_path: Path, small_recipe: Path) -> None:
    """Each source is read once: no hashing phase of its own, and the header's hashes are
    those of the files' bytes, whatever the worker count."""
    headers, phases = [], []

    def phase(name: str, total: int) -> Callable[[int], None]:
        phases.append(name)
        return lambda n: None

    for workers in (1, 2):
        phases.clear()
        out = tmp_path / f"out-{workers}"
        expand(src, out, replace(options(small_recipe, 0), workers=workers), phase=phase)
        assert phases == ["reading"]
        header = json.loads((out / "augment.json").read_text())
        for entry in header["holdout"]:
            assert entry["phash"] == phash_bytes((src / entry["path"]).read_bytes()).to_hex()
        headers.append(header["holdout"])
    assert headers[0] == headers[1]
