"""``cocostat eval``: COCO box evaluation with pycocotools, and YOLO-style P, R, mAP@0.5, F1.

What is computed (P detections, G annotations, C categories, I images):

- **The 12 COCO statistics** come from pycocotools' ``COCOeval`` (``iouType="bbox"``, default
  parameters), or from faster-coco-eval's ``COCOeval_faster`` with ``backend="faster"``, run **one
  category at a time** (:func:`run_cocoeval`): each category's ground truth (its annotations, the
  images with an annotation or a detection of it) and its detections (file order) are evaluated and
  accumulated alone, the per-category slices of ``precision``/``recall``/``scores`` are assembled in
  the dataset's category order, and the backend's own ``summarize()`` computes the 12 numbers from
  them. Decision: this gives bit for bit the numbers of one whole-dataset ``COCOeval`` (with
  ``useCats=1`` evaluate and accumulate never mix categories; the reasons are in
  :func:`run_cocoeval`, and tests compare with the whole-dataset run on real data), while the
  evaluator's per-(image, category) state, about 9 GB at train2017 size whatever the detections,
  is held for one category's images at a time. The summary is worded exactly as
  ``COCOeval.summarize()`` prints it; pycocotools' own progress prints never reach stdout.
- **Class-agnostic** evaluation rewrites every category of the dataset and of the detections to one
  category (id 1, ``object``) and then runs the same evaluation; it is not ``useCats=0``. With a
  single category the per-category run is one whole-dataset run: it gets no memory saving.
- **Matching** (:func:`match_detections`) re-implements COCOeval's greedy matching at one IoU
  threshold, vectorised over all images: within each (image, category), the ``max_dets`` highest
  scoring detections (ties in file order) are taken in score order; each takes the unmatched
  non-crowd annotation of its category with the highest IoU >= threshold (ties: the later
  annotation, as COCOeval); a detection that matches none but has crowd-IoU >= threshold with a
  crowd annotation of its category (intersection over the detection's own area) is *ignored*:
  neither true nor false positive. Detections below the ``max_dets`` cut are dropped.
- **AP at one IoU** (:func:`average_precision`) is COCOeval's 101-point interpolated AP:
  per category, detections in descending score order (ties: image id, then file order),
  ``precision = TP / (TP + FP)``, ``recall = TP / non-crowd annotations``, precision replaced by its
  running maximum from the right, sampled at recall 0, 0.01, ..., 1 (first point with recall >= r;
  0 past the last). mAP is the mean over categories with at least one non-crowd annotation. With
  the same IoU values it equals COCOeval's ``AP50`` bit for bit (our IoU comes from
  :func:`cocostat.boxes.matched_iou`, which can differ from pycocotools' in the last bit).
- **P, R, F1 per category** (YOLOv3's table) at confidence ``c``, from the matching at IoU 0.5:
  ``TP(c)`` / ``FP(c)`` count the kept, not ignored detections with ``score >= c`` that are / are
  not matched; ``P = TP / (TP + FP)`` (0 without detections), ``R = TP / targets`` (targets are
  the non-crowd annotations), ``F1 = 2 P R / (P + R)`` (0 when P + R = 0). ``mAP@0.5`` is
  COCOeval's per-category AP at IoU 0.5 (from its precision array, area all, 100 detections).
  The "all" row holds the means over categories with targets. The confidence that maximises the
  mean F1 is searched on the grid 0, 0.001, ..., 1 (the lowest such grid value on ties).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np
import pandas as pd

from cocostat.boxes import matched_iou, xywh_to_xyxy
from cocostat.data import Dataset, Int64
from cocostat.errors import (
    CocostatWarning,
    DatasetFormatError,
    DatasetNotFoundError,
    OptionError,
)

#: COCOeval's ``stats`` in order, with the names used as JSON keys.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
BACKENDS = ("pycocotools", "faster")
#: COCOeval's recall thresholds 0, 0.01, ..., 1 (computed as COCOeval computes them).
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
#: Confidence grid searched for the best mean F1.
CONF_GRID = np.linspace(0.0, 1.0, 1001)
AGNOSTIC_CATEGORY = {"category_id": 1, "name": "object", "supercategory": "object"}

# (is AP, IoU threshold or None for .50:.95, area range, maxDets) of COCOeval's 12 summary lines.
_SUMMARY = (
    (True, None, "all", 100),
    (True, 0.5, "all", 100),
    (True, 0.75, "all", 100),
    (True, None, "small", 100),
    (True, None, "medium", 100),
    (True, None, "large", 100),
    (False, None, "all", 1),
    (False, None, "all", 10),
    (False, None, "all", 100),
    (False, None, "small", 100),
    (False, None, "medium", 100),
    (False, None, "large", 100),
)


def summary_lines(stats) -> list[str]:
    """The 12 lines ``COCOeval.summarize()`` prints for ``stats`` (12 floats), worded as pycocotools does."""
    fmt = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    lines = []
    for (is_ap, thr, area, max_dets), value in zip(_SUMMARY, stats, strict=True):
        iou = "0.50:0.95" if thr is None else f"{thr:0.2f}"
        title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
        lines.append(fmt.format(title, kind, iou, area, max_dets, float(value)))
    return lines


# --------------------------------------------------------------------------------------------------
# Detections: loading and validation
# --------------------------------------------------------------------------------------------------
class _Det(msgspec.Struct):
    image_id: Int64
    category_id: Int64
    bbox: tuple[float, float, float, float]
    score: float


class Scores(Protocol):
    """What ranking and AP need of detections (P of them), without their boxes: (P,) float ``score``,
    (P,) int64 ``image_index`` (into the dataset's images) and ``class_idx`` (contiguous class).
    :class:`Detections` is one; :class:`DetectionScores` holds only these columns."""

    @property
    def score(self) -> np.ndarray: ...
    @property
    def image_index(self) -> np.ndarray: ...
    @property
    def class_idx(self) -> np.ndarray: ...
    def __len__(self) -> int: ...


@dataclass(frozen=True, eq=False)
class DetectionScores:
    """:class:`Scores` of detections whose boxes are not held (see :func:`cocostat.diagnose.diagnose`)."""

    score: np.ndarray
    image_index: np.ndarray
    class_idx: np.ndarray

    def __len__(self) -> int:
        return int(self.score.shape[0])


@dataclass(frozen=True, eq=False)
class Detections:
    """COCO results (detections) as columns, in file order, validated against one dataset.

    Attributes (P detections):
        image_id: (P,) int64, COCO image ids. category_id: (P,) int64, COCO category ids.
        bbox: (P, 4) float64, xywh, pixels of the original image. score: (P,) float64.
        image_index: (P,) int64, index into ``dataset.image_id``.
        class_idx: (P,) int64, contiguous class index into ``dataset.categories``.
        source: where they came from (a file name), used in messages.
    """

    image_id: np.ndarray
    category_id: np.ndarray
    bbox: np.ndarray
    score: np.ndarray
    image_index: np.ndarray
    class_idx: np.ndarray
    source: str = "detections"

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def boxes_xyxy(self, index: np.ndarray | None = None) -> np.ndarray:
        """(P, 4) float64, xyxy, pixels; with ``index`` ((N,) ints), only those detections' (N, 4)."""
        return np.asarray(xywh_to_xyxy(self.bbox if index is None else self.bbox[index]))  # numpy in, numpy out

    def take(self, index: np.ndarray) -> Detections:
        """The detections ``index`` ((K,) ints) in that order; image and class indices stay the dataset's."""
        return Detections(
            self.image_id[index],
            self.category_id[index],
            self.bbox[index],
            self.score[index],
            self.image_index[index],
            self.class_idx[index],
            self.source,
        )

    def to_array(self) -> np.ndarray:
        """(P, 7) float64 ``[image_id, x, y, w, h, score, category_id]``, what pycocotools' and
        faster-coco-eval's ``loadRes`` take as a numpy array (no dict per detection on our side)."""
        return np.column_stack(
            [self.image_id.astype(np.float64), self.bbox, self.score, self.category_id.astype(np.float64)]
        )

    def to_records(self) -> list[dict]:
        """COCO results dicts, as pycocotools' ``loadRes`` takes them (it needs one dict per detection)."""
        return [
            {"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, c, b, s in zip(
                self.image_id.tolist(), self.category_id.tolist(), self.bbox.tolist(), self.score.tolist(), strict=True
            )
        ]


def _check_ids(known_sorted: np.ndarray, ids: np.ndarray, what: str, where: str, dataset: Dataset) -> np.ndarray:
    """Index of each id in ``known_sorted``; a DatasetFormatError naming the first unknown id."""
    idx = np.searchsorted(known_sorted, ids)
    ok = idx < known_sorted.size
    ok[ok] = known_sorted[idx[ok]] == ids[ok]
    if not ok.all():
        bad = np.flatnonzero(~ok)
        raise DatasetFormatError(
            f"detection {int(bad[0])} in {where}: {what} {int(ids[bad[0]])} is not "
            f"{'an image' if what == 'image_id' else 'a category'} of dataset {dataset.name} "
            f"({bad.size} detection(s) affected, {np.unique(ids[bad]).size} unknown id(s))"
        )
    return idx.astype(np.int64)


def make_detections(
    dataset: Dataset, image_id, category_id, bbox, score, source: str = "detections", *, warn: bool = True
) -> Detections:
    """Validate detection columns against ``dataset`` and return :class:`Detections`.

    Args:
        image_id, category_id: (P,) ints, COCO ids. bbox: (P, 4) float, xywh, pixels. score: (P,) float.

    Raises:
        DatasetFormatError: an image or category id the dataset does not have, a box that is not four
            finite numbers with w, h >= 0, a score that is not finite.
    Warns:
        CocostatWarning: boxes of zero width or height (they can match nothing).
    """
    image_id = np.asarray(image_id, dtype=np.int64).reshape(-1)
    category_id = np.asarray(category_id, dtype=np.int64).reshape(-1)
    bbox = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    n = score.shape[0]
    if not (image_id.shape[0] == category_id.shape[0] == bbox.shape[0] == n):
        raise DatasetFormatError(
            f"{source}: image_id, category_id, bbox and score must have one entry per "
            f"detection, got {image_id.shape[0]}, {category_id.shape[0]}, "
            f"{bbox.shape[0]} and {n}"
        )
    image_index = _check_ids(dataset.image_id, image_id, "image_id", source, dataset)
    class_idx = _check_ids(dataset.categories["category_id"].to_numpy(), category_id, "category_id", source, dataset)
    bad = ~(np.isfinite(bbox).all(axis=1) & (bbox[:, 2] >= 0) & (bbox[:, 3] >= 0))
    if bad.any():
        i = np.flatnonzero(bad)
        raise DatasetFormatError(
            f"detection {int(i[0])} in {source}: bbox must be 4 finite numbers [x, y, w, h] with w, h >= 0, "
            f"got {bbox[i[0]].tolist()} ({i.size} bad box(es))"
        )
    bad = ~np.isfinite(score)
    if bad.any():
        i = np.flatnonzero(bad)
        raise DatasetFormatError(
            f"detection {int(i[0])} in {source}: score must be a finite number, "
            f"got {score[i[0]]} ({i.size} bad score(s))"
        )
    if warn:
        _warn_degenerate(source, n, _zero_size(bbox))
    return Detections(image_id, category_id, bbox, score, image_index, class_idx, source)


def _zero_size(bbox: np.ndarray) -> int:
    """Boxes ((P, 4) xywh) of zero width or height."""
    return int(((bbox[:, 2] == 0) | (bbox[:, 3] == 0)).sum())


def _warn_degenerate(source: str, n: int, zero: int) -> None:
    """The warnings :func:`make_detections` gives: ``zero`` boxes of zero size, or no detection (``n``)."""
    if zero:
        warnings.warn(f"{source}: {zero} detection(s) have zero width or height", CocostatWarning, stacklevel=3)
    if n == 0:
        warnings.warn(f"{source}: no detections; every AP and AR is 0", CocostatWarning, stacklevel=3)


def _numpy_scalar(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot read a {type(obj).__name__} as a number")


def _read_results(path: Path) -> list[_Det]:
    """Decode one COCO results file; every way it can be broken is a one-line error naming ``path``."""
    if not path.is_file():
        raise DatasetNotFoundError(f"detections file {path} does not exist")
    raw = path.read_bytes()
    if not raw.strip():
        raise DatasetFormatError(
            f"{path}: the file is empty; expected a JSON list of detections "
            f"{{image_id, category_id, bbox: [x, y, w, h], score}}"
        )
    try:
        return msgspec.json.decode(raw, type=list[_Det])
    except msgspec.ValidationError as exc:
        raise DatasetFormatError(
            f"{path}: not a COCO results file (a JSON list of {{image_id, "
            f"category_id, bbox: [x, y, w, h], score}}): {exc}"
        ) from None
    except msgspec.DecodeError as exc:  # truncated, NaN (json.dump's), not JSON at all
        raise DatasetFormatError(f"{path}: invalid JSON ({len(raw)} bytes; truncated or not JSON?): {exc}") from None


def _store_columns(pred) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """image_id, category_id (P,) int64, bbox (P, 4) float64 xywh, score (P,) float64 of a store's
    detections, in store order: each part copied into arrays of the manifest's count, so memory holds
    the result and one part (where the parts disagree with the count, their concatenation)."""
    n = pred.num_detections
    image_id, category_id, bbox, score = np.empty(n, np.int64), np.empty(n, np.int64), np.empty((n, 4)), np.empty(n)
    at = 0
    for part in pred.iter_detections():
        k = len(part["score"])
        if at + k > n:
            break
        image_id[at : at + k], category_id[at : at + k], score[at : at + k] = (
            part["image_id"],
            part["category_id"],
            part["score"],
        )
        for j, c in enumerate(("x", "y", "w", "h")):
            bbox[at : at + k, j] = part[c]
        at += k
    else:
        if at == n:
            return image_id, category_id, bbox, score
    del image_id, category_id, bbox, score
    cols = pred.detection_columns()
    bbox = np.stack([cols[c] for c in ("x", "y", "w", "h")], axis=1)
    return cols["image_id"], cols["category_id"], bbox, cols["score"]


def load_detections(source, dataset: Dataset) -> Detections:
    """Read COCO results (a JSON list of ``{image_id, category_id, bbox, score}``) and validate them.

    Args:
        source: a path to a results JSON file, a tuple of such paths (read in turn and concatenated),
            a predictions folder (path or :class:`~cocostat.candidates.Predictions`; its columnar
            detection parts are read, no dict per detection; a version-1 folder's JSON files), a list
            of result dicts, or :class:`Detections` (returned as is). Extra keys (``segmentation``,
            ``id``) are ignored.
        dataset: the ground truth the detections refer to.

    Raises:
        DatasetNotFoundError: the file does not exist.
        DatasetFormatError: an empty file, invalid JSON, not a list of results, a missing or mistyped
            key, an unknown image or category id, a malformed box or score (see :func:`make_detections`).
    """
    if isinstance(source, Detections):
        return source
    from cocostat.candidates import Predictions, read_predictions

    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        source = read_predictions(Path(source))
    if isinstance(source, Predictions):  # columnar: no Python object per detection
        return make_detections(dataset, *_store_columns(source), source=str(source.folder or "predictions"))
    if isinstance(source, (str, os.PathLike)):
        where = Path(source).name
        dets = _read_results(Path(source))
    elif isinstance(source, tuple) and all(isinstance(s, (str, os.PathLike)) for s in source):
        where = ", ".join(Path(s).name for s in source) or "detections"
        dets = [d for s in source for d in _read_results(Path(s))]
    else:
        where = "detections"
        try:  # through JSON bytes, so numpy scalars are accepted and values stay exact
            dets = msgspec.json.decode(msgspec.json.encode(list(source), enc_hook=_numpy_scalar), type=list[_Det])
        except (msgspec.ValidationError, TypeError) as exc:
            raise DatasetFormatError(
                f"{where}: not a list of COCO results {{image_id, category_id, bbox: [x, y, w, h], score}}: {exc}"
            ) from None
    n = len(dets)
    return make_detections(
        dataset,
        np.fromiter((d.image_id for d in dets), np.int64, n),
        np.fromiter((d.category_id for d in dets), np.int64, n),
        np.fromiter((v for d in dets for v in d.bbox), np.float64, 4 * n).reshape(n, 4),
        np.fromiter((d.score for d in dets), np.float64, n),
        source=where,
    )


#: detections per chunk of :func:`detection_chunks` for detections held in memory.
CHUNK_DETECTIONS = 1_000_000


class DetectionChunks:
    """Detections in chunks of whole images (:func:`detection_chunks`): ``len()`` is the number of
    detections; iterating yields ``(at, detections)`` per chunk, at least one chunk (possibly empty).

    ``at`` ((K,) int64, ascending) is the position of each of the chunk's detections in the whole
    file (store) order; every detection of an image lies in one chunk, so COCO matching, which is
    per (image, category), can run chunk by chunk. It can be iterated again: a store's parts are
    read again, detections held in memory are cut again (never parsed again).
    """

    def __init__(self, dataset: Dataset, count: int, name: str, parts=None, detections=None, max_detections=0):
        self._dataset, self._count, self._name = dataset, count, name
        self._parts, self._detections, self._max = parts, detections, max_detections
        self._warned = False

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[tuple[np.ndarray, Detections]]:
        if self._detections is not None:
            yield from _image_chunks(self._detections, self._max)
            return
        from cocostat.candidates import read_detection_part

        at = n_zero = 0
        for f in self._parts:
            cols = read_detection_part(f)
            bbox = np.stack([cols[c] for c in ("x", "y", "w", "h")], axis=1)
            d = make_detections(
                self._dataset, cols["image_id"], cols["category_id"], bbox, cols["score"], source=str(f), warn=False
            )
            del cols, bbox
            n_zero += _zero_size(d.bbox)
            yield np.arange(at, at + len(d), dtype=np.int64), d
            at += len(d)
        if not self._parts:
            z = np.zeros(0, np.int64)
            yield z, make_detections(self._dataset, z, z, np.zeros((0, 4)), z, source=self._name, warn=False)
        if not self._warned:  # make_detections' warnings, once for all the parts
            self._warned = True
            _warn_degenerate(self._name, at, n_zero)


def detection_chunks(source, dataset: Dataset, max_detections: int = CHUNK_DETECTIONS) -> DetectionChunks:
    """Detections of ``source`` in chunks of whole images (:class:`DetectionChunks`).

    A predictions store (version 2 or 3) whose detection parts each hold whole images is read one
    part at a time (a first pass reads only the parts' ``image_id`` columns to check that); any other
    source (see :func:`load_detections`) is read whole and cut into chunks of about
    ``max_detections`` detections along image boundaries. Validation is :func:`make_detections`' per
    part (a part's errors name the part file), and its warnings are given once for all parts.
    """
    from cocostat.candidates import Predictions, read_detection_part, read_predictions

    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        source = read_predictions(Path(source))
    if isinstance(source, Predictions) and source.version >= 2 and source.folder is not None:
        files = list(source.detection_files)
        ids = [read_detection_part(f, ("image_id",))["image_id"] for f in files]
        images = [np.unique(i) for i in ids]
        if sum(u.size for u in images) == np.unique(np.concatenate(images or [np.zeros(0, np.int64)])).size:
            return DetectionChunks(dataset, sum(i.size for i in ids), str(source.folder), parts=files)
    dets = load_detections(source, dataset)
    return DetectionChunks(dataset, len(dets), dets.source, detections=dets, max_detections=max_detections)


def _image_chunks(dets: Detections, max_detections: int) -> Iterator[tuple[np.ndarray, Detections]]:
    p = len(dets)
    if p <= max_detections:
        yield np.arange(p, dtype=np.int64), dets
        return
    by_image = np.argsort(dets.image_index, kind="stable")
    img = dets.image_index[by_image]
    starts = np.flatnonzero(np.r_[True, img[1:] != img[:-1]])  # first detection of each image
    first = np.searchsorted(starts, np.arange(0, p, max_detections))  # the image starting at or after each cut
    cuts = np.unique(np.r_[starts[first[first < starts.size]], p])
    for lo, hi in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        at = np.sort(by_image[lo:hi])
        yield at, dets.take(at)


# --------------------------------------------------------------------------------------------------
# Class-agnostic rewriting and the pycocotools objects
# --------------------------------------------------------------------------------------------------
def merge_categories(dataset: Dataset, detections: Detections) -> tuple[Dataset, Detections]:
    """Dataset and detections with every category rewritten to one (id 1, ``object``)."""
    cats = pd.DataFrame({k: [v] for k, v in AGNOSTIC_CATEGORY.items()})
    g, p = dataset.num_annotations, len(detections)
    ds = dataclasses.replace(
        dataset, category_id=np.ones(g, np.int64), class_idx=np.zeros(g, np.int64), categories=cats
    )
    dets = dataclasses.replace(detections, category_id=np.ones(p, np.int64), class_idx=np.zeros(p, np.int64))
    return ds, dets


def _image_dicts(dataset: Dataset) -> list[dict]:
    """One COCO image dict per image (``id``, ``width``, ``height``, ``file_name``), in image order."""
    return [
        {"id": i, "width": w, "height": h, "file_name": f}
        for i, w, h, f in zip(
            dataset.image_id.tolist(),
            dataset.width.tolist(),
            dataset.height.tolist(),
            dataset.file_name.tolist(),
            strict=True,
        )
    ]


def _category_dicts(dataset: Dataset) -> list[dict]:
    """One COCO category dict per category (``id``, ``name``, ``supercategory``), in class order."""
    cats = dataset.categories
    return [
        {"id": i, "name": n, "supercategory": s}
        for i, n, s in zip(
            cats["category_id"].tolist(), cats["name"].tolist(), cats["supercategory"].tolist(), strict=True
        )
    ]


def _annotation_dicts(dataset: Dataset, index: np.ndarray | None = None) -> list[dict]:
    """COCO box annotation dicts (id, image_id, category_id, bbox, area, iscrowd) of every annotation,
    or of ``index`` ((n,) int, rows of the dataset's annotation arrays) in that order."""

    def col(a: np.ndarray) -> list:
        return (a if index is None else a[index]).tolist()

    return [
        {"id": a, "image_id": i, "category_id": c, "bbox": b, "area": ar, "iscrowd": int(cr)}
        for a, i, c, b, ar, cr in zip(
            col(dataset.ann_id),
            dataset.image_id[col(dataset.image_index)].tolist(),
            col(dataset.category_id),
            col(dataset.bbox),
            col(dataset.area),
            col(dataset.iscrowd),
            strict=True,
        )
    ]


def coco_dict(dataset: Dataset) -> dict:
    """The dataset as a COCO dict (images, categories, box annotations with area and iscrowd).

    pycocotools needs one dict per image and annotation; building them from the arrays avoids
    re-parsing the segmentations of the original file.
    """
    return {
        "images": _image_dicts(dataset),
        "categories": _category_dicts(dataset),
        "annotations": _annotation_dicts(dataset),
    }


def _faster_module():
    try:
        import faster_coco_eval
    except ImportError:
        raise OptionError(
            "backend 'faster' needs the faster-coco-eval package (pip install faster-coco-eval); "
            "or use --backend pycocotools"
        ) from None
    return faster_coco_eval


def _quiet(*args, **kwargs) -> None:
    """faster-coco-eval's ``print_function``: its progress messages go nowhere."""
    return None


@dataclass(frozen=True, eq=False)
class CocoEval:
    """COCOeval's results for every category, assembled one category at a time by :func:`run_cocoeval`.

    Attributes (T = 10 IoU thresholds .50:.05:.95, R = 101 recall thresholds, K categories in the
    dataset's order, A = 4 area ranges all/small/medium/large, M = 3 maxDets 1/10/100):
        backend: ``pycocotools`` or ``faster``.
        category_id: (K,) int64, the COCO category id of each slice along K.
        stats: (12,) float64, ``COCOeval.stats`` (names in :data:`STAT_NAMES`).
        eval: ``precision`` (T, R, K, A, M), ``recall`` (T, K, A, M) and ``scores`` (T, R, K, A, M),
            float64, as in ``COCOeval.eval`` (-1 where a category has no annotation in the range).
    """

    backend: str
    category_id: np.ndarray
    stats: np.ndarray
    eval: dict[str, np.ndarray]

    def to_dict(self) -> dict:
        return {"backend": self.backend, **{n: float(v) for n, v in zip(STAT_NAMES, self.stats, strict=True)}}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"statistic": list(STAT_NAMES), "value": np.asarray(self.stats, np.float64)})


def _class_ranges(class_idx: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by class, each group in its original order: ``order`` (n,) int64 (a stable sort
    of ``class_idx`` (n,) int) and ``start`` (c + 1,) int64; class k's rows are
    ``order[start[k]:start[k + 1]]``."""
    order = np.argsort(class_idx, kind="stable")
    start = np.searchsorted(class_idx[order], np.arange(c + 1)).astype(np.int64)
    return order, start


def run_cocoeval(dataset: Dataset, detections: Detections, backend: str = "pycocotools") -> CocoEval:
    """COCOeval (bbox, default parameters) run one category at a time; pycocotools' prints kept off stdout.

    For each category k (in the dataset's order), the evaluator of ``backend`` (pycocotools'
    ``COCOeval`` or faster-coco-eval's ``COCOeval_faster``) gets a ground truth holding only k's
    annotations (in dataset order) and only the images with an annotation or a detection of k
    (ascending id; width, height and file name kept), and ``loadRes`` gets only k's detections, in
    file order, as the (n, 7) rows :meth:`Detections.to_array` gives them (of
    ``detections.take``: no whole (P, 7) array is built); ``evaluate()`` and ``accumulate()``
    run, k's slices of ``eval["precision"]``, ``["recall"]`` and ``["scores"]`` are kept and the
    evaluator is dropped before the next category. A category with neither annotations nor detections
    keeps -1 everywhere, as accumulate leaves it. The 12 statistics are then computed by the backend's
    own ``summarize()`` on the assembled arrays (an evaluator holding only them, every category id).

    Why this is bit-identical to one COCOeval over the whole dataset (tested on real data, both
    backends): with ``useCats=1`` everything in evaluate and accumulate is per category. IoUs and
    ``evaluateImg`` are computed per (image, category), the maxDets cut is per (image, category),
    ties inside (image, category) follow the detections' order (kept: a file-order subset) and the
    annotations' order (kept: dataset order); annotation ids (whose positivity accumulate tests) are
    the dataset's. Images without an annotation or a detection of k give ``None`` there and are skipped
    by accumulate, so leaving them out changes nothing; the rest are concatenated in ascending image id
    either way, and accumulate treats each category on its own. ``summarize`` takes ``np.mean`` of the
    valid entries of the same (T, R, K, A, M) layout with the same values.

    Memory: the evaluators keep per-(image, category) and per-(category, area, image) state for every
    pair of the run (9.3M and 37M at train2017 size, about 9 GB whatever the detections); here that is
    one category's images at a time, plus one dict per detection of that category. Class-agnostic
    evaluation has a single category, so it gets no saving.

    Returns:
        :class:`CocoEval`: ``stats`` (12,) and ``eval["precision"]`` (T, R, K, A, M) as in pycocotools.
    """
    if backend not in BACKENDS:
        raise OptionError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "faster":
        fce = _faster_module()

        def new_coco(gt_dict=None):
            return fce.COCO(gt_dict, print_function=_quiet)

        def new_eval(gt=None, dt=None):
            return fce.COCOeval_faster(gt, dt, iouType="bbox", print_function=_quiet)
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        def new_coco(gt_dict=None):
            coco = COCO()
            if gt_dict is not None:
                coco.dataset = gt_dict
                coco.createIndex()
            return coco

        def new_eval(gt=None, dt=None):
            return COCOeval(gt, dt, iouType="bbox")

    c = dataset.num_classes
    cat_ids = dataset.categories["category_id"].to_numpy(dtype=np.int64)
    images, cats = _image_dicts(dataset), _category_dicts(dataset)
    ann_order, ann_start = _class_ranges(dataset.class_idx, c)
    det_order, det_start = _class_ranges(detections.class_idx, c)
    summarizer = new_eval()
    p = summarizer.params
    t, r, a, m = len(p.iouThrs), len(p.recThrs), len(p.areaRng), len(p.maxDets)
    precision, recall, scores = -np.ones((t, r, c, a, m)), -np.ones((t, c, a, m)), -np.ones((t, r, c, a, m))
    with contextlib.redirect_stdout(io.StringIO()):
        for k in range(c):
            ann = ann_order[ann_start[k] : ann_start[k + 1]]
            det = det_order[det_start[k] : det_start[k + 1]]
            if not ann.size and not det.size:
                continue
            img = np.union1d(dataset.image_index[ann], detections.image_index[det])  # ascending = ascending id
            gt_dict = {
                "images": [images[i] for i in img.tolist()],
                "categories": [cats[k]],
                "annotations": _annotation_dicts(dataset, ann),
            }
            gt = new_coco(gt_dict)
            # loadRes cannot take an empty list; an empty results object is evaluable.
            # (n, 7) rows of to_array(), this category's only; loadRes makes a dict of each
            dt = gt.loadRes(detections.take(det).to_array()) if det.size else _empty_results(new_coco(), gt_dict)
            ev = new_eval(gt, dt)
            ev.evaluate()
            ev.accumulate()
            precision[:, :, k] = ev.eval["precision"][:, :, 0]
            recall[:, k] = ev.eval["recall"][:, 0]
            scores[:, :, k] = ev.eval["scores"][:, :, 0]
            del gt, dt, ev, gt_dict  # this category's dicts and evaluator go before the next one's
        p.catIds, p.imgIds = cat_ids.tolist(), []
        summarizer.eval = {"precision": precision, "recall": recall, "scores": scores}
        summarizer.summarize()
    stats = np.asarray(summarizer.stats, dtype=np.float64)[: len(STAT_NAMES)]
    return CocoEval(backend, cat_ids, stats, summarizer.eval)


def _empty_results(res, gt_dict: dict):
    res.dataset = {"images": gt_dict["images"], "categories": gt_dict["categories"], "annotations": []}
    res.createIndex()
    return res


# --------------------------------------------------------------------------------------------------
# Vectorised COCO matching and AP
# --------------------------------------------------------------------------------------------------
def group_pairs(det_key: np.ndarray, gt_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (detection, annotation) pair with equal keys, detection-major, annotations in index order.

    Args:
        det_key: (P,) int64 group key of each detection (e.g. image index, or image * C + class).
        gt_key: (G,) int64 group key of each annotation.

    Returns:
        ``(pd, pg)``: (N,) int64 each; pair n is detection ``pd[n]`` with annotation ``pg[n]``;
        sorted by ``pd``, then by ``pg``.
    """
    return _pairs(*_key_ranges(det_key, gt_key))


def _key_ranges(det_key: np.ndarray, gt_key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(annotations in stable key order (G,), each detection's first position (P,) and count (P,) of
    annotations with its key in that order)."""
    gorder = np.argsort(gt_key, kind="stable")
    gsorted = gt_key[gorder]
    start = np.searchsorted(gsorted, det_key, "left")
    return gorder, start, np.searchsorted(gsorted, det_key, "right") - start


def _pairs(gorder: np.ndarray, start: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`group_pairs` from the annotations' key order and each detection's (start, count) in it."""
    total = int(count.sum())
    pd_ = np.repeat(np.arange(count.shape[0], dtype=np.int64), count)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    pg = gorder[np.repeat(start, count) + within]
    return pd_, pg


#: pairs per block of :func:`pair_blocks` (a pair kernel holds ~150 bytes per pair: ids, two boxes, IoU, masks;
#: at 11.6M detections errors peaks 0.2 GiB lower than with 1M pairs, for 4 % more time).
PAIR_BLOCK = 500_000


def pair_blocks(det_key: np.ndarray, gt_key: np.ndarray, max_pairs: int = PAIR_BLOCK):
    """:func:`group_pairs` over consecutive ranges of detections, about ``max_pairs`` pairs each.

    A range holds at most ``max_pairs`` pairs plus those of its first detection (a detection is never
    split). Yields ``(lo, hi, pd_, pg)``: detections ``lo:hi``; ``pd_`` (N,) int64 indexes
    ``det_key`` (not the range), ``pg`` (N,) int64 the annotations, in :func:`group_pairs`' order.
    Concatenated, the blocks are :func:`group_pairs` ``(det_key, gt_key)``.
    """
    n = det_key.shape[0]
    gorder, start, count = _key_ranges(det_key, gt_key)
    cum = np.cumsum(count)
    total = int(cum[-1]) if n else 0
    cuts = np.unique(np.r_[0, np.searchsorted(cum, np.arange(max_pairs, total, max_pairs), "right"), n])
    del cum
    for lo, hi in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        pd_, pg = _pairs(gorder, start[lo:hi], count[lo:hi])
        yield lo, hi, pd_ + lo, pg


def _crowd_iou(det_xyxy: np.ndarray, gt_xyxy: np.ndarray) -> np.ndarray:
    """(N,) intersection over the detection's own area, COCOeval's IoU with a crowd annotation.

    Hand-written because cocostat.boxes has IoU and intersection over the smaller box, not this.
    """
    w = np.minimum(det_xyxy[:, 2], gt_xyxy[:, 2]) - np.maximum(det_xyxy[:, 0], gt_xyxy[:, 0])
    h = np.minimum(det_xyxy[:, 3], gt_xyxy[:, 3]) - np.maximum(det_xyxy[:, 1], gt_xyxy[:, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area = (det_xyxy[:, 2] - det_xyxy[:, 0]) * (det_xyxy[:, 3] - det_xyxy[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(area > 0, inter / np.where(area > 0, area, 1), 0.0)


def pair_iou(dataset: Dataset, detections: Detections, pd_: np.ndarray, pg: np.ndarray) -> np.ndarray:
    """(N,) float64 COCO IoU of each pair: IoU with a normal annotation, crowd-IoU with a crowd one."""
    if pd_.size == 0:
        return np.zeros(0)
    d = detections.boxes_xyxy(pd_)  # (N, 4)
    g = dataset.boxes_xyxy()[pg]  # (N, 4)
    out = np.asarray(matched_iou(d, g), dtype=np.float64)
    crowd = dataset.iscrowd[pg]
    if crowd.any():
        out[crowd] = _crowd_iou(d[crowd], g[crowd])
    return out


@dataclass(frozen=True, eq=False)
class Matching:
    """COCOeval's matching of detections to annotations at one IoU threshold (see the module docs).

    Attributes (P detections, G annotations):
        iou_threshold: the IoU a match needs (>=). max_dets: detections kept per (image, category).
        kept: (P,) bool, within the ``max_dets`` best of its (image, category); the rest are dropped.
        det_gt: (P,) int64, index of the matched annotation in the dataset arrays, or -1.
        ignored: (P,) bool, unmatched but on a crowd annotation of its category (neither TP nor FP).
        gt_det: (G,) int64, index of the detection matched to each annotation, or -1.
        order: (P,) int64, the kept detections in COCOeval's accumulation order: category, then
            descending score, then image, then file order.
    """

    iou_threshold: float
    max_dets: int
    kept: np.ndarray
    det_gt: np.ndarray
    ignored: np.ndarray
    gt_det: np.ndarray
    order: np.ndarray

    @property
    def tp(self) -> np.ndarray:
        """(P,) bool: matched to a non-crowd annotation."""
        return self.det_gt >= 0

    @property
    def fp(self) -> np.ndarray:
        """(P,) bool: kept, unmatched, not ignored."""
        return self.kept & (self.det_gt < 0) & ~self.ignored

    def take(self, index: np.ndarray) -> Matching:
        """The matching of the detections ``index`` ((K,) ints, ascending), as :meth:`Detections.take`
        gives them: ``gt_det`` and ``order`` renumbered to positions in ``index`` (-1 / left out for
        detections outside it)."""
        at = np.full(self.kept.shape[0], -1, np.int64)
        at[index] = np.arange(np.asarray(index).shape[0])
        gt_det = np.full_like(self.gt_det, -1)
        hit = self.gt_det >= 0
        gt_det[hit] = at[self.gt_det[hit]]
        order = at[self.order]
        return Matching(
            self.iou_threshold,
            self.max_dets,
            self.kept[index],
            self.det_gt[index],
            self.ignored[index],
            gt_det,
            order[order >= 0],
        )


def accumulation_order(detections: Scores, idx: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """Detections ``idx`` ((K,) int, ascending) in COCOeval's accumulation order: class ``cls`` ((P,)
    int, per detection), then descending score, then image, then file order (a total order).

    File order comes from ``idx`` being ascending and ``np.lexsort`` being stable. The sort runs one
    class at a time after a stable grouping by class (same order), so that its temporaries hold one
    class's detections rather than K entries per key.
    """
    k = cls[idx]
    order, start = _class_ranges(k, int(k.max()) + 1 if k.size else 0)
    del k
    by_class = idx[order]
    for lo, hi in zip(start[:-1].tolist(), start[1:].tolist(), strict=True):
        sub = by_class[lo:hi]
        by_class[lo:hi] = sub[np.lexsort((detections.image_index[sub], -detections.score[sub]))]
    return by_class


def match_detections(
    dataset: Dataset,
    detections: Detections,
    iou_threshold: float = 0.5,
    max_dets: int = 100,
    *,
    pair_block: int = PAIR_BLOCK,
) -> Matching:
    """COCOeval's greedy matching at one IoU threshold, vectorised over every image and category.

    The greedy order only matters inside one (image, category); the r-th best detections of all
    groups never compete with each other, so the loop runs over the rank r (at most ``max_dets``
    steps), each step a numpy operation over all groups at once. ``pair_block``: (detection,
    annotation) pairs held at once (:func:`pair_blocks`; the result does not depend on it).
    """
    p, g = len(detections), dataset.num_annotations
    c = max(dataset.num_classes, 1)
    det_key = detections.image_index * c + detections.class_idx  # (P,)
    gt_key = dataset.image_index * c + dataset.class_idx  # (G,)
    # rank inside (image, category): descending score, ties in file order (COCOeval's mergesort;
    # np.lexsort is stable)
    by_group = np.lexsort((-detections.score, det_key))
    sorted_key = det_key[by_group]
    first = np.searchsorted(sorted_key, sorted_key, "left")
    del sorted_key
    rank = np.empty(p, np.int64)
    rank[by_group] = np.arange(p) - first
    kept = rank < max_dets
    del by_group, first

    kept_idx = np.flatnonzero(kept)
    thr = min(iou_threshold, 1 - 1e-10)
    # pairs with IoU >= thr only, found block by block (memory bounded by PAIR_BLOCK pairs):
    # with a non-crowd annotation (match candidates) and with a crowd one (ignored if unmatched)
    blocks = []
    for _, _, pd_, pg in pair_blocks(det_key[kept_idx], gt_key, pair_block):
        pd_ = kept_idx[pd_]
        iou = pair_iou(dataset, detections, pd_, pg)
        hit, crowd = iou >= thr, dataset.iscrowd[pg]
        ok = hit & ~crowd
        blocks.append((pd_[ok], pg[ok], iou[ok], pd_[hit & crowd]))
    c_pd, c_pg, c_iou, on_crowd = (
        np.concatenate([b[k] for b in blocks]) if blocks else np.zeros(0, np.float64 if k == 2 else np.int64)
        for k in range(4)
    )
    del blocks, det_key

    det_gt = np.full(p, -1, np.int64)
    gt_det = np.full(g, -1, np.int64)
    if c_pd.size:
        # preference of each detection: higher IoU first, on ties the later annotation
        srt = np.lexsort((-c_pg, -c_iou, c_pd, rank[c_pd]))
        c_det, c_gt, c_rank = c_pd[srt], c_pg[srt], rank[c_pd[srt]]
        bounds = np.searchsorted(c_rank, np.arange(int(c_rank[-1]) + 2))
        taken = np.zeros(g, bool)
        for r in range(int(c_rank[-1]) + 1):
            d, gg = c_det[bounds[r] : bounds[r + 1]], c_gt[bounds[r] : bounds[r + 1]]
            free = ~taken[gg]
            d, gg = d[free], gg[free]
            if d.size == 0:
                continue
            head = np.r_[True, d[1:] != d[:-1]]  # first free choice of each detection
            det_gt[d[head]] = gg[head]
            gt_det[gg[head]] = d[head]
            taken[gg[head]] = True
    ignored = np.zeros(p, bool)
    if on_crowd.size:
        ignored[on_crowd] = True
        ignored &= det_gt < 0
    del c_pd, c_pg, c_iou, on_crowd
    order = accumulation_order(detections, kept_idx, detections.class_idx)
    return Matching(float(iou_threshold), int(max_dets), kept, det_gt, ignored, gt_det, order)


@dataclass(frozen=True, eq=False)
class MatchedChunk:
    """One chunk of whole images matched on its own (:func:`match_chunks`).

    Attributes (K detections, G' annotations of the chunk's images):
        at: (K,) int64, the detections' positions in the whole set (file / store order).
        dataset: the chunk's images and their annotations only (``Dataset.select_images``), or the
            whole dataset when the chunk has every image.
        detections: the chunk's detections, ``image_index`` into ``dataset``.
        matching: their :func:`match_detections` against ``dataset``.
        images: (I',) int64, each of ``dataset``'s images in the whole dataset; None: the same.
        ann: (G',) int64, each of ``dataset``'s annotations in the whole dataset; None: the same.
    """

    at: np.ndarray
    dataset: Dataset
    detections: Detections
    matching: Matching
    images: np.ndarray | None
    ann: np.ndarray | None

    @property
    def image_index(self) -> np.ndarray:
        """(K,) int64: each detection's image in the whole dataset."""
        i = self.detections.image_index
        return i if self.images is None else self.images[i]

    def whole(self, local: np.ndarray) -> np.ndarray:
        """Annotation indices into the chunk's dataset (-1: none) as indices into the whole dataset."""
        if self.ann is None:
            return local
        if not self.ann.size:
            return np.full_like(local, -1)
        return np.where(local >= 0, self.ann[np.maximum(local, 0)], -1)


def match_chunks(
    dataset: Dataset,
    chunks: Iterable[tuple[np.ndarray, Detections]],
    iou_threshold: float = 0.5,
    max_dets: int = 100,
    *,
    pair_block: int = PAIR_BLOCK,
) -> Iterator[MatchedChunk]:
    """:func:`match_detections` of each chunk of whole images (:func:`detection_chunks`) against a
    dataset of the chunk's images only, so that no step costs O(G) per chunk.

    Matching is per (image, category), so each chunk's matching is the whole set's for its
    detections; only the accumulation order (across images) is the chunk's own.
    """
    for at, d in chunks:
        images = np.unique(d.image_index)
        if images.size == dataset.num_images:
            m = match_detections(dataset, d, iou_threshold, max_dets, pair_block=pair_block)
            yield MatchedChunk(at, dataset, d, m, None, None)
            continue
        sub, ann = dataset.select_images(images)
        local = dataclasses.replace(d, image_index=np.searchsorted(images, d.image_index))
        del d
        m = match_detections(sub, local, iou_threshold, max_dets, pair_block=pair_block)
        yield MatchedChunk(at, sub, local, m, images, ann)


def targets_per_class(dataset: Dataset) -> np.ndarray:
    """(C,) int64: non-crowd annotations of each class (COCOeval's ``npig`` for area all)."""
    return np.bincount(dataset.class_idx[~dataset.iscrowd], minlength=dataset.num_classes).astype(np.int64)


def average_precision(
    det_class: np.ndarray,
    det_score: np.ndarray,
    det_tp: np.ndarray,
    det_ignored: np.ndarray,
    npig: np.ndarray,
    order: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """COCOeval's 101-point AP per class at one IoU threshold, and its mean as COCOeval averages it.

    Args:
        det_class: (P,) int64 class index. det_score: (P,) float. det_tp: (P,) bool, matched.
        det_ignored: (P,) bool, neither TP nor FP (crowd). The detections to count.
        npig: (C,) int, non-crowd annotations per class.
        order: (P,) accumulation order (category, descending score, image, file order); default:
            stable sort by class then descending score.

    Returns:
        ``(ap, mean)``: (C,) float64, NaN for classes without annotations; the mean over the
        (101, C) precision table's valid entries, computed as ``np.mean`` over them in COCOeval's
        layout (so it equals COCOeval's stat bit for bit); -1 when no class has annotations.
    """
    c = npig.shape[0]
    if order is None:
        order = np.lexsort((-det_score, det_class))
    cls = det_class[order]
    tps = (det_tp & ~det_ignored)[order]
    fps = (~det_tp & ~det_ignored)[order]
    bounds = np.searchsorted(cls, np.arange(c + 1))
    q = np.full((REC_THRS.size, c), -1.0)  # (R, C), the layout of COCOeval's precision[t, :, :, a, m]
    for k in np.flatnonzero(npig > 0):  # a loop over classes, as COCOeval's accumulate
        s = slice(bounds[k], bounds[k + 1])
        tp_sum = np.cumsum(tps[s]).astype(np.float64)
        fp_sum = np.cumsum(fps[s]).astype(np.float64)
        nd = tp_sum.size
        col = np.zeros(REC_THRS.size)
        if nd:
            rc = tp_sum / npig[k]
            pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
            pr = np.maximum.accumulate(pr[::-1])[::-1]
            inds = np.searchsorted(rc, REC_THRS, side="left")
            ok = inds < nd
            col[ok] = pr[inds[ok]]
        q[:, k] = col
    valid = q[q > -1]
    mean = float(np.mean(valid)) if valid.size else -1.0
    ap = np.where(npig > 0, q.mean(axis=0), np.nan)
    return ap, mean


# --------------------------------------------------------------------------------------------------
# P, R, F1 (YOLOv3 table)
# --------------------------------------------------------------------------------------------------
def _pr_counts(cls: np.ndarray, score: np.ndarray, tp: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, J) TP and FP counts of detections with ``score >= CONF_GRID[j]``."""
    j = CONF_GRID.size
    b = np.searchsorted(CONF_GRID, score, side="right") - 1  # largest grid value <= score, -1 below 0
    ok = b >= 0
    key = cls[ok] * j + b[ok]
    tp_hist = np.bincount(key[tp[ok]], minlength=c * j).reshape(c, j)
    fp_hist = np.bincount(key[~tp[ok]], minlength=c * j).reshape(c, j)
    # reverse cumulative sum: count of detections at or above each grid value
    return tp_hist[:, ::-1].cumsum(axis=1)[:, ::-1], fp_hist[:, ::-1].cumsum(axis=1)[:, ::-1]


def _prf(tp, fp, n_gt):
    """P, R, F1 from counts (broadcasting); 0 where undefined."""
    tp, fp = np.asarray(tp, np.float64), np.asarray(fp, np.float64)
    n = np.asarray(n_gt, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        r = np.where(n > 0, tp / n, 0.0)
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return p, r, f1


def _pr_frame(dataset, names, images, n_gt, ap50, tp, fp) -> pd.DataFrame:
    """The YOLOv3 table: an 'all' row (means over classes with targets) then one row per class."""
    p, r, f1 = _prf(tp, fp, n_gt)
    has = n_gt > 0
    rows = pd.DataFrame({"Class": names, "Images": images, "Targets": n_gt, "P": p, "R": r, "mAP@0.5": ap50, "F1": f1})
    rows = rows[has | (tp + fp > 0)]

    def mean(v: np.ndarray) -> float:
        return float(np.mean(v[has])) if has.any() else float("nan")

    top = pd.DataFrame(
        {
            "Class": ["all"],
            "Images": [dataset.num_images],
            "Targets": [int(n_gt.sum())],
            "P": [mean(p)],
            "R": [mean(r)],
            "mAP@0.5": [mean(ap50)],
            "F1": [mean(f1)],
        }
    )
    return pd.concat([top, rows], ignore_index=True)


@dataclass(frozen=True, eq=False)
class EvalReport:
    """Result of :func:`evaluate`: COCO's 12 statistics and the YOLOv3-style P/R table(s)."""

    dataset: str
    detections: int
    backend: str
    class_agnostic: bool
    stats: tuple[float, ...]
    best_conf: float
    table: pd.DataFrame  # YOLOv3 table at best_conf: Class Images Targets P R mAP@0.5 F1
    conf: float | None = None
    table_at_conf: pd.DataFrame | None = None
    per_class: bool = False

    @property
    def summary(self) -> str:
        """The 12 summary lines exactly as pycocotools' ``COCOeval.summarize()`` prints them."""
        return "\n".join(summary_lines(self.stats))

    def _shown(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame if self.per_class else frame.iloc[:1]

    def to_dict(self) -> dict:
        def rows(frame):
            return [
                {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
                for r in self._shown(frame).to_dict(orient="records")
            ]

        out = {
            "dataset": self.dataset,
            "detections": self.detections,
            "backend": self.backend,
            "class_agnostic": self.class_agnostic,
            "stats": [float(s) for s in self.stats],
        }
        out.update({name: float(v) for name, v in zip(STAT_NAMES, self.stats, strict=True)})
        out["best_f1"] = {"conf": self.best_conf, "rows": rows(self.table)}
        if self.table_at_conf is not None:
            out["at_conf"] = {"conf": self.conf, "rows": rows(self.table_at_conf)}
        return out

    def to_frame(self) -> pd.DataFrame:
        frame = self._shown(self.table).copy()
        frame.insert(0, "conf", self.best_conf)
        if self.table_at_conf is not None:
            other = self._shown(self.table_at_conf).copy()
            other.insert(0, "conf", self.conf)
            frame = pd.concat([frame, other], ignore_index=True)
        return frame

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        kind = "class-agnostic " if self.class_agnostic else ""
        out: list[tuple[str, pd.DataFrame | str]] = [
            (
                f"COCO {kind}bbox evaluation of {self.detections} detections on {self.dataset} ({self.backend})",
                self.summary,
            ),
            (f"at conf {self.best_conf:.3f} (maximises mean F1)", self._shown(self.table)),
        ]
        if self.table_at_conf is not None:
            out.append((f"at conf {self.conf:g}", self._shown(self.table_at_conf)))
        return out


def evaluate(
    dataset: Dataset,
    detections,
    *,
    class_agnostic: bool = False,
    conf: float | None = None,
    per_class: bool = False,
    backend: str = "pycocotools",
) -> EvalReport:
    """COCO bbox evaluation and the YOLOv3 P/R/mAP@0.5/F1 table (definitions in the module docs).

    Args:
        dataset: the ground truth.
        detections: a results JSON path, a list of result dicts, or :class:`Detections`.
        class_agnostic: merge every category into one on both sides first.
        conf: also give the table at this confidence.
        per_class: keep one row per class in the tables (the "all" row is always there).
        backend: ``pycocotools`` or ``faster`` (faster-coco-eval, if installed).

    Raises:
        OptionError: unknown backend, faster-coco-eval missing, ``conf`` outside [0, 1].
        DatasetFormatError, DatasetNotFoundError: bad detections (see :func:`load_detections`).
    """
    if backend not in BACKENDS:
        raise OptionError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}", param="backend")
    if backend == "faster":
        _faster_module()
    if conf is not None and not 0.0 <= conf <= 1.0:
        raise OptionError(f"conf must lie in [0, 1], got {conf}", param="conf")
    dets = load_detections(detections, dataset)
    if class_agnostic:
        dataset, dets = merge_categories(dataset, dets)
    ev = run_cocoeval(dataset, dets, backend)
    stats = tuple(float(s) for s in np.asarray(ev.stats)[:12])
    prec = np.asarray(ev.eval["precision"])[0, :, :, 0, -1]  # (R, K): IoU 0.5, area all, 100 detections
    del ev  # the assembled precision/recall arrays go before the matching below
    with np.errstate(invalid="ignore"):
        ap50 = np.where((prec > -1).all(axis=0), prec.mean(axis=0), np.nan)

    c = dataset.num_classes
    # the matching at IoU 0.5, one chunk of whole images at a time: the table's counts add up
    tp_j, fp_j = np.zeros((c, CONF_GRID.size), np.int64), np.zeros((c, CONF_GRID.size), np.int64)
    tp_c, fp_c = np.zeros(c, np.int64), np.zeros(c, np.int64)
    for ch in match_chunks(dataset, _image_chunks(dets, CHUNK_DETECTIONS), 0.5):
        d, m = ch.detections, ch.matching
        use = m.kept & ~m.ignored
        tp, fp = _pr_counts(d.class_idx[use], d.score[use], m.tp[use], c)  # (C, J)
        tp_j += tp
        fp_j += fp
        if conf is not None:
            above = use & (d.score >= conf)
            tp_c += np.bincount(d.class_idx[above & m.tp], minlength=c)
            fp_c += np.bincount(d.class_idx[above & ~m.tp], minlength=c)
    n_gt = targets_per_class(dataset)
    pair = np.unique(dataset.image_index[~dataset.iscrowd] * max(c, 1) + dataset.class_idx[~dataset.iscrowd])
    images = np.bincount(pair % max(c, 1), minlength=c)
    names = dataset.categories["name"].to_numpy(dtype=object)
    _, _, f1_j = _prf(tp_j, fp_j, n_gt[:, None])
    has = n_gt > 0
    best = int(np.argmax(f1_j[has].mean(axis=0))) if has.any() else 0
    best_conf = float(CONF_GRID[best])
    table = _pr_frame(dataset, names, images, n_gt, ap50, tp_j[:, best], fp_j[:, best])
    table_at = None
    if conf is not None:
        table_at = _pr_frame(dataset, names, images, n_gt, ap50, tp_c, fp_c)
    return EvalReport(
        dataset=dataset.name,
        detections=len(dets),
        backend=backend,
        class_agnostic=class_agnostic,
        stats=stats,
        best_conf=best_conf,
        table=table,
        conf=conf,
        table_at_conf=table_at,
        per_class=per_class,
    )
