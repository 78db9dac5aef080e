"""The values every stage passes on: what a source is (`Original`, `Rejected`, `Dataset`),
what a run is asked for (`ExpandOptions`) and what it made (`ExpandSummary`).

They live apart from the stages that make them so that no stage imports another for its
types, and no image library is needed to hold them.

Annotated sets (detection, segmentation) fit the same shapes: a `Dataset` says its `task`,
and an `Original` carries its `annotation`, the objects labelled on it. Classification sets
have none: their label is the `Original.label`.
"""

from __future__ import annotations

import itertools
import pickle
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from augment.defaults import DEFAULT_MAX_DISTANCE, DEFAULT_MAX_PIXELS, DEFAULT_TEST, DEFAULT_VAL
from augment.errors import OutputError
from augment.rerun.spill import SortedSpill
from augment.stores.url import StoreUrl

TASKS = ("classification", "detection", "segmentation")

# A long phase reports as it goes: `phase(name, total)` once, then `advance(n)` as n more of
# the total are done. The command line draws a bar for a phase that lasts over a second.
Phase = Callable[[str, int], Callable[[int], None]]


@dataclass(frozen=True, slots=True)
class LabeledObject:
    """One object on an annotated source: its class and its box in pixels, with its outline
    where the annotation has one (a polygon as x, y pairs; segmentation sets).

    A COCO object may have more: the further polygons of a multi-part outline
    (`more_polygons`), or instead of polygons a run-length encoded mask (`rle`: COCO's
    compressed counts string, or the uncompressed counts as read, at the image's size).
    annotations/shapes.py renders any of them as the object's mask."""

    label: str
    box: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max
    polygon: tuple[float, ...] = ()
    crowd: bool = False  # COCO iscrowd: a region of many instances, kept as it is
    more_polygons: tuple[tuple[float, ...], ...] = ()
    rle: str | tuple[int, ...] | None = None

    @property
    def polygons(self) -> tuple[tuple[float, ...], ...]:
        """Every polygon of the outline, the first one first (none without an outline)."""
        return (self.polygon, *self.more_polygons) if self.polygon else ()

    @property
    def has_shape(self) -> bool:
        """Whether the object has more than its box: an outline or a mask."""
        return bool(self.polygon) or self.rle is not None


@dataclass(frozen=True, slots=True)
class Annotation:
    """What an annotated source carries beside its pixels. `sha256` is of the annotation's
    content for this image alone (not of a whole COCO file), so editing one image's labels
    renames only that image's outputs."""

    file: str  # the annotation file (label file, XML, JSON, mask), relative to the root
    sha256: str
    objects: tuple[LabeledObject, ...] = ()
    mask: str | None = None  # a semantic mask's path, relative to the root
    split: str | None = None  # the split the source's layout gives it (images/train, ...)


# slots: there is one per source, held for the whole run; __slots__ saves a third of it.
@dataclass(frozen=True, slots=True)
class Original:
    """One source image, identified by its path relative to the dataset root."""

    path: str  # POSIX, relative to Dataset.root
    label: str
    group: str  # originals sharing a group are held out together
    sha256: str
    format: str  # what the bytes really are, per Pillow ("JPEG", "PNG", ...)
    width: int
    height: int
    annotation: Annotation | None = None  # annotated sets only


# slots: a labels file of millions of rows can reject each of them.
@dataclass(frozen=True, slots=True)
class Rejected:
    path: str
    reason: str
    # The cause may pass (see worker.SourceProblem): the next run tries the file again.
    # Not part of what a rejection is: the same file and reason are one rejection.
    retry: bool = field(default=False, compare=False)


# Rejections held in memory before they go to a temporary file: a labels file can reject
# millions of rows, and each would cost ~150 bytes held (see Rejections).
_REJECTIONS_HELD = 20_000
# Distinct reasons counted one by one; past it the rest count as one (a reason naming a
# line number is distinct on every row).
_REASONS_COUNTED = 1_000
OTHER_REASONS = "(other reasons)"
Entry = tuple[str, str, bool]  # a rejection as held: path, reason, retry


class Rejections(Collection[Rejected]):
    """Every rejected input of a run, however many: the last few thousand held, the others
    in an anonymous temporary file (removed by the system when closed, even if the process
    is killed), so that memory does not grow with them. Iterated in the order they were
    added, or, from `by_path`, sorted by path with each (path, reason) once: the order the
    summary, `augment.json` and `inspect` list them in. Reasons are interned (one string
    per distinct text held) and counted (`reasons`)."""

    def __init__(self, items: Iterable[Rejected] = ()) -> None:
        self._held: list[Entry] = []
        self._file: IO[bytes] | None = None
        self._count = 0
        self._texts: dict[str, str] = {}
        self.reasons: Counter[str] = Counter()
        self._sorted = False
        self.extend(items)

    def append(self, rejected: Rejected) -> None:
        self._add(rejected.path, rejected.reason, rejected.retry)
        self._sorted = False

    def extend(self, items: Iterable[Rejected]) -> None:
        for rejected in items:
            self._add(rejected.path, rejected.reason, rejected.retry)
        self._sorted = False

    def _add(self, path: str, reason: str, retry: bool) -> None:
        texts = self._texts
        interned = texts.get(reason)
        if interned is not None:
            reason = interned
            self.reasons[reason] += 1
        elif len(texts) < _REASONS_COUNTED:
            texts[reason] = reason
            self.reasons[reason] += 1
        else:
            self.reasons[OTHER_REASONS] += 1
        self._held.append((path, reason, retry))
        self._count += 1
        if len(self._held) >= _REJECTIONS_HELD:
            self._spill()

    def _spill(self) -> None:
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed with self
            self._file.seek(0, 2)
            pickle.dump(self._held, self._file, pickle.HIGHEST_PROTOCOL)
        except OSError as exc:  # a full temporary folder: the user's to fix
            raise OutputError(
                f"cannot keep the rejected inputs in the temporary folder "
                f"{tempfile.gettempdir()}: {exc.strerror or exc} (set TMPDIR to a folder "
                "with room)"
            ) from exc
        self._held = []

    def entries(self) -> Iterator[Entry]:
        """Every rejection as (path, reason, retry), in the order added: `iter` without a
        `Rejected` made for each."""
        held, offset = list(self._held), 0
        while self._file is not None:  # a read position of its own: iterations may overlap
            self._file.seek(offset)
            try:
                block = pickle.load(self._file)
            except EOFError:
                break
            offset = self._file.tell()
            yield from block
        yield from held

    def __iter__(self) -> Iterator[Rejected]:
        """Every rejection in the order added; may be iterated again (not while adding)."""
        texts = self._texts
        for path, reason, retry in self.entries():
            yield Rejected(path, texts.get(reason, reason), retry)

    def __len__(self) -> int:
        return self._count

    def __contains__(self, item: object) -> bool:
        return any(r == item for r in self)

    def __eq__(self, other: object) -> bool:  # to compare with a list in tests and reruns
        if isinstance(other, Rejections | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Rejections({len(self)} rejected)"

    def by_path(self, *more: Iterable[Rejected]) -> Rejections:
        """These rejections and `more`, sorted by path (those of one path in the order
        added), each (path, reason) once."""
        if self._sorted and not more:
            return self
        spill: SortedSpill[tuple[str, bool]] = SortedSpill(16 << 20)
        added = itertools.chain(
            self.entries(), ((r.path, r.reason, r.retry) for m in more for r in m)
        )
        for path, reason, retry in added:
            spill.add(path, (reason, retry), 16)
        found = Rejections()
        with spill:
            last: str | None = None
            reasons: set[str] = set()
            for path, (reason, retry) in spill:
                if path != last:
                    last, reasons = path, set()
                if reason not in reasons:
                    reasons.add(reason)
                    found._add(path, reason, retry)
        found._sorted = True
        return found

    def first(self, n: int) -> list[Rejected]:
        return list(itertools.islice(self, n))


def in_path_order(rejected: Iterable[Rejected]) -> Rejections:
    """`rejected` sorted by path, each (path, reason) once (itself if it already is)."""
    return (rejected if isinstance(rejected, Rejections) else Rejections(rejected)).by_path()


@dataclass
class Dataset:
    root: Path
    kind: str  # "folders" | "labels" | "yolo" | "coco"
    task: str = "classification"  # one of TASKS
    names: list[str] = field(default_factory=list)  # annotated sets: class names, in id order
    originals: list[Original] = field(default_factory=list)
    rejected: Rejections = field(default_factory=Rejections)
    # A source already split (SRC/train/<class>/..., a labels file's `split` column):
    # path -> "train" | "validation" | "test"; empty when the tool holds out.
    given_splits: dict[str, str] = field(default_factory=dict)

    @property
    def layout(self) -> str:
        """The layout as a user would name it."""
        if self.task != "classification":  # see augment/annotations/
            name = {"yolo": "YOLO", "coco": "COCO", "voc": "Pascal VOC", "masks": "masks"}
            return name.get(self.kind, self.kind) + (" already split" if self.given_splits else "")
        if self.kind == "labels":
            return "labels file" + (" with a split column" if self.given_splits else "")
        return "split folders of class folders" if self.given_splits else "class folders"

    @property
    def classes(self) -> list[str]:
        if self.task != "classification":  # the object classes, not the images' labels
            return sorted(self.names)
        return sorted({o.label for o in self.originals})


@dataclass(frozen=True)
class Cluster:
    """Originals that are copies of one picture (paths relative to SRC, sorted)."""

    paths: tuple[str, ...]
    labels: tuple[str, ...] = ()  # more than one: the same picture filed under two classes
    # For a conflict: the split an earlier run gave each member that had one.
    previous_splits: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LargeGroup:
    """A group of originals held out together that holds more than a tenth of its class:
    its split moves a tenth of the class at once (see docs/holdout.md)."""

    label: str  # the class the group counts for
    group: str  # its group key
    size: int  # all its members, of every class
    class_size: int
    split: str  # where it went
    in_class: int  # its members of class `label`; fewer than `size` if it spans classes


@dataclass(frozen=True)
class QuotaShift:
    """A class whose splits ended beyond the holdout's tolerance because one group was too
    large for the quota it fell into (see docs/holdout.md)."""

    label: str
    group: str  # the largest group that did not fit
    size: int
    quotas: dict[str, int]  # split -> originals the class should have had there
    counts: dict[str, int]  # split -> originals it got

    @property
    def moved(self) -> dict[str, int]:
        """split -> originals more (+) or fewer (-) than the quota."""
        return {s: self.counts.get(s, 0) - q for s, q in self.quotas.items()}


@dataclass(frozen=True)
class ExpandOptions:
    times: int = 5
    no_originals: bool = False
    recipe: str = "default"
    # None: not asked for; the source's own split if it has one, else DEFAULT_VAL/TEST.
    val: float | int | None = None
    test: float | int | None = None
    group_by: str | None = None
    seed: int = 0
    workers: int | None = None  # None: all cores
    output_format: str = "same"
    quality: int = 95
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Minority classes get more variants: every class ends train equal ("instances": their
    # objects do, for annotated sets; stages/balance.py).
    balance: bool | str = False
    # Use a non-empty OUT that is not an augment output. Files already there are never
    # deleted or overwritten: the run stops first if one has a name augment would write.
    force: bool = False
    # Originals whose pHashes are this many bits apart or fewer are held out together; -1 off.
    near_duplicates: int = DEFAULT_MAX_DISTANCE
    # A source already split is pooled and held out again, and an OUT split by other
    # --seed/--val/--test is split again (see docs/holdout.md).
    resplit: bool = False
    # A labels file's path and label columns, when not found by their usual names.
    path_column: str | None = None
    label_column: str | None = None
    # Annotated sets: the output's annotation format ("yolo", "coco", "voc", "masks");
    # None: the input's (docs/annotations.md, "Converting").
    annotations: str | None = None
    # --output-format: "folders", or shards the workers write (augment/writers/shards.py),
    # about `shard_size` samples each.
    layout: str = "folders"
    shard_size: int = 1000

    @property
    def holdout_val(self) -> float | int:
        return DEFAULT_VAL if self.val is None else self.val

    @property
    def holdout_test(self) -> float | int:
        return DEFAULT_TEST if self.test is None else self.test

    def to_dict(self, source_split: bool = False) -> dict[str, Any]:
        """The options that decide the output (not `workers`: it never changes a byte).
        With `source_split` (the source's own split was used) no holdout is recorded."""
        holdout: dict[str, Any] = (
            {"split": "source"}
            if source_split
            else {"val": self.holdout_val, "test": self.holdout_test, "group_by": self.group_by}
        )
        recorded = {
            "times": self.times,
            "no_originals": self.no_originals,
            "seed": self.seed,
            **holdout,
            "format": self.output_format,
            "quality": self.quality,
            "balance": self.balance,
            "near_duplicates": self.near_duplicates,
            **({} if self.layout == "folders" else {"output_format": self.layout}),
        }
        if self.annotations is not None:  # only when asked: earlier headers stay as they were
            recorded["annotations"] = self.annotations
        return recorded


@dataclass
class ExpandSummary:
    out: Path | StoreUrl  # a URL when OUT is in object storage (augment/stores/)
    counts: dict[str, dict[str, int]]  # split -> class -> output files
    originals: dict[str, int]  # split -> originals
    written: int
    reused: int
    removed: int
    # Every rejected input, by path (a `Rejections` past a few: there may be millions).
    rejected: Collection[Rejected] = field(default_factory=list)
    too_small: list[str] = field(default_factory=list)
    duplicates: list[Cluster] = field(default_factory=list)  # held out together
    duplicate_conflicts: list[Cluster] = field(default_factory=list)  # split by an earlier run
    large_groups: list[LargeGroup] = field(default_factory=list)  # > a tenth of their class
    quota_shifts: list[QuotaShift] = field(default_factory=list)  # a group moved a class's split
    warnings: list[str] = field(default_factory=list)  # e.g. a damaged manifest, rebuilt
    seconds: float = 0.0
    train_originals: dict[str, int] = field(default_factory=dict)  # class -> train originals
    balanced: bool = False
    balanced_objects: dict[str, dict[str, int]] = field(default_factory=dict)  # --balance instances
    # What a rerun cost, to measure that a no-op rerun is cheap (see README, "Reruns"):
    sources_read: int = 0  # sources read and hashed (the others: unchanged stamp, not read)
    outputs_rehashed: int = 0  # existing outputs read to verify them (stamp had changed)
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    # Proven to change nothing, so nothing was planned, read or written (augment/uptodate.py).
    fast_path: bool = False
    dropped_objects: dict[str, int] = field(default_factory=dict)  # class -> objects dropped
    source_split: bool = False  # the splits are the source's own (train/, val/, test/...)
    # split -> classes it has no file of: their folders are left empty (see manifest.py).
    missing_classes: dict[str, list[str]] = field(default_factory=dict)
    webp_outputs: bool = False  # some outputs are WebP: Keras' loader skips them

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())
