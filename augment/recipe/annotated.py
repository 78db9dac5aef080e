"""A recipe applied to an annotated image: the objects move with the pixels.

- Preprocessing (stretch, crop, pad) maps every box and outline by the same scale and offset
  the pixels get; a box the centre crop cuts is clipped, and dropped by the box rules below.
- Augmentation runs the recipe's transforms with albumentations' `BboxParams` (boxes,
  `pascal_voc` pixels) and `KeypointParams` (the outline's vertices), one draw for both.
- BOX_RULES decide when a transformed object is dropped: less than `min_visibility` of its
  area left in the image, or less than `min_area` square pixels. Boxes are clipped to the
  image. Dropped objects are counted per class in the output's record and the summary.
- Padding must not create unlabeled objects: a preprocess `reflect` or `wrap` pad shows
  copies of the objects in the border, and those copies are labelled (mirrored_copies: boxes,
  outlines and RLE masks reflected or shifted, clipped to their tile of the border, kept by
  the box rules). A `blur` pad, or a transform whose `border_mode` reflects or wraps (inside
  albumentations, where the copies cannot be followed), is refused for an annotated dataset
  (RecipeError).
- MixUp and CutMix carry boxes (stages/mixed.py): MixUp keeps both images' objects, CutMix
  the image's own outside its box and the partner's inside it. Mosaic (recipe/mosaic.py) and
  CopyPaste (recipe/copy_paste.py) are for annotated datasets only.
- A per-class policy works on the classes an image contains: a transform is used on an image
  only if its policy allows every class on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import albumentations as A
import cv2
import numpy as np

from augment.annotations.shapes import decode_rle, encode_rle
from augment.errors import RecipeError
from augment.model import LabeledObject
from augment.recipe.build import Recipe
from augment.recipe.policy import POLICY_KEYS, _policy_allows, short_name
from augment.recipe.preprocess import Preprocess, _fit_inside, apply_preprocess

BOX_RULES: dict[str, Any] = {"min_visibility": 0.25, "min_area": 4.0, "clip": True}
# Preprocess pads whose copies of the objects are labelled (mirrored_copies); `blur` shows the
# whole image blurred, which no box describes: refused.
MIRRORING_PADS = ("reflect", "wrap")
_MIRRORING_BORDERS = {cv2.BORDER_REFLECT, cv2.BORDER_REFLECT_101, cv2.BORDER_WRAP}
_BORDER_NAMES = {cv2.BORDER_REFLECT: "reflect", cv2.BORDER_REFLECT_101: "reflect_101",
                 cv2.BORDER_WRAP: "wrap"}  # fmt: skip


def check_recipe_for_task(recipe: Recipe, task: str) -> None:
    """An annotated set's recipe makes no unlabeled objects; a classification set's has no
    Mosaic (four classes have no one folder) and no CopyPaste (it has no instances)."""
    if task != "classification":
        check_annotated_recipe(recipe)
        return
    for kind, name in (("mosaic", "Mosaic"), ("copypaste", "CopyPaste")):
        if any(spec.kind == kind for spec in recipe.mix):
            raise RecipeError(
                f"recipe {recipe.name}: {name} is for annotated datasets (boxes, outlines, "
                "masks); for a classification set use CutMix or MixUp"
            )


def check_annotated_recipe(recipe: Recipe) -> None:
    """Refuse what would create unlabeled objects or lose boxes (see the module's doc)."""
    advice = "annotated datasets need a pad that shows no image content"
    spec = recipe.preprocess
    if spec.size and spec.fit == "pad" and spec.pad_mode == "blur":
        raise RecipeError(
            f"recipe {recipe.name}: preprocess pad_mode 'blur' shows the image blurred in the "
            f"border, objects without a box; {advice} (pad_mode: constant, edge, or reflect "
            "or wrap, whose mirrored objects are labelled)"
        )
    for entry in _entries(recipe.augment):
        border = entry.get("border_mode")
        if border in _MIRRORING_BORDERS:
            raise RecipeError(
                f"recipe {recipe.name}: {short_name(entry)} border_mode "
                f"{_BORDER_NAMES[border]!r} mirrors objects into the border, where they have "
                f"no box; {advice} (border_mode: constant)"
            )


def _entries(entry: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    yield entry
    for child in entry.get("transforms", ()):
        yield from _entries(child)


def for_classes(entry: dict[str, Any], labels: Sequence[str], root: bool = False) -> dict | None:
    """policy.for_class for an image holding several classes: an entry stays only if its
    policy allows every one of them."""
    if not root and not all(_policy_allows(entry, label) for label in labels):
        return None
    out = {k: v for k, v in entry.items() if k not in POLICY_KEYS}
    if "transforms" in entry:
        children = [for_classes(c, labels) for c in entry["transforms"]]
        out["transforms"] = [c for c in children if c is not None]
        if not out["transforms"] and not root:
            return None
    return out


def removed_for_classes(entry: dict[str, Any], labels: Sequence[str]) -> list[str]:
    if not all(_policy_allows(entry, label) for label in labels):
        return [short_name(entry)]
    return [n for c in entry.get("transforms", ()) for n in removed_for_classes(c, labels)]


def build_annotated_pipeline(
    recipe: Recipe, labels: Sequence[str], outlines: bool = True
) -> A.Compose:
    """The recipe's transforms for an image holding `labels`, moving boxes (and outlines:
    without any, the keypoint processor's cost is spared)."""
    spec = for_classes(recipe.augment, labels, root=True)
    assert spec is not None
    built = A.from_dict({"transform": spec})
    assert isinstance(built, A.Compose)
    pipeline = A.Compose(
        list(built.transforms),
        p=built.p,
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["object_index"], **BOX_RULES),
        keypoint_params=A.KeypointParams(
            format="xy", label_fields=["vertex_owner", "vertex_part"], remove_invisible=False
        )
        if outlines
        else None,
        save_applied_params=True,
    )
    return pipeline


def augment_objects(
    pipeline: A.Compose,
    image: np.ndarray,
    objects: Sequence[LabeledObject],
    mask: np.ndarray | None = None,
) -> tuple[dict[str, Any], list[LabeledObject], Counter[str]]:
    """Run `pipeline` (seeded by the caller) on the image and its objects (and its class-id
    mask: albumentations warps masks nearest-neighbour, borders 0, the background): the
    result dict, the objects that remain, and the dropped ones per class. An object's RLE
    mask goes along as one of albumentations' `masks`, nearest-neighbour too."""
    height, width = image.shape[:2]
    extra: dict[str, Any] = {} if mask is None else {"mask": mask}
    if "keypoints" in pipeline.processors:
        extra.update(_vertices(objects))
    with_rle = [i for i, o in enumerate(objects) if o.rle is not None]
    if with_rle:
        rles = [o.rle for o in objects if o.rle is not None]
        extra["masks"] = [decode_rle(r, width, height).astype(np.uint8) for r in rles]
    result = pipeline(
        **extra,
        image=image,
        bboxes=np.array([o.box for o in objects], dtype=np.float64).reshape(-1, 4),
        object_index=list(range(len(objects))),
    )
    height, width = result["image"].shape[:2]
    outlines = _moved_outlines(result, width, height)
    warped = dict(zip(with_rle, result.get("masks", ()), strict=True))
    kept: list[LabeledObject] = []
    for box, index in zip(result["bboxes"].tolist(), result["object_index"], strict=True):
        source = objects[int(index)]
        polygon, *more = outlines.get(int(index), [()])
        rle = encode_rle(np.asarray(warped[int(index)]) > 0) if int(index) in warped else None
        kept.append(LabeledObject(source.label, _box(box), polygon, source.crowd, tuple(more), rle))
    dropped = Counter(o.label for o in objects) - Counter(o.label for o in kept)
    return result, kept, dropped


def _vertices(objects: Sequence[LabeledObject]) -> dict[str, Any]:
    """Every polygon's vertices as keypoints, labelled with their object and part.

    Keypoints are pixel centres (albumentations flips x to width - 1 - x); an outline's
    vertices are on pixel edges (x to width - x): shifted by half a pixel there and back."""
    vertices, owners, parts = [], [], []
    for i, o in enumerate(objects):
        for j, polygon in enumerate(o.polygons):
            for x, y in zip(polygon[0::2], polygon[1::2], strict=True):
                vertices.append((x - 0.5, y - 0.5))
                owners.append(i)
                parts.append(j)
    keypoints = np.array(vertices, dtype=np.float64).reshape(-1, 2)
    return {"keypoints": keypoints, "vertex_owner": owners, "vertex_part": parts}


def _moved_outlines(
    result: Mapping[str, Any], width: int, height: int
) -> dict[int, list[tuple[float, ...]]]:
    """object index -> its polygons, moved and clipped to the image, in their order."""
    parts: dict[tuple[int, int], list[float]] = {}
    moved = result["keypoints"][:, :2].tolist() if "keypoints" in result else []
    labels = zip(result.get("vertex_owner", []), result.get("vertex_part", []), strict=True)
    for (x, y), (owner, part) in zip(moved, labels, strict=True):
        parts.setdefault((int(owner), int(part)), []).extend(
            [min(max(x + 0.5, 0.0), float(width)), min(max(y + 0.5, 0.0), float(height))]
        )
    outlines: dict[int, list[tuple[float, ...]]] = {}
    for (owner, _), values in sorted(parts.items()):
        outlines.setdefault(owner, []).append(_rounded(values))
    return outlines


def _rounded(values: Iterable[float]) -> tuple[float, ...]:
    # Two decimals: a hundredth of a pixel, and the same text on every machine.
    return tuple(round(float(v), 2) for v in values)


def _box(values: Sequence[float]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = _rounded(values)
    return x0, y0, x1, y1


def preprocess_mask(
    mask: np.ndarray, decoded_size: tuple[int, int], spec: Preprocess
) -> np.ndarray:
    """A class-id mask through the very geometry the image's preprocess has (the same
    function), nearest-neighbour, padded with 0 (background), or mirrored or wrapped as the
    image is: ids are never interpolated."""
    width, height = decoded_size
    if (mask.shape[1], mask.shape[0]) != (width, height):  # the image was decoded reduced
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    # A reflect or wrap pad shows the mask's classes in the border as it shows the objects.
    pad = spec.pad_mode if spec.pad_mode in MIRRORING_PADS else "constant"
    nearest = replace(spec, interpolation="nearest", pad_mode=pad, pad_color=(0, 0, 0))
    stacked = np.repeat(mask[..., None], 3, axis=2)
    return np.ascontiguousarray(apply_preprocess(stacked, nearest)[..., 0])


def preprocess_objects(
    objects: Sequence[LabeledObject],
    source_size: tuple[int, int],
    decoded_size: tuple[int, int],
    spec: Preprocess,
) -> tuple[list[LabeledObject], Counter[str]]:
    """The objects as the preprocessed image shows them (preprocess.apply_preprocess's
    geometry): scaled, shifted, clipped; those the crop leaves too little of dropped. An
    RLE mask goes through the image's own preprocess, nearest-neighbour (preprocess_mask)."""
    (sx, sy, ox, oy), (out_w, out_h) = _geometry(decoded_size, spec)
    # A draft decode (see codec.decode) reduced the source: boxes are in the source's pixels.
    sx, sy = sx * decoded_size[0] / source_size[0], sy * decoded_size[1] / source_size[1]
    kept: list[LabeledObject] = []
    dropped: Counter[str] = Counter()
    for o in objects:
        x0, y0 = o.box[0] * sx + ox, o.box[1] * sy + oy
        x1, y1 = o.box[2] * sx + ox, o.box[3] * sy + oy
        cx0, cy0 = min(max(x0, 0.0), out_w), min(max(y0, 0.0), out_h)
        cx1, cy1 = min(max(x1, 0.0), out_w), min(max(y1, 0.0), out_h)
        area, left = (x1 - x0) * (y1 - y0), (cx1 - cx0) * (cy1 - cy0)
        if left < BOX_RULES["min_area"] or left < BOX_RULES["min_visibility"] * area:
            dropped[o.label] += 1
            continue
        polygon, *more = (
            _rounded(
                min(max(v * sx + ox, 0.0), out_w)
                if i % 2 == 0
                else min(max(v * sy + oy, 0.0), out_h)
                for i, v in enumerate(part)
            )
            for part in (o.polygons or ((),))
        )
        rle = None
        if o.rle is not None:
            pixels = decode_rle(o.rle, *source_size).astype(np.uint8)
            rle = encode_rle(preprocess_mask(pixels, decoded_size, _unmirrored(spec)) > 0)
        box = _box((cx0, cy0, cx1, cy1))
        kept.append(LabeledObject(o.label, box, polygon, o.crowd, tuple(more), rle))
    return kept + mirrored_copies(objects, source_size, decoded_size, spec), dropped


def _unmirrored(spec: Preprocess) -> Preprocess:
    return replace(spec, pad_mode="constant") if spec.pad_mode in MIRRORING_PADS else spec


# One axis of a copy in the border: fitted coordinate v shows at sign * v + shift, visible in
# [low, high) (fitted coordinates: 0 is the fitted image's first pixel's edge).
_Tile = tuple[int, int, int, int]


def mirrored_copies(
    objects: Sequence[LabeledObject],
    source_size: tuple[int, int],
    decoded_size: tuple[int, int],
    spec: Preprocess,
) -> list[LabeledObject]:
    """The objects' copies a `reflect` or `wrap` pad shows in the border (preprocess.py pads
    the fitted image with OpenCV's BORDER_REFLECT_101 or BORDER_WRAP), labelled: each copy's
    box, outline and mask are the object's, reflected or shifted with its tile of the border
    and clipped to that tile, kept by the box rules as any object is (BOX_RULES)."""
    if spec.pad_mode not in MIRRORING_PADS or spec.fit != "pad" or spec.size is None:
        return []
    if decoded_size == spec.size:
        return []
    (sx, sy, left, top), _ = _geometry(decoded_size, spec)
    fit_w, fit_h = _fit_inside(*decoded_size, *spec.size)
    sx, sy = sx * decoded_size[0] / source_size[0], sy * decoded_size[1] / source_size[1]
    tiles_x = _tiles(fit_w, int(left), spec.size[0], spec.pad_mode)
    tiles_y = _tiles(fit_h, int(top), spec.size[1], spec.pad_mode)
    fitted: dict[int, np.ndarray] = {}  # an RLE object's mask on the fitted image
    copies = []
    for n, o in enumerate(objects):
        for tx in tiles_x:
            for ty in tiles_y:
                if tx == tiles_x[0] and ty == tiles_y[0]:
                    continue  # the object itself
                box = _axis(o.box[0::2], sx, tx) + _axis(o.box[1::2], sy, ty)
                x0, x1, y0, y1 = box
                area = (x1 - x0) * (y1 - y0)
                cx0, cx1 = min(max(x0, tx[2]), tx[3]), min(max(x1, tx[2]), tx[3])
                cy0, cy1 = min(max(y0, ty[2]), ty[3]), min(max(y1, ty[2]), ty[3])
                visible = max(cx1 - cx0, 0.0) * max(cy1 - cy0, 0.0)
                rules = BOX_RULES["min_area"], BOX_RULES["min_visibility"] * area
                if visible <= 0 or visible < rules[0] or visible < rules[1]:
                    continue
                polygons = [_copy_polygon(p, sx, sy, tx, ty, left, top) for p in o.polygons]
                rle = None
                if o.rle is not None:
                    if n not in fitted:
                        fitted[n] = _fitted_mask(o, source_size, decoded_size, spec)
                    rle = encode_rle(_copy_mask(fitted[n], tx, ty, spec.size, left, top))
                placed = _box((cx0 + left, cy0 + top, cx1 + left, cy1 + top))
                first, *more = polygons or [()]
                copies.append(LabeledObject(o.label, placed, first, o.crowd, tuple(more), rle))
    return copies


def _tiles(fit: int, offset: int, total: int, mode: str) -> list[_Tile]:
    """Each copy of a fitted axis of `fit` pixels that the pad shows in `total` pixels, the
    image placed at `offset`: the image itself first. BORDER_REFLECT_101 repeats with period
    2 * (fit - 1), the edge pixel not repeated (gfedcb|abcdefgh|gfedcba): a plain tile
    [kP, kP + fit) and a mirrored one [kP + fit, (k + 1)P), where v shows at (k + 1)P + 1 - v.
    BORDER_WRAP repeats with period fit."""
    low, high = -offset, total - offset  # the canvas, in fitted coordinates
    period = fit if mode == "wrap" else 2 * (fit - 1)
    tiles: list[_Tile] = [(1, 0, 0, fit)]
    if period <= 0:  # a 1-pixel image: every copy is that pixel
        return tiles
    for k in range(low // period - 1, high // period + 2):
        candidates = [(1, k * period, k * period, k * period + fit)]
        if mode != "wrap":
            candidates.append((-1, (k + 1) * period + 1, k * period + fit, (k + 1) * period))
        for sign, shift, lo, hi in candidates:
            lo, hi = max(lo, low), min(hi, high)
            if lo < hi and (sign, shift) != (1, 0):
                tiles.append((sign, shift, lo, hi))
    return tiles


def _axis(values: Sequence[float], scale: float, tile: _Tile) -> tuple[float, float]:
    a, b = (tile[0] * v * scale + tile[1] for v in values)
    return (a, b) if a <= b else (b, a)


def _copy_polygon(
    polygon: Sequence[float], sx: float, sy: float, tx: _Tile, ty: _Tile, left: float, top: float
) -> tuple[float, ...]:
    values = []
    for x, y in zip(polygon[0::2], polygon[1::2], strict=True):
        values.append(min(max(tx[0] * x * sx + tx[1], tx[2]), tx[3]) + left)
        values.append(min(max(ty[0] * y * sy + ty[1], ty[2]), ty[3]) + top)
    return _rounded(values)


def _fitted_mask(
    o: LabeledObject, source_size: tuple[int, int], decoded_size: tuple[int, int], spec: Preprocess
) -> np.ndarray:
    """An RLE object's mask as the fitted image (without its pad) shows it."""
    assert o.rle is not None and spec.size is not None
    pixels = decode_rle(o.rle, *source_size).astype(np.uint8)
    canvas = preprocess_mask(pixels, decoded_size, _unmirrored(spec))
    (_, _, left, top), _ = _geometry(decoded_size, spec)
    fit_w, fit_h = _fit_inside(*decoded_size, *spec.size)
    return canvas[int(top) : int(top) + fit_h, int(left) : int(left) + fit_w]


def _copy_mask(
    fitted: np.ndarray, tx: _Tile, ty: _Tile, size: tuple[int, int], left: float, top: float
) -> np.ndarray:
    """The copy's mask on the canvas: each pixel of its tile shows the fitted pixel the pad
    copies there (v = u - shift plain; v = shift - 1 - u mirrored)."""
    mask = np.zeros((size[1], size[0]), dtype=bool)
    cols, rows = np.arange(tx[2], tx[3]), np.arange(ty[2], ty[3])
    src_cols = cols - tx[1] if tx[0] > 0 else tx[1] - 1 - cols
    src_rows = rows - ty[1] if ty[0] > 0 else ty[1] - 1 - rows
    mask[np.ix_(rows + int(top), cols + int(left))] = fitted[np.ix_(src_rows, src_cols)] > 0
    return mask


def _geometry(
    decoded: tuple[int, int], spec: Preprocess
) -> tuple[tuple[float, float, float, float], tuple[float, float]]:
    """(scale x, scale y, offset x, offset y) from the decoded image to the preprocessed
    one, and the preprocessed size: the same arithmetic as preprocess.py's fit modes."""
    dec_w, dec_h = decoded
    if spec.size is None or decoded == spec.size:
        return (1.0, 1.0, 0.0, 0.0), (float(dec_w), float(dec_h))
    width, height = spec.size
    if spec.fit == "stretch":
        return (width / dec_w, height / dec_h, 0.0, 0.0), (width, height)
    if spec.fit == "crop":
        if dec_w * height > width * dec_h:
            crop_w, crop_h = min(dec_w, max(1, round(dec_h * width / height))), dec_h
        else:
            crop_w, crop_h = dec_w, min(dec_h, max(1, round(dec_w * height / width)))
        x0, y0 = (dec_w - crop_w) // 2, (dec_h - crop_h) // 2
        kx, ky = width / crop_w, height / crop_h
        return (kx, ky, -x0 * kx, -y0 * ky), (width, height)
    fit_w, fit_h = _fit_inside(dec_w, dec_h, width, height)
    left, top = (width - fit_w) // 2, (height - fit_h) // 2
    return (fit_w / dec_w, fit_h / dec_h, float(left), float(top)), (width, height)
