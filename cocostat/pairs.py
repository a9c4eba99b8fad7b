"""``cocostat overlap``: pairwise statistics of the objects that share an image.

Over every unordered pair of annotations in the same image (an image with n annotations has
n(n-1)/2 pairs), with boxes in the image's original pixels, or, with ``size=N``, scaled by
``N / max(width, height)`` of their image (letterbox: the long side becomes N pixels, as a YOLO
sees the image). Boxes are COCO ``[x, y, w, h]``; a box's corners are ``x1 = x``, ``x2 = x + w``
(and likewise in y), its centre ``x + w / 2``, its area ``(x2 - x1) * (y2 - y1)``.

Pair statistics (definitions as in :mod:`cocostat.boxes`):

- ``gap``: Euclidean distance between the closest points of the two boxes,
  ``sqrt(dx**2 + dy**2)`` with ``dx = max(0, max(x1a, x1b) - min(x2a, x2b))`` and ``dy`` alike;
  0 when the boxes touch or overlap. A pair counts when ``gap < gap_threshold`` (pixels).
- ``iou``: intersection over union; with ``pair_metric="ioa"`` intersection over the area of the
  smaller box. A ratio whose denominator is 0 (zero-area boxes) is 0. A pair counts when the
  metric is ``> iou_threshold``.
- ``center``: Euclidean distance between the two box centres; a pair counts when it is
  ``< center_threshold`` (pixels).

Image and object statistics:

- ``images``: images with at least one (counted) annotation; image shares are of this number.
- a criterion's ``images``: images with at least one pair meeting it.
- ``crowded`` image: one with at least ``crowd_pairs`` pairs under the centre threshold.
- ``elongated`` object: ``max(w / h, h / w) >= aspect`` on the annotation's own bbox (the ratio
  does not change with ``size``); a box with ``w == 0`` or ``h == 0`` counts as elongated.

iscrowd annotations are included (COCO's annotation counts include them) unless ``exclude_crowd``.

How it is computed: every within-image pair ``(i, j)``, ``i < j``, is generated from the
dataset's CSR ``offsets`` with numpy, a bounded number of pairs (``chunk_pairs``) at a time.
The pairs are numbered image after image, and chunks are ranges of that numbering, so one image
with thousands of boxes (millions of pairs) is split over several chunks and memory stays
bounded. Inside an image, pair number ``t`` is ``(i, j)`` with ``t = j(j - 1) / 2 + i``: object j
is the second object of j consecutive pairs, so a range of pair numbers is two ``np.repeat`` of
per-object offsets (integers only, exact at any size). :func:`pair_chunks` yields the chunks with
their statistics, computed by the kernels of :mod:`cocostat.boxes`
(:class:`~cocostat.boxes.BoxSet`: :func:`~cocostat.boxes.matched_overlaps` of the pairs with each
box's area and the validity check done once per box; IoU and IoA clamped to 1 and NaN for a
non-finite box, as everywhere); one accumulator per statistic folds
each chunk in (``update``; ``merge`` adds another accumulator): per-image criterion counts,
per-image extremes, the histograms, the category pairs. Per-image counts and extremes are segment
reductions (``np.add.reduceat``, ``np.maximum.reduceat``) over the chunk's runs of pairs of one
image. No Python loop runs over images or pairs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cocostat.atomic import FRAME_FORMATS, atomic_path, write_frame
from cocostat.boxes import BoxSet, cpu_threads
from cocostat.data import Dataset
from cocostat.errors import OptionError, check_int
from cocostat.models import letterbox_scale

__all__ = [
    "CRITERIA",
    "DEFAULT_CHUNK_PAIRS",
    "PAIR_METRICS",
    "Histogram",
    "OverlapReport",
    "OverlapSettings",
    "PairChunk",
    "overlap",
    "pair_chunks",
    "pair_indices",
    "per_image_format",
    "plot_overlap",
    "write_per_image",
]

PAIR_METRICS = ("iou", "ioa")
_METRIC_NAMES = {"iou": "IoU", "ioa": "IoA"}
#: The pair criteria, in report order.
CRITERIA = ("gap", "iou", "center")
#: Pairs processed at once (32,768): a few MB of temporaries that stay in the CPU caches, through
#: the kernels and the accumulators alike; 1.2x faster than 65,536 and 262,144 (benchmarks/bench_overlap.py).
DEFAULT_CHUNK_PAIRS = 1 << 15
#: Category pairs listed per criterion by ``by_category``.
BY_CATEGORY_TOP = 10
PER_IMAGE_FORMATS = FRAME_FORMATS

_METRIC_BINS = 50  # histogram of the pair metric over [0, 1]
_DIST_BINS = 120  # log-spaced histograms of gap and centre distance up to the largest possible one
_ASPECT_BINS = 60  # log-spaced over [1, largest finite aspect]


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OverlapSettings:
    """The thresholds and options an :class:`OverlapReport` was computed with."""

    gap: float = 10.0
    iou: float = 0.6
    pair_metric: str = "iou"
    center: float = 10.0
    crowd_pairs: int = 7
    aspect: float = 4.0
    size: float | None = None
    exclude_crowd: bool = False


@dataclass(frozen=True, eq=False)
class Histogram:
    """Counts of a statistic in fixed bins (what :func:`plot_overlap` draws).

    Attributes:
        name: ``iou``/``ioa``, ``gap``, ``center`` or ``aspect``.
        edges: (B + 1,) float64 bin edges (linear for the pair metric, log-spaced otherwise); bin
            b holds the positive values ``edges[b] <= v < edges[b + 1]``; the first bin also holds
            the positive values below ``edges[0]`` and the last those above ``edges[-1]``.
        counts: (B,) int64, positive finite values only.
        zeros: values exactly 0, not in ``counts``; for aspect, the zero-size boxes (infinite
            aspect, not in ``counts``).
        total: number of values (pairs, or objects for aspect).
    """

    name: str
    edges: np.ndarray
    counts: np.ndarray
    zeros: int
    total: int


def _share(num: int, den: int) -> float:
    return num / den if den else float("nan")


@dataclass(frozen=True, eq=False)
class OverlapReport:
    """Pairwise object statistics of one dataset; see the module docstring for the definitions.

    Attributes:
        name: the dataset's name.
        settings: thresholds used.
        images: images with at least one counted annotation.
        objects: counted annotations (iscrowd included unless ``settings.exclude_crowd``).
        pairs: within-image unordered pairs, ``sum n(n-1)/2``.
        gap_pairs, iou_pairs, center_pairs: pairs meeting each criterion.
        gap_images, iou_images, center_images: images with at least one such pair.
        crowded_images: images with at least ``crowd_pairs`` centre pairs.
        elongated_objects, elongated_images: elongated objects and the images holding one.
        per_image: one row per image of the dataset (I rows): ``image_id``, ``file_name``,
            ``width``, ``height``, ``objects``, ``pairs``, ``gap_pairs``, ``iou_pairs`` (pairs over
            the threshold of the chosen metric), ``center_pairs``, ``crowded`` (bool),
            ``elongated``, ``max_iou``, ``max_ioa`` (only with ``pair_metric="ioa"``), ``min_gap``,
            ``min_center`` (pixels, NaN for images with fewer than 2 objects), ``max_aspect``
            (``inf`` for a zero-size box, NaN for no object).
        by_category: ``None``, or the top category pairs per criterion: ``criterion``, ``rank``,
            ``category_a``, ``category_b`` (names, a <= b by class index), ``pairs`` (pairs of
            these categories meeting the criterion), ``share`` (of the criterion's pairs),
            ``all_pairs`` (pairs of these two categories), ``rate`` (``pairs / all_pairs``).
        examples: ``None``, or the most extreme images per criterion: ``criterion``
            (gap, iou, center, elongated), ``rank``, ``image_id``, ``file_name``, ``count`` (the
            image's pairs or objects meeting it), ``value`` (``min_gap``, ``max_iou``/``max_ioa``,
            ``min_center`` or ``max_aspect``). Ranked by count, then by value.
        histograms: ``{metric, "gap", "center", "aspect"}`` -> :class:`Histogram`.
    """

    name: str
    settings: OverlapSettings
    images: int
    objects: int
    pairs: int
    gap_pairs: int
    gap_images: int
    iou_pairs: int
    iou_images: int
    center_pairs: int
    center_images: int
    crowded_images: int
    elongated_objects: int
    elongated_images: int
    per_image: pd.DataFrame
    by_category: pd.DataFrame | None
    examples: pd.DataFrame | None
    histograms: dict[str, Histogram]

    def to_dict(self) -> dict:
        s = self.settings
        out = {
            "dataset": self.name,
            "size": s.size,
            "exclude_crowd": s.exclude_crowd,
            "images": self.images,
            "objects": self.objects,
            "pairs": self.pairs,
            "gap": {"threshold": s.gap, **self._pair_counts("gap")},
            "iou": {"threshold": s.iou, "metric": s.pair_metric, **self._pair_counts("iou")},
            "center": {"threshold": s.center, **self._pair_counts("center")},
            "crowded": {
                "min_pairs": s.crowd_pairs,
                "center_threshold": s.center,
                "images": self.crowded_images,
                "image_share": _share(self.crowded_images, self.images),
            },
            "elongated": {
                "threshold": s.aspect,
                "objects": self.elongated_objects,
                "object_share": _share(self.elongated_objects, self.objects),
                "images": self.elongated_images,
                "image_share": _share(self.elongated_images, self.images),
            },
        }
        if self.by_category is not None:
            out["by_category"] = {
                c: self.by_category[self.by_category["criterion"] == c]
                .drop(columns="criterion")
                .to_dict(orient="records")
                for c in CRITERIA
            }
        if self.examples is not None:
            out["examples"] = {
                c: self.examples[self.examples["criterion"] == c].drop(columns="criterion").to_dict(orient="records")
                for c in (*CRITERIA, "elongated")
            }
        return out

    def _pair_counts(self, criterion: str) -> dict:
        pairs, images = getattr(self, f"{criterion}_pairs"), getattr(self, f"{criterion}_images")
        return {
            "pairs": pairs,
            "pair_share": _share(pairs, self.pairs),
            "images": images,
            "image_share": _share(images, self.images),
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per criterion: ``criterion``, ``definition``, ``threshold``, ``pairs``,
        ``pair_share``, ``images``, ``image_share``, ``objects``, ``object_share`` (NA where a
        column does not apply)."""
        s = self.settings
        na = pd.NA
        rows = [
            ("gap", f"gap < {s.gap:g} px", s.gap, self.gap_pairs, self.gap_images, na),
            ("iou", f"{_METRIC_NAMES[s.pair_metric]} > {s.iou:g}", s.iou, self.iou_pairs, self.iou_images, na),
            ("center", f"centre distance < {s.center:g} px", s.center, self.center_pairs, self.center_images, na),
            ("crowded", f">= {s.crowd_pairs} centre pairs", float(s.crowd_pairs), na, self.crowded_images, na),
            (
                "elongated",
                f"max(w/h, h/w) >= {s.aspect:g}",
                s.aspect,
                na,
                self.elongated_images,
                self.elongated_objects,
            ),
        ]
        frame = pd.DataFrame(rows, columns=["criterion", "definition", "threshold", "pairs", "images", "objects"])
        for col in ("pairs", "images", "objects"):
            frame[col] = frame[col].astype("Int64")
        frame.insert(
            4,
            "pair_share",
            frame["pairs"].astype("Float64") / self.pairs
            if self.pairs
            else pd.array([na] * len(frame), dtype="Float64"),
        )
        frame.insert(
            6,
            "image_share",
            frame["images"].astype("Float64") / self.images
            if self.images
            else pd.array([na] * len(frame), dtype="Float64"),
        )
        frame["object_share"] = (
            frame["objects"].astype("Float64") / self.objects
            if self.objects
            else pd.array([na] * len(frame), dtype="Float64")
        )
        return frame

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        s = self.settings
        metric = _METRIC_NAMES[s.pair_metric]
        where = f"letterboxed to a {s.size:g} px long side" if s.size else "in original pixels"
        crowd = "excluded" if s.exclude_crowd else "included"
        overview = pd.DataFrame(
            {
                "statistic": ["images with annotations", "objects", "pairs (same image)"],
                "value": [self.images, self.objects, self.pairs],
            }
        )

        def pct(num: int, den: int) -> float:
            return 100.0 * _share(num, den)

        pairs = pd.DataFrame(
            {
                "criterion": list(CRITERIA),
                "definition": [f"gap < {s.gap:g} px", f"{metric} > {s.iou:g}", f"centre distance < {s.center:g} px"],
                "pairs": [self.gap_pairs, self.iou_pairs, self.center_pairs],
                "% pairs": [
                    pct(self.gap_pairs, self.pairs),
                    pct(self.iou_pairs, self.pairs),
                    pct(self.center_pairs, self.pairs),
                ],
                "images": [self.gap_images, self.iou_images, self.center_images],
                "% images": [
                    pct(self.gap_images, self.images),
                    pct(self.iou_images, self.images),
                    pct(self.center_images, self.images),
                ],
            }
        )
        others = pd.DataFrame(
            {
                "statistic": [
                    f"crowded images: >= {s.crowd_pairs} centre pairs",
                    f"elongated objects: aspect >= {s.aspect:g}",
                    "images with elongated objects",
                ],
                "count": [self.crowded_images, self.elongated_objects, self.elongated_images],
                "%": [
                    pct(self.crowded_images, self.images),
                    pct(self.elongated_objects, self.objects),
                    pct(self.elongated_images, self.images),
                ],
                "% of": ["images", "objects", "images"],
            }
        )
        out: list[tuple[str, pd.DataFrame | str]] = [
            (f"overlap: {self.name}", overview),
            (
                "",
                (
                    f"boxes {where}; iscrowd annotations {crowd}; pairs: unordered pairs of objects "
                    "in the same image; aspect: max(w/h, h/w), infinite when w or h is 0"
                ),
            ),
            ("pair criteria (% images: of images with annotations)", pairs),
            ("crowded images and elongated objects", others),
        ]
        if self.by_category is not None:
            bc = self.by_category.assign(share=100 * self.by_category["share"], rate=100 * self.by_category["rate"])
            out.append(
                (
                    (
                        f"top {BY_CATEGORY_TOP} category pairs per criterion (% share: of the "
                        "criterion's pairs; % rate: of the category pair's pairs)"
                    ),
                    bc.rename(columns={"share": "% share", "rate": "% rate"}),
                )
            )
        if self.examples is not None:
            out.append(
                (
                    (f"most extreme images (value: min gap, max {metric}, min centre distance, max aspect)"),
                    self.examples,
                )
            )
        return out


# --------------------------------------------------------------------------------------------------
# Pair generation
# --------------------------------------------------------------------------------------------------
def _pair_offsets(offsets: np.ndarray) -> np.ndarray:
    """(I + 1,) int64: image i's pairs are numbers ``out[i]:out[i + 1]`` of all pairs."""
    n = np.diff(offsets)
    return np.concatenate([[0], np.cumsum(n * (n - 1) // 2)]).astype(np.int64)


@dataclass(frozen=True, eq=False)
class _PairNumbers:
    """The numbering of all within-image pairs, per image and per object (module docs).

    Pair ``(i, j)``, ``i < j``, of image k is number ``image_cum[k] + j(j - 1)/2 + i``, so object
    row ``row0 + g`` (local index j in its image) is the second object of the pairs numbered
    ``object_cum[g]:object_cum[g + 1]`` (j of them), whose first objects are rows
    ``number + first_shift[g]``. Integers only: exact for any pair count below 2**63.

    Attributes:
        row0: ``offsets[0]``, the first row of the first image.
        image_cum: (I + 1,) int64, :func:`_pair_offsets`.
        object_cum: (G + 1,) int64 over the G rows ``offsets[0]:offsets[-1]``.
        first_shift: (G,) int64, ``offsets[k] - object_cum[g]`` for object g of image k.
    """

    row0: int
    image_cum: np.ndarray
    object_cum: np.ndarray
    first_shift: np.ndarray

    @classmethod
    def of(cls, offsets: np.ndarray, image_cum: np.ndarray | None = None) -> _PairNumbers:
        offsets = np.asarray(offsets, np.int64)
        cum = _pair_offsets(offsets) if image_cum is None else image_cum
        counts = np.diff(offsets)
        image = np.repeat(np.arange(counts.size, dtype=np.int64), counts)  # (G,) image of each object
        base = offsets[:-1][image]  # (G,) the image's first row
        row0 = int(offsets[0]) if offsets.size else 0
        j = np.arange(row0, row0 + image.size, dtype=np.int64) - base  # (G,) index inside the image
        object_cum = np.empty(image.size + 1, np.int64)
        object_cum[:-1] = cum[image] + j * (j - 1) // 2
        object_cum[-1] = cum[-1]
        return cls(row0, cum, object_cum, base - object_cum[:-1])

    @property
    def total(self) -> int:
        return int(self.image_cum[-1])

    def pairs(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """``(first, second)``: (hi - lo,) int64 object rows of the pairs numbered ``lo:hi``."""
        cum = self.object_cum
        g0 = max(int(np.searchsorted(cum, lo, side="right")) - 1, 0)  # object whose pairs hold lo
        g1 = int(np.searchsorted(cum, hi, side="left"))  # objects g0..g1-1 overlap [lo, hi)
        starts = np.maximum(cum[g0:g1], lo)
        reps = np.minimum(cum[g0 + 1 : g1 + 1], hi) - starts  # (g1 - g0,) pairs of each object in range
        second = np.repeat(np.arange(self.row0 + g0, self.row0 + g1, dtype=np.int64), reps)  # (n,)
        first = np.arange(lo, hi, dtype=np.int64) + np.repeat(self.first_shift[g0:g1], reps)  # (n,)
        return first, second

    def segments(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(images, starts, reps)``: the images of pairs ``lo:hi`` in order (S,), where each
        one's run of pairs starts in the range (S,) and how many pairs it has there (S,)."""
        cum = self.image_cum
        a = max(int(np.searchsorted(cum, lo, side="right")) - 1, 0)  # image holding pair lo
        b = int(np.searchsorted(cum, hi, side="left"))  # images a..b-1 overlap [lo, hi)
        reps = np.minimum(cum[a + 1 : b + 1], hi) - np.maximum(cum[a:b], lo)  # (b - a,) pairs in range
        nz = reps > 0
        reps = reps[nz]
        starts = np.zeros(reps.size, np.int64)
        np.cumsum(reps[:-1], out=starts[1:])
        return np.arange(a, b, dtype=np.int64)[nz], starts, reps


def pair_indices(offsets: np.ndarray, lo: int, hi: int, pair_offsets: np.ndarray | None = None):
    """The within-image pairs numbered ``lo:hi`` (all pairs numbered image after image).

    Args:
        offsets: (I + 1,) int64 CSR offsets; image k's objects are rows ``offsets[k]:offsets[k + 1]``.
        lo, hi: pair-number range, ``0 <= lo <= hi <= total pairs``.
        pair_offsets: ``_pair_offsets(offsets)``, if already computed.

    Returns:
        ``(image, first, second, seg_images, seg_starts)``: ``image`` (hi - lo,) int64 image index
        of each pair; ``first``, ``second`` (hi - lo,) int64 object rows with ``first < second``;
        ``seg_images`` (S,) int64 the distinct images of the range, in order, and ``seg_starts``
        (S,) int64 where each one's run of pairs starts (for ``ufunc.reduceat``).
    """
    numbers = _PairNumbers.of(offsets, pair_offsets)
    first, second = numbers.pairs(lo, hi)
    seg_images, seg_starts, reps = numbers.segments(lo, hi)
    return np.repeat(seg_images, reps), first, second, seg_images, seg_starts


@dataclass(frozen=True, eq=False)
class PairChunk:
    """One chunk of within-image pairs with their statistics (all (n,) numpy arrays, n pairs).

    Attributes:
        first, second: int64 object rows, ``first < second``, of one image each.
        seg_images, seg_starts: (S,) int64, the chunk's images in order and where each one's run
            of pairs starts (for ``ufunc.reduceat``).
        iou, metric: float64 IoU and the pair metric (IoU, or IoA with ``pair_metric="ioa"``).
        gap, center: float64 pixels.
        hits: criterion name (:data:`CRITERIA`) -> bool, the pair meets it.
    """

    first: np.ndarray
    second: np.ndarray
    seg_images: np.ndarray
    seg_starts: np.ndarray
    iou: np.ndarray
    metric: np.ndarray
    gap: np.ndarray
    center: np.ndarray
    hits: dict[str, np.ndarray]


def pair_chunks(
    xyxy: np.ndarray,
    offsets: np.ndarray,
    settings: OverlapSettings,
    chunk_pairs: int,
    pair_offsets: np.ndarray | None = None,
) -> Iterator[PairChunk]:
    """Every within-image pair, ``chunk_pairs`` at a time, with the statistics of :func:`overlap`.

    Args:
        xyxy: (G, 4) float64, xyxy pixels, objects of image k in rows ``offsets[k]:offsets[k + 1]``.
        offsets: (I + 1,) int64 CSR offsets.
        settings: the pair metric and the criterion thresholds.
        chunk_pairs: pairs per chunk (the last may hold fewer).
        pair_offsets: ``_pair_offsets(offsets)``, if already computed.

    Yields:
        :class:`PairChunk` s in pair-number order; the statistics come from
        :meth:`cocostat.boxes.BoxSet.pair_overlaps` (one intersection for IoU, IoA and the gap).
    """
    numbers = _PairNumbers.of(offsets, pair_offsets)
    total = numbers.total
    names = ("iou", "gap", "center") + (("ioa",) if settings.pair_metric == "ioa" else ())
    with cpu_threads(1):
        boxes = BoxSet(np.asarray(xyxy, np.float64))  # areas and validity once per box
    for lo in range(0, total, int(chunk_pairs)):
        hi = min(lo + int(chunk_pairs), total)
        a, b = numbers.pairs(lo, hi)
        seg_img, seg_start, _ = numbers.segments(lo, hi)
        v = _chunk_overlaps(boxes, a, b, names)
        metric = v.get("ioa", v["iou"])
        hits = {"gap": v["gap"] < settings.gap, "iou": metric > settings.iou, "center": v["center"] < settings.center}
        yield PairChunk(a, b, seg_img, seg_start, v["iou"], metric, v["gap"], v["center"], hits)


#: Pairs per kernel call inside a larger ``chunk_pairs``: bounds torch's temporaries (256 KB each).
_KERNEL_PAIRS = 1 << 15


def _chunk_overlaps(boxes: BoxSet, a: np.ndarray, b: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """:meth:`cocostat.boxes.BoxSet.pair_overlaps` of pairs ``(a[k], b[k])``, ``_KERNEL_PAIRS`` at a time.

    Single-threaded (~10^4-element ops: threads cost more than they give).
    """
    with cpu_threads(1):
        if a.size <= _KERNEL_PAIRS:
            return boxes.pair_overlaps(a, b, names)
        out = {name: np.empty(a.size) for name in names}
        for lo in range(0, a.size, _KERNEL_PAIRS):
            hi = min(lo + _KERNEL_PAIRS, a.size)
            for name, v in boxes.pair_overlaps(a[lo:hi], b[lo:hi], names).items():
                out[name][lo:hi] = v
    return out


# Accumulators: update(chunk) folds one chunk in, merge(other) adds another accumulator's chunks
# (another pair range, another process), and the result is exact whichever way the chunks are split.


@dataclass(eq=False)
class _CriterionCounts:
    """Per image (I,) int64: pairs meeting each criterion."""

    counts: dict[str, np.ndarray]

    @classmethod
    def empty(cls, n_images: int) -> _CriterionCounts:
        return cls({c: np.zeros(n_images, np.int64) for c in CRITERIA})

    def update(self, chunk: PairChunk) -> None:
        for c in CRITERIA:
            self.counts[c][chunk.seg_images] += np.add.reduceat(chunk.hits[c], chunk.seg_starts, dtype=np.int64)

    def merge(self, other: _CriterionCounts) -> None:
        for c in CRITERIA:
            self.counts[c] += other.counts[c]


@dataclass(eq=False)
class _Extremes:
    """Per image (I,) float64: highest IoU (and IoA), lowest gap and centre distance."""

    max_iou: np.ndarray
    max_ioa: np.ndarray | None
    min_gap: np.ndarray
    min_center: np.ndarray

    @classmethod
    def empty(cls, n_images: int, ioa: bool) -> _Extremes:
        return cls(
            np.full(n_images, -np.inf),
            np.full(n_images, -np.inf) if ioa else None,
            np.full(n_images, np.inf),
            np.full(n_images, np.inf),
        )

    def update(self, chunk: PairChunk) -> None:
        # an image may continue from the previous chunk: combine extremes with what is there
        img, st = chunk.seg_images, chunk.seg_starts
        self.max_iou[img] = np.maximum(self.max_iou[img], np.maximum.reduceat(chunk.iou, st))
        if self.max_ioa is not None:
            self.max_ioa[img] = np.maximum(self.max_ioa[img], np.maximum.reduceat(chunk.metric, st))
        self.min_gap[img] = np.minimum(self.min_gap[img], np.minimum.reduceat(chunk.gap, st))
        self.min_center[img] = np.minimum(self.min_center[img], np.minimum.reduceat(chunk.center, st))

    def merge(self, other: _Extremes) -> None:
        np.maximum(self.max_iou, other.max_iou, out=self.max_iou)
        if self.max_ioa is not None and other.max_ioa is not None:  # both or neither (one pair_metric)
            np.maximum(self.max_ioa, other.max_ioa, out=self.max_ioa)
        np.minimum(self.min_gap, other.min_gap, out=self.min_gap)
        np.minimum(self.min_center, other.min_center, out=self.min_center)

    def result(self, objects: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        """max_iou, max_ioa (or None), min_gap, min_center; NaN for images with fewer than 2 objects."""
        few = objects < 2

        def per_image(a: np.ndarray) -> np.ndarray:
            return np.where(few, np.nan, a)

        max_ioa = None if self.max_ioa is None else per_image(self.max_ioa)
        return per_image(self.max_iou), max_ioa, per_image(self.min_gap), per_image(self.min_center)


@dataclass(eq=False)
class _PairHistograms:
    """Histograms of the pair metric (linear over [0, 1]) and of gap and centre distance (log-spaced)."""

    dist_lo: float
    dist_max: float
    metric: np.ndarray
    gap: np.ndarray
    center: np.ndarray
    zeros: dict[str, int]

    @classmethod
    def empty(cls, dist_max: float) -> _PairHistograms:
        dist_max = max(dist_max, 1.0)
        dist_lo = min(0.1, dist_max / 1e3)  # pixels; smaller positive distances go to the first bin
        return cls(
            dist_lo,
            dist_max,
            np.zeros(_METRIC_BINS, np.int64),
            np.zeros(_DIST_BINS, np.int64),
            np.zeros(_DIST_BINS, np.int64),
            {"metric": 0, "gap": 0, "center": 0},
        )

    def _dist_bins(self, v: np.ndarray) -> np.ndarray:  # (n,) log-spaced bin of each distance; 0 -> bin 0
        log_lo, log_step = math.log(self.dist_lo), math.log(self.dist_max / self.dist_lo) / _DIST_BINS
        return np.minimum(((np.log(np.maximum(v, self.dist_lo)) - log_lo) / log_step).astype(np.intp), _DIST_BINS - 1)

    def update(self, chunk: PairChunk) -> None:
        self.metric += np.bincount(
            np.minimum((chunk.metric * _METRIC_BINS).astype(np.intp), _METRIC_BINS - 1), minlength=_METRIC_BINS
        )
        self.gap += np.bincount(self._dist_bins(chunk.gap), minlength=_DIST_BINS)
        self.center += np.bincount(self._dist_bins(chunk.center), minlength=_DIST_BINS)
        for name, v in (("metric", chunk.metric), ("gap", chunk.gap), ("center", chunk.center)):
            self.zeros[name] += int(np.count_nonzero(v == 0))

    def merge(self, other: _PairHistograms) -> None:
        for name in ("metric", "gap", "center"):
            getattr(self, name).__iadd__(getattr(other, name))
            self.zeros[name] += other.zeros[name]

    def result(self, pair_metric: str, total: int) -> dict[str, Histogram]:
        edges = np.geomspace(self.dist_lo, self.dist_max, _DIST_BINS + 1)
        # zeros went to bin 0 in update; the histograms hold positive values only
        counts = {}
        for name in ("metric", "gap", "center"):
            c = getattr(self, name).copy()
            c[0] -= self.zeros[name]
            counts[name] = c
        return {
            pair_metric: Histogram(
                pair_metric, np.linspace(0.0, 1.0, _METRIC_BINS + 1), counts["metric"], self.zeros["metric"], total
            ),
            "gap": Histogram("gap", edges, counts["gap"], self.zeros["gap"], total),
            "center": Histogram("center", edges, counts["center"], self.zeros["center"], total),
        }


@dataclass(eq=False)
class _CategoryPairs:
    """Unordered category pairs, counted per combination of the criteria they meet.

    ``counts``: (C * C * 8,) int64 at ``(a * C + b) * 8 + bits`` for class indices ``a <= b``, bit k
    of ``bits`` set when the pair meets ``CRITERIA[k]``: one bincount per chunk instead of one per
    criterion, and no masked copies of the keys.
    """

    cls: np.ndarray
    n_cls: int
    counts: np.ndarray

    @classmethod
    def empty(cls, class_idx: np.ndarray, num_classes: int) -> _CategoryPairs:
        n = max(num_classes, 1)
        return cls(class_idx.astype(np.int64), n, np.zeros(n * n * 8, np.int64))

    def update(self, chunk: PairChunk) -> None:
        ca, cb = self.cls[chunk.first], self.cls[chunk.second]
        bits = np.zeros(ca.size, np.uint8)  # (n,) which criteria the pair meets
        for k, c in enumerate(CRITERIA):
            bits |= chunk.hits[c].view(np.uint8) << k
        code = np.minimum(ca, cb) * (8 * self.n_cls) + np.maximum(ca, cb) * 8  # (n,) unordered pair
        code += bits
        self.counts += np.bincount(code, minlength=self.counts.size)

    def merge(self, other: _CategoryPairs) -> None:
        self.counts += other.counts

    def result(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(C * C,) int64 all pairs, and criterion -> (C * C,) int64 pairs meeting it."""
        by_bits = self.counts.reshape(-1, 8)  # (C * C, 8)
        bits = np.arange(8)
        return by_bits.sum(axis=1), {c: by_bits[:, (bits >> k) & 1 == 1].sum(axis=1) for k, c in enumerate(CRITERIA)}


# --------------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------------
def _check_options(gap, iou, pair_metric, center, crowd_pairs, aspect, size, chunk_pairs, examples) -> None:
    def finite(name, v, lo, cond):
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float, np.integer, np.floating))
            or not math.isfinite(v)
            or not cond(v)
        ):
            raise OptionError(f"{name} must be a finite number {lo}, got {v!r}", param=name)

    finite("gap", gap, ">= 0 (pixels)", lambda v: v >= 0)
    finite("iou", iou, "in [0, 1]", lambda v: 0 <= v <= 1)
    finite("center", center, ">= 0 (pixels)", lambda v: v >= 0)
    finite("aspect", aspect, ">= 1", lambda v: v >= 1)
    if pair_metric not in PAIR_METRICS:
        raise OptionError(
            f"pair_metric must be one of {', '.join(PAIR_METRICS)}, got {pair_metric!r}", param="pair_metric"
        )
    check_int("crowd_pairs", crowd_pairs, 1)
    if size is not None:
        finite("size", size, "> 0 (pixels)", lambda v: v > 0)
    check_int("chunk_pairs", chunk_pairs, 1)
    check_int("examples", examples, 0)


def overlap(
    dataset: Dataset,
    *,
    gap: float = 10.0,
    iou: float = 0.6,
    pair_metric: str = "iou",
    center: float = 10.0,
    crowd_pairs: int = 7,
    aspect: float = 4.0,
    size: float | None = None,
    exclude_crowd: bool = False,
    by_category: bool = False,
    examples: int = 0,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
) -> OverlapReport:
    """Pairwise statistics of the objects sharing an image; definitions in the module docstring.

    Args:
        dataset: the dataset (G annotations over I images).
        gap: pixels; a pair counts when its gap is ``< gap``.
        iou: a pair counts when its IoU (or IoA) is ``> iou``; in [0, 1].
        pair_metric: ``"iou"`` (intersection over union) or ``"ioa"`` (intersection over the
            smaller box's area).
        center: pixels; a pair counts when its centre distance is ``< center``.
        crowd_pairs: an image is crowded with at least this many centre pairs (>= 1).
        aspect: an object is elongated when ``max(w/h, h/w) >= aspect`` (>= 1).
        size: if given, each image's boxes are scaled by ``size / max(width, height)`` first.
        exclude_crowd: drop iscrowd annotations first.
        by_category: also rank category pairs per criterion (``report.by_category``).
        examples: list this many most extreme images per criterion (``report.examples``); 0: none.
        chunk_pairs: at most this many pairs are held in memory at once.

    Returns:
        An :class:`OverlapReport` (all numbers on the CPU).

    Raises:
        OptionError: a threshold out of range or an unknown ``pair_metric``.
    """
    _check_options(gap, iou, pair_metric, center, crowd_pairs, aspect, size, chunk_pairs, examples)
    settings = OverlapSettings(
        gap=float(gap),
        iou=float(iou),
        pair_metric=pair_metric,
        center=float(center),
        crowd_pairs=int(crowd_pairs),
        aspect=float(aspect),
        size=None if size is None else float(size),
        exclude_crowd=bool(exclude_crowd),
    )
    ds = dataset.without_crowd() if exclude_crowd else dataset
    n_img, n_obj = ds.num_images, ds.num_annotations
    counts = ds.counts  # (I,)
    offsets = ds.offsets.astype(np.int64)

    # --- per-object boxes, scaled; corners from x, w so that x2 - x1 is the same float everywhere
    xywh = ds.bbox.astype(np.float64)  # (G, 4)
    if size is not None:
        scale = letterbox_scale(ds.width, ds.height, size)  # (I,)
        xywh = xywh * scale[ds.image_index][:, None]  # (G, 4)
    x1, y1 = xywh[:, 0].copy(), xywh[:, 1].copy()
    x2, y2 = x1 + xywh[:, 2], y1 + xywh[:, 3]

    # --- elongation, on the annotation's own w, h (scale-free)
    w, h = ds.bbox[:, 2], ds.bbox[:, 3]
    lo_side, hi_side = np.minimum(w, h), np.maximum(w, h)
    with np.errstate(divide="ignore", invalid="ignore"):
        obj_aspect = np.where(lo_side > 0, hi_side / np.where(lo_side > 0, lo_side, 1.0), np.inf)  # (G,)
    elongated = obj_aspect >= settings.aspect  # (G,) bool; zero-size boxes have inf
    img_elongated = np.bincount(ds.image_index[elongated], minlength=n_img).astype(np.int64)  # (I,)
    img_max_aspect = np.full(n_img, np.nan)
    has = counts > 0
    if n_obj:
        img_max_aspect[has] = np.maximum.reduceat(obj_aspect, offsets[:-1][has])

    # --- histogram ranges: any distance inside image k is at most the diagonal of the hull of the
    # image rectangle (scaled) and its boxes
    if n_obj:
        iw_img = ds.width.astype(np.float64) * (scale if size is not None else 1.0)
        ih_img = ds.height.astype(np.float64) * (scale if size is not None else 1.0)
        st = offsets[:-1][has]
        ext_w = np.maximum.reduceat(x2, st) - np.minimum(np.minimum.reduceat(x1, st), 0.0)
        ext_h = np.maximum.reduceat(y2, st) - np.minimum(np.minimum.reduceat(y1, st), 0.0)
        ext_w, ext_h = np.maximum(ext_w, iw_img[has]), np.maximum(ext_h, ih_img[has])
        dist_max = float(np.sqrt(ext_w * ext_w + ext_h * ext_h).max())
    else:
        dist_max = 1.0

    # --- one pass over the pair chunks, one accumulator per statistic
    xyxy = np.stack([x1, y1, x2, y2], axis=1)  # (G, 4)
    cum = _pair_offsets(offsets)
    total = int(cum[-1])
    counts_acc = _CriterionCounts.empty(n_img)
    extremes = _Extremes.empty(n_img, pair_metric == "ioa")
    hists = _PairHistograms.empty(dist_max)
    cats = _CategoryPairs.empty(ds.class_idx, ds.num_classes) if by_category else None
    for chunk in pair_chunks(xyxy, offsets, settings, chunk_pairs, cum):
        for acc in (counts_acc, extremes, hists, cats):
            if acc is not None:
                acc.update(chunk)
    img_gap, img_iou, img_center = (counts_acc.counts[c] for c in CRITERIA)
    img_max_iou, img_max_ioa, img_min_gap, img_min_center = extremes.result(counts)

    # --- per-image frame
    crowded = img_center >= settings.crowd_pairs  # (I,) bool
    per_image = pd.DataFrame(
        {
            "image_id": ds.image_id,
            "file_name": ds.file_name.astype(object),
            "width": ds.width,
            "height": ds.height,
            "objects": counts.astype(np.int64),
            "pairs": np.diff(cum),
            "gap_pairs": img_gap,
            "iou_pairs": img_iou,
            "center_pairs": img_center,
            "crowded": crowded,
            "elongated": img_elongated,
            "max_iou": img_max_iou,
            **({"max_ioa": img_max_ioa} if img_max_ioa is not None else {}),
            "min_gap": img_min_gap,
            "min_center": img_min_center,
            "max_aspect": img_max_aspect,
        }
    )

    # --- histograms
    finite_aspect = obj_aspect[np.isfinite(obj_aspect)]
    a_hi = max(float(finite_aspect.max()) if finite_aspect.size else 1.0, 2.0 * settings.aspect)
    a_edges = np.geomspace(1.0, a_hi, _ASPECT_BINS + 1)
    a_counts = np.histogram(np.minimum(finite_aspect, a_hi), bins=a_edges)[0].astype(np.int64)
    histograms = {
        **hists.result(pair_metric, total),
        "aspect": Histogram("aspect", a_edges, a_counts, int(n_obj - finite_aspect.size), n_obj),
    }

    by_cat = _by_category(ds, *cats.result()) if cats is not None else None
    ex = _examples(per_image, examples, pair_metric) if examples else None
    return OverlapReport(
        name=ds.name,
        settings=settings,
        images=int(has.sum()),
        objects=n_obj,
        pairs=total,
        gap_pairs=int(img_gap.sum()),
        gap_images=int((img_gap > 0).sum()),
        iou_pairs=int(img_iou.sum()),
        iou_images=int((img_iou > 0).sum()),
        center_pairs=int(img_center.sum()),
        center_images=int((img_center > 0).sum()),
        crowded_images=int(crowded.sum()),
        elongated_objects=int(elongated.sum()),
        elongated_images=int((img_elongated > 0).sum()),
        per_image=per_image,
        by_category=by_cat,
        examples=ex,
        histograms=histograms,
    )


def _by_category(ds: Dataset, cat_all: np.ndarray, cat_hit: dict[str, np.ndarray]) -> pd.DataFrame:
    """Top :data:`BY_CATEGORY_TOP` unordered category pairs per criterion (see OverlapReport)."""
    n_cls = max(ds.num_classes, 1)
    names = ds.categories["name"].to_numpy(dtype=object)
    frames = []
    for c in CRITERIA:
        hit = cat_hit[c]
        total = int(hit.sum())
        nz = np.flatnonzero(hit)
        order = nz[np.lexsort((nz, -hit[nz]))][:BY_CATEGORY_TOP]  # most pairs first, then by index
        frames.append(
            pd.DataFrame(
                {
                    "criterion": c,
                    "rank": np.arange(1, order.size + 1, dtype=np.int64),
                    "category_a": names[order // n_cls],
                    "category_b": names[order % n_cls],
                    "pairs": hit[order],
                    "share": hit[order] / max(total, 1),
                    "all_pairs": cat_all[order],
                    "rate": hit[order] / cat_all[order],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _examples(per_image: pd.DataFrame, k: int, pair_metric: str) -> pd.DataFrame:
    """The ``k`` most extreme images per criterion (see OverlapReport.examples)."""
    value_col = {
        "gap": ("min_gap", True),
        "iou": (f"max_{pair_metric}", False),
        "center": ("min_center", True),
        "elongated": ("max_aspect", False),
    }
    frames = []
    for crit, (col, ascending) in value_col.items():
        count_col = "elongated" if crit == "elongated" else f"{crit}_pairs"
        sub = per_image[per_image[count_col] > 0]
        sub = sub.sort_values([count_col, col, "image_id"], ascending=[False, ascending, True], kind="stable").head(k)
        frames.append(
            pd.DataFrame(
                {
                    "criterion": crit,
                    "rank": np.arange(1, len(sub) + 1, dtype=np.int64),
                    "image_id": sub["image_id"].to_numpy(),
                    "file_name": sub["file_name"].to_numpy(),
                    "count": sub[count_col].to_numpy(),
                    "value": sub[col].to_numpy(dtype=np.float64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Files: per-image table and plots
# --------------------------------------------------------------------------------------------------
def per_image_format(path: str | os.PathLike) -> str:
    """``csv`` or ``parquet`` from ``path``'s extension; anything else is an OptionError."""
    fmt = PER_IMAGE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OptionError(f"per_image file must end in .csv, .parquet or .pq, got {str(path)!r}", param="per_image")
    return fmt


def write_per_image(report: OverlapReport, path: str | os.PathLike) -> Path:
    """Write ``report.per_image`` atomically as CSV or parquet (chosen by extension); return the path."""
    per_image_format(path)
    return write_frame(report.per_image, path)


def plot_overlap(report: OverlapReport, directory: str | os.PathLike) -> list[Path]:
    """Draw the four histograms as PNGs in ``directory`` (created if needed), atomically.

    Files: ``overlap_iou.png`` (or ``overlap_ioa.png``; linear x), ``overlap_gap.png``,
    ``overlap_center.png`` and ``overlap_aspect.png`` (log x); counts on a log scale, the
    threshold marked with how many pairs or objects meet it. Zero values (and zero-size boxes for
    the aspect) cannot sit on the drawn bins and are counted in the title instead.

    Returns:
        The paths written, in that order.
    """
    # matplotlib's object API with its Agg canvas: no pyplot global state, no backend switch
    from matplotlib.figure import Figure

    s = report.settings
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    unit = f"px, letterboxed to {s.size:g}" if s.size else "px"
    metric = s.pair_metric
    name = _METRIC_NAMES[metric]
    specs = [
        (metric, f"pair {name}", s.iou, f"{name} > {s.iou:g}", report.iou_pairs, "pairs", f"{name} = 0"),
        (
            "gap",
            f"gap between boxes ({unit})",
            s.gap,
            f"gap < {s.gap:g}",
            report.gap_pairs,
            "pairs",
            "gap = 0 (touching or overlapping)",
        ),
        (
            "center",
            f"centre distance ({unit})",
            s.center,
            f"centre distance < {s.center:g}",
            report.center_pairs,
            "pairs",
            "same centre",
        ),
        (
            "aspect",
            "aspect ratio max(w/h, h/w)",
            s.aspect,
            f"aspect >= {s.aspect:g}",
            report.elongated_objects,
            "objects",
            "zero width or height",
        ),
    ]
    paths = []
    for key, xlabel, thr, thr_label, hits, unit_name, zero_label in specs:
        hist = report.histograms[key]
        fig = Figure(figsize=(8, 4.8), dpi=110)
        ax = fig.add_subplot()
        edges, counts = hist.edges, hist.counts
        if counts.sum():
            ax.stairs(counts, edges, fill=True, color="#4c72b0", alpha=0.85)
            ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, f"no {unit_name} to draw", transform=ax.transAxes, ha="center", va="center")
        if key != metric:
            ax.set_xscale("log")
        if key == "aspect":  # decades alone (1, 10) say little about ratios of 1..20
            ticks = [
                t
                for t in (1, 1.5, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100, 200, 500, 1000)
                if edges[0] <= t <= edges[-1]
            ]
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
        share = 100.0 * hits / hist.total if hist.total else float("nan")
        ax.axvline(
            thr,
            color="#c44e52",
            linestyle="--",
            linewidth=1.5,
            label=f"{thr_label}: {hits:,} {unit_name} ({share:.2f}%)",
        )
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel(xlabel + ("" if key == metric else ", log scale"))
        ax.set_ylabel(f"{unit_name} per bin (log scale)")
        ax.set_title(
            f"{report.name}: {xlabel.split(' (')[0]} of {hist.total:,} {unit_name}\n"
            f"not drawn: {hist.zeros:,} with {zero_label}",
            fontsize=10,
        )
        ax.legend(loc="best", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        fig.tight_layout()
        path = directory / f"overlap_{key}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        paths.append(path)
    return paths
