"""Mixing partners: which train originals a mixed variant is made with, drawn from the
variant's seed (the plan's part of MixUp, CutMix, Mosaic and CopyPaste; the worker applies).

- MixUp / CutMix: one partner, the weight and the CutMix box.
- Mosaic: three partners, the centre (uniform in the entry's `centre` range), with a tile
  `scale` each tile's scale (uniform in it), and the weights.
- CopyPaste: one partner among the train originals with at least one instance to paste (an
  object with a shape: an outline of one or more parts or a COCO RLE mask, or any object of a
  segmentation set; of the entry's `classes`; not a COCO crowd region); how many of its
  instances (uniform from 1 to the fewer of `max_per_output` and what it has), which (without
  repetition), and each one's scale (uniform in `scale`), flip (with probability `flip`) and
  place.
- CopyPaste under `--balance instances` (stages/balance.py passes `wanted`: how much each
  class needs pasted objects, as the balancing has planned so far): the draw is steered. Each
  pasteable instance of a wanted class weighs its class's share divided by how many such
  instances the candidates hold, so a class is drawn in proportion to its share whatever
  its supply; a partner is drawn by the weight of its instances, how many of its wanted
  instances as above, which by their weights (without repetition). Instances of classes not
  wanted are never pasted; with none wanted among the candidates the variant is not pasted.
  Without `wanted` the draw is the uniform one above, draw for draw.

Held-out originals are never partners (PartnerPool holds train originals only).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from augment.errors import RecipeError
from augment.imaging.digests import sha256_of
from augment.model import LabeledObject, Original
from augment.recipe.mixing import (
    Box,
    MixKind,
    MixSpec,
    Paste,
    choose_mix,
    cutmix_box,
    cutmix_weight,
    dominant_label,
    mixup_weight,
    mosaic_centre,
    mosaic_weights,
    soft_label,
)

# Mixing draws come from their own stream of the job's seed, apart from the transforms'.
_MIX_STREAM = 0x6D6978
MOSAIC_TILES = 4
# --balance instances: class -> how much it needs pasted objects (> 0 if wanted at all).
Wanted = Mapping[str, float]


@dataclass(frozen=True)
class PlannedMix:
    """A mix the worker applies after augmenting both images."""

    kind: MixKind
    partner: Original  # always a train original
    partner_seed: int  # seeds the partner's own augmentation
    weight: float  # the image's own weight; the partner's is 1 - weight
    box: Box | None  # CutMix: where the partner's pixels go
    label: str  # the dominant class: the output's folder and hard label
    own_label: str  # the class of the image itself
    # Mosaic: the three other train originals (top right, bottom left, bottom right; the
    # first is also `partner`), the seeds of their augmentations, the centre, all weights.
    tiles: tuple[Original, ...] = ()
    tile_seeds: tuple[int, ...] = ()
    centre: tuple[int, int] | None = None
    weights: tuple[float, ...] = ()
    tile_scales: tuple[float, ...] = ()  # all four tiles' scales, when the entry draws them
    # CopyPaste: the partner's instances to paste and their jitter, and the edge blending.
    # The weights are the pasted pixels' share, which the worker counts.
    pastes: tuple[Paste, ...] = ()
    blend: float = 0.0
    steered: bool = False  # drawn with --balance instances' wanted classes (module's doc)

    @property
    def partner_key(self) -> str:
        """What a mixed variant's name holds of its partners: a new one is a new name."""
        if self.pastes:  # the instances come from its annotation: an edit there renames
            assert self.partner.annotation is not None
            key = ("copypaste", self.partner.sha256, self.partner.annotation.sha256)
            if self.steered:  # what is pasted follows the whole train set: it is named too
                return sha256_of(*key, *(repr(p) for p in self.pastes))
            return sha256_of(*key)
        if not self.tiles:
            return self.partner.sha256
        return sha256_of("mosaic", *(o.sha256 for o in self.tiles))

    @property
    def partners(self) -> list[tuple[Original, int]]:
        """Every partner, with the seed of its own augmentation."""
        if self.tiles:
            return list(zip(self.tiles, self.tile_seeds, strict=True))
        return [(self.partner, self.partner_seed)]

    @property
    def soft_label(self) -> dict[str, float]:
        return soft_label([(self.own_label, self.weight), (self.partner.label, 1 - self.weight)])


class PartnerPool:
    """The train originals a mix entry may take its partner from, per class of the image.

    Held-out originals are never in it: their pixels must not reach train in any form.
    """

    def __init__(self, train: Sequence[Original], specs: Sequence[MixSpec]) -> None:
        unique: dict[str, Original] = {}
        for original in sorted(train, key=lambda o: (o.sha256, o.path)):
            unique.setdefault(original.sha256, original)  # one per content
        self._train = list(unique.values())
        self._specs = specs
        for spec in specs:
            if spec.kind == "copypaste" and train and not any(pasteable(o, spec) for o in train):
                which = f" of the classes {', '.join(spec.classes)}" if spec.classes else ""
                raise RecipeError(
                    f"CopyPaste needs objects with an outline (polygon) or a mask{which}; no "
                    f"train original has one (a set of boxes only cannot be copy-pasted)"
                )
        # (entry, class of the image) -> the candidates, and where each sha256 sits in them
        self._cache: dict[tuple[int, str], tuple[list[Original], dict[str, int]]] = {}
        self._held_cache: dict[tuple[int, str], tuple[list[str], np.ndarray]] = {}  # pick_wanted

    def candidates(self, index: int, label: str) -> tuple[list[Original], dict[str, int]]:
        key = (index, label)
        if key not in self._cache:
            spec = self._specs[index]
            members = [
                o
                for o in self._train
                if spec.allows(o.label)
                and not (spec.other_class and o.label == label)
                and (spec.kind != "copypaste" or pasteable(o, spec))
            ]
            self._cache[key] = (members, {o.sha256: i for i, o in enumerate(members)})
        return self._cache[key]

    def pick(self, index: int, original: Original, rng: np.random.Generator) -> Original | None:
        """A uniform draw among the candidates other than the image itself (O(1))."""
        members, position = self.candidates(index, original.label)
        own = position.get(original.sha256)
        count = len(members) - (own is not None)
        if count <= 0:
            return None
        chosen = int(rng.integers(count))
        if own is not None and chosen >= own:
            chosen += 1  # skip the image itself
        return members[chosen]

    def pick_several(
        self, index: int, original: Original, rng: np.random.Generator, count: int
    ) -> list[Original] | None:
        """`count` different candidates other than the image itself, or None if too few."""
        members, position = self.candidates(index, original.label)
        own = position.get(original.sha256)
        available = len(members) - (own is not None)
        if available < count:
            return None
        chosen = rng.choice(available, size=count, replace=False).tolist()
        return [members[c + (own is not None and c >= own)] for c in chosen]

    def pick_wanted(
        self, index: int, original: Original, rng: np.random.Generator, wanted: Wanted
    ) -> tuple[Original, list[int], np.ndarray] | None:
        """CopyPaste steered to `wanted` (the module's doc): a partner other than the image
        itself, its wanted pasteable instances and their weights; None if none is wanted."""
        members, position = self.candidates(index, original.label)
        classes, held = self._held(index, original.label)
        own = position.get(original.sha256)
        want = np.array([wanted.get(c, 0.0) for c in classes], dtype=float)
        supply = held.sum(axis=0) - (held[own] if own is not None else 0)
        per_instance = np.divide(want, supply, out=np.zeros_like(want), where=supply > 0)
        totals = held @ per_instance
        if own is not None:
            totals[own] = 0.0
        if not totals.size or totals.sum() <= 0:
            return None
        chosen = int(rng.choice(len(members), p=totals / totals.sum()))
        partner = members[chosen]
        weight = dict(zip(classes, per_instance.tolist(), strict=True))
        instances = [
            i for i in pasteable(partner, self._specs[index]) if weight[_label(partner, i)] > 0
        ]
        odds = np.array([weight[_label(partner, i)] for i in instances], dtype=float)
        return partner, instances, odds / odds.sum()

    def _held(self, index: int, label: str) -> tuple[list[str], np.ndarray]:
        """The classes of the candidates' pasteable instances, and how many of each every
        candidate holds (a row per candidate)."""
        key = (index, label)
        if key not in self._held_cache:
            members, _ = self.candidates(index, label)
            spec = self._specs[index]
            counts = [Counter(_label(o, i) for i in pasteable(o, spec)) for o in members]
            classes = sorted(set().union(*counts)) if counts else []
            held = np.array([[n[c] for c in classes] for n in counts], dtype=float)
            self._held_cache[key] = (classes, held.reshape(len(members), len(classes)))
        return self._held_cache[key]


def plan_mix(
    original: Original,
    seed: int,
    specs: Sequence[MixSpec],
    partners: PartnerPool,
    size: tuple[int, int] | None,
    wanted: Wanted | None = None,
) -> PlannedMix | None:
    """Whether a variant mixes, with whom and how much: all drawn from the variant's seed
    (a CopyPaste entry's draw steered to `wanted` when given: the module's doc)."""
    rng = np.random.default_rng([seed, _MIX_STREAM])
    index = choose_mix(specs, float(rng.random()))
    if index is None:
        return None
    spec = specs[index]
    if not spec.allows(original.label):
        return None
    if spec.kind == "mosaic":
        assert size is not None, "a recipe with mix has a preprocess size"
        return _plan_mosaic(original, index, partners, rng, size, spec)
    if spec.kind == "copypaste":
        return _plan_copy_paste(original, index, spec, partners, rng, wanted)
    partner = partners.pick(index, original, rng)
    if partner is None:
        return None  # e.g. other_class with one class in train: the variant is not mixed
    box: Box | None = None
    if spec.kind == "mixup":
        weight = mixup_weight(rng, spec.alpha)
    else:
        assert size is not None, "a recipe with mix has a preprocess size"
        box = cutmix_box(rng, spec.alpha, *size)
        weight = cutmix_weight(box, *size)
    if not 0 < weight < 1:
        # An extreme draw: an empty box, or a weight that rounds to 0 or 1. Such a "mix" is
        # one image alone, so the variant is left unmixed rather than labelled as a mix.
        return None
    probs = soft_label([(original.label, weight), (partner.label, 1 - weight)])
    return PlannedMix(
        kind=spec.kind,
        partner=partner,
        partner_seed=int(rng.integers(2**63)),
        weight=weight,
        box=box,
        label=dominant_label(probs, original.label),
        own_label=original.label,
    )


def _plan_mosaic(
    original: Original,
    index: int,
    partners: PartnerPool,
    rng: np.random.Generator,
    size: tuple[int, int],
    spec: MixSpec,
) -> PlannedMix | None:
    """Three other train originals, a centre and the area weights (recipe/mosaic.py)."""
    tiles = partners.pick_several(index, original, rng, MOSAIC_TILES - 1)
    if tiles is None:
        return None  # fewer than four train originals: the variant is not a mosaic
    seeds = tuple(int(rng.integers(2**63)) for _ in tiles)
    centre = mosaic_centre(rng, *size, spec.centre)
    scales: tuple[float, ...] = ()
    if spec.tile_scale != (1.0, 1.0):  # drawn last: the default's draws stay as they were
        scales = tuple(round(float(rng.uniform(*spec.tile_scale)), 4) for _ in range(4))
    weights = tuple(mosaic_weights(centre, size, scales))
    return PlannedMix(
        kind="mosaic",
        partner=tiles[0],
        partner_seed=seeds[0],
        weight=weights[0],
        box=None,
        label=original.label,
        own_label=original.label,
        tiles=tuple(tiles),
        tile_seeds=seeds,
        centre=centre,
        weights=weights,
        tile_scales=scales,
    )


def pasteable(original: Original, spec: MixSpec) -> list[int]:
    """The indices of the original's objects CopyPaste may take (the module's doc)."""
    annotation = original.annotation
    if annotation is None:
        return []
    return [
        i
        for i, o in enumerate(annotation.objects)
        if (o.has_shape or annotation.mask is not None)
        and not o.crowd
        and (spec.classes is None or o.label in spec.classes)
    ]


def _plan_copy_paste(
    original: Original,
    index: int,
    spec: MixSpec,
    partners: PartnerPool,
    rng: np.random.Generator,
    wanted: Wanted | None = None,
) -> PlannedMix | None:
    odds: np.ndarray | None = None
    if wanted is None:
        partner = partners.pick(index, original, rng)
        if partner is None:
            return None  # no other train original has an instance to paste
        eligible = pasteable(partner, spec)
    else:
        steered = partners.pick_wanted(index, original, rng, wanted)
        if steered is None:
            return None  # no candidate holds an instance of a class still wanted
        partner, eligible, odds = steered
    count = int(rng.integers(1, min(spec.max_per_output, len(eligible)) + 1))
    chosen = rng.choice(len(eligible), size=count, replace=False, p=odds).tolist()
    pastes = tuple(
        Paste(
            index=eligible[c],
            scale=round(float(rng.uniform(*spec.scale)), 4),
            flip=bool(rng.random() < spec.flip),
            x=float(rng.random()),
            y=float(rng.random()),
        )
        for c in chosen
    )
    return PlannedMix(
        kind="copypaste",
        partner=partner,
        partner_seed=0,  # the partner is not augmented: its instances get the paste's jitter
        weight=1.0,
        box=None,
        label=original.label,
        own_label=original.label,
        pastes=pastes,
        blend=spec.blend,
        steered=wanted is not None,
    )


def added_objects(mix: PlannedMix, size: tuple[int, int] | None) -> Counter[str]:
    """The objects a mixed variant holds besides its own, as `--balance instances` counts
    them: a mosaic's three partners' objects and MixUp's partner's (before the output's edges
    or a transform drop any), the instances CopyPaste pastes (exactly, as drawn), and
    CutMix's partner's objects whose centre, scaled to the output, lies inside the box (an
    estimate: the partner's own augmentation moves them)."""
    if mix.kind == "mosaic":
        return Counter(o.label for t in mix.tiles for o in _objects(t))
    objects = _objects(mix.partner)
    if mix.kind == "copypaste":
        return Counter(objects[p.index].label for p in mix.pastes)
    if mix.kind == "mixup" or mix.box is None or size is None:
        return Counter(o.label for o in objects)
    x0, y0, x1, y1 = mix.box
    sx, sy = size[0] / mix.partner.width, size[1] / mix.partner.height
    return Counter(
        o.label
        for o in objects
        if x0 <= (o.box[0] + o.box[2]) / 2 * sx < x1 and y0 <= (o.box[1] + o.box[3]) / 2 * sy < y1
    )


def _objects(original: Original) -> tuple[LabeledObject, ...]:
    return original.annotation.objects if original.annotation is not None else ()


def _label(original: Original, index: int) -> str:
    return _objects(original)[index].label
