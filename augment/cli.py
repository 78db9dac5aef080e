"""The `augment` command line: parses arguments, calls the library, maps errors to exit codes.

Exit codes: 0 success; 1 findings (audit) or rejected inputs under --strict; 2 a usage or
input error the message explains; 130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from tqdm import tqdm

from augment import __version__
from augment.cache import prune_cache
from augment.diff import diff_outputs, format_diff
from augment.errors import AugmentError
from augment.executor import default_workers
from augment.expand import ExpandOptions, ExpandSummary, expand
from augment.holdout import parse_amount
from augment.imageio import FORMAT_CHOICES
from augment.recipe import bundled_recipes, load_recipe

EXIT_FINDINGS = 1
EXIT_INTERRUPTED = 130


class UserError(click.ClickException):
    """A domain error shown as `Error: <message>`, with the error's own exit code."""

    def __init__(self, error: AugmentError) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code


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
"""
)
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
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
    "--recipe",
    "-r",
    default="default",
    show_default=True,
    help="A bundled recipe name (see `augment recipes`) or a path to a YAML file.",
)
@click.option(
    "--val",
    default="0.1",
    show_default=True,
    type=_Amount(),
    help="Validation originals held out: a fraction per class, or a total count.",
)
@click.option(
    "--test",
    default="0.1",
    show_default=True,
    type=_Amount(),
    help="Test originals held out: a fraction per class, or a total count.",
)
@click.option(
    "--group-by",
    metavar="REGEX",
    help="Originals whose relative paths give the same match (first group) stay in one split.",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Seed for the holdout and every variant."
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
    )
    show_bar = not quiet and sys.stderr.isatty()
    bar: tqdm[None] | None = None

    def on_plan(total: int) -> None:
        nonlocal bar
        if show_bar and total:
            bar = tqdm(total=total, unit="img", desc="expand", file=sys.stderr)

    def progress(n: int) -> None:
        if bar is not None:
            bar.update(n)

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


expand_cmd.name = "expand"


def format_summary(summary: ExpandSummary) -> str:
    lines = [f"wrote {summary.out}"]
    classes = sorted({c for counts in summary.counts.values() for c in counts})
    splits = list(summary.counts)
    width = max([len(c) for c in classes] + [5])
    lines.append(f"  {'class':<{width}}  " + "  ".join(f"{s:>10}" for s in splits))
    for c in classes:
        lines.append(
            f"  {c:<{width}}  " + "  ".join(f"{summary.counts[s].get(c, 0):>10}" for s in splits)
        )
    lines.append(
        f"  {'total':<{width}}  "
        + "  ".join(f"{sum(summary.counts[s].values()):>10}" for s in splits)
    )
    originals = ", ".join(f"{n} {s}" for s, n in summary.originals.items())
    lines.append(f"originals: {originals}")
    rate = summary.written / summary.seconds if summary.seconds > 0 else 0.0
    lines.append(
        f"{summary.written} files written, {summary.reused} unchanged, {summary.removed} "
        f"stale removed in {summary.seconds:.1f}s ({rate:.0f} images/s)"
    )
    for label in summary.too_small:
        lines.append(f"note: class {label!r} has fewer than 3 originals: all kept in train")
    if summary.rejected:
        lines.append(f"rejected {len(summary.rejected)} input files:")
        lines.extend(f"  {r.path}: {r.reason}" for r in summary.rejected)
    return "\n".join(lines)


@main.command()
def recipes() -> None:
    """List the bundled recipes with their descriptions.

    Example: augment recipes
    """
    for name in bundled_recipes():
        try:
            description = load_recipe(name).description.splitlines()[0]
        except (AugmentError, IndexError):
            description = ""
        click.echo(f"{name:<14} {description}")


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
