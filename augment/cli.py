"""The `augment` command line: parses arguments, calls the library, maps errors to exit codes.

Exit codes: 0 success; 1 findings (audit) or rejected inputs under --strict (the output is
still written, the good files processed); 2 a usage or input error the message explains (bad
source, recipe or output folder, disk full, permission denied); 130 interrupted (rerun the
same command to resume). No user error shows a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from augment import __version__
from augment.commands.diff import diff_outputs, format_diff
from augment.commands.report import class_count_table, class_width
from augment.defaults import (
    DEFAULT_MAX_DISTANCE,
    DEFAULT_MAX_PIXELS,
    FORMAT_CHOICES,
    REENCODE_MIN_PSNR,
    default_workers,
)
from augment.errors import AugmentError
from augment.expand import expand
from augment.model import ExpandOptions, ExpandSummary
from augment.recipe.source import bundled_recipes
from augment.rerun import heap
from augment.stages.holdout import parse_amount

if TYPE_CHECKING:
    from tqdm import tqdm

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


class _Amount(click.ParamType):
    name = "FRACTION|COUNT"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | int:
        if isinstance(value, (int, float)):
            return value
        try:
            return parse_amount(str(value), f"--{param.name if param else 'amount'}")
        except AugmentError as exc:
            self.fail(str(exc), param, ctx)


def holdout_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options that decide the holdout and what each variant looks like. `expand` and
    `preview` share them, so a preview shows what expand writes with the same options."""
    options = [
        click.option(
            "--recipe",
            "-r",
            default="default",
            show_default=True,
            help="A bundled recipe name (see `augment recipes`) or a path to a YAML file.",
        ),
        click.option(
            "--val",
            default="0.1",
            show_default=True,
            type=_Amount(),
            help="Validation originals held out: a fraction per class, or a total count.",
        ),
        click.option(
            "--test",
            default="0.1",
            show_default=True,
            type=_Amount(),
            help="Test originals held out: a fraction per class, or a total count.",
        ),
        click.option(
            "--group-by",
            metavar="REGEX",
            help="Originals whose relative paths give the same match (first group) stay in "
            "one split.",
        ),
        click.option(
            "--seed",
            default=0,
            show_default=True,
            type=int,
            help="Seed for the holdout and every variant.",
        ),
        click.option(
            "--near-duplicates",
            default=DEFAULT_MAX_DISTANCE,
            show_default=True,
            type=click.IntRange(-1, 64),
            metavar="BITS",
            help="Originals whose perceptual hashes (of 64 bits) differ by at most BITS, mirror "
            "included, are held out together; -1 turns this off (and skips the hashing).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(
    epilog="Example: augment expand sample_data/textures out/ --times 5",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="augment")
def main() -> None:
    """Offline image augmentation and dataset expansion.

    Holds out validation/test originals before any augmentation, writes an N-times
    augmented training set to disk, and records every output in a manifest with content
    hashes and lineage.
    """


@main.command(
    epilog="""\b
Examples:
  augment expand sample_data/textures out/ --times 5
  augment expand labels.csv out/ --recipe no-flip --val 0.2 --test 0.1 --seed 7
  augment expand photos/ out/ --group-by '^[^/]+/(\\w+)_' --format jpg --quality 90
  augment expand sample_data/textures out/ --recipe mixup --balance
"""
)
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@holdout_options
@click.option(
    "--times",
    "-n",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Train images per train original: the original plus N-1 variants.",
)
@click.option(
    "--no-originals",
    is_flag=True,
    help="Make all N train images augmented variants (leave the original out).",
)
@click.option(
    "--workers",
    "-j",
    type=click.IntRange(min=1),
    help=f"Worker processes [default: all cores, here {default_workers()}].",
)
@click.option(
    "--format",
    "output_format",
    default="same",
    show_default=True,
    type=click.Choice(FORMAT_CHOICES),
    help="Output image format; `same` keeps JPEG/PNG/WebP and writes others as PNG.",
)
@click.option(
    "--quality",
    default=95,
    show_default=True,
    type=click.IntRange(1, 100),
    help="JPEG/WebP quality.",
)
@click.option(
    "--balance",
    is_flag=True,
    help="Give smaller classes more variants so every class ends train with the same count "
    "(the largest class's N x originals).",
)
@click.option(
    "--max-pixels",
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Reject a source whose header declares more pixels (decompression-bomb guard).",
)
@click.option(
    "--strict",
    is_flag=True,
    help=f"Exit with code {EXIT_FINDINGS} if any input file was rejected (the rest is still done).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty folder that is not an augment output; nothing in it is "
    "deleted or overwritten (the run stops if a file would be).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
def expand_cmd(
    src: Path,
    out: Path,
    times: int,
    no_originals: bool,
    recipe: str,
    val: float | int,
    test: float | int,
    group_by: str | None,
    seed: int,
    workers: int | None,
    output_format: str,
    quality: int,
    balance: bool,
    max_pixels: int,
    strict: bool,
    force: bool,
    near_duplicates: int,
    quiet: bool,
) -> None:
    """Hold out originals, augment train N times, and write OUT with a manifest.

    SRC is a folder of class folders (SRC/<class>/<image>) or a labels file (CSV or JSONL
    with path,label[,group] columns, paths relative to the file). Rerunning the same command
    only does what changed.
    """
    options = ExpandOptions(
        times=times,
        no_originals=no_originals,
        recipe=recipe,
        val=val,
        test=test,
        group_by=group_by,
        seed=seed,
        workers=workers,
        output_format=output_format,
        quality=quality,
        balance=balance,
        max_pixels=max_pixels,
        force=force,
        near_duplicates=near_duplicates,
    )
    show_bar = not quiet and sys.stderr.isatty()
    bar: tqdm[Any] | None = None

    def on_plan(total: int) -> None:
        nonlocal bar
        if show_bar and total:
            # No monitor thread: worker processes are forked after this, best with no other
            # thread running (see executor.start_method).
            from tqdm import tqdm

            tqdm.monitor_interval = 0
            bar = tqdm(total=total, unit="img", desc="expand", file=sys.stderr)

    def progress(n: int) -> None:
        if bar is not None:
            bar.update(n)

    # This process is the tool's own: its pixel work keeps image buffers on the heap (a
    # program calling expand() keeps its allocator as it was).
    heap.reuse_image_buffers()
    try:
        summary = expand(src, out, options, progress=progress, on_plan=on_plan)
    except AugmentError as exc:
        raise UserError(exc) from None
    except KeyboardInterrupt:
        click.echo(
            "\ninterrupted: finished work is kept; rerun the same command to resume", err=True
        )
        sys.exit(EXIT_INTERRUPTED)
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        click.echo(format_summary(summary))
    if strict and summary.rejected:
        click.echo(
            f"--strict: {len(summary.rejected)} input files rejected (listed in "
            f"{summary.out / 'augment.json'} under 'rejected')",
            err=True,
        )
        sys.exit(EXIT_FINDINGS)


expand_cmd.name = "expand"


def format_summary(summary: ExpandSummary) -> str:
    lines = [f"wrote {summary.out}"]
    lines.extend(class_count_table(summary.counts))
    if summary.balanced:
        classes = sorted({c for counts in summary.counts.values() for c in counts})
        width = class_width(classes)
        lines.append("balanced train: originals -> images per class")
        after = summary.counts.get("train", {})
        for c in classes:
            before = summary.train_originals.get(c, 0)
            lines.append(f"  {c:<{width}}  {before:>10} -> {after.get(c, 0)}")
    originals = ", ".join(f"{n} {s}" for s, n in summary.originals.items())
    lines.append(f"originals: {originals}")
    rate = ""  # a rate only means something for a run that wrote images
    if summary.written and summary.seconds > 0:
        rate = f" ({summary.written / summary.seconds:.0f} images/s)"
    lines.append(
        f"{summary.written} files written, {summary.reused} unchanged, {summary.removed} "
        f"stale removed in {summary.seconds:.1f}s{rate}"
    )
    if summary.duplicates:
        lines.append(f"duplicate originals kept in one split ({len(summary.duplicates)} clusters):")
        for cluster in summary.duplicates:
            names = cluster.labels
            filed = f" (filed under classes {', '.join(names)})" if len(names) > 1 else ""
            lines.append(f"  {', '.join(cluster.paths)}{filed}")
    for conflict in summary.duplicate_conflicts:
        placed = ", ".join(f"{p} ({s})" for p, s in sorted(conflict.previous_splits.items()))
        lines.append(
            f"warning: duplicate originals {', '.join(conflict.paths)} were split apart by an "
            f"earlier run and stay where they are: {placed}; `augment audit` reports the leak"
        )
    for g in summary.large_groups:
        lines.append(
            f"warning: class {g.label!r}: one group holds {g.size} of its {g.class_size} "
            f"originals (more than a tenth), all in {g.split}: group {g.group!r}"
        )
    for q in summary.quota_shifts:
        moved = ", ".join(f"{s} {n:+d}" for s, n in q.moved.items())
        quotas = "/".join(str(n) for n in q.quotas.values())
        counts = "/".join(str(n) for n in q.counts.values())
        lines.append(
            f"note: class {q.label!r}: group {q.group!r} ({q.size} originals) is too large for "
            f"its quotas: the class's splits moved by {moved} (train/validation/test "
            f"{counts} instead of {quotas})"
        )
    for label in summary.too_small:
        lines.append(f"note: class {label!r} has fewer than 3 originals: all kept in train")
    if summary.rejected:
        lines.append(
            f"rejected {len(summary.rejected)} input files "
            f"(also in {summary.out / 'augment.json'}, under 'rejected'):"
        )
        lines.extend(f"  {r.path}: {r.reason}" for r in summary.rejected)
    return "\n".join(lines)


@main.command(
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
    val: float | int,
    test: float | int,
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
        val=val,
        test=test,
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


@main.command()
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


@main.command(
    epilog="""\b
Examples:
  augment audit out/
  augment audit out/ --json > audit.json
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
    "--workers",
    "-j",
    type=click.IntRange(min=1),
    help=f"Decoding threads [default: all cores, here {default_workers()}].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def audit(
    out: Path | None,
    splits: dict[str, Path],
    max_distance: int,
    min_psnr: float,
    workers: int | None,
    as_json: bool,
) -> None:
    """Audit a split dataset for leakage between splits and for integrity.

    OUT is an `augment expand` output: checks lineage, exact and near duplicates across
    splits, integrity and balance against its manifest. With --split instead, checks any
    folders of class folders for duplicates across splits and balance. Exit 0 clean,
    1 findings, 2 cannot run.
    """
    from augment.commands.audit import AuditOptions, audit_output, audit_splits, format_report

    options = AuditOptions(max_distance=max_distance, min_psnr=min_psnr, workers=workers)
    if (out is None) == (not splits):
        raise click.UsageError("give either OUT or --split NAME=DIR options, not both")
    try:
        report = audit_output(out, options) if out is not None else audit_splits(splits, options)
    except AugmentError as exc:
        raise UserError(exc) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(format_report(report))
    sys.exit(0 if report.clean else EXIT_FINDINGS)


@main.command(
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


@main.command(
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
