"""COCO instance-annotation JSON -> columnar in-memory dataset.

:func:`load_coco` parses a COCO file into numpy arrays (one row per image, annotation or category)
and sorts the annotations by image, with CSR offsets, so per-image work is a vectorised
sort-and-segment rather than a Python loop. :func:`resolve_dataset` turns what a user types
(``sample``, a split name such as ``val2017``, or a path) into a file and an image folder.

Why a hand-written loader rather than ``pycocotools.coco.COCO``: pycocotools builds a Python dict per
annotation, segmentation polygons included, which for train2017 (448 MB, 860k annotations) costs
tens of seconds and several GB. Here msgspec decodes the JSON straight into small typed structs and
skips ``segmentation`` (and every other unused key) without building Python objects for it; the
parsed arrays are then cached on disk so a second load is an ``.npz`` read.

The cache is keyed by a SHA-256 hash of the file's bytes (and :data:`CACHE_VERSION`), never by path,
size or mtime, so it cannot go stale: a file replaced in place is a miss. Hashing reads the file
once (SHA-256 is the fastest hashlib digest on CPUs with SHA instructions, about 2 GB/s: a fraction
of parsing). An unreadable or corrupt cache entry is a miss too, and is rewritten.

What a bad file gets (one :class:`~cocostat.errors.DatasetFormatError` naming the file and, where
there is one, the annotation or image; or a counted :class:`~cocostat.errors.CocostatWarning`):

- invalid JSON, a missing or mistyped key: an error with msgspec's JSON path (``$.images[3].id``);
- an id, width, height or iscrowd that does not fit a signed 64-bit integer (``2**70``): an error;
- ``NaN``/``Infinity`` anywhere (what Python's ``json.dump`` writes for a float nan/inf; not JSON):
  an error naming the value and the annotation that holds it. A non-finite box cannot be measured,
  so it is rejected rather than flagged;
- a bbox value beyond :data:`MAX_COORD` pixels (``1e308``), or a negative width or height: an error;
- a nonzero bbox value closer to 0 than :data:`MIN_COORD` (``1e-310``): an error;
- zero-width or zero-height boxes; boxes far outside their image (reaching more than the image's own
  width or height beyond its border); no images; no annotations (an empty or missing list): a
  warning with the count, and the analysis goes on.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated

import msgspec
import numpy as np
import pandas as pd
import platformdirs

from cocostat import yolo
from cocostat.errors import CocostatWarning, DatasetFormatError, DatasetNotFoundError, OptionError

#: Bump when the cached array layout (or what the loader checks) changes, so old entries are ignored.
CACHE_VERSION = 3
SAMPLE_NAME = "sample"
#: largest |bbox value| accepted, in pixels: 2**24, where float32 (the torch kernels) stops counting
#: whole pixels exactly. No image is that large; a value beyond it is a broken file, not a big box.
MAX_COORD = float(2**24)
#: smallest nonzero |bbox value| accepted: float32's smallest normal number (about 1.2e-38). The float32
#: torch kernels would read a smaller one as 0 while the float64 numpy ones overflow on 1 / 1e-310;
#: no annotation tool writes such a value (float round-off leaves 1e-14, which is accepted).
MIN_COORD = float(np.finfo(np.float32).tiny)

#: an integer column of the file: must fit int64 (an id of 2**70 is refused by the decoder, with its path).
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


# --- JSON schema: only the keys an analysis needs; msgspec skips the rest (segmentation) unparsed.
class _Image(msgspec.Struct):
    id: Int64
    width: Int64
    height: Int64
    file_name: str = ""


class _Annotation(msgspec.Struct):
    id: Int64
    image_id: Int64
    category_id: Int64
    bbox: tuple[float, float, float, float]
    area: float | None = None
    iscrowd: Int64 = 0


class _Category(msgspec.Struct):
    id: Int64
    name: str = ""
    supercategory: str = ""


class _Coco(msgspec.Struct):
    images: list[_Image]
    categories: list[_Category]
    annotations: list[_Annotation] = []


@dataclass(frozen=True, eq=False)
class Dataset:
    """A COCO instance dataset as columns. Annotations are sorted by (image index, annotation id).

    Attributes (I images, G annotations, C categories):
        name: what the user called it (``sample``, ``val2017``, a file stem).
        path: the annotation JSON (``None`` for a dataset built in memory).
        image_dir: folder of the image files, or ``None`` when unknown.
        image_id: (I,) int64, COCO image ids, ascending.
        file_name: (I,) str.
        width, height: (I,) int64, pixels.
        ann_id: (G,) int64, COCO annotation ids.
        image_index: (G,) int64, index into the image arrays (not the COCO image id).
        category_id: (G,) int64, COCO's sparse category id.
        class_idx: (G,) int64, contiguous 0..C-1 index into ``categories``.
        bbox: (G, 4) float64, xywh, pixels, as in the file.
        area: (G,) float64, the file's ``area`` (segment area), or w*h where the file has none.
        iscrowd: (G,) bool.
        categories: (C,) table with columns ``category_id``, ``name``, ``supercategory``, sorted by id.
        offsets: (I + 1,) int64; image i's annotations are rows ``offsets[i]:offsets[i + 1]``.
        split: the split of a YOLO dataset YAML or ``.data`` file it was read from (``train``, ``val``,
            ``test``), else ``None`` (COCO JSON, an image list or folder, a dataset built in memory).
    """

    name: str
    path: Path | None
    image_dir: Path | None
    image_id: np.ndarray
    file_name: np.ndarray
    width: np.ndarray
    height: np.ndarray
    ann_id: np.ndarray
    image_index: np.ndarray
    category_id: np.ndarray
    class_idx: np.ndarray
    bbox: np.ndarray
    area: np.ndarray
    iscrowd: np.ndarray
    categories: pd.DataFrame
    offsets: np.ndarray = field(repr=False)
    split: str | None = None

    @property
    def num_images(self) -> int:
        return int(self.image_id.shape[0])

    @property
    def num_annotations(self) -> int:
        return int(self.ann_id.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def counts(self) -> np.ndarray:
        """(I,) int64: annotations per image."""
        return np.diff(self.offsets)

    @property
    def ann_image_id(self) -> np.ndarray:
        """(G,) int64: COCO image id of each annotation."""
        return self.image_id[self.image_index]

    def boxes_xyxy(self) -> np.ndarray:
        """(G, 4) float64, xyxy, pixels."""
        xy = self.bbox[:, :2]
        return np.concatenate([xy, xy + self.bbox[:, 2:]], axis=1)

    def select_annotations(self, keep: np.ndarray) -> Dataset:
        """A dataset with the same images and only the annotations where ``keep`` (G,) bool is true."""
        keep = np.asarray(keep, dtype=bool)
        counts = np.bincount(self.image_index[keep], minlength=self.num_images)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        cols = {k: getattr(self, k)[keep] for k in _ANN_COLUMNS}
        return Dataset(
            name=self.name,
            path=self.path,
            image_dir=self.image_dir,
            image_id=self.image_id,
            file_name=self.file_name,
            width=self.width,
            height=self.height,
            categories=self.categories,
            offsets=offsets,
            **cols,
        )

    def select_images(self, images: np.ndarray) -> tuple[Dataset, np.ndarray]:
        """A dataset of only the images ``images`` ((K,) ascending indices) and their annotations, and
        the index of each of its annotations in this dataset ((G',) int64); categories are the same.
        Costs O(K + G'), not O(G): the rows come from ``offsets``."""
        images = np.asarray(images, np.int64)
        rows, owner = self.annotation_rows(images)
        cols = {k: getattr(self, k)[rows] for k in _ANN_COLUMNS if k != "image_index"}
        sub = Dataset(
            name=self.name,
            path=self.path,
            image_dir=self.image_dir,
            **{k: getattr(self, k)[images] for k in _IMAGE_COLUMNS},
            image_index=owner,
            categories=self.categories,
            offsets=np.concatenate([[0], np.cumsum(np.diff(self.offsets)[images])]).astype(np.int64),
            split=self.split,
            **cols,
        )
        return sub, rows

    def annotation_rows(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The annotations of the images ``images`` ((K,) indices, any order), image after image:
        their rows ((G',) int64) and which of the K images each belongs to ((G',) int64, 0..K-1)."""
        images = np.asarray(images, np.int64)
        starts, counts = self.offsets[images], np.diff(self.offsets)[images]
        rows = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()), dtype=np.int64)
        return rows, np.repeat(np.arange(images.size, dtype=np.int64), counts)

    def without_crowd(self) -> Dataset:
        """The same dataset without its iscrowd annotations."""
        return self.select_annotations(~self.iscrowd)

    def annotations_frame(self) -> pd.DataFrame:
        """One row per annotation: ids, category, bbox columns x, y, w, h, area, iscrowd."""
        return pd.DataFrame(
            {
                "annotation_id": self.ann_id,
                "image_id": self.ann_image_id,
                "category_id": self.category_id,
                "class_idx": self.class_idx,
                "x": self.bbox[:, 0],
                "y": self.bbox[:, 1],
                "w": self.bbox[:, 2],
                "h": self.bbox[:, 3],
                "area": self.area,
                "iscrowd": self.iscrowd,
            }
        )


_ANN_COLUMNS = ("ann_id", "image_index", "category_id", "class_idx", "bbox", "area", "iscrowd")
_IMAGE_COLUMNS = ("image_id", "file_name", "width", "height")


# --------------------------------------------------------------------------------------------------
# Parsing and validation
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _no_gc():
    """Pause the cyclic garbage collector: decoding a million small structs (none cyclic) otherwise
    triggers hundreds of full collections, which doubles the decode time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _decode(raw: bytes, where: str) -> _Coco:
    try:
        with _no_gc():
            return msgspec.json.decode(raw, type=_Coco)
    except msgspec.ValidationError as exc:
        hint = " (ids and sizes must fit a signed 64-bit integer)" if str(2**63 - 1) in str(exc) else ""
        raise DatasetFormatError(f"{where}: not a COCO instances file: {exc}{hint}") from None
    except msgspec.DecodeError as exc:
        nonfinite = _nonfinite_error(raw, where)
        if nonfinite is not None:
            raise nonfinite from None
        raise DatasetFormatError(f"{where}: invalid JSON: {exc}") from None


#: NaN/Infinity as a JSON value (after ``[``, ``,`` or ``:``), as Python's json.dump writes float nan/inf.
_NONFINITE = re.compile(rb"(?<=[\[,:])(\s*)(-?Infinity|NaN)(?=\s*[,\]}])")


class _LenientAnnotation(msgspec.Struct):
    id: object = None
    bbox: list[float | str] | None = None


class _LenientCoco(msgspec.Struct):
    annotations: list[_LenientAnnotation] = []


def _nonfinite_error(raw: bytes, where: str) -> DatasetFormatError | None:
    """The error for a file holding NaN/Infinity values (not JSON), naming the first annotation, or None.

    Only on the error path: each such token is quoted (``NaN`` -> ``"NaN"``) and the file decoded
    again into a lenient schema to find the annotation whose bbox holds one.
    """
    found = _NONFINITE.search(raw)
    if found is None:
        return None
    count = len(_NONFINITE.findall(raw))
    what = (
        f"{count} NaN/Infinity value(s) in the file, the first {found[2].decode()} at byte {found.start(2)}; "
        f"JSON has no such numbers (Python's json.dump writes them for a float nan or inf)"
    )
    try:
        lenient = msgspec.json.decode(_NONFINITE.sub(rb'\1"\2"', raw), type=_LenientCoco)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return DatasetFormatError(f"{where}: {what}")
    for ann in lenient.annotations:
        if ann.bbox is not None and any(isinstance(v, str) for v in ann.bbox):
            shown = "[" + ", ".join(str(v) for v in ann.bbox) + "]"
            return DatasetFormatError(
                f"annotation {ann.id} in {where}: bbox must be 4 finite numbers, got {shown} ({what})"
            )
    return DatasetFormatError(f"{where}: {what}")


def _check_unique(ids: np.ndarray, what: str, where: str) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    dup = uniq[counts > 1]
    if dup.size:
        raise DatasetFormatError(
            f"{where}: {what} ids must be unique, found {dup.size} duplicated "
            f"(e.g. id {int(dup[0])} appears {int(counts[counts > 1][0])} times)"
        )


#: the list of the file an id column refers to.
_LIST_OF = {"image_id": "images", "category_id": "categories"}


def _lookup(sorted_ids: np.ndarray, query: np.ndarray, ann_id: np.ndarray, what: str, where: str) -> np.ndarray:
    """Index of each ``query`` id in ``sorted_ids``; raise naming the first annotation whose id is unknown."""
    idx = np.searchsorted(sorted_ids, query)
    idx_clipped = np.minimum(idx, max(sorted_ids.size - 1, 0))
    if sorted_ids.size:
        ok = (idx < sorted_ids.size) & (sorted_ids[idx_clipped] == query)
    else:
        ok = np.zeros(query.shape, bool)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        raise DatasetFormatError(
            f"annotation {int(ann_id[bad[0]])} in {where}: {what} {int(query[bad[0]])} is not in the "
            f"file's {_LIST_OF[what]} list ({bad.size} annotation(s) affected)"
        )
    return idx


def _build(coco: _Coco, name: str, path: Path | None, image_dir: Path | None, where: str) -> Dataset:
    imgs, anns, cats = coco.images, coco.annotations, coco.categories
    image_id = np.fromiter((im.id for im in imgs), np.int64, len(imgs))
    width = np.fromiter((im.width for im in imgs), np.int64, len(imgs))
    height = np.fromiter((im.height for im in imgs), np.int64, len(imgs))
    file_name = np.array([im.file_name for im in imgs], dtype=str) if imgs else np.zeros(0, dtype="<U1")
    cat_id = np.fromiter((c.id for c in cats), np.int64, len(cats))
    n = len(anns)
    ann_id = np.fromiter((a.id for a in anns), np.int64, n)
    ann_img = np.fromiter((a.image_id for a in anns), np.int64, n)
    ann_cat = np.fromiter((a.category_id for a in anns), np.int64, n)
    bbox = np.fromiter((v for a in anns for v in a.bbox), np.float64, 4 * n).reshape(n, 4)
    area = np.fromiter((np.nan if a.area is None else a.area for a in anns), np.float64, n)
    iscrowd = np.fromiter((a.iscrowd for a in anns), np.int64, n).astype(bool)
    categories = pd.DataFrame(
        {
            "category_id": cat_id,
            "name": [c.name for c in cats],
            "supercategory": [c.supercategory for c in cats],
        }
    )
    return _assemble(
        name,
        path,
        image_dir,
        where,
        image_id,
        file_name,
        width,
        height,
        categories,
        ann_id,
        ann_img,
        ann_cat,
        bbox,
        area,
        iscrowd,
    )


def _assemble(
    name,
    path,
    image_dir,
    where,
    image_id,
    file_name,
    width,
    height,
    categories,
    ann_id,
    ann_img,
    ann_cat,
    bbox,
    area,
    iscrowd,
) -> Dataset:
    """Validate raw columns (COCO ids, not indices) and sort them into a :class:`Dataset`."""
    _check_unique(image_id, "image", where)
    _check_unique(ann_id, "annotation", where)
    _check_unique(categories["category_id"].to_numpy(), "category", where)
    if ((width <= 0) | (height <= 0)).any():
        i = int(np.flatnonzero((width <= 0) | (height <= 0))[0])
        raise DatasetFormatError(
            f"image {int(image_id[i])} in {where}: width and height must be positive, "
            f"got {int(width[i])} x {int(height[i])}"
        )
    if ((width > MAX_COORD) | (height > MAX_COORD)).any():
        i = int(np.flatnonzero((width > MAX_COORD) | (height > MAX_COORD))[0])
        raise DatasetFormatError(
            f"image {int(image_id[i])} in {where}: width and height must be at most "
            f"{int(MAX_COORD)} px, got {int(width[i])} x {int(height[i])}"
        )
    size_ok = (np.abs(bbox) <= MAX_COORD) & ((bbox == 0) | (np.abs(bbox) >= MIN_COORD))  # (G, 4)
    bad = ~(size_ok.all(axis=1) & (bbox[:, 2] >= 0) & (bbox[:, 3] >= 0))
    if bad.any():
        rows = np.flatnonzero(bad)
        huge = (
            "; values must be 0 or between 1.2e-38 and 2**24 = 16777216 px in size"
            if not size_ok[rows[0]].all()
            else ""
        )
        raise DatasetFormatError(
            f"annotation {int(ann_id[rows[0]])} in {where}: bbox must be 4 finite numbers with w, h >= 0, "
            f"got {bbox[rows[0]].tolist()}{huge} ({rows.size} bad box(es) in the file)"
        )
    bad_area = np.isinf(area)  # 1e999 decodes to inf; NaN stands for "no area in the file"
    if bad_area.any():
        rows = np.flatnonzero(bad_area)
        raise DatasetFormatError(
            f"annotation {int(ann_id[rows[0]])} in {where}: area must be a finite number, "
            f"got {area[rows[0]]} ({rows.size} bad area(s) in the file)"
        )
    area = np.where(np.isnan(area), bbox[:, 2] * bbox[:, 3], area)

    order_i = np.argsort(image_id, kind="stable")
    image_id, file_name, width, height = image_id[order_i], file_name[order_i], width[order_i], height[order_i]
    categories = categories.sort_values("category_id", kind="stable").reset_index(drop=True)
    cat_sorted = categories["category_id"].to_numpy()
    image_index = _lookup(image_id, ann_img, ann_id, "image_id", where)
    class_idx = _lookup(cat_sorted, ann_cat, ann_id, "category_id", where)

    order = np.lexsort((ann_id, image_index))
    counts = np.bincount(image_index, minlength=image_id.size)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ds = Dataset(
        name=name,
        path=path,
        image_dir=image_dir,
        image_id=image_id,
        file_name=file_name,
        width=width,
        height=height,
        ann_id=ann_id[order],
        image_index=image_index[order],
        category_id=ann_cat[order],
        class_idx=class_idx[order].astype(np.int64),
        bbox=bbox[order],
        area=area[order],
        iscrowd=iscrowd[order],
        categories=categories,
        offsets=offsets,
    )
    _warn_quality(ds, where)
    return ds


def _warn_quality(ds: Dataset, where: str) -> None:
    """Warn, with counts, about what is legal but worth knowing; a cache hit warns as a fresh parse does.

    - no images, or no annotations (an empty or missing ``annotations`` list): every count is 0;
    - zero-width or zero-height boxes (real COCO has some);
    - boxes far outside their image: reaching more than the image's own width (height) beyond its
      left or right (top or bottom) border, i.e. not inside ``[-W, 2W] x [-H, 2H]``.
    """
    if ds.num_images == 0:
        warnings.warn(f"{where}: the file lists no images; every count is 0", CocostatWarning, stacklevel=4)
    elif ds.num_annotations == 0:
        warnings.warn(
            f"{where}: no annotations (the 'annotations' list is empty or missing); counts and "
            f"statistics of boxes are 0 or empty",
            CocostatWarning,
            stacklevel=4,
        )
    bbox = ds.bbox
    zero = int(((bbox[:, 2] == 0) | (bbox[:, 3] == 0)).sum())
    if zero:
        warnings.warn(f"{where}: {zero} annotation(s) have zero width or height", CocostatWarning, stacklevel=4)
    w, h = ds.width[ds.image_index], ds.height[ds.image_index]  # (G,) pixels
    far = (bbox[:, 0] < -w) | (bbox[:, 1] < -h) | (bbox[:, 0] + bbox[:, 2] > 2 * w) | (bbox[:, 1] + bbox[:, 3] > 2 * h)
    if far.any():
        i = int(np.flatnonzero(far)[0])
        warnings.warn(
            f"{where}: {int(far.sum())} annotation(s) have boxes far outside their image (e.g. "
            f"annotation {int(ds.ann_id[i])}: bbox {bbox[i].tolist()} on a {int(w[i])} x {int(h[i])} "
            f"image); they are kept",
            CocostatWarning,
            stacklevel=4,
        )


def from_dict(coco: dict, name: str = "memory", image_dir: Path | None = None) -> Dataset:
    """Build a :class:`Dataset` from an in-memory COCO dict (same validation as :func:`load_coco`)."""
    return _build(_decode(msgspec.json.encode(coco), name), name, None, image_dir, name)


# --------------------------------------------------------------------------------------------------
# Cache of parsed arrays
# --------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """Folder of cached parsed arrays: ``$COCOSTAT_CACHE`` or the user cache folder."""
    return Path(os.environ.get("COCOSTAT_CACHE") or platformdirs.user_cache_dir("cocostat"))


def content_key(data: bytes | None = None, *, path: str | os.PathLike | None = None) -> str:
    """Hex SHA-256 (first 128 bits) of a file's bytes (``data``, or the file at ``path`` read in 8 MiB blocks).

    What identifies an annotation file for the cache and for ``predict --resume``: its content,
    never its path, size or modification time.
    """
    h = hashlib.sha256()
    if data is not None:
        h.update(data)
    elif path is None:
        raise TypeError("content_key() needs data or path")
    else:
        with open(path, "rb") as f:
            while block := f.read(1 << 23):
                h.update(block)
    return h.hexdigest()[:32]


def _cache_file(path: Path, key: str) -> Path:
    return cache_dir() / f"{path.stem}-v{CACHE_VERSION}-{key}.npz"


def _save_cache(ds: Dataset, file: Path) -> None:
    from cocostat.atomic import atomic_path

    cols = {k: getattr(ds, k) for k in (*_IMAGE_COLUMNS, *_ANN_COLUMNS, "offsets")}
    cats = {
        f"cat_{k}": ds.categories[k].to_numpy(dtype=None if k == "category_id" else str) for k in ds.categories.columns
    }
    try:
        with atomic_path(file) as tmp:
            np.savez(tmp, **cols, **cats)
    except OSError as exc:  # a read-only or full cache folder must not stop the analysis
        warnings.warn(f"could not write the cache {file}: {exc}", CocostatWarning, stacklevel=3)


def _load_cache(file: Path, name: str, path: Path, image_dir: Path | None) -> Dataset | None:
    """The cached dataset, or None when the entry is missing, unreadable or inconsistent (a miss)."""
    try:
        with np.load(file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        categories = pd.DataFrame({k[4:]: arrays.pop(k) for k in [k for k in arrays if k.startswith("cat_")]})
        ds = Dataset(name=name, path=path, image_dir=image_dir, categories=categories, **arrays)
        consistent = (
            ds.offsets.shape == (ds.num_images + 1,)
            and int(ds.offsets[-1]) == ds.num_annotations
            and ds.bbox.shape == (ds.num_annotations, 4)
            and all(getattr(ds, k).shape[0] == ds.num_annotations for k in _ANN_COLUMNS)
            and all(getattr(ds, k).shape[0] == ds.num_images for k in _IMAGE_COLUMNS)
        )
    except Exception:  # BadZipFile, a missing key, a truncated array: all mean "parse again"
        return None
    return ds if consistent else None


def load_coco(
    path: str | os.PathLike, *, name: str | None = None, image_dir: str | os.PathLike | None = None, cache: bool = True
) -> Dataset:
    """Load a COCO instances JSON file into a :class:`Dataset`.

    Args:
        path: the annotation file.
        name: the dataset's display name (default: the file stem).
        image_dir: folder holding the images, if known.
        cache: read and write the parsed-array cache in :func:`cache_dir`.

    Raises:
        DatasetNotFoundError: the file does not exist.
        DatasetFormatError: invalid JSON, a missing key, an unknown image or category id, a bad bbox,
            duplicate ids.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"annotation file {path} does not exist")
    name = name or path.stem
    image_dir = Path(image_dir) if image_dir is not None else None
    if cache:
        file = _cache_file(path, content_key(path=path))
        if file.is_file():
            ds = _load_cache(file, name, path, image_dir)
            if ds is not None:
                _warn_quality(ds, path.name)  # a cache hit reports what a fresh parse reports
                return ds
    raw = path.read_bytes()
    key = content_key(raw) if cache else None  # the bytes parsed: a file changed since it was hashed is no risk
    coco = _decode(raw, path.name)
    del raw
    with _no_gc():
        ds = _build(coco, name, path, image_dir, path.name)
    del coco
    if key is not None:
        _save_cache(ds, _cache_file(path, key))
    return ds


# --------------------------------------------------------------------------------------------------
# Finding a dataset from what the user typed
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset's annotations and images are: the answer of :func:`resolve_dataset`."""

    name: str
    annotations: Path
    image_dir: Path | None


def sample_path() -> Path:
    """The built-in sample: a bbox-only extract of the real COCO128 (train2017) annotations."""
    return Path(str(resources.files("cocostat") / "sample" / "instances_sample.json"))


def default_roots() -> list[Path]:
    """COCO roots tried when no ``--root`` is given: ``$COCOSTAT_ROOT``, ./datasets/coco, ./coco."""
    env = os.environ.get("COCOSTAT_ROOT")
    if env:
        return [Path(env)]
    return [Path("datasets/coco"), Path("coco")]


def _image_dir_for(root: Path, split: str) -> Path | None:
    for cand in (root / split, root / "images" / split):
        if cand.is_dir():
            return cand
    return None


def resolve_dataset(
    dataset: str | None = None,
    *,
    root: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
    split: str | None = None,
) -> DatasetSource:
    """Turn a DATASET argument into an annotation file and an image folder.

    - a name ending in ``.yaml``/``.yml``/``.data``/``.txt``, or a folder that is not a split name
      under a root: a YOLO dataset (``split`` picks its train/val/test), found by
      :func:`cocostat.yolo.resolve_yolo`, which returns a :class:`cocostat.yolo.YoloSource`.

    - ``None`` or ``"sample"``: the built-in sample (no images bundled).
    - a path to an existing file (or any name ending in ``.json``): that file; images from
      ``images``, else ``<root>/<split>`` when the file sits at ``<root>/annotations/instances_<split>.json``.
    - anything else is a split name: ``<root>/annotations/instances_<name>.json`` with root from
      ``root``, else ``$COCOSTAT_ROOT``, else ``./datasets/coco``, else ``./coco``; images in
      ``<root>/<name>/`` or ``<root>/images/<name>/``.

    Raises:
        DatasetNotFoundError: naming every place that was tried and how to fix it.
    """
    image_dir = Path(images) if images is not None else None
    if dataset is None or dataset == SAMPLE_NAME:
        return DatasetSource(SAMPLE_NAME, sample_path(), image_dir)
    as_path = Path(dataset)
    if yolo.is_yolo_argument(dataset):
        return _resolve_yolo(dataset, root, images, split)
    if as_path.is_file() or dataset.endswith(".json"):
        if not as_path.is_file():
            raise DatasetNotFoundError(f"annotation file {as_path} does not exist")
        if image_dir is None and as_path.parent.name == "annotations" and as_path.stem.startswith("instances_"):
            image_dir = _image_dir_for(as_path.parent.parent, as_path.stem[len("instances_") :])
        return DatasetSource(as_path.stem, as_path, image_dir)
    roots = [Path(root)] if root is not None else default_roots()
    tried = []
    for r in roots:
        ann = r / "annotations" / f"instances_{dataset}.json"
        tried.append(str(ann))
        if ann.is_file():
            return DatasetSource(dataset, ann, image_dir or _image_dir_for(r, dataset))
    if as_path.is_dir():
        return _resolve_yolo(dataset, root, images, split)
    raise DatasetNotFoundError(
        f"dataset {dataset!r} not found; tried {', '.join(tried)}. Give the COCO root with --root DIR "
        f"(or set COCOSTAT_ROOT), or pass the path of an annotation JSON file"
    )


def _resolve_yolo(dataset: str, root, images, split):
    if root is not None or images is not None:
        raise OptionError(
            f"--root and --images are for COCO JSON datasets; the YOLO dataset {dataset} lists its own images"
        )
    return yolo.resolve_yolo(dataset, split)


def load_dataset(
    dataset: str | None = None, *, root=None, images=None, split: str | None = None, cache: bool = True
) -> Dataset:
    """:func:`resolve_dataset` then :func:`load_coco` (or :func:`cocostat.yolo.load_yolo`): the one
    call every command makes. ``split`` is for YOLO dataset YAML/.data files only."""
    src = resolve_dataset(dataset, root=root, images=images, split=split)
    if isinstance(src, yolo.YoloSource):
        return yolo.load_yolo(src, cache=cache)
    if split is not None:
        raise OptionError(f"--split is for YOLO dataset YAML or .data files; {src.name} is COCO JSON")
    return load_coco(src.annotations, name=src.name, image_dir=src.image_dir, cache=cache and src.name != SAMPLE_NAME)
