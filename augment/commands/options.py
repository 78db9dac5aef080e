"""The option groups several commands share: the holdout's (`expand`, `preview`, `inspect`)
and a labels file's columns (`expand`, `inspect`), so that each command reads them alike."""

from __future__ import annotations

from collections.abc import Callable

import click

from augment.defaults import DEFAULT_MAX_DISTANCE, DEFAULT_TEST, DEFAULT_VAL
from augment.errors import AugmentError
from augment.stages.holdout import parse_amount


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


def column_options(command: Callable[..., None]) -> Callable[..., None]:
    """A labels file's path and label columns, for names the tool does not know."""
    command = click.option(
        "--label-column",
        metavar="NAME",
        help="A labels file's label column [default: label, class, category].",
    )(command)
    return click.option(
        "--path-column",
        metavar="NAME",
        help="A labels file's image path column [default: path, file_name, filename, image...].",
    )(command)


def holdout_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options that decide the holdout and what each variant looks like. `expand` and
    `preview` share them, so a preview shows what expand writes with the same options."""
    options = [
        click.option(
            "--recipe",
            "-r",
            default="default",
            show_default=True,
            help="A bundled recipe name (see `augment recipes`), a path to a YAML file, or a "
            "pipeline albumentations saved (A.save, YAML or JSON).",
        ),
        click.option(
            "--val",
            type=_Amount(),
            help=f"Validation originals held out: a fraction per class, or a total count "
            f"[default: {DEFAULT_VAL}; none for a source already split].",
        ),
        click.option(
            "--test",
            type=_Amount(),
            help=f"Test originals held out: a fraction per class, or a total count "
            f"[default: {DEFAULT_TEST}; none for a source already split].",
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
