"""The `augment` command line: parses arguments, calls the library, maps errors to exit codes.

Exit codes: 0 success; 1 findings (audit) or rejected inputs under --strict (the output is
still written, the good files processed); 2 a usage or input error the message explains (bad
source, recipe or output folder, disk full, permission denied); 130 interrupted, 143 and
129 stopped by SIGTERM and SIGHUP (rerun the same command to resume). No user error shows a
traceback.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from augment import __version__
from augment.commands.cli import (
    EXIT_FINDINGS,
    UserError,
    audit,
    column_options,
    diff_cmd,
    holdout_options,
    inspect_cmd,
    preview,
    prune_cache_cmd,
    recipes,
)
from augment.commands.progress import phase_bars
from augment.commands.report import format_summary
from augment.defaults import (
    DEFAULT_MAX_PIXELS,
    FORMAT_CHOICES,
    default_workers,
)
from augment.errors import AugmentError
from augment.interrupts import interrupt_in, say_interrupted
from augment.model import ExpandOptions, ExpandSummary
from augment.rerun import heap
from augment.run import expand
from augment.stores.url import is_url

if TYPE_CHECKING:
    from tqdm import tqdm

    from augment.stages.executor import Executor

# Commands import what only they use (audit, preview, recipes, prune-cache) when they run,
# and `expand` imports its full run only when there is one: numpy, OpenCV, Pillow and
# albumentations are most of a command's start-up (~0.5 s), which `--help`, `diff` and a
# rerun that changes nothing do without.


class _Tool(click.Group):
    """click turns a Ctrl-C that lands in its own code (parsing the arguments, between the
    command and its exit) into "Aborted!" and exit 1: here it ends as every other interrupt
    does, with the message and 130 (augment/interrupts.py)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("standalone_mode", True) is False:  # a caller that handles it all
            return super().main(*args, **kwargs)
        try:
            code = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.Abort as exc:
            interrupt = interrupt_in(exc)
            if interrupt is None:
                click.echo("Aborted!", err=True)
                sys.exit(1)
            sys.exit(say_interrupted(interrupt))
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(
    cls=_Tool,
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
  augment expand kaggle_set/ out/ --resplit --val 0.2     # pool its train/val/test, split again
"""
)
# Text, not Path: SRC and OUT may be store URLs (s3://bucket/prefix), which Path would mangle.
@click.argument("src", type=click.Path())
@click.argument("out", type=click.Path())
@holdout_options
@column_options
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
    "--executor",
    default="local",
    show_default=True,
    type=click.Choice(["local", "ray"]),
    help="Where workers run: a local process pool, or Ray (the `ray` extra): a private "
    "local cluster of --workers CPUs, or the cluster at --ray-address.",
)
@click.option(
    "--ray-address",
    metavar="ADDR",
    help="With --executor ray: join the running Ray cluster at ADDR (host:port) instead of "
    "starting a local one. A cluster is never joined without it.",
)
@click.option(
    "--output-format",
    "layout",
    default="folders",
    show_default=True,
    type=click.Choice(["folders", "webdataset", "parquet"]),
    help="Write the outputs into shards in OUT/shards/ instead of folders: WebDataset tar "
    "files or Parquet (image bytes and the manifest's columns). A sample's shard follows "
    "from its source's path, so a rerun rewrites only the shards whose sources changed.",
)
@click.option(
    "--shard-size",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Samples per shard, on average, with --output-format webdataset|parquet: sets "
    "each split's shard count on the first run (kept in augment.json; another size re-shards).",
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
    type=click.Choice(["classes", "instances"]),
    is_flag=False,
    flag_value="classes",
    default=None,
    help="Give smaller classes more variants so every class ends train with the same count "
    "(the largest class's N x originals); `--balance instances` (annotated sets): variants "
    "per original so per-class object counts approach equal (docs/annotations.md).",
)
@click.option(
    "--annotations",
    type=click.Choice(["yolo", "coco", "voc", "masks"]),
    default=None,
    help="Annotated sets: write the annotations in this format (default: the input's); "
    "what each conversion keeps: docs/annotations.md.",
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
@click.option(
    "--resplit",
    is_flag=True,
    help="Hold out again: pool a source already split (train/, val/, test/ folders or a "
    "split column), or re-split an OUT split with other --seed/--val/--test.",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="No progress bar and no summary (rejections still shown)."
)
def expand_cmd(
    src: str,
    out: str,
    times: int,
    no_originals: bool,
    recipe: str,
    val: float | int | None,
    test: float | int | None,
    group_by: str | None,
    seed: int,
    workers: int | None,
    executor: str,
    ray_address: str | None,
    layout: str,
    shard_size: int,
    output_format: str,
    quality: int,
    balance: str | None,
    annotations: str | None,
    max_pixels: int,
    strict: bool,
    force: bool,
    near_duplicates: int,
    path_column: str | None,
    label_column: str | None,
    resplit: bool,
    quiet: bool,
) -> None:
    """Hold out originals, augment train N times, and write OUT with a manifest.

    SRC is a folder of class folders (SRC/<class>/<image>), a folder already split
    (SRC/train|val|test/<class>/<image>: that split is kept), or a labels file (CSV or
    JSONL with path,label[,group][,split] columns, paths relative to the file). `augment
    inspect SRC` shows what it sees. Rerunning the same command only does what changed.
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
        balance="instances" if balance == "instances" else balance is not None,
        max_pixels=max_pixels,
        force=force,
        near_duplicates=near_duplicates,
        resplit=resplit,
        path_column=path_column,
        label_column=label_column,
        annotations=annotations,
        layout=layout,
        shard_size=shard_size,
    )
    run_on = _executor(executor, ray_address, workers)
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
        phase = phase_bars(show_bar)
        run = expand
        if is_url(src) or is_url(out):
            from augment.stores.run import expand_stores as run  # the `s3` extra for s3://
        summary = run(
            src, out, options, executor=run_on, progress=progress, on_plan=on_plan, phase=phase
        )
    except AugmentError as exc:
        raise UserError(exc) from None
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP (augment/interrupts.py)
        sys.exit(say_interrupted(exc))
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        click.echo(format_summary(summary))
    _report_rejections(summary)
    if strict and summary.rejected:
        click.echo(
            f"--strict: {len(summary.rejected)} input files rejected (listed in "
            f"{summary.out / 'augment.json'} under 'rejected')",
            err=True,
        )
        sys.exit(EXIT_FINDINGS)


def _report_rejections(summary: ExpandSummary) -> None:
    """On stderr, even with -q: a rejection is never silent."""
    if summary.rejected:
        first = next(iter(summary.rejected))
        click.echo(
            f"augment: {len(summary.rejected)} input files rejected (first: {first.path}: "
            f"{first.reason}); all are listed in {summary.out / 'augment.json'}",
            err=True,
        )


expand_cmd.name = "expand"


def _executor(name: str, ray_address: str | None, workers: int | None) -> Executor | None:
    """The executor --executor names (None: expand's default, the local pool)."""
    if name != "ray":
        if ray_address is not None:
            raise click.UsageError("--ray-address needs --executor ray")
        return None
    if ray_address is not None and workers is not None:
        raise click.UsageError("--workers sizes a local Ray cluster; a joined one uses its own")
    from augment.stages.ray_executor import ray_executor

    try:
        return ray_executor(workers or default_workers(), ray_address)
    except AugmentError as exc:
        raise UserError(exc) from None


for _command in (preview, recipes, audit, diff_cmd, prune_cache_cmd, inspect_cmd):
    main.add_command(_command)
