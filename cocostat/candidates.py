"""The predictions folder written by ``cocostat predict`` and read by the audits (format version 3).

Inference is expensive, so it runs once and its raw per-anchor outputs around every annotation are
stored. The store is built for size and for reading in image-aligned chunks: memory is bounded by a
chunk, never by the dataset. A predictions folder (version 3) holds::

    manifest.json                      what produced it (:data:`MANIFEST_KEYS`), the candidate layout
    candidates/rankRRR-chunkCCCCCC.parquet   candidate values, one file per finished chunk of images
    detections/rankRRR-chunkCCCCCC.parquet   detections after NMS of the same images, columnar
    detections.json                    the same detections as one COCO results JSON (written streamed)

- ``manifest.json``: cfg, weights checksum, input size, anchors (input pixels, cfg order), the
  levels (``[yolo]`` layers in cfg order) with their anchor indices (``mask``), strides and grid
  sizes, class count, neighbourhood radius, dataset, counts, and ``layout``: the N candidate slots
  of every object once, as lists ``anchor``, ``level``, ``dx``, ``dy`` (N,) in the order
  (anchor, dy, dx); N = A x (2n+1)^2.
- a **candidate part** is one parquet file per chunk of whole images (``CHUNK_IMAGES`` images of
  one rank), one row per annotation (crowd ones included), rows ordered by (image, annotation id).
  Per-object columns: ``ann_id`` int64, ``image_id`` int64, ``class_idx`` int16, ``iscrowd`` bool,
  ``gt`` fixed_size_list<float32>[4] (xyxy, input pixels), ``cell`` fixed_size_list<int16>[2L]
  (the centre cell (gx, gy) of each level), ``valid`` bool[N] (the cell lies inside the grid).
  ``gx = cell[level] + dx`` and ``gy = cell[level] + dy`` are derived when read. The values come in
  one of two kinds of part, which read into the same dense (G, N) arrays: ``pred`` (G, N, 4)
  (decoded box xyxy, input pixels), ``obj``, ``cls_prob``, ``max_cls_prob`` (G, N) float32 (sigmoids;
  NaN where not valid), ``max_cls_idx`` (G, N) int16 (-1 where not valid).

  - a **slot part** (format 3; parquet schema metadata ``cocostat.part = slots``) stores each
    distinct prediction once. Objects of one image whose neighbourhoods overlap share cells, and the
    network makes one prediction per (image, anchor, cell), a *slot*; on coco-tiny val2017 with
    yolov3-tiny only 59 % of the valid candidates are distinct slots. :func:`slot_index` numbers the
    slots (and the (slot, class) *entries*) from the per-object columns alone, so no index is stored:
    list columns ``pred`` (4 values per slot), ``obj``, ``max_cls_idx`` (one per slot) and
    ``cls_prob`` (one per entry: the probability of the class of an object the slot serves) hold
    them on the first row of each image, in slot order; ``max_cls_prob`` holds only the slots whose
    highest class is none of those classes (otherwise it is that entry's ``cls_prob``, the same
    float).
  - a **dense part** (format 2, and what the writer falls back to when candidates of one slot
    disagree, as in synthetic data drawn per candidate) stores the blocks as fixed-size lists:
    ``pred`` float32[4N], ``obj``, ``cls_prob``, ``max_cls_prob`` float32[N], ``max_cls_idx`` int16[N].
- a **detection part**: columns ``image_id``, ``category_id`` int64 and ``x``, ``y``, ``w``, ``h``,
  ``score`` float64 (COCO results values: bbox in file pixels rounded to 3 decimals, score to 5).
  The detection part of a chunk is written after its candidate part and marks the chunk finished.

Why parquet, one row per object (measured in ``benchmarks/bench_scale.py``,
``reports/bench_scale.md``): it stores no per-row repetition of ids, layout or boxes; parquet's
byte-stream-split encoding plus zstd (level 9) shrinks the float mantissas' predictable bytes, which
makes it the smallest of the layouts measured; a part reads straight into numpy blocks; any parquet
tool can read it; and one file per chunk is the unit of atomic writing, of ``--resume`` and of
distribution (each ``torchrun`` rank writes only ``rankR-*`` files). On real yolov3-tiny predictions
a slot part is 43 % of version 1's bytes and a dense part 56 %. Lossless storage of the network's
float32 outputs ends about there: the float values are over 90 % of a part. Arrow IPC (feather) reads
several times faster but is 12 % (zstd) to 27 % (lz4) larger; ``.npz`` chunks are more than twice as
large. The analyses decode only the columns they use (:data:`ANALYSIS_COLUMNS`) and read the next
chunk in a background thread (:func:`read_ahead`) while they reduce the current one.

Coordinates are network-input pixels (after letterboxing), boxes xyxy. ``level`` indexes the
``[yolo]`` layers in cfg order (for yolov3 level 0 is stride 32), ``anchor`` indexes the cfg's
``anchors`` list, ``(gx, gy)`` is the cell and ``(dx, dy)`` its offset from the centre cell.

Reading API (for the analyses and any new command):

- :func:`read_predictions` ``(folder) -> Predictions``; reads only the manifest and lists parts.
- :meth:`Predictions.iter_chunks` / :func:`iter_chunks` ``(folder or Predictions, max_objects=...)``
  yields :class:`CandidateArrays`, each holding whole images (G objects x N candidates), in store
  order (image-id order for a single-process run), a chunk of about ``max_objects`` objects at a time.
- :meth:`Predictions.detection_columns` gives every detection as columns (no Python dicts).
- :attr:`Predictions.candidates` (the whole version-1 style table, one row per candidate) and
  :meth:`Predictions.detections` (a list of dicts) still exist for small folders; they hold
  everything in memory.

Version 2 folders (dense parts only) are read as they are. Version 1 folders (``candidates.parquet`` /
``candidates-rankR.parquet`` with one row per candidate, ``detections*.json``) are still read, whole
into memory, and chunked after reading. ``cocostat convert-predictions DIR`` (:func:`upgrade_store`)
converts either to version 3. A folder of another version gets a one-line error.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd

from cocostat.atomic import atomic_path, write_text
from cocostat.errors import DatasetFormatError

FORMAT_NAME = "cocostat-predictions"
FORMAT_VERSION = 3
#: versions :func:`read_predictions` reads.
READABLE_VERSIONS = (1, 2, 3)
CANDIDATES_DIR = "candidates"
DETECTIONS_DIR = "detections"
DETECTIONS_JSON = "detections.json"
#: objects per chunk handed to an analysis by :func:`iter_chunks` (about 0.4 GB of working memory
#: for the yolov3 layout's 81 candidates per object in the audits).
CHUNK_OBJECTS = 32_768
#: parquet compression of the parts.
COMPRESSION = "zstd"
#: zstd level of the candidate parts: on real yolov3-tiny predictions 56 % of version 1's bytes
#: against 60 % at pyarrow's default level, for about twice the (small) write time; level 19
#: reaches 54 % at twelve times the write time (reports/bench_scale.md). Readers need nothing.
COMPRESSION_LEVEL = 9

#: column -> numpy dtype of the version-1 candidate table (one row per candidate), still produced by
#: :attr:`Predictions.candidates` and :func:`to_table` and read by :func:`to_arrays`.
COLUMNS: dict[str, str] = {
    "ann_id": "int64",  # COCO annotation id
    "image_id": "int64",  # COCO image id
    "class_idx": "int16",  # contiguous class index of the annotation
    "iscrowd": "bool",
    "gt_x1": "float32",
    "gt_y1": "float32",
    "gt_x2": "float32",
    "gt_y2": "float32",  # annotation, input px
    "level": "int8",  # [yolo] layer index, cfg order
    "anchor": "int16",  # index into the cfg's anchors list
    "anchor_w": "float32",
    "anchor_h": "float32",  # anchor size, input px
    "stride": "int16",  # input pixels per cell at this level
    "dx": "int8",
    "dy": "int8",  # cell offset from the annotation's centre cell
    "gx": "int16",
    "gy": "int16",  # the cell
    "valid": "bool",  # the cell lies inside the grid
    "px1": "float32",
    "py1": "float32",
    "px2": "float32",
    "py2": "float32",  # decoded box, input px
    "obj": "float32",  # sigmoid objectness
    "cls_prob": "float32",  # sigmoid probability of the annotation's class
    "max_cls_prob": "float32",  # highest class probability
    "max_cls_idx": "int16",  # class index of that probability
}

#: column -> dtype of a detection part.
DETECTION_COLUMNS: dict[str, str] = {
    "image_id": "int64",
    "category_id": "int64",
    "x": "float64",
    "y": "float64",
    "w": "float64",
    "h": "float64",
    "score": "float64",
}

MANIFEST_KEYS = (
    "format",
    "version",
    "cfg",
    "weights",
    "weights_sha256",
    "size",
    "letterbox",
    "anchors",
    "levels",
    "num_classes",
    "neighborhood",
    "dataset",
    "images",
    "annotations",
    "layout",
)


ORDER = ("image_id", "ann_id", "anchor", "dy", "dx")
T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# The dense arrays and the layout
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CandidateArrays:
    """A block of candidates as dense arrays (G objects x N candidates), numpy, ready for torch.from_numpy.

    Attributes:
        ann_id, image_id: (G,) int64. class_idx: (G,) int64. iscrowd: (G,) bool.
        gt: (G, 4) float32, xyxy, input pixels.
        level, anchor, dx, dy: (N,) int64, the same for every object (fixed layout).
        anchor_wh: (N, 2) float32, input pixels. stride: (N,) float32.
        gx, gy: (G, N) int64. valid: (G, N) bool.
        pred: (G, N, 4) float32, xyxy, input pixels (NaN where not valid).
        obj, cls_prob: (G, N) float32.
        max_cls_prob: (G, N) float32; max_cls_idx: (G, N) int16, -1 where not valid. Either is
            None when the source lacks it or the reader was asked for other columns only
            (``columns`` of :meth:`Predictions.iter_chunks`).
    """

    ann_id: np.ndarray
    image_id: np.ndarray
    class_idx: np.ndarray
    iscrowd: np.ndarray
    gt: np.ndarray
    level: np.ndarray
    anchor: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    anchor_wh: np.ndarray
    stride: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    valid: np.ndarray
    pred: np.ndarray
    obj: np.ndarray
    cls_prob: np.ndarray
    max_cls_prob: np.ndarray | None = None
    max_cls_idx: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ann_id.shape[0])

    @staticmethod
    def of(layout: Layout, **fields: Any) -> CandidateArrays:
        """Arrays of ``layout``'s slots: its ``level``, ``anchor``, ``dx``, ``dy``, ``anchor_wh`` and
        ``stride``, and the per-object and per-candidate ``fields``."""
        return CandidateArrays(
            level=layout.level,
            anchor=layout.anchor,
            dx=layout.dx,
            dy=layout.dy,
            anchor_wh=layout.anchor_wh,
            stride=layout.stride,
            **fields,
        )

    def select(self, rows: np.ndarray) -> CandidateArrays:
        """The objects ``rows`` ((G,) bool mask or int indices), layout unchanged."""
        per_obj = {f: getattr(self, f)[rows] for f in _PER_OBJECT + _PER_CANDIDATE if getattr(self, f) is not None}
        return replace(self, **per_obj)


#: CandidateArrays fields with one entry per object / per (object, candidate) / per candidate slot.
_PER_OBJECT = ("ann_id", "image_id", "class_idx", "iscrowd", "gt")
_PER_CANDIDATE = ("gx", "gy", "valid", "pred", "obj", "cls_prob", "max_cls_prob", "max_cls_idx")
_LAYOUT = ("level", "anchor", "dx", "dy", "anchor_wh", "stride")


def concat_arrays(blocks: Sequence[CandidateArrays]) -> CandidateArrays:
    """Blocks with the same layout, stacked along objects (in the given order)."""
    if len(blocks) == 1:
        return blocks[0]
    first = blocks[0]
    out: dict[str, Any] = {}
    for f in _PER_OBJECT + _PER_CANDIDATE:
        vals = [getattr(b, f) for b in blocks]
        out[f] = None if any(v is None for v in vals) else np.concatenate(vals)
    return replace(first, **out)


@dataclass(frozen=True, eq=False)
class Layout:
    """The N candidate slots every object has, and the grids they index (stored once, in the manifest).

    Attributes:
        anchor, level, dx, dy: (N,) int64, slots in the order (anchor, dy, dx).
        anchor_wh: (N, 2) float32, input pixels. stride: (N,) float32, input pixels per cell.
        grid_w, grid_h: (L,) int64, cells per row / column of each level.
    """

    anchor: np.ndarray
    level: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    anchor_wh: np.ndarray
    stride: np.ndarray
    grid_w: np.ndarray
    grid_h: np.ndarray

    @property
    def size(self) -> int:
        """N, candidates per object."""
        return int(self.anchor.shape[0])

    @property
    def num_levels(self) -> int:
        return int(self.grid_w.shape[0])

    def centre_columns(self) -> np.ndarray:
        """(L,) int64: for each level, the first slot with dx = dy = 0 (its cell is the centre cell)."""
        centre = (self.dx == 0) & (self.dy == 0)
        out = np.full(self.num_levels, -1, np.int64)
        for lv in range(self.num_levels):
            hit = np.flatnonzero(centre & (self.level == lv))
            if hit.size:
                out[lv] = hit[0]
        return out

    def to_dict(self) -> dict:
        return {
            "anchor": self.anchor.tolist(),
            "level": self.level.tolist(),
            "dx": self.dx.tolist(),
            "dy": self.dy.tolist(),
        }

    @staticmethod
    def from_manifest(manifest: dict, where: str = "manifest.json") -> Layout:
        """The layout of a version-2 or 3 manifest (``layout``, ``anchors``, ``levels``, ``size``)."""
        try:
            lay = manifest["layout"]
            anchor = np.asarray(lay["anchor"], np.int64)
            level = np.asarray(lay["level"], np.int64)
            dx, dy = np.asarray(lay["dx"], np.int64), np.asarray(lay["dy"], np.int64)
            wh = np.asarray(manifest["anchors"], np.float64).reshape(-1, 2)
            levels = manifest["levels"]
            size = manifest["size"]
            size = int(size[0] if isinstance(size, (list, tuple)) else size)
            strides = np.asarray([float(lv["stride"]) for lv in levels])
            grid = np.asarray([int(lv.get("grid") or size // int(lv["stride"])) for lv in levels], np.int64)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DatasetFormatError(
                f"{where}: expected a candidate layout (layout.anchor/level/dx/dy lists), "
                f"anchors, levels and size; could not read them "
                f"({type(exc).__name__}: {exc})"
            ) from None
        n = anchor.shape[0]
        if not (level.shape[0] == dx.shape[0] == dy.shape[0] == n) or (
            n and (anchor.min() < 0 or anchor.max() >= wh.shape[0] or level.min() < 0 or level.max() >= len(levels))
        ):
            raise DatasetFormatError(
                f"{where}: layout lists must have one entry per candidate slot and refer to "
                f"the manifest's {wh.shape[0]} anchors and {len(levels)} levels"
            )
        return Layout(
            anchor, level, dx, dy, wh[anchor].astype(np.float32), strides[level].astype(np.float32), grid, grid.copy()
        )


def make_layout(
    anchors_wh, masks: Sequence[Sequence[int]], strides: Sequence[float], size: int, neighborhood: int
) -> Layout:
    """The layout ``cocostat predict`` writes: every anchor (cfg order) x every (dy, dx) in -n..n."""
    wh = np.asarray(anchors_wh, np.float64).reshape(-1, 2)
    level_of = np.zeros(wh.shape[0], np.int64)
    for lv, m in enumerate(masks):
        level_of[list(m)] = lv
    offs = np.arange(-neighborhood, neighborhood + 1)
    dy, dx = (v.ravel() for v in np.meshgrid(offs, offs, indexing="ij"))
    a_count, c = wh.shape[0], offs.size**2
    anchor = np.repeat(np.arange(a_count), c)
    st = np.asarray(strides, np.float64)
    grid = (int(size) // st.astype(np.int64)).astype(np.int64)
    return Layout(
        anchor,
        level_of[anchor],
        np.tile(dx, a_count),
        np.tile(dy, a_count),
        wh[anchor].astype(np.float32),
        st[level_of[anchor]].astype(np.float32),
        grid,
        grid.copy(),
    )


def derive_cells(cell: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(G, N) int64 gx, gy from the centre cells ``cell`` (G, L, 2) of each object and level."""
    gx = cell[:, layout.level, 0].astype(np.int64) + layout.dx[None, :]
    gy = cell[:, layout.level, 1].astype(np.int64) + layout.dy[None, :]
    return gx, gy


def empty_arrays(layout: Layout) -> CandidateArrays:
    """Zero objects with ``layout``."""
    n = layout.size

    def z(*shape, dtype=np.float32):
        return np.zeros(shape, dtype=dtype)

    return CandidateArrays.of(
        layout,
        ann_id=z(0, dtype=np.int64),
        image_id=z(0, dtype=np.int64),
        class_idx=z(0, dtype=np.int64),
        iscrowd=z(0, dtype=bool),
        gt=z(0, 4),
        gx=z(0, n, dtype=np.int64),
        gy=z(0, n, dtype=np.int64),
        valid=z(0, n, dtype=bool),
        pred=z(0, n, 4),
        obj=z(0, n),
        cls_prob=z(0, n),
        max_cls_prob=z(0, n),
        max_cls_idx=z(0, n, dtype=np.int16),
    )


# --------------------------------------------------------------------------------------------------
# Version-1 candidate tables (one row per candidate)
# --------------------------------------------------------------------------------------------------
def _is_ordered(frame: pd.DataFrame) -> bool:
    """True when the rows already follow :data:`ORDER` (one vectorised pass, no sort)."""
    if len(frame) < 2:
        return True
    undecided = np.ones(len(frame) - 1, dtype=bool)  # adjacent pairs equal on every key so far
    for key in ORDER:
        v = frame[key].to_numpy()
        a, b = v[:-1], v[1:]
        if (undecided & (a > b)).any():
            return False
        undecided &= a == b
    return True


def candidate_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The candidate table in its canonical order: (image_id, ann_id, anchor, dy, dx).

    A single file written by ``cocostat predict`` is already in that order, and is returned as is
    (the check is far cheaper than the sort); parts of a distributed run are sorted.
    """
    if _is_ordered(frame):
        return frame.reset_index(drop=True)
    return frame.sort_values(list(ORDER), kind="stable").reset_index(drop=True)


def check_frame(frame: pd.DataFrame, where: str = "candidate table") -> pd.DataFrame:
    """Check columns and the fixed rows-per-annotation layout; return the frame cast to :data:`COLUMNS`."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetFormatError(f"{where}: missing column(s) {', '.join(missing)}")
    frame = frame.astype(COLUMNS)
    if len(frame):
        per_ann = frame.groupby("ann_id", sort=False).size().to_numpy()
        if (per_ann != per_ann[0]).any():
            raise DatasetFormatError(
                f"{where}: every annotation must have the same number of candidate rows, found "
                f"between {per_ann.min()} and {per_ann.max()}"
            )
    return frame


def write_candidates(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a version-1 candidate table to a parquet file atomically (tests and converters)."""
    frame = check_frame(frame)
    with atomic_path(path) as tmp:
        frame[list(COLUMNS)].to_parquet(tmp, index=False)
    return Path(path)


def to_arrays(frame: pd.DataFrame) -> CandidateArrays:
    """Reshape a canonical-order version-1 candidate table (see :func:`candidate_order`) into dense arrays."""
    frame = check_frame(frame)
    g = int(frame["ann_id"].nunique())
    n = len(frame) // g if g else 0

    def col(name, dtype=None):  # (G, N)
        v = frame[name].to_numpy()
        return (v if dtype is None else v.astype(dtype)).reshape(g, n)

    def per_object(name, dtype=None):  # (G,): the value on each object's first row
        return col(name, dtype)[:, 0] if n else np.zeros(0, dtype or COLUMNS[name])

    def per_candidate(name, dtype):  # (N,): the same for every object in the fixed layout
        return col(name, dtype)[0] if g else np.zeros(0, dtype)

    return CandidateArrays(
        ann_id=per_object("ann_id"),
        image_id=per_object("image_id"),
        class_idx=per_object("class_idx", np.int64),
        iscrowd=per_object("iscrowd"),
        gt=np.stack([per_object(c) for c in ("gt_x1", "gt_y1", "gt_x2", "gt_y2")], axis=1).reshape(g, 4),
        level=per_candidate("level", np.int64),
        anchor=per_candidate("anchor", np.int64),
        dx=per_candidate("dx", np.int64),
        dy=per_candidate("dy", np.int64),
        anchor_wh=np.stack([per_candidate("anchor_w", np.float32), per_candidate("anchor_h", np.float32)], axis=1),
        stride=per_candidate("stride", np.float32),
        gx=col("gx", np.int64),
        gy=col("gy", np.int64),
        valid=col("valid"),
        pred=np.stack([col(c) for c in ("px1", "py1", "px2", "py2")], axis=-1),
        obj=col("obj"),
        cls_prob=col("cls_prob"),
        max_cls_prob=col("max_cls_prob"),
        max_cls_idx=col("max_cls_idx"),
    )


def to_table(arrays: CandidateArrays) -> pd.DataFrame:
    """The version-1 candidate table (one row per candidate, :data:`COLUMNS`) of dense arrays."""
    g, n = arrays.ann_id.shape[0], arrays.anchor.shape[0]

    def per_row(x):  # (G,) -> (G * N,)
        return np.repeat(x, n)

    def per_col(x):  # (N,) -> (G * N,)
        return np.tile(x, g)

    mci = arrays.max_cls_idx if arrays.max_cls_idx is not None else np.full((g, n), -1, np.int16)
    mcp = arrays.max_cls_prob if arrays.max_cls_prob is not None else np.full((g, n), np.nan, np.float32)
    frame = pd.DataFrame(
        {
            "ann_id": per_row(arrays.ann_id),
            "image_id": per_row(arrays.image_id),
            "class_idx": per_row(arrays.class_idx),
            "iscrowd": per_row(arrays.iscrowd),
            **{c: per_row(arrays.gt[:, k]) for k, c in enumerate(("gt_x1", "gt_y1", "gt_x2", "gt_y2"))},
            "level": per_col(arrays.level),
            "anchor": per_col(arrays.anchor),
            "anchor_w": per_col(arrays.anchor_wh[:, 0]),
            "anchor_h": per_col(arrays.anchor_wh[:, 1]),
            "stride": per_col(arrays.stride),
            "dx": per_col(arrays.dx),
            "dy": per_col(arrays.dy),
            "gx": arrays.gx.reshape(-1),
            "gy": arrays.gy.reshape(-1),
            "valid": arrays.valid.reshape(-1),
            **{c: arrays.pred[..., k].reshape(-1) for k, c in enumerate(("px1", "py1", "px2", "py2"))},
            "obj": arrays.obj.reshape(-1),
            "cls_prob": arrays.cls_prob.reshape(-1),
            "max_cls_prob": mcp.reshape(-1),
            "max_cls_idx": mci.reshape(-1),
        }
    )
    return frame.astype(COLUMNS)[list(COLUMNS)]


def layout_of(arrays: CandidateArrays, manifest: dict) -> Layout:
    """The layout of dense arrays, with the grid sizes of ``manifest`` (``levels``, ``size``)."""
    size = manifest.get("size") or 416
    size = int(size[0] if isinstance(size, (list, tuple)) else size)
    levels = manifest.get("levels") or []
    grid = np.asarray([int(lv.get("grid") or size // int(lv["stride"])) for lv in levels], np.int64)
    n_levels = max(len(levels), int(arrays.level.max(initial=-1)) + 1)
    if grid.shape[0] < n_levels:  # a level the manifest does not describe: its size from the stride
        extra = [size // int(arrays.stride[arrays.level == lv][0]) for lv in range(grid.shape[0], n_levels)]
        grid = np.concatenate([grid, np.asarray(extra, np.int64)])
    return Layout(
        arrays.anchor.astype(np.int64),
        arrays.level.astype(np.int64),
        arrays.dx.astype(np.int64),
        arrays.dy.astype(np.int64),
        arrays.anchor_wh.astype(np.float32),
        arrays.stride.astype(np.float32),
        grid,
        grid.copy(),
    )


# --------------------------------------------------------------------------------------------------
# Slot parts (format 3): each distinct prediction of an image once
# --------------------------------------------------------------------------------------------------
#: parquet schema metadata key naming the kind of a candidate part; its value :data:`SLOT_PART` marks
#: a slot part, no key a dense part (every part of a version-2 folder).
PART_KIND_KEY = b"cocostat.part"
SLOT_PART = b"slots"


@dataclass(frozen=True, eq=False)
class SlotIndex:
    """The distinct predictions behind the valid candidates of a part (see :func:`slot_index`).

    A *slot* is one (image, anchor, cell): the network predicts one box, one objectness, one class
    vector there, whichever objects' neighbourhoods include it. An *entry* is one (slot, class of an
    object whose neighbourhood includes it): the class probability stored per candidate. Slots and
    entries are numbered in ascending key order (image by first row, anchor, gy, gx; then class).

    Attributes:
        valid: (G, N) bool; the V valid candidates are taken in row-major order (``x[valid]``).
        class_idx: (G,) int64, each object's class.
        slot_at, entry_at: (G * N,) intp, the slot / entry of every candidate, S / E where not
            valid: a table of the S (E) values with one fill row appended, gathered by them, is the
            dense block.
        slot_first, entry_first: (S,) / (E,) int64, one valid candidate (index into the V, the first
            in row-major order) of each slot / entry.
        image_rank: (G,) int64, each row's image numbered by its first row; first_rows: (I,) int64,
            the first row of each image in that numbering.
    """

    valid: np.ndarray
    class_idx: np.ndarray
    slot_at: np.ndarray
    entry_at: np.ndarray
    slot_first: np.ndarray
    entry_first: np.ndarray
    image_rank: np.ndarray
    first_rows: np.ndarray

    @property
    def num_slots(self) -> int:
        return int(self.slot_first.shape[0])

    @property
    def num_entries(self) -> int:
        return int(self.entry_first.shape[0])

    @functools.cached_property
    def slot(self) -> np.ndarray:
        """(V,) intp, the slot of each valid candidate."""
        return self.slot_at[self.valid.reshape(-1)]

    @functools.cached_property
    def entry(self) -> np.ndarray:
        """(V,) intp, the entry of each valid candidate."""
        return self.entry_at[self.valid.reshape(-1)]

    @functools.cached_property
    def cls(self) -> np.ndarray:
        """(V,) int64, the class of each valid candidate's object."""
        return np.broadcast_to(self.class_idx[:, None], self.valid.shape)[self.valid]

    def owners(self) -> tuple[np.ndarray, np.ndarray]:
        """(S,), (E,) int64: the row each slot's / entry's values are stored on, the first row of its
        image (non-decreasing in slot and entry order)."""
        rows = np.nonzero(self.valid)[0]
        slot_owner = self.first_rows[self.image_rank[rows[self.slot_first]]]
        return slot_owner, slot_owner[self.slot[self.entry_first]]


def slot_index(
    image_id: np.ndarray, class_idx: np.ndarray, cell: np.ndarray, valid: np.ndarray, layout: Layout
) -> SlotIndex:
    """Number the distinct slots and (slot, class) entries of a part's valid candidates.

    Everything comes from per-object columns and ``valid``, so a reader recomputes the writer's
    numbering without any stored index. One stable sort of the (V,) int64 keys
    ``(((image rank * A + anchor) * H + gy) * W + gx) * C + class`` (image rank: order of the image's
    first row; A anchors, H x W the largest grid, C = highest class index + 1) gives both numberings:
    a slot is a run of equal keys without the class, an entry a run of equal keys. (Written with
    numpy rather than a hash table: the sort is cheap because each object's keys already ascend in
    layout order, so timsort only merges the few objects of one image.)

    Args:
        image_id, class_idx: (G,) int. cell: (G, L, 2) int, each object's centre cell (gx, gy) per
            level (the candidates' cells, inside the grid where ``valid``, are these plus the
            layout's (dx, dy)). valid: (G, N) bool.
    """
    g, n = valid.shape
    _, first_row, inv = np.unique(image_id, return_index=True, return_inverse=True)
    rank = np.empty(first_row.size, np.int64)
    rank[np.argsort(first_row)] = np.arange(first_row.size)
    image_rank = rank[inv.reshape(-1)]  # (G,)
    first_rows = np.sort(first_row)
    class_idx = np.asarray(class_idx, np.int64)
    flat = np.flatnonzero(valid.reshape(-1))  # (V,)
    if flat.size == 0:
        z, none = np.zeros(0, np.int64), np.zeros(g * n, np.intp)
        return SlotIndex(valid, class_idx, none, none, z, z, image_rank, first_rows)
    a = int(layout.anchor.max()) + 1
    h, w, c = int(layout.grid_h.max()), int(layout.grid_w.max()), int(class_idx.max()) + 1
    # the key split into a per-(object, level) term and a per-slot term: one gather and one add
    cell = np.asarray(cell, np.int64)
    per_object = (image_rank[:, None] * (a * h * w) + cell[..., 1] * w + cell[..., 0]) * c + class_idx[:, None]
    per_slot = (layout.anchor * (h * w) + layout.dy * w + layout.dx) * c
    key = per_object[:, layout.level]  # (G, N)
    key += per_slot
    entry_key = np.take(key.reshape(-1), flat)  # (V,)
    del key
    order = np.argsort(entry_key, kind="stable")  # timsort: each object's keys already ascend (layout order)
    sorted_key = np.take(entry_key, order)
    new_entry = np.empty(sorted_key.size, bool)
    new_entry[0] = True
    np.not_equal(sorted_key[1:], sorted_key[:-1], out=new_entry[1:])
    sorted_key //= c  # the slot keys, still sorted
    new_slot = np.empty_like(new_entry)
    new_slot[0] = True
    np.not_equal(sorted_key[1:], sorted_key[:-1], out=new_slot[1:])
    at = np.take(flat, order)  # flat positions in key order

    def numbered(new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # (G * N,) numbers, (K,) firsts
        number = np.cumsum(new, dtype=np.intp)  # intp: np.take converts any other index type first
        out = np.full(g * n, number[-1], np.intp)  # K where not valid
        number -= 1
        out[at] = number
        return out, np.take(order, np.flatnonzero(new))

    slot_at, slot_first = numbered(new_slot)
    entry_at, entry_first = numbered(new_entry)
    return SlotIndex(valid, class_idx, slot_at, entry_at, slot_first, entry_first, image_rank, first_rows)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equal (NaN equals a NaN of the same bits; -0.0 differs from 0.0)."""
    return a.shape == b.shape and bool(np.array_equal(a.view(np.uint8), b.view(np.uint8)))


def _max_from_entries(idx: SlotIndex, slot_max_idx: np.ndarray) -> np.ndarray:
    """(S,) int64: for each slot the entry of its highest class when an object of that class touches
    the slot (its highest class probability is then that entry's ``cls_prob``), else -1."""
    hit = slot_max_idx[idx.slot].astype(np.int64) == idx.cls
    out = np.full(idx.num_slots, -1, np.int64)
    out[idx.slot[hit]] = idx.entry[hit]
    return out


def _lists(values: np.ndarray, owner: np.ndarray, g: int, width: int = 1):
    """A list column of ``g`` rows: row r holds the ``width`` values of every item ``owner == r``
    (``owner`` non-decreasing, ``values`` (items, width) in the same order)."""
    import pyarrow as pa

    offsets = np.zeros(g + 1, np.int32)
    np.cumsum(np.bincount(owner, minlength=g) * width, out=offsets[1:])
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.ListArray.from_arrays(pa.array(offsets), flat, type=pa.list_(pa.field("element", flat.type, False)))


def _inside(gx: np.ndarray, gy: np.ndarray, layout: Layout) -> np.ndarray:
    """(G, N) bool: the cell lies inside its level's grid."""
    lv = layout.level[None, :]
    return (gx >= 0) & (gy >= 0) & (gx < layout.grid_w[lv]) & (gy < layout.grid_h[lv])


def _slot_columns(
    arrays: CandidateArrays, layout: Layout, cell: np.ndarray, mci: np.ndarray, mcp: np.ndarray
) -> dict | None:
    """The per-candidate columns of a slot part, or None when ``arrays`` cannot be stored that way
    losslessly (no objects, candidates of one slot that disagree, a value other than NaN (-1 for
    ``max_cls_idx``) where a cell is not valid, a cell outside its grid, a negative class, a highest
    class probability that differs from its class's ``cls_prob``): the caller then writes
    a dense part. Where a cell is not valid the reader gives NaN (not the input's NaN bits)."""
    g = len(arrays)
    valid = np.asarray(arrays.valid, bool)
    if g == 0 or arrays.class_idx.min() < 0:
        return None
    if not _inside(arrays.gx, arrays.gy, layout)[valid].all():
        return None
    values: dict[str, np.ndarray] = {
        "pred": np.asarray(arrays.pred, np.float32),
        "obj": np.asarray(arrays.obj, np.float32),
        "cls_prob": np.asarray(arrays.cls_prob, np.float32),
        "max_cls_prob": np.asarray(mcp, np.float32),
        "max_cls_idx": np.asarray(mci, np.int16),
    }
    off = ~valid
    if not (all(np.isnan(v[off]).all() for k, v in values.items() if k != "max_cls_idx") and (mci[off] == -1).all()):
        return None
    idx = slot_index(arrays.image_id, arrays.class_idx, cell, valid, layout)
    stored: dict[str, np.ndarray] = {}
    for name, block in values.items():  # each slot's (each entry's) value, checked to be every candidate's
        v = block[valid]
        at, first = (idx.entry, idx.entry_first) if name == "cls_prob" else (idx.slot, idx.slot_first)
        stored[name] = v[first]
        if not _same_bits(v, stored[name][at]):
            return None
    from_entry = _max_from_entries(idx, stored["max_cls_idx"])
    hit = from_entry >= 0
    if not _same_bits(stored["max_cls_prob"][hit], stored["cls_prob"][from_entry[hit]]):
        return None
    slot_owner, entry_owner = idx.owners()
    return {
        "pred": _lists(stored["pred"], slot_owner, g, 4),
        "obj": _lists(stored["obj"], slot_owner, g),
        "cls_prob": _lists(stored["cls_prob"], entry_owner, g),
        "max_cls_prob": _lists(stored["max_cls_prob"][~hit], slot_owner[~hit], g),
        "max_cls_idx": _lists(stored["max_cls_idx"], slot_owner, g),
    }


def _slot_values(table, name: str, count: int, dtype, where: str) -> np.ndarray:
    """The flat values of list column ``name`` of a slot part, checked to number ``count``."""
    import pyarrow as pa

    col = table.column(name).combine_chunks()
    if not pa.types.is_list(col.type):
        raise DatasetFormatError(f"{where}: column {name} of a slot part must be a list column, got {col.type}")
    values = _numbers(col.flatten(), dtype, f"{where}: column {name}")
    if values.shape[0] != count:
        raise DatasetFormatError(f"{where}: column {name} must hold {count} values, got {values.shape[0]}")
    return values


def _slot_arrays(table, layout: Layout, fields: dict, cell: np.ndarray, wanted: tuple[str, ...], where: str) -> dict:
    """The dense (G, N) per-candidate arrays of a slot part (``fields``: its per-object arrays and
    ``valid`` already read; ``cell`` (G, L, 2)); NaN, and -1 for ``max_cls_idx``, where not valid."""
    valid = fields["valid"]
    if len(valid) and (fields["class_idx"].min() < 0 or not _inside(fields["gx"], fields["gy"], layout)[valid].all()):
        raise DatasetFormatError(f"{where}: a slot part needs classes >= 0 and valid cells inside the grid")
    idx = slot_index(fields["image_id"], fields["class_idx"], cell, valid, layout)
    s, e = idx.num_slots, idx.num_entries

    def dense(values: np.ndarray, fill, at: np.ndarray) -> np.ndarray:  # one gather, fill where not valid
        table = np.concatenate([values, np.full((1, *values.shape[1:]), fill, values.dtype)])
        return np.take(table, at, axis=0).reshape(valid.shape + values.shape[1:])

    entry_cls = _slot_values(table, "cls_prob", e, np.float32, where)
    out = {
        "pred": dense(_slot_values(table, "pred", 4 * s, np.float32, where).reshape(s, 4), np.nan, idx.slot_at),
        "obj": dense(_slot_values(table, "obj", s, np.float32, where), np.nan, idx.slot_at),
        "cls_prob": dense(entry_cls, np.nan, idx.entry_at),
    }
    if "max_cls_idx" in wanted:  # also when max_cls_prob is (see _wanted)
        slot_mci = _slot_values(table, "max_cls_idx", s, np.int16, where)
        out["max_cls_idx"] = dense(slot_mci, -1, idx.slot_at)
        if "max_cls_prob" in wanted:
            from_entry = _max_from_entries(idx, slot_mci)
            hit = from_entry >= 0
            slot_mcp = np.empty(s, np.float32)
            slot_mcp[hit] = entry_cls[from_entry[hit]]
            slot_mcp[~hit] = _slot_values(table, "max_cls_prob", int((~hit).sum()), np.float32, where)
            out["max_cls_prob"] = dense(slot_mcp, np.nan, idx.slot_at)
    return out


# --------------------------------------------------------------------------------------------------
# Candidate parts (dense: format 2; slots: format 3)
# --------------------------------------------------------------------------------------------------
def part_name(rank: int, chunk: int) -> str:
    """File name of chunk ``chunk`` of rank ``rank`` (in ``candidates/`` and ``detections/``)."""
    return f"rank{rank:03d}-chunk{chunk:06d}.parquet"


def _fsl(values: np.ndarray, width: int):
    """A fixed-size-list array of ``width`` non-null values per row (parquet: no definition levels)."""
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, type=pa.list_(pa.field("element", flat.type, nullable=False), width))


def arrays_to_arrow(arrays: CandidateArrays, layout: Layout, *, slots: bool = True):
    """A pyarrow Table of a candidate part (one row per object; columns in the module docstring).

    ``slots``: write a slot part (each distinct prediction once) when the values allow it losslessly
    (:func:`_slot_columns`), else a dense part; False: always dense (the format-2 layout).
    """
    import pyarrow as pa

    g, n, lv = len(arrays), layout.size, layout.num_levels
    lim = np.iinfo(np.int16)
    if g and not lim.min <= arrays.class_idx.min() <= arrays.class_idx.max() <= lim.max:
        raise ValueError(
            f"class indices are stored int16; got {arrays.class_idx.min()}..{arrays.class_idx.max()}, outside "
            f"{lim.min}..{lim.max}"
        )
    centre = layout.centre_columns()  # (L,)
    cell = np.zeros((g, lv, 2), np.int16)
    ok = centre >= 0
    cell[:, ok, 0] = arrays.gx[:, centre[ok]]
    cell[:, ok, 1] = arrays.gy[:, centre[ok]]
    mci = arrays.max_cls_idx if arrays.max_cls_idx is not None else np.full((g, n), -1, np.int16)
    mcp = arrays.max_cls_prob if arrays.max_cls_prob is not None else np.full((g, n), np.nan, np.float32)
    columns = {
        "ann_id": pa.array(np.asarray(arrays.ann_id, np.int64)),
        "image_id": pa.array(np.asarray(arrays.image_id, np.int64)),
        "class_idx": pa.array(np.asarray(arrays.class_idx, np.int16)),
        "iscrowd": pa.array(np.asarray(arrays.iscrowd, bool)),
        "gt": _fsl(np.asarray(arrays.gt, np.float32), 4),
        "cell": _fsl(cell, 2 * lv),
        "valid": _fsl(np.asarray(arrays.valid, bool), n),
    }
    values = _slot_columns(arrays, layout, cell, mci, mcp) if slots else None
    metadata = {PART_KIND_KEY: SLOT_PART} if values is not None else None
    if values is None:
        values = {
            "pred": _fsl(np.asarray(arrays.pred, np.float32), 4 * n),
            "obj": _fsl(np.asarray(arrays.obj, np.float32), n),
            "cls_prob": _fsl(np.asarray(arrays.cls_prob, np.float32), n),
            "max_cls_prob": _fsl(np.asarray(mcp, np.float32), n),
            "max_cls_idx": _fsl(np.asarray(mci, np.int16), n),
        }
    columns.update(values)
    schema = pa.schema([pa.field(k, v.type, nullable=False) for k, v in columns.items()], metadata=metadata)
    return pa.Table.from_arrays(list(columns.values()), schema=schema)


def is_slot_part(table) -> bool:
    """True for a slot part (format 3), False for a dense part (format 2)."""
    return (table.schema.metadata or {}).get(PART_KIND_KEY) == SLOT_PART


#: parquet options of a candidate part: dictionary encoding for the integer columns, byte-stream-split
#: (then zstd) for the float columns, which shrinks float32 predictions about 25 % below plain zstd.
_INT_COLUMNS = ["ann_id", "image_id", "class_idx", "cell.list.element", "max_cls_idx.list.element"]
_FLOAT_COLUMNS = ["gt", "pred", "obj", "cls_prob", "max_cls_prob"]


def write_part(arrays: CandidateArrays, layout: Layout, path: str | Path, *, slots: bool = True) -> Path:
    """Write one candidate part (whole images) atomically (``slots``: see :func:`arrays_to_arrow`)."""
    import pyarrow.parquet as pq

    table = arrays_to_arrow(arrays, layout, slots=slots)
    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression=COMPRESSION,
            compression_level=COMPRESSION_LEVEL,
            use_dictionary=_INT_COLUMNS,
            use_byte_stream_split=[f"{c}.list.element" for c in _FLOAT_COLUMNS],
        )
    return Path(path)


def _numbers(values, dtype, what: str):
    """``values`` (a pyarrow array of numbers or bools, no nulls) as numpy ``dtype``; a one-line
    DatasetFormatError naming ``what`` otherwise."""
    import pyarrow as pa

    t = values.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)) or values.null_count:
        raise DatasetFormatError(f"{what} must hold numbers without nulls, got {t} ({values.null_count} null(s))")
    return values.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _values(column, width: int, dtype, what: str = "column") -> np.ndarray:
    """(rows, width) numpy block of a fixed-size-list column (one copy at most)."""
    import pyarrow as pa

    col = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if not pa.types.is_fixed_size_list(col.type) or col.type.list_size != width:
        raise DatasetFormatError(f"{what} must be a fixed-size list of {width} values per object, got {col.type}")
    flat = col.values if col.offset == 0 else col.flatten()
    return _numbers(flat, dtype, what).reshape(-1, width)


#: every column of a candidate part; the per-candidate ones a reader may leave out (``columns``).
PART_COLUMNS = (
    "ann_id",
    "image_id",
    "class_idx",
    "iscrowd",
    "gt",
    "cell",
    "valid",
    "pred",
    "obj",
    "cls_prob",
    "max_cls_prob",
    "max_cls_idx",
)
CANDIDATE_VALUE_COLUMNS = ("valid", "pred", "obj", "cls_prob", "max_cls_prob", "max_cls_idx")
#: the per-candidate columns the analyses read (anchor-audit, mismatch, errors, the assigners lab):
#: the class arg-max columns are for the table view and for users' own code only.
ANALYSIS_COLUMNS = ("valid", "pred", "obj", "cls_prob")


def _wanted(columns: Iterable[str] | None) -> tuple[str, ...]:
    """The part columns to read for ``columns`` (per-candidate names; None: all); checked."""
    if columns is None:
        return PART_COLUMNS
    columns = tuple(columns)
    unknown = [c for c in columns if c not in CANDIDATE_VALUE_COLUMNS]
    if unknown:
        raise ValueError(f"columns must be among {', '.join(CANDIDATE_VALUE_COLUMNS)}, got {', '.join(unknown)}")
    keep = {"valid", "pred", "obj", "cls_prob", *columns}  # CandidateArrays requires these four
    if "max_cls_prob" in keep:  # a slot part stores a slot's highest probability only where no class says it
        keep.add("max_cls_idx")
    return tuple(c for c in PART_COLUMNS if c not in CANDIDATE_VALUE_COLUMNS or c in keep)


def arrow_to_arrays(
    table, layout: Layout, where: str = "candidate part", columns: Iterable[str] | None = None
) -> CandidateArrays:
    """Dense arrays of a candidate part read with pyarrow, dense or slot part (see :func:`arrays_to_arrow`).

    ``columns``: the per-candidate columns wanted (:data:`CANDIDATE_VALUE_COLUMNS`; ``valid``,
    ``pred``, ``obj`` and ``cls_prob`` always come, and ``max_cls_prob`` brings ``max_cls_idx``); the
    others are None. Default: all.
    """
    n, lv = layout.size, layout.num_levels
    wanted = _wanted(columns)
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise DatasetFormatError(f"{where}: missing column(s) {', '.join(missing)}")
    g = table.num_rows

    def col(name, width, dtype):
        out = _values(table.column(name), width, dtype, f"{where}: column {name}")
        if out.shape != (g, width):
            raise DatasetFormatError(
                f"{where}: column {name} must hold {width} values per object, got {out.size} values for {g} objects"
            )
        return out

    cell = col("cell", 2 * lv, np.int16).reshape(g, lv, 2)
    gx, gy = derive_cells(cell, layout)
    fields: dict[str, Any] = {
        "ann_id": table.column("ann_id").to_numpy().astype(np.int64, copy=False),
        "image_id": table.column("image_id").to_numpy().astype(np.int64, copy=False),
        "class_idx": table.column("class_idx").to_numpy().astype(np.int64),
        "iscrowd": table.column("iscrowd").to_numpy(zero_copy_only=False).astype(bool, copy=False),
        "gt": col("gt", 4, np.float32),
        "gx": gx,
        "gy": gy,
        "valid": col("valid", n, bool),
    }
    if is_slot_part(table):
        fields.update(_slot_arrays(table, layout, fields, cell, wanted, where))
    else:
        fields.update(
            pred=col("pred", 4 * n, np.float32).reshape(g, n, 4),
            obj=col("obj", n, np.float32),
            cls_prob=col("cls_prob", n, np.float32),
        )
        if "max_cls_prob" in wanted:
            fields["max_cls_prob"] = col("max_cls_prob", n, np.float32)
        if "max_cls_idx" in wanted:
            fields["max_cls_idx"] = col("max_cls_idx", n, np.int16)
    return CandidateArrays.of(layout, **fields)


def read_part(path: str | Path, layout: Layout, columns: Iterable[str] | None = None) -> CandidateArrays:
    """One candidate part as dense arrays (``columns``: see :func:`arrow_to_arrays`; only those are decoded)."""
    import pyarrow.parquet as pq

    wanted = _wanted(columns)
    try:
        table = pq.read_table(path, columns=list(wanted) if columns is not None else None)
    except Exception as exc:
        raise DatasetFormatError(f"{path}: cannot read the candidate part: {exc}") from None
    return arrow_to_arrays(table, layout, str(path), columns)


def read_ahead(items: Iterable[T]) -> Iterator[T]:
    """``items`` in order, each one produced in a background thread while the caller works on the previous.

    At most two items exist at a time (the caller's and the next); reading and decoding parquet
    (which release the GIL) overlap with the caller's torch work. Exceptions of the producer are
    raised in the caller at the item where they happened.
    """
    from concurrent.futures import ThreadPoolExecutor

    it = iter(items)
    done = object()
    with ThreadPoolExecutor(1, thread_name_prefix="cocostat-read-ahead") as pool:
        ahead = pool.submit(next, it, done)
        while True:
            item = ahead.result()
            if item is done:
                return
            ahead = pool.submit(next, it, done)
            yield cast(T, item)


def write_detection_part(columns: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write one detection part (:data:`DETECTION_COLUMNS`) atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: pa.array(np.asarray(columns[c], dtype=t)) for c, t in DETECTION_COLUMNS.items()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=COMPRESSION)
    return Path(path)


def read_detection_part(path: str | Path, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """One detection part's columns (:data:`DETECTION_COLUMNS`, or only ``columns`` of them)."""
    import pyarrow.parquet as pq

    want = list(DETECTION_COLUMNS) if columns is None else list(columns)
    try:
        part = pq.ParquetFile(path)
        stored = set(part.schema_arrow.names)
        table = part.read(columns=[c for c in want if c in stored])
    except Exception as exc:
        raise DatasetFormatError(f"{path}: cannot read the detection part: {exc}") from None
    missing = [c for c in want if c not in table.column_names]
    if missing:
        raise DatasetFormatError(f"{path}: missing detection column(s) {', '.join(missing)}")
    return {c: table.column(c).to_numpy().astype(DETECTION_COLUMNS[c], copy=False) for c in want}


def detection_records(columns: dict[str, np.ndarray]) -> list[dict]:
    """COCO results dicts of detection columns (for small sets; the store never builds them all)."""
    bbox = np.stack([columns[c] for c in ("x", "y", "w", "h")], axis=1).tolist()
    return [
        {"image_id": i, "category_id": c, "bbox": b, "score": s}
        for i, c, b, s in zip(
            columns["image_id"].tolist(), columns["category_id"].tolist(), bbox, columns["score"].tolist(), strict=False
        )
    ]


def write_detections_json(parts: Iterable[dict[str, np.ndarray]], path: str | Path) -> Path:
    """Stream detection columns, part by part, into one COCO results JSON list (atomically).

    Only one part's dicts exist at a time; the file is the JSON list ``[{image_id, category_id,
    bbox: [x, y, w, h], score}, ...]`` of every part in order.
    """
    import orjson

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(b"[")
        first = True
        for cols in parts:
            recs = detection_records(cols)
            if not recs:
                continue
            if not first:
                fh.write(b",")
            fh.write(orjson.dumps(recs)[1:-1])
            first = False
        fh.write(b"]\n")
    return Path(path)


def write_manifest(manifest: dict, folder: str | Path, version: int = FORMAT_VERSION) -> Path:
    """Write ``manifest.json`` atomically (``format`` and ``version`` are filled in)."""
    data = {
        "format": FORMAT_NAME,
        "version": version,
        **{k: v for k, v in manifest.items() if k not in ("format", "version")},
    }
    return write_text(Path(folder) / "manifest.json", json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------------------------------
# Reading a folder
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Predictions:
    """A predictions folder, opened: manifest, part files; values are read chunk by chunk.

    Attributes:
        folder: the folder (None for predictions held in memory, e.g. a model run without ``-o``).
        manifest: the manifest dict.
        version: the folder's format version (1, 2 or 3).
        parts: versions 2 and 3: candidate part files in store order; version 1: the candidate parquet files.
        detection_files: versions 2 and 3: detection part files; version 1: ``detections*.json``.
        memory_chunks, memory_detections: the blocks of in-memory predictions (folder None).
    """

    folder: Path | None
    manifest: dict
    version: int = FORMAT_VERSION
    parts: tuple[Path, ...] = ()
    detection_files: tuple[Path, ...] = ()
    memory_chunks: tuple[CandidateArrays, ...] = ()
    memory_detections: tuple[dict, ...] = ()

    @functools.cached_property
    def layout(self) -> Layout:
        """The candidate layout (from the manifest; for version 1 from the table's first object)."""
        if self.version >= 2 and "layout" in self.manifest:
            return Layout.from_manifest(
                self.manifest, str(self.folder / "manifest.json") if self.folder else "manifest"
            )
        first = (
            next(iter(self._v1_chunks(1)), None)
            if self.version == 1
            else (self.memory_chunks[0] if self.memory_chunks else None)
        )
        if first is None:
            from cocostat.assign import grid_from_manifest

            grid = grid_from_manifest(self.manifest)
            masks = [np.flatnonzero(grid.level == lv).tolist() for lv in range(grid.num_levels)]
            return make_layout(
                grid.wh, masks, grid.strides.tolist(), grid.size, int(self.manifest.get("neighborhood") or 0)
            )
        return layout_of(first, self.manifest)

    @property
    def candidates_per_object(self) -> int:
        """N: candidates per annotation (anchors x neighbourhood cells)."""
        if self.version == 1:
            n = self._v1_frame["ann_id"].nunique()
            return len(self._v1_frame) // n if n else 0
        return self.layout.size if self.num_objects else 0

    @functools.cached_property
    def num_objects(self) -> int:
        """Annotations stored (crowd ones included)."""
        if self.version == 1:
            return int(self._v1_frame["ann_id"].nunique())
        if self.folder is None:
            return sum(len(c) for c in self.memory_chunks)
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.parts)

    # ---- candidates ---------------------------------------------------------------------------------
    def iter_chunks(
        self,
        max_objects: int | None = CHUNK_OBJECTS,
        *,
        rank: int | None = None,
        columns: Iterable[str] | None = None,
    ) -> Iterator[CandidateArrays]:
        """Dense candidate blocks of whole images, about ``max_objects`` objects each (None: one block
        per stored part), in store order. ``rank``: only the parts written by that predict rank.
        ``columns``: the per-candidate columns to decode (:data:`CANDIDATE_VALUE_COLUMNS`, e.g.
        :data:`ANALYSIS_COLUMNS`); ``valid``, ``pred``, ``obj``, ``cls_prob`` always come, the
        others left out are None (``max_cls_prob`` brings ``max_cls_idx``). Default: all."""
        if self.version == 1:
            yield from self._v1_chunks(max_objects)
            return
        if self.folder is None:
            source: Iterable[CandidateArrays] = iter(self.memory_chunks)
        else:
            parts = (
                self.parts if rank is None else tuple(p for p in self.parts if p.name.startswith(f"rank{rank:03d}-"))
            )
            layout = self.layout
            source = (read_part(p, layout, columns) for p in parts)
        yield from _coalesce(source, max_objects)

    def _v1_chunks(self, max_objects: int | None) -> Iterator[CandidateArrays]:
        arrays = to_arrays(self._v1_frame)
        yield from split_by_image(arrays, max_objects)

    @functools.cached_property
    def _v1_frame(self) -> pd.DataFrame:
        try:
            frames = [pd.read_parquet(p) for p in self.parts]
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DatasetFormatError(f"{self.folder}: cannot read the candidate table: {exc}") from None
        return check_frame(candidate_order(pd.concat(frames, ignore_index=True)), str(self.folder))

    @functools.cached_property
    def candidates(self) -> pd.DataFrame:
        """The whole candidate table, one row per candidate (:data:`COLUMNS`), canonical order.

        Holds everything in memory (about 85 bytes per candidate); the analyses use :meth:`iter_chunks`.
        """
        if self.version == 1:
            return self._v1_frame
        blocks = list(self.iter_chunks(None))
        if not blocks:
            return to_table(empty_arrays(self.layout)).iloc[:0]
        return candidate_order(to_table(concat_arrays(blocks)))

    # ---- detections ---------------------------------------------------------------------------------
    @property
    def has_detections(self) -> bool:
        return bool(self.detection_files or self.memory_detections)

    def iter_detections(self, *, rank: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Detection columns (:data:`DETECTION_COLUMNS`), one stored part at a time, in store order.

        ``rank``: only the parts written by that predict rank (versions 2 and 3)."""
        if self.version == 1:
            for f in self.detection_files:
                yield _records_to_columns(json.loads(f.read_text()))
            return
        if self.folder is None:
            yield from self.memory_detections
            return
        for f in self.detection_files:
            if rank is None or f.name.startswith(f"rank{rank:03d}-"):
                yield read_detection_part(f)

    def detection_columns(self) -> dict[str, np.ndarray]:
        """Every detection as columns: image_id, category_id (P,) int64; x, y, w, h, score (P,) float64."""
        parts = list(self.iter_detections())
        if not parts:
            return {c: np.zeros(0, t) for c, t in DETECTION_COLUMNS.items()}
        return {c: np.concatenate([p[c] for p in parts]).astype(t, copy=False) for c, t in DETECTION_COLUMNS.items()}

    def detections(self) -> list[dict]:
        """All detections as COCO results dicts (small sets only; see :meth:`detection_columns`).

        For version 1, the files' dicts as they are."""
        if self.version == 1:
            return [d for f in self.detection_files for d in json.loads(f.read_text())]
        return detection_records(self.detection_columns())

    @property
    def num_detections(self) -> int:
        count = (self.manifest.get("detections") or {}).get("count")
        if count is not None and self.folder is not None:
            return int(count)
        return sum(len(p["score"]) for p in self.iter_detections())


def _records_to_columns(records: list[dict]) -> dict[str, np.ndarray]:
    n = len(records)
    bbox = np.asarray([d["bbox"] for d in records], np.float64).reshape(n, 4)
    return {
        "image_id": np.fromiter((d["image_id"] for d in records), np.int64, n),
        "category_id": np.fromiter((d["category_id"] for d in records), np.int64, n),
        "x": bbox[:, 0],
        "y": bbox[:, 1],
        "w": bbox[:, 2],
        "h": bbox[:, 3],
        "score": np.fromiter((d["score"] for d in records), np.float64, n),
    }


def split_by_image(arrays: CandidateArrays, max_objects: int | None) -> Iterator[CandidateArrays]:
    """Cut dense arrays (objects grouped by image) into blocks of whole images, ~``max_objects`` each."""
    g = len(arrays)
    if max_objects is None or g <= max_objects:
        yield arrays
        return
    starts = np.flatnonzero(np.r_[True, arrays.image_id[1:] != arrays.image_id[:-1]])  # (I,) image starts
    lo = 0
    while lo < g:
        k = int(np.searchsorted(starts, lo + max_objects, side="left"))  # first image starting past the quota
        hi = int(starts[k]) if k < starts.size else g
        yield arrays.select(np.arange(lo, hi))
        lo = hi


def _coalesce(blocks: Iterable[CandidateArrays], max_objects: int | None) -> Iterator[CandidateArrays]:
    """Join consecutive blocks (each of whole images) until one holds at least ``max_objects`` objects;
    cut blocks larger than that at image boundaries."""
    if max_objects is None:
        yield from blocks
        return
    pending: list[CandidateArrays] = []
    count = 0
    for block in blocks:
        for b in split_by_image(block, max_objects):  # a stored part larger than a chunk is cut by image
            pending.append(b)
            count += len(b)
            if count >= max_objects:
                yield concat_arrays(pending)
                pending, count = [], 0
    if pending:
        yield concat_arrays(pending)


def iter_chunks(
    predictions, max_objects: int | None = CHUNK_OBJECTS, *, columns: Iterable[str] | None = None
) -> Iterator[CandidateArrays]:
    """Image-aligned dense candidate blocks of a predictions folder (path) or :class:`Predictions`."""
    pred = predictions if isinstance(predictions, Predictions) else read_predictions(predictions)
    return pred.iter_chunks(max_objects, columns=columns)


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a predictions folder, checked for format and a readable version."""
    folder = Path(folder)
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        raise DatasetFormatError(
            f"{folder}: not a predictions folder (no manifest.json); write one with `cocostat predict -o {folder}`"
        )
    try:
        manifest = json.loads(manifest_file.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{manifest_file}: invalid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise DatasetFormatError(
            f"{manifest_file}: expected format {FORMAT_NAME!r}, got {manifest.get('format')!r}"
            if isinstance(manifest, dict)
            else f"{manifest_file}: expected a JSON object"
        )
    version = manifest.get("version", 1)
    if version not in READABLE_VERSIONS:
        raise DatasetFormatError(
            f"{manifest_file}: predictions format version {version!r}, this cocostat reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}; upgrade cocostat or run "
            f"`cocostat predict` again"
        )
    return manifest


def read_predictions(folder: str | Path) -> Predictions:
    """Open a predictions folder (version 3 or 2, or version 1 single files / ``-rankR`` parts).

    Only the manifest is read and the parts listed; values are read by :meth:`Predictions.iter_chunks`.

    Raises:
        DatasetFormatError: the folder, its manifest or its candidate parts are missing or malformed,
            or the format version is not one this cocostat reads.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    version = int(manifest.get("version", 1))
    if version == 1:
        parts = tuple(sorted(folder.glob("candidates*.parquet")))
        if not parts:
            raise DatasetFormatError(f"{folder}: no candidates*.parquet file")
        pred = Predictions(folder, manifest, 1, parts, tuple(sorted(folder.glob("detections*.json"))))
        pred._v1_frame  # noqa: B018 - read and check now, so a broken folder fails here
        return pred
    cdir = folder / CANDIDATES_DIR
    if not cdir.is_dir():
        raise DatasetFormatError(f"{folder}: no {CANDIDATES_DIR}/ folder of candidate parts (format version {version})")
    parts = tuple(sorted(cdir.glob("rank*-chunk*.parquet")))
    dets = tuple(sorted((folder / DETECTIONS_DIR).glob("rank*-chunk*.parquet")))
    pred = Predictions(folder, manifest, version, parts, dets)
    pred.layout  # noqa: B018 - check the layout now
    expected = manifest.get("parts")
    if expected is not None and expected != len(parts):
        raise DatasetFormatError(
            f"{folder}: the manifest lists {expected} candidate part(s), found {len(parts)} "
            f"in {CANDIDATES_DIR}/; run `cocostat predict` again"
        )
    return pred


def in_memory(manifest: dict, chunks: Sequence[CandidateArrays], detections: Sequence[dict]) -> Predictions:
    """Predictions held in memory (blocks of whole images, detection column dicts)."""
    return Predictions(
        None,
        {"format": FORMAT_NAME, "version": FORMAT_VERSION, **manifest},
        FORMAT_VERSION,
        memory_chunks=tuple(chunks),
        memory_detections=tuple(detections),
    )


def write_store(
    folder: str | Path, candidates, manifest: dict, detections=None, *, max_objects: int = CHUNK_OBJECTS
) -> Predictions:
    """Write a complete predictions folder (the current version) from values in memory (benchmarks, tests, converters).

    Args:
        candidates: a version-1 style candidate table (DataFrame, any order), a :class:`CandidateArrays`
            (objects grouped by image) or an iterable of them (each of whole images).
        manifest: manifest fields (``anchors``, ``levels``, ``size`` ...); ``layout``, ``parts``,
            ``candidates_per_annotation`` and the detection count are filled in.
        detections: COCO results dicts, detection columns (:data:`DETECTION_COLUMNS`), or None.
        max_objects: objects per candidate part.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for sub in (CANDIDATES_DIR, DETECTIONS_DIR):
        shutil.rmtree(folder / sub, ignore_errors=True)
        (folder / sub).mkdir()
    if isinstance(candidates, pd.DataFrame):
        frame = candidate_order(check_frame(candidates))
        blocks: Iterable[CandidateArrays] = split_by_image(to_arrays(frame), max_objects) if len(frame) else []
    elif isinstance(candidates, CandidateArrays):
        blocks = split_by_image(candidates, max_objects)
    else:
        blocks = candidates
    manifest = {k: v for k, v in manifest.items() if k not in ("format", "version")}
    layout = None
    n_parts = n_objects = 0
    for k, block in enumerate(blocks):
        layout = layout or layout_of(block, manifest)
        write_part(block, layout, folder / CANDIDATES_DIR / part_name(0, k))
        n_parts, n_objects = n_parts + 1, n_objects + len(block)
    if layout is None:
        from cocostat.assign import grid_from_manifest

        grid = grid_from_manifest(manifest)
        masks = [np.flatnonzero(grid.level == lv).tolist() for lv in range(grid.num_levels)]
        layout = make_layout(grid.wh, masks, grid.strides.tolist(), grid.size, int(manifest.get("neighborhood") or 0))
    cols = (
        []
        if detections is None
        else [detections if isinstance(detections, dict) else _records_to_columns(list(detections))]
    )
    for k, c in enumerate(cols):
        write_detection_part(c, folder / DETECTIONS_DIR / part_name(0, k))
    write_detections_json(cols, folder / DETECTIONS_JSON)
    manifest["layout"] = layout.to_dict()
    manifest["parts"] = n_parts
    manifest["candidates_per_annotation"] = layout.size
    manifest["candidate_rows"] = n_objects * layout.size
    det = manifest.get("detections")
    manifest["detections"] = {
        **(det if isinstance(det, dict) else {}),
        "count": int(sum(len(c["score"]) for c in cols)),
    }
    manifest["levels"] = [
        {**lv, "grid": lv.get("grid") or int(g)}
        for lv, g in zip(manifest.get("levels") or [], layout.grid_w.tolist(), strict=False)
    ]
    write_manifest(manifest, folder)
    return read_predictions(folder)


def upgrade_store(folder: str | Path, out: str | Path | None = None, *, max_objects: int = CHUNK_OBJECTS) -> Path:
    """Convert a predictions folder of an older format (1 or 2) to the current one (in place when ``out`` is None).

    Version 1: the table is read once (it must fit in memory, as it did for the v1 reader), cut into
    parts of whole images and written as current parts; detections become one part and one
    ``detections.json``; in place, the v1 files are removed only after the new manifest is written.
    Version 2: part by part, each dense part is rewritten as a slot part where its values allow it
    (:func:`arrays_to_arrow`), detections are kept; the manifest's version is written last. In place,
    every part is replaced atomically and either kind reads correctly, so an interrupted conversion
    leaves a readable folder, and running it again finishes it. Into another folder (``out``), its
    manifest and ``detections.json`` are removed first, so an interrupted conversion leaves no store
    there; ``out`` naming ``folder`` another way (a symlink, an absolute path) is in place.

    Raises:
        DatasetFormatError: the folder is not an older predictions folder.
    """
    folder = Path(folder)
    pred = read_predictions(folder)
    if pred.version == FORMAT_VERSION:
        raise DatasetFormatError(f"{folder}: already format version {pred.version}; nothing to convert")
    target = Path(out) if out is not None else folder
    in_place = target.resolve() == folder.resolve()  # -o naming FOLDER another way is in place too
    if not in_place:  # a store already there stops being one until the new manifest is written
        for f in (target / "manifest.json", target / DETECTIONS_JSON):
            f.unlink(missing_ok=True)
    if pred.version == 1:
        blocks = pred.iter_chunks(max_objects) if pred.num_objects else []
        write_store(target, blocks, pred.manifest, pred.detection_columns(), max_objects=max_objects)
        if in_place:
            for f in [*folder.glob("candidates*.parquet"), *folder.glob("detections-rank*.json")]:
                f.unlink()
        return target
    layout = pred.layout
    if not in_place:
        for sub in (CANDIDATES_DIR, DETECTIONS_DIR):
            shutil.rmtree(target / sub, ignore_errors=True)
            (target / sub).mkdir(parents=True)
        for f in pred.detection_files:
            shutil.copyfile(f, target / DETECTIONS_DIR / f.name)
        if (folder / DETECTIONS_JSON).is_file():
            shutil.copyfile(folder / DETECTIONS_JSON, target / DETECTIONS_JSON)
    for part in pred.parts:
        write_part(read_part(part, layout), layout, target / CANDIDATES_DIR / part.name)
    write_manifest(pred.manifest, target)
    return target
