"""The click commands other than `expand`: preview, recipes, audit, diff, prune-cache,
inspect, and what every command shares (the domain error shown as a message, the exit
codes; the shared option groups are in `options`). `augment/cli.py` puts them in the
`augment` group."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from augment.commands.options import column_options, holdout_options
from augment.commands.progress import phase_bars
from augment.defaults import (
    DEFAULT_MAX_DISTANCE,
    DEFAULT_TEST,
    DEFAULT_VAL,
    REENCODE_MIN_PSNR,
    default_workers,
)
from augment.errors import AugmentError
from augment.recipe.source import bundled_recipes

# Commands import what only they use (audit, preview, recipes, prune-cache) when they run,
# and `expand` imports its full run only when there is one: numpy, OpenCV, Pillow and
# albumentations are most of a command's start-up (~0.5 s), which `--help`, `diff` and a
# rerun that changes nothing do without.

EXIT_FINDINGS = 1
EXIT_INTERRUPTED = 130


class UserError(click.ClickException):
    """A domain error shown as `Error: <message>`, with the error's own exit code."""

    def __init__(self, error: AugmentError) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code  # type: ignore[misc]  # click reads it per instance


@click.command(
    epilog="""\b
Examples:
  augment preview sample_data/textures --recipe default -o preview.png
  augment preview sample_data/digits --recipe no-flip --rows 6 --variants 8 --cell 96
  augment preview sample_data/textures --split validation     # preprocessing only
"""
)
@click.argument("src", type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    default="preview.png",
    show_default=True,
    type=click.Path(path_type=Path),
    help="The PNG to write.",
)
@holdout_options
@click.option(
    "--rows",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Originals shown, one per row, classes taking turns.",
)
@click.option(
    "--variants",
    "-k",
    default=5,
    show_default=True,
    type=click.IntRange(min=0),
    help="Augmented variants after each preprocessed original (train only).",
)
@click.option(
    "--split",
    default="train",
    show_default=True,
    type=click.Choice(["train", "validation", "test"]),
    help="Which split's originals to show; validation/test show preprocessing only.",
)
@click.option(
    "--cell",
    default=160,
    show_default=True,
    type=click.IntRange(min=8),
    help="Each image is scaled to fit a square of this many pixels.",
)
def preview(
    src: Path,
    output: Path,
    recipe: str,
    rows: int,
    variants: int,
    split: str,
    seed: int,
    val: float | int | None,
    test: float | int | None,
    group_by: str | None,
    near_duplicates: int,
    cell: int,
) -> None:
    """Write a contact sheet of a recipe's variants, to judge it by eye before a long run.

    One row per sampled original: the preprocessed original, then the variants expand would
    make for it with the same seed and holdout, captioned with the class (and the weights of
    mixed images). The pixels come from the very code expand runs.
    """
    from augment.commands.preview import PreviewOptions, write_preview

    options = PreviewOptions(
        recipe=recipe,
        rows=rows,
        variants=variants,
        split=split,
        seed=seed,
        val=DEFAULT_VAL if val is None else val,
        test=DEFAULT_TEST if test is None else test,
        group_by=group_by,
        near_duplicates=near_duplicates,
        cell=cell,
    )
    try:
        sheet = write_preview(src, output, options)
    except AugmentError as exc:
        raise UserError(exc) from None
    width, height = sheet.image.size
    click.echo(f"wrote {output} ({width}x{height}, {len(sheet.rows)} rows)")


@click.command()
def recipes() -> None:
    """List the bundled recipes with their descriptions.

    Example: augment recipes
    """
    from augment.recipe.build import load_recipe

    for name in bundled_recipes():
        try:
            description = load_recipe(name).description.splitlines()[0]
        except (AugmentError, IndexError):
            description = ""
        click.echo(f"{name:<14} {description}")


def _split_option(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Path]:
    splits: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise click.BadParameter(f"expected NAME=DIR, got {value!r}", ctx, param)
        if name in splits:
            raise click.BadParameter(f"split {name!r} given twice", ctx, param)
        splits[name] = Path(folder)
    return splits


@click.command(
    epilog="""\b
Examples:
  augment audit out/
  augment audit out/ --json > audit.json
  augment audit out/ --source SRC
  augment audit out/ --no-crop-search     # whole images only: faster at scale
  augment audit --split train=export/train --split validation=export/valid
"""
)
@click.argument("out", required=False, type=click.Path(path_type=Path))
@click.option(
    "--split",
    "splits",
    multiple=True,
    metavar="NAME=DIR",
    callback=_split_option,
    help="Audit folders split by another tool instead of an augment output (repeat; "
    "`train` is the training split). Runs the duplicate and balance checks.",
)
@click.option(
    "--max-distance",
    default=DEFAULT_MAX_DISTANCE,
    show_default=True,
    type=click.IntRange(0, 64),
    metavar="BITS",
    help="Near duplicates: largest pHash Hamming distance (of 64 bits) that counts.",
)
@click.option(
    "--min-psnr",
    default=REENCODE_MIN_PSNR,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Exact duplicates: same-size images whose 4x4 block means agree to this PSNR (dB) "
    "are one image re-encoded.",
)
@click.option(
    "--crop-search/--no-crop-search",
    default=True,
    help="Near duplicates: also search for crops and shifted copies of an image in another "
    "split (crop-window hashes, then a pixel check). --no-crop-search compares whole images "
    "only, at a fraction of the time and memory, and the report says so. "
    "[default: --crop-search]",
)
@click.option(
    "--workers",
    "-j",
    type=click.IntRange(min=1),
    help=f"Decoding threads [default: all cores, here {default_workers()}].",
)
@click.option(
    "--source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="An annotated output's SRC: held-out objects compared with the originals' labels.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def audit(
    out: Path | None,
    splits: dict[str, Path],
    max_distance: int,
    min_psnr: float,
    crop_search: bool,
    workers: int | None,
    source: Path | None,
    as_json: bool,
) -> None:
    """Audit a split dataset for leakage between splits and for integrity.

    OUT is an `augment expand` output: checks lineage, exact and near duplicates across
    splits, integrity and balance against its manifest. With --split instead, checks any
    folders of class folders for duplicates across splits and balance. Exit 0 clean,
    1 findings, 2 cannot run.
    """
    from augment.commands.audit import AuditOptions, audit_output, audit_splits, format_report

    options = AuditOptions(max_distance, min_psnr, workers, source, crop_search=crop_search)
    if out is None and not splits:
        raise click.UsageError(
            "give the output folder to audit (augment audit OUT), or --split NAME=DIR "
            "options for folders split by another tool"
        )
    if out is not None and splits:
        raise click.UsageError("give either OUT or --split NAME=DIR options, not both")
    try:
        phase = phase_bars(sys.stderr.isatty())
        report = audit_output(out, options, phase) if out else audit_splits(splits, options, phase)
    except AugmentError as exc:
        raise UserError(exc) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(format_report(report))
    sys.exit(0 if report.clean else EXIT_FINDINGS)


@click.command(
    "diff",
    epilog="""\b
Examples:
  augment diff out_v1/ out_v2/
  augment diff old/manifest.jsonl out/ --json
  augment diff out_v1/ out_v2/ --exit-code || echo "outputs differ"
""",
)
@click.argument("old", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the difference as JSON.")
@click.option("--exit-code", is_flag=True, help="Exit with 1 when the outputs differ.")
def diff_cmd(old: Path, new: Path, as_json: bool, exit_code: bool) -> None:
    """Show which outputs were added, removed or changed between OLD and NEW.

    OLD and NEW are output folders or manifest.jsonl files. "changed" means the same
    lineage (split, label, source paths, variant) under another name or with other bytes:
    its source, the recipe or the seed changed.
    """
    from augment.commands.diff import diff_outputs, format_diff

    try:
        result = diff_outputs(old, new)
    except AugmentError as exc:
        raise UserError(exc) from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(format_diff(result, str(old), str(new)))
    if exit_code and not result.identical:
        sys.exit(EXIT_FINDINGS)


@click.command(
    "prune-cache",
    epilog="""\b
Examples:
  augment prune-cache bottlenecks/ out/ --dry-run
  augment prune-cache bottlenecks/ out/
""",
)
@click.argument("cache", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--dry-run", "-n", is_flag=True, help="Only list the stale entries; delete nothing.")
def prune_cache_cmd(cache: Path, out: Path, dry_run: bool) -> None:
    """Remove the entries of a file-name-keyed CACHE whose output is no longer in OUT.

    An entry is a file whose name starts with an output's name, such as TF-Hub retrain.py's
    bottleneck_dir/<label>/<file name>_<module>.txt or <file name>.npy. Any other file in
    CACHE is left alone.
    """
    from augment.commands.prune_cache import prune_cache

    try:
        result = prune_cache(cache, out, dry_run=dry_run)
    except AugmentError as exc:
        raise UserError(exc) from None
    verb = "would remove" if dry_run else "removed"
    for path in result.stale:
        click.echo(f"{verb} {path}")
    click.echo(
        f"{verb} {len(result.stale)} stale entries, kept {result.kept} current, "
        f"left {result.ignored} other files alone"
    )


@click.command(
    "inspect",
    epilog="""\b
Examples:
  augment inspect sample_data/textures
  augment inspect labels.csv --val 0.2 --test 0.1 --seed 7
  augment inspect photos/ --json > inspect.json
""",
)
@click.argument("src", type=click.Path(path_type=Path))
@holdout_options
@column_options
@click.option("--resplit", is_flag=True, help="Pool a source already split and hold out again.")
@click.option("--json", "as_json", is_flag=True, help="Print the inspection as JSON.")
def inspect_cmd(
    src: Path,
    recipe: str,
    val: float | int | None,
    test: float | int | None,
    group_by: str | None,
    seed: int,
    near_duplicates: int,
    path_column: str | None,
    label_column: str | None,
    resplit: bool,
    as_json: bool,
) -> None:
    """Show what `expand` would see in SRC, writing nothing: the layout, the classes and
    their originals per planned split, the files it would reject, duplicate originals."""
    from augment.commands.inspect import format_inspection, inspect_source, print_json
    from augment.model import ExpandOptions

    del recipe  # shared with expand's options; the holdout does not depend on it
    options = ExpandOptions(
        val=val,
        test=test,
        group_by=group_by,
        seed=seed,
        near_duplicates=near_duplicates,
        resplit=resplit,
        path_column=path_column,
        label_column=label_column,
    )
    try:
        found = inspect_source(src, options)
    except AugmentError as exc:
        raise UserError(exc) from None
    if as_json:
        print_json(found)
    else:
        click.echo(format_inspection(found))
