"""`augment preview`: a contact sheet to judge a recipe by eye before a long run.

One row per sampled original: the preprocessed original, then k variants, each captioned
with its class (and the weights of a mixed image). The sheet is made by the same plan and the
same worker code as `expand` (`Worker.render`), with the same holdout and seed, so a cell
shows the very pixels `expand` would write for that original and variant (before encoding).
With `split` validation or test it shows the preprocessing alone, which is all those get.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from augment.commands.preview_boxes import draw_objects, overlay_mask
from augment.defaults import DEFAULT_MAX_DISTANCE, DEFAULT_MAX_PIXELS
from augment.errors import DatasetError, OutputError
from augment.files import source_folder_of, source_folders, write_atomic
from augment.recipe.annotated import check_recipe_for_task
from augment.recipe.build import Recipe, load_recipe
from augment.stages.duplicates import group_duplicates
from augment.stages.holdout import SPLITS, Holdout, assign_splits
from augment.stages.ingest import ingest
from augment.stages.multilabel import stratify
from augment.stages.plan import Fingerprints, Plan, SourceTask
from augment.stages.worker import Rendered, RunContext, Worker

# Layout, in pixels: a cell is a `cell` x `cell` square with a caption strip under it.
PAD = 6
CAPTION = 28
HEADER = 20
BACKGROUND = (255, 255, 255)
TEXT = (40, 40, 40)
MIXED_TEXT = (150, 40, 20)


@dataclass(frozen=True)
class PreviewOptions:
    recipe: str = "default"
    rows: int = 4
    variants: int = 5  # k variants after the preprocessed original (train only)
    split: str = "train"
    seed: int = 0
    val: float | int = 0.1  # the holdout, as expand would make it with the same options
    test: float | int = 0.1
    group_by: str | None = None
    near_duplicates: int = DEFAULT_MAX_DISTANCE  # duplicate originals held out together
    cell: int = 160  # each image is scaled to fit a cell x cell square
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Cell:
    source: str  # the original's path relative to SRC
    variant: int
    label: str
    soft_label: dict[str, float] | None
    box: tuple[int, int, int, int]  # where the image sits on the sheet: x0, y0, x1, y1


@dataclass
class PreviewSheet:
    image: Image.Image
    rows: list[list[Cell]] = field(default_factory=list)

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, "PNG", optimize=True)
        return buf.getvalue()


def sheet_size(rows: int, columns: int, cell: int) -> tuple[int, int]:
    """(width, height) of a sheet with this grid."""
    return (PAD + columns * (cell + PAD), HEADER + rows * (cell + CAPTION + PAD) + PAD)


def preview(src: Path, options: PreviewOptions) -> PreviewSheet:
    """Build the contact sheet for SRC under a recipe; deterministic for a seed."""
    if options.split not in SPLITS:
        raise DatasetError(f"--split must be one of {', '.join(SPLITS)}, not {options.split!r}")
    if options.rows < 1 or options.variants < 0 or options.cell < 8:
        raise OutputError("preview needs at least 1 row, 0 or more variants and cells of 8 px")
    recipe = load_recipe(options.recipe)
    dataset = ingest(src, options.group_by, options.max_pixels)
    recipe.check_classes(dataset.classes)
    check_recipe_for_task(recipe, dataset.task)
    # As expand holds out a fresh output: duplicate originals grouped, then split.
    originals = group_duplicates(dataset.root, dataset.originals, options.near_duplicates).originals
    if dataset.task == "classification":
        holdout = assign_splits(originals, options.val, options.test, options.seed, {})
    else:  # an annotated set: as expand holds it out (stages/multilabel.py)
        holdout = Holdout(stratify(originals, options.val, options.test, options.seed), [])
    if dataset.given_splits:  # a source already split: its own split, as expand keeps it
        holdout = Holdout({o.path: dataset.given_splits[o.path] for o in originals}, [])
    fingerprints = Fingerprints(
        preprocess=recipe.preprocess_fingerprint("png", 95),
        recipe=recipe.fingerprint("png", 95),
    )
    variants = tuple(range(0, options.variants + 1))
    plan = Plan(
        originals,
        holdout.split_of,
        # An annotated image's label is its dominant class (or it has no objects).
        dict.fromkeys({*dataset.classes, *(o.label for o in originals)}, variants),
        fingerprints,
        options.seed,
        "png",
        mix=recipe.mix,
        mix_size=recipe.preprocess.size,
    )
    candidates = [t for t in plan.tasks() if t.split == options.split]
    if not candidates:
        raise DatasetError(f"no {options.split} originals in {src} to preview")
    ctx = RunContext(
        src_root=dataset.root,
        out=Path(),  # render never writes
        recipe=recipe,
        fingerprints=fingerprints,
        output_format="png",
        quality=95,
        max_pixels=options.max_pixels,
        annotations=None if dataset.task == "classification" else dataset.kind,
        names=tuple(dataset.names),
    )
    worker = Worker(ctx)
    rows: list[list[Rendered]] = []
    for task in sample_rows(candidates, options.seed):
        rendered = [r for r in worker.render(task) if isinstance(r, Rendered)]
        if rendered:  # an unreadable original is skipped; the next one takes its row
            rows.append(rendered)
        if len(rows) == options.rows:
            break
    return draw_sheet(rows, recipe, options, dataset.names)


def sample_rows(tasks: Sequence[SourceTask], seed: int) -> list[SourceTask]:
    """Every task, ordered so the first rows cover as many classes as possible: classes
    take turns, and within a class the order follows a hash of (seed, sha256)."""
    by_class: dict[str, list[SourceTask]] = {}
    for task in tasks:
        by_class.setdefault(task.original.label, []).append(task)
    for members in by_class.values():
        members.sort(key=lambda t: _rank(seed, t.original.sha256, t.original.path))
    order: list[SourceTask] = []
    depth = max(len(m) for m in by_class.values())
    for i in range(depth):
        order.extend(by_class[c][i] for c in sorted(by_class) if i < len(by_class[c]))
    return order


def draw_sheet(
    rows: list[list[Rendered]],
    recipe: Recipe,
    options: PreviewOptions,
    names: Sequence[str] = (),  # an annotated set's class names (a mask's ids)
) -> PreviewSheet:
    columns = max(len(r) for r in rows)
    width, height = sheet_size(len(rows), columns, options.cell)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font()
    header = f"recipe {recipe.name} - seed {options.seed} - {options.split}"
    draw.text((PAD, 4), _fit_text(draw, header, width - 2 * PAD, font), fill=TEXT, font=font)
    cells: list[list[Cell]] = []
    for r, row in enumerate(rows):
        top = HEADER + r * (options.cell + CAPTION + PAD)
        cells.append([])
        for c, item in enumerate(row):
            left = PAD + c * (options.cell + PAD)
            thumb = _thumbnail(item.pixels, options.cell)
            if item.mask is not None:
                thumb = overlay_mask(thumb, item.mask, names)
            x0 = left + (options.cell - thumb.shape[1]) // 2
            y0 = top + (options.cell - thumb.shape[0]) // 2
            sheet.paste(Image.fromarray(thumb, "RGB"), (x0, y0))
            if item.annotation is not None:  # boxes, class-coloured and labelled
                scale = thumb.shape[1] / item.pixels.shape[1]
                draw_objects(draw, item.annotation["objects"], (x0, y0), scale, font)
            first, second = _caption(item)
            text_top = top + options.cell + 2
            colour = MIXED_TEXT if item.soft_label else TEXT
            for i, line in enumerate((first, second)):
                line = _fit_text(draw, line, options.cell, font)
                draw.text((left, text_top + 12 * i), line, fill=colour, font=font)
            cells[-1].append(
                Cell(
                    source=item.sources[0]["path"],
                    variant=item.job.variant,
                    label=item.label,
                    soft_label=item.soft_label,
                    box=(x0, y0, x0 + thumb.shape[1], y0 + thumb.shape[0]),
                )
            )
    return PreviewSheet(image=sheet, rows=cells)


def write_preview(src: Path, target: Path, options: PreviewOptions) -> PreviewSheet:
    if target.suffix.lower() != ".png":
        raise OutputError(f"the preview is a PNG: name it *.png, not {target.name}")
    if target.is_dir():
        raise OutputError(f"{target} is a folder; give the PNG's file name")
    root = src.parent if src.is_file() else src  # a labels file's folder is the source
    # By identity, not by path: a link or a bind mount can lead into the source.
    if source_folder_of(target.absolute().parent, source_folders(root)) is not None:
        raise OutputError(
            f"{target} is inside the source {root}; augment never writes into the source "
            "(a later expand would take the sheet for an image): choose a path outside it"
        )
    sheet = preview(src, options)
    write_atomic(target, sheet.png())
    return sheet


def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _caption(item: Rendered) -> tuple[str, str]:
    if item.job.variant == 0:
        return Path(item.sources[0]["path"]).name, item.label
    if item.soft_label:
        # The weights on the first line, so a narrow cell still shows them; the dominant
        # class (the folder the file goes to) comes first.
        mix = next(p["transform"] for p in item.params if p["transform"] in ("MixUp", "CutMix"))
        parts = sorted(item.soft_label.items(), key=lambda kv: (-kv[1], kv[0]))
        weights = "/".join(_weight(w) for _, w in parts)
        return f"{mix} {weights}", " + ".join(c for c, _ in parts)
    return f"v{item.job.variant}", item.label


def _weight(weight: float) -> str:
    """A weight as short as possible without showing a real mix as 0 or 1."""
    for digits in (2, 3, 4):
        text = f"{weight:.{digits}f}"
        if 0 < float(text) < 1:
            break
    return text.removeprefix("0")


def _thumbnail(pixels: np.ndarray, cell: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    scale = min(cell / width, cell / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return pixels
    # Area averaging to shrink; nearest to enlarge, so small images show their real pixels.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST_EXACT
    return cv2.resize(pixels, size, interpolation=interpolation)


def _fit_text(
    draw: ImageDraw.ImageDraw,
    text: str,
    width: int,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _rank(seed: int, sha: str, path: str) -> str:
    return hashlib.sha256(f"preview\x00{seed}\x00{sha}\x00{path}".encode()).hexdigest()
