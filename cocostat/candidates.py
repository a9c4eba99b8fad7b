"""The predictions folder written by ``cocostat predict`` and read by the audits.

Inference is expensive, so it runs once and its raw per-anchor outputs around every annotation are
stored. A predictions folder holds:

- ``manifest.json``: what produced it (see :data:`MANIFEST_KEYS`): cfg, weights checksum, input size,
  anchors (input pixels, in cfg order), the levels (``[yolo]`` layers in cfg order) with their
  anchor indices (``mask``) and strides, class count, neighbourhood radius, dataset, counts.
- ``detections.json`` (or ``detections-rankR.json`` parts): COCO results after NMS.
- ``candidates.parquet`` (or ``candidates-rankR.parquet`` parts): the candidate table, one row per
  (annotation, anchor, cell of the (2n+1) x (2n+1) neighbourhood around the annotation's centre
  cell), columns :data:`COLUMNS`. Every annotation has the same number of rows,
  N = A x (2n+1)^2, in the order (anchor, dy, dx), so the table reshapes to dense (G, N) tensors.
  Cells outside the grid keep their row with ``valid = False`` and NaN predictions.

Coordinates are network-input pixels (after letterboxing), boxes xyxy. ``level`` indexes the
``[yolo]`` layers in cfg order (for yolov3 level 0 is stride 32), ``anchor`` indexes the cfg's
``anchors`` list, ``(gx, gy)`` is the cell and ``(dx, dy)`` its offset from the centre cell.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cocostat.atomic import atomic_path, write_text
from cocostat.errors import DatasetFormatError

FORMAT_NAME = "cocostat-predictions"
FORMAT_VERSION = 1

#: column -> numpy dtype of the candidate table.
COLUMNS: dict[str, str] = {
    "ann_id": "int64",        # COCO annotation id
    "image_id": "int64",      # COCO image id
    "class_idx": "int16",     # contiguous class index of the annotation
    "iscrowd": "bool",
    "gt_x1": "float32", "gt_y1": "float32", "gt_x2": "float32", "gt_y2": "float32",  # annotation, input px
    "level": "int8",          # [yolo] layer index, cfg order
    "anchor": "int16",        # index into the cfg's anchors list
    "anchor_w": "float32", "anchor_h": "float32",  # anchor size, input px
    "stride": "int16",        # input pixels per cell at this level
    "dx": "int8", "dy": "int8",  # cell offset from the annotation's centre cell
    "gx": "int16", "gy": "int16",  # the cell
    "valid": "bool",          # the cell lies inside the grid
    "px1": "float32", "py1": "float32", "px2": "float32", "py2": "float32",  # decoded box, input px
    "obj": "float32",         # sigmoid objectness
    "cls_prob": "float32",    # sigmoid probability of the annotation's class
    "max_cls_prob": "float32",  # highest class probability
    "max_cls_idx": "int16",   # class index of that probability
}

MANIFEST_KEYS = ("format", "version", "cfg", "weights", "weights_sha256", "size", "letterbox",
                 "anchors", "levels", "num_classes", "neighborhood", "dataset", "images", "annotations")


ORDER = ("image_id", "ann_id", "anchor", "dy", "dx")


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
    """Write a candidate table to a parquet file atomically."""
    frame = check_frame(frame)
    with atomic_path(path) as tmp:
        frame[list(COLUMNS)].to_parquet(tmp, index=False)
    return Path(path)


def write_manifest(manifest: dict, folder: str | Path) -> Path:
    """Write ``manifest.json`` atomically (``format`` and ``version`` are filled in)."""
    data = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **manifest}
    return write_text(Path(folder) / "manifest.json", json.dumps(data, indent=2) + "\n")


@dataclass(frozen=True, eq=False)
class Predictions:
    """A predictions folder, read: manifest dict, candidate table, detection file paths."""

    folder: Path
    manifest: dict
    candidates: pd.DataFrame
    detection_files: tuple[Path, ...]

    @property
    def candidates_per_object(self) -> int:
        """N: rows per annotation (anchors x neighbourhood cells)."""
        n = self.candidates["ann_id"].nunique()
        return len(self.candidates) // n if n else 0

    def detections(self) -> list[dict]:
        """All detections (COCO results dicts) of every part."""
        out: list[dict] = []
        for f in self.detection_files:
            out.extend(json.loads(f.read_text()))
        return out


def read_predictions(folder: str | Path) -> Predictions:
    """Read a predictions folder (single files or ``-rankR`` parts from a distributed run).

    Raises:
        DatasetFormatError: the folder, its manifest or its candidate table is missing or malformed.
    """
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
        raise DatasetFormatError(f"{manifest_file}: expected format {FORMAT_NAME!r}, got {manifest.get('format')!r}"
                                 if isinstance(manifest, dict) else f"{manifest_file}: expected a JSON object")
    parts = sorted(folder.glob("candidates*.parquet"))
    if not parts:
        raise DatasetFormatError(f"{folder}: no candidates*.parquet file")
    try:
        frames = [pd.read_parquet(p) for p in parts]
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise DatasetFormatError(f"{folder}: cannot read the candidate table: {exc}") from None
    frame = check_frame(candidate_order(pd.concat(frames, ignore_index=True)), str(folder))
    return Predictions(folder, manifest, frame, tuple(sorted(folder.glob("detections*.json"))))


@dataclass(frozen=True, eq=False)
class CandidateArrays:
    """A candidate table as dense arrays (G objects x N candidates), numpy, ready for torch.from_numpy.

    Attributes:
        ann_id, image_id: (G,) int64. class_idx: (G,) int64. iscrowd: (G,) bool.
        gt: (G, 4) float32, xyxy, input pixels.
        level, anchor, dx, dy: (N,) int64, the same for every object (fixed layout).
        anchor_wh: (N, 2) float32, input pixels. stride: (N,) float32.
        gx, gy: (G, N) int64. valid: (G, N) bool.
        pred: (G, N, 4) float32, xyxy, input pixels (NaN where not valid).
        obj, cls_prob, max_cls_prob: (G, N) float32.
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
    max_cls_prob: np.ndarray


def to_arrays(frame: pd.DataFrame) -> CandidateArrays:
    """Reshape a canonical-order candidate table (see :func:`candidate_order`) into dense arrays."""
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
        ann_id=per_object("ann_id"), image_id=per_object("image_id"),
        class_idx=per_object("class_idx", np.int64), iscrowd=per_object("iscrowd"),
        gt=np.stack([per_object(c) for c in ("gt_x1", "gt_y1", "gt_x2", "gt_y2")], axis=1).reshape(g, 4),
        level=per_candidate("level", np.int64), anchor=per_candidate("anchor", np.int64),
        dx=per_candidate("dx", np.int64), dy=per_candidate("dy", np.int64),
        anchor_wh=np.stack([per_candidate("anchor_w", np.float32), per_candidate("anchor_h", np.float32)], axis=1),
        stride=per_candidate("stride", np.float32),
        gx=col("gx", np.int64), gy=col("gy", np.int64), valid=col("valid"),
        pred=np.stack([col(c) for c in ("px1", "py1", "px2", "py2")], axis=-1),
        obj=col("obj"), cls_prob=col("cls_prob"), max_cls_prob=col("max_cls_prob"),
    )
