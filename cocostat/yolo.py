"""YOLO-format datasets (ultralytics YAML, Darknet ``.data``, image lists, image folders) <-> :class:`Dataset`.

A YOLO dataset is a set of images and, per image, one label file of normalised lines
``class cx cy w h`` (a box) or ``class x1 y1 x2 y2 ... xn yn`` (a YOLOv8 segment polygon, n >= 3).
:func:`resolve_yolo` finds the images of one split from what the user typed; :func:`load_yolo` reads
the labels and the image sizes into the same columnar :class:`~cocostat.data.Dataset` the COCO
loader builds, so every command works on it unchanged; :func:`write_yolo` and :func:`write_coco` are
the two directions of ``cocostat convert``.

Decisions (the README's "YOLO-format datasets" section says the same):

- DATASET is YOLO when it ends in ``.yaml``/``.yml`` (ultralytics dataset YAML), ``.data`` (Darknet),
  ``.txt`` (a list of image paths, one per line), or is a folder of images that is not a COCO split
  name. The split (``--split``, default ``val`` for every command, so that ``info``, ``kmeans`` and
  ``eval`` of one DATASET describe the same images) picks the YAML's ``train``/``val``/``test`` entry or
  the ``.data`` file's ``train``/``valid``/``test`` entry; each entry is a folder (searched
  recursively, as ultralytics does), an image-list ``.txt`` or a list of those.
- Relative paths in a YAML (``path``, the split entries) or ``.data`` file are taken from the file's own
  folder when they exist there, else from the current folder (where trainers resolve them). A YAML
  without ``path`` uses its own folder. Relative lines of an image list are relative to the list's folder.
- Label files are found as the trainers find them: in the image path as listed (symlinks are not
  followed), the last ``/images/`` becomes ``/labels/`` and the extension becomes ``.txt``.
- Class names: the YAML's ``names`` (a list, or a dict ``{0: name, ...}`` with keys 0..C-1), or the
  ``.data`` file's ``names=`` file (one name per line). An image list or folder takes its names from a
  ``classes.txt`` in its folder or that folder's parent; without one the classes are numbered by the
  largest class index seen (names ``"0"``, ``"1"``, ...).
- ``category_id`` = class index + 1, unless the YAML has a ``category_ids`` key (cocostat's own: a
  list of C ids, or a dict ``{class index: id}``), which ``convert`` writes so that a COCO -> YOLO -> COCO
  round trip keeps COCO's sparse ids.
- Image ids: ``int(stem)`` when every image's file stem is a distinct decimal number (COCO's
  ``000000397133.jpg`` -> 397133, as ultralytics' COCO JSON export does), else 1 + the image's position
  in the sorted path list. Annotation ids: 1..G in (image, line) order. Nothing is crowd.
- Image sizes come from the image headers (JPEG and PNG read by :func:`image_size` itself, any other
  format through pillow's lazy open), turned as ultralytics' ``exif_size`` turns them (EXIF
  orientation 6 or 8 swaps width and height), because label coordinates are relative to the image as
  the trainer decodes it.
- A missing label file and an empty one both mean an image without objects; both are counted in one
  warning. A polygon becomes its bounding box; its ``area`` is the polygon's (shoelace) area, as in COCO,
  and a box's is w * h. Box edges and polygon points outside [0, 1] are clipped to the image; those
  more than 1e-6 outside (beyond the rounding of 6-decimal label text) are counted in a warning.
- A line with the wrong number of fields, a non-numeric or non-finite value, a class that is not an
  integer in 0..C-1, or a negative width or height is a :class:`~cocostat.errors.DatasetFormatError`
  naming the file and line.

Speed: reading the label files and the image headers is spread over a process pool of forked
workers, from :data:`POOL_MIN_IMAGES` images on (a thread pool loses: the header walk and the parse
hold the GIL; on 2 busy cores the pool only breaks even with one process, see
reports/bench_yolo.md); the lines of a chunk of files are parsed in one C pass (pandas' CSV reader)
when every line is a plain box, else in one vectorised numpy pass that also finds the bad line.

Cache: the parsed arrays go to the same cache as COCO files (:func:`cocostat.data.cache_dir`). A COCO
file's key hashes its bytes; hashing 118k label files would cost as much as parsing them, so the YOLO
key (:func:`cache_key`) is taken from file metadata instead, chosen so that a cached train2017-size
load stays under 1 s (reports/bench_yolo.md):

- every label file: its (size, mtime_ns), or its absence. One ``stat`` each, the bulk of the key's time;
- every folder holding an image: its mtime_ns (a file added, removed or renamed in a folder changes
  it), not each image: a ``stat`` per image would double the key's cost, and what the cache holds of
  an image is only its width and height;
- the image listing itself, and the resolved config (split, names, category ids).

Detected: a label file edited (in place too, at any size), added, removed or renamed; an image
added, removed or renamed; an image replaced by a new file (written beside it and renamed over it,
or deleted and recreated: ``mv``, ``rsync``, ``git checkout``); a changed YAML, ``.data``, names
file or image list. Missed (``--no-cache`` once after one of these): an image overwritten in place
(``cp`` onto an existing name, pillow's ``save`` to the same path) with other pixel dimensions; an
image changed behind a symlink to a file (``convert`` links to the original images: a replaced
original is not seen); a label file given new content of the same size and then its old mtime back
(``touch -r``; rsync's quick check would skip such a file too). A file edited twice within one
timestamp tick (1-2 s on FAT, HFS+, ext3) cannot hide behind an unchanged mtime: no entry is written
while a label file or image folder is younger than :data:`SETTLE_NS` (2 s), or dated in the future;
that load reads the files and a later one writes the entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from cocostat.errors import CocostatWarning, DatasetFormatError, DatasetNotFoundError, OptionError

if TYPE_CHECKING:  # cocostat.data imports this module
    from cocostat.data import Dataset

#: Suffixes that make a DATASET argument a YOLO dataset description.
CONFIG_SUFFIXES = (".yaml", ".yml", ".data", ".txt")
#: Image suffixes (ultralytics' IMG_FORMATS), lower case.
IMAGE_SUFFIXES = frozenset({".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"})
DEFAULT_SPLIT = "val"
SPLITS = ("train", "val", "test")
_DATA_KEYS = {"train": ("train",), "val": ("valid", "val"), "test": ("test",)}  # Darknet .data names
#: Points further than this outside [0, 1] (normalised) are counted as clipped.
CLIP_TOLERANCE = 1e-6
#: Bump when the cached YOLO parse changes.
YOLO_CACHE_VERSION = 1
#: A label file or image folder modified less than this long before the cache key is taken may still
#: change within its timestamp tick (FAT's is 2 s) without a new mtime: no cache entry is written then.
SETTLE_NS = 2_000_000_000
#: Below this many images the files are read in this process (a pool costs ~0.1 s to start).
POOL_MIN_IMAGES = 4096


@dataclass(frozen=True)
class YoloSource:
    """One split of a YOLO dataset, as :func:`resolve_yolo` found it.

    Attributes:
        name: display name, ``<config stem>-<split>`` (``coco-val``) or the list/folder name.
        annotations: the YAML, ``.data``, list file or folder the user gave (``Dataset.path``).
        split: ``train``, ``val`` or ``test`` (``None`` for a list file or folder).
        image_paths: (I,) the image paths, absolute (not symlink-resolved), sorted, unique.
        image_dir: the deepest folder holding every image; ``Dataset.file_name`` is relative to it.
        names: class names in class-index order, or ``None`` (numbered from the labels).
        category_ids: COCO category id of each class index, or ``None`` (class index + 1).
    """

    name: str
    annotations: Path
    split: str | None
    image_paths: tuple[str, ...]
    image_dir: Path | None
    names: tuple[str, ...] | None
    category_ids: tuple[int, ...] | None


def is_yolo_argument(dataset: str) -> bool:
    """Whether DATASET names a YOLO description by its suffix (folders are decided by the caller)."""
    return Path(dataset).suffix.lower() in CONFIG_SUFFIXES


# --------------------------------------------------------------------------------------------------
# Finding the images and names of a split
# --------------------------------------------------------------------------------------------------
def _locate(entry: str, base: Path) -> Path:
    """A relative path from a config file: from the file's folder if it exists there, else the cwd."""
    p = Path(os.path.expanduser(str(entry)))
    if p.is_absolute():
        return p
    for cand in (base / p, Path.cwd() / p):
        if cand.exists():
            return Path(os.path.abspath(cand))
    return Path(os.path.abspath(base / p))


def _list_folder(folder: str) -> list[str]:
    """Image files under ``folder``, recursively (symlinked folders followed). An entry with an image
    suffix is taken as a file without a stat: on a folder of 118k image symlinks a stat each would
    cost more than the rest of the listing. Other entries are asked whether they are folders, which
    the directory entry's type answers without a stat (Darknet layouts keep a ``.txt`` per image
    beside it)."""
    out, dirs = [], [folder]
    while dirs:
        d = dirs.pop()
        with os.scandir(d) as it:
            for e in it:
                name = e.name
                dot = name.rfind(".")
                if dot > 0 and name[dot:].lower() in IMAGE_SUFFIXES:
                    out.append(e.path)
                elif e.is_dir():
                    dirs.append(e.path)
    return out


def _list_file(path: Path) -> list[str]:
    base = os.path.abspath(path.parent)
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(os.path.normpath(line if os.path.isabs(line) else os.path.join(base, line)))
    return out


def _images_of(entries: list[Path], where: str) -> list[str]:
    paths: list[str] = []
    for e in entries:
        if e.is_dir():
            paths += _list_folder(os.path.abspath(e))
        elif e.is_file() and e.suffix.lower() == ".txt":  # image suffixes only, as ultralytics reads lists
            paths += [p for p in _list_file(e) if p[p.rfind(".") :].lower() in IMAGE_SUFFIXES]
        elif e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES:
            paths.append(os.path.abspath(e))
        else:
            raise DatasetNotFoundError(f"{where}: image folder or image list {e} does not exist")
    return sorted(set(paths)) if len(entries) > 1 or not entries[0].is_dir() else sorted(paths)


def _names_file(path: Path, where: str) -> tuple[str, ...]:
    if not path.is_file():
        raise DatasetNotFoundError(f"{where}: names file {path} does not exist")
    return tuple(n.strip() for n in path.read_text(encoding="utf-8").splitlines() if n.strip())


def _count(value, key: str, where: str) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        n = -1
    if n < 0:
        raise DatasetFormatError(f"{where}: {key} must be a whole number >= 0, got {value!r}")
    return n


def _yaml_names(cfg: dict, where: str) -> tuple[str, ...]:
    names, nc = cfg.get("names"), cfg.get("nc")
    if isinstance(names, dict):
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise DatasetFormatError(f"{where}: names must have the keys 0..{len(keys) - 1}, got {keys[:10]}")
        names = [names[k] for k in keys]
    if names is None:
        if nc is None:
            raise DatasetFormatError(f"{where}: expected a 'names' list or dict (or 'nc'), found neither")
        names = [f"class_{i}" for i in range(_count(nc, "nc", where))]
    if not isinstance(names, list):
        raise DatasetFormatError(f"{where}: 'names' must be a list or a dict, got {type(names).__name__}")
    if nc is not None and _count(nc, "nc", where) != len(names):
        raise DatasetFormatError(f"{where}: nc is {nc} but names has {len(names)} entries")
    return tuple(str(n) for n in names)


def _yaml_category_ids(cfg: dict, n: int, where: str) -> tuple[int, ...] | None:
    ids = cfg.get("category_ids")
    if ids is None:
        return None
    if isinstance(ids, dict):
        if sorted(ids) != list(range(n)):
            raise DatasetFormatError(f"{where}: category_ids must have the keys 0..{n - 1}")
        ids = [ids[k] for k in range(n)]
    if (
        not isinstance(ids, list)
        or len(ids) != n
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):
        raise DatasetFormatError(f"{where}: category_ids must be a list of {n} integers (one per name)")
    if len(set(ids)) != n:
        raise DatasetFormatError(f"{where}: category_ids must be distinct")
    return tuple(ids)


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetFormatError(f"{path.name}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise DatasetFormatError(
            f"{path.name}: expected a dataset YAML mapping (path, train, val, names), got {type(cfg).__name__}"
        )
    return cfg


def _read_data_file(path: Path) -> dict:
    cfg = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise DatasetFormatError(f"{path.name} line {i}: expected key = value, got {line!r}")
        k, v = line.split("=", 1)
        cfg[k.strip()] = v.strip()
    return cfg


def _split_entries(cfg: dict, keys: tuple[str, ...], split: str, base: Path, where: str) -> list[Path]:
    for k in keys:
        if cfg.get(k):
            v = cfg[k]
            return [_locate(str(x), base) for x in (v if isinstance(v, list) else [v])]
    have = [s for s, ks in _DATA_KEYS.items() if any(cfg.get(k) for k in (s, *ks))]
    raise OptionError(f"{where} has no {split!r} split (it has: {', '.join(have) or 'none'}); pick one with --split")


def _near_names(folder: Path) -> tuple[str, ...] | None:
    for cand in (folder / "classes.txt", folder.parent / "classes.txt"):
        if cand.is_file():
            return _names_file(cand, str(cand))
    return None


def _common_dir(paths: list[str]) -> Path | None:
    """The deepest folder holding every path of a sorted list: the first and last paths of a sorted
    list share the longest prefix of all of them."""
    if not paths:
        return None
    return Path(os.path.commonpath([os.path.dirname(paths[0]), os.path.dirname(paths[-1])]))


def resolve_yolo(dataset: str | os.PathLike, split: str | None = None) -> YoloSource:
    """Find the images, names and category ids of one split of a YOLO dataset.

    Args:
        dataset: a dataset YAML, a Darknet ``.data`` file, an image-list ``.txt`` or an image folder.
        split: ``train``, ``val`` or ``test`` for a YAML or ``.data`` file (default :data:`DEFAULT_SPLIT`);
            a list file or folder is one split already, so ``split`` must be ``None`` or its default.

    Raises:
        DatasetNotFoundError: the file, a split's folder or list, or the names file does not exist.
        DatasetFormatError: invalid YAML, bad ``names``/``nc``/``category_ids``.
        OptionError: the split is not one of train/val/test or not in the file.
    """
    path = Path(dataset)
    if split is not None and split not in SPLITS:
        raise OptionError(f"split must be one of {', '.join(SPLITS)}, got {split!r}", param="split")
    if not path.exists():
        raise DatasetNotFoundError(f"YOLO dataset {path} does not exist")
    suffix = path.suffix.lower()
    names = category_ids = None
    if path.is_dir() or suffix == ".txt":
        if split not in (None, DEFAULT_SPLIT):
            raise OptionError(f"--split {split} needs a dataset YAML or .data file; {path} is one split already")
        split = None
        images = _images_of([Path(os.path.abspath(path))], path.name)
        names = _near_names(Path(os.path.abspath(path)) if path.is_dir() else path.parent)
        name = path.stem if suffix == ".txt" else path.name
    else:
        split = split or DEFAULT_SPLIT
        where = path.name
        base = Path(os.path.abspath(path.parent))
        if suffix == ".data":
            cfg = _read_data_file(path)
            entries = _split_entries(cfg, _DATA_KEYS[split], split, base, where)
            if cfg.get("names"):
                names = _names_file(_locate(cfg["names"], base), where)
            elif cfg.get("classes"):
                names = tuple(str(i) for i in range(_count(cfg["classes"], "classes", where)))
        else:
            cfg = _read_yaml(path)
            root = _locate(str(cfg["path"]), base) if cfg.get("path") else base
            entries = _split_entries(cfg, (split,), split, root, where)
            names = _yaml_names(cfg, where)
            category_ids = _yaml_category_ids(cfg, len(names), where)
        images = _images_of(entries, where)
        name = f"{path.stem}-{split}"
    return YoloSource(
        name=name,
        annotations=path,
        split=split,
        image_paths=tuple(images),
        image_dir=_common_dir(images),
        names=names,
        category_ids=category_ids,
    )


def label_path(image_path: str) -> str:
    """The label file of an image: the last ``/images/`` becomes ``/labels/``, the extension ``.txt``."""
    k = image_path.rfind(_IMAGES)
    if k >= 0:
        image_path = image_path[:k] + _LABELS + image_path[k + len(_IMAGES) :]
    dot, slash = image_path.rfind("."), image_path.rfind(os.sep)
    return (image_path[:dot] if dot > slash + 1 else image_path) + ".txt"


_IMAGES, _LABELS = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"


# --------------------------------------------------------------------------------------------------
# Reading the files: image headers and label lines, one chunk of images per worker
# --------------------------------------------------------------------------------------------------
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)
_PNG = b"\x89PNG\r\n\x1a\n"


def _exif_orientation(app1: bytes) -> int:
    """The orientation tag (0x0112) of an APP1 ``Exif`` segment's first IFD, 1 when absent or malformed."""
    tiff = app1[6:]
    orders: dict[bytes, Literal["little", "big"]] = {b"II": "little", b"MM": "big"}
    order = orders.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    for k in range(int.from_bytes(tiff[ifd : ifd + 2], order)):
        e = ifd + 2 + 12 * k
        if e + 12 > len(tiff):
            break
        if int.from_bytes(tiff[e : e + 2], order) == 0x0112:
            return int.from_bytes(tiff[e + 8 : e + 10], order)
    return 1


def _jpeg_size(buf: bytes) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation) from the first bytes of a JPEG; None when the frame header is
    not within ``buf`` or the markers are malformed.

    Walks the segments by their lengths up to the first start-of-frame, as a decoder does; of the
    segments before it, only an APP1 ``Exif`` segment is looked into.
    """
    orientation, i, n = 1, 2, len(buf)
    while i + 4 <= n:
        if buf[i] != 0xFF:
            return None
        m = buf[i + 1]
        if m == 0xFF:  # fill byte
            i += 1
            continue
        if m == 0x01 or 0xD0 <= m <= 0xD8:  # markers without a length
            i += 2
            continue
        if m in (0xD9, 0xDA):  # end of image, or start of scan before any frame header
            return None
        length = (buf[i + 2] << 8) | buf[i + 3]
        if m in _SOF:
            if i + 9 > n:
                return None
            return (buf[i + 7] << 8) | buf[i + 8], (buf[i + 5] << 8) | buf[i + 6], orientation
        if m == 0xE1 and orientation == 1 and buf.startswith(b"Exif\0\0", i + 4):
            if i + 2 + length > n:
                return None
            orientation = _exif_orientation(buf[i + 4 : i + 2 + length])
        i += 2 + length
    return None


#: Bytes of an image read for its header: enough for a JPEG's frame header unless a large EXIF
#: block (a thumbnail) comes first, in which case the whole file is read.
HEAD_BYTES = 4096


def _read(path: str, n: int | None) -> bytes:
    """The first ``n`` bytes of a file (all of it for ``None``): one open, read and close."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if n is not None:
            return os.read(fd, n)
        chunk = os.read(fd, 1 << 16)
        if len(chunk) < 1 << 16:  # a short read of a regular file is its end
            return chunk
        parts = [chunk]
        while chunk := os.read(fd, 1 << 20):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def image_size(path: str) -> tuple[int, int]:
    """(width, height) in pixels from the image header, as the trainer sees the image.

    JPEG (and MPO) and PNG headers are read here (a JPEG's EXIF orientation 6 or 8 swaps width and
    height, as ultralytics' ``exif_size`` does); any other format, or a JPEG this reader cannot walk,
    through pillow's lazy open, which also reads only the header. tests/test_yolo.py checks both against
    pillow on every real image in the test data. (Pillow alone costs several times more per JPEG: it
    parses every quantisation table in Python.)
    """
    try:
        head = _read(path, HEAD_BYTES)
        if head[:2] == b"\xff\xd8":
            got = _jpeg_size(head)
            if got is None and len(head) == HEAD_BYTES:
                got = _jpeg_size(_read(path, None))
            if got is not None and got[0] > 0 and got[1] > 0:
                w, h, orientation = got
                return (h, w) if orientation in (6, 8) else (w, h)
        elif head[:8] == _PNG and head[12:16] == b"IHDR":
            return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    except FileNotFoundError:
        raise DatasetNotFoundError(f"image {path} does not exist") from None
    except OSError as exc:
        raise DatasetFormatError(f"image {path}: cannot read its header: {exc}") from None
    return _pillow_size(path)


def _pillow_size(path: str) -> tuple[int, int]:
    """:func:`image_size` through pillow's lazy open (ultralytics' ``exif_size``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.format in ("JPEG", "MPO") and "exif" in im.info and im.getexif().get(0x0112) in (6, 8):
                w, h = h, w
    except FileNotFoundError:
        raise DatasetNotFoundError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetFormatError(f"image {path}: cannot read its header: {exc}") from None
    return w, h


@dataclass(frozen=True)
class _Parsed:
    """The lines of one chunk of label files (L lines with content), normalised units."""

    sizes: np.ndarray  # (n, 2) int64 width, height per image of the chunk
    state: np.ndarray  # (n,) int8: 0 labels, 1 empty file, 2 no file
    line_image: np.ndarray  # (L,) int64 image index within the chunk
    cls: np.ndarray  # (L,) int64 class index
    xyxy: np.ndarray  # (L, 4) float64 normalised, not yet clipped
    poly_area: np.ndarray  # (L,) float64 normalised shoelace area of clipped polygon, NaN for a box line
    outside: np.ndarray  # (L,) bool: a coordinate is more than CLIP_TOLERANCE outside [0, 1]


_WS = np.zeros(256, bool)
_WS[[9, 10, 11, 12, 13, 32]] = True  # bytes.split()'s whitespace


def _line_error(files: list[str], file_start: np.ndarray, nl: np.ndarray, buf: bytes, line: int, msg: str) -> None:
    """Raise the one-line error for global line index ``line`` of a chunk buffer."""
    start = 0 if line == 0 else int(nl[line - 1]) + 1
    f = int(np.searchsorted(file_start, start, side="right")) - 1
    first_line = int(np.searchsorted(nl, file_start[f]))  # lines before this file
    text = buf[start : int(nl[line])].decode("utf-8", "replace").strip()
    raise DatasetFormatError(f"{files[f]} line {line - first_line + 1}: {msg}, got {text[:80]!r}")


def _boxes_only(buf: bytes, lines_per_file: np.ndarray, num_classes: int | None):
    """The common case in one C pass (pandas' CSV reader): every line is ``class cx cy w h`` with single
    spaces, no blank line, nothing out of range. Returns what :func:`_parse_labels` returns, or ``None``
    when anything differs; the general parse then reads the chunk again and names the bad line."""
    import io

    try:
        m = pd.read_csv(
            io.BytesIO(buf), sep=" ", header=None, dtype=np.float64, engine="c", skip_blank_lines=False
        ).to_numpy()  # (L, 5)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if m.shape != (int(lines_per_file.sum()), 5) or not np.isfinite(m).all():
        return None
    cls_f, cx, cy, w, h = m.T
    if ((cls_f != np.round(cls_f)) | (cls_f < 0) | (w < 0) | (h < 0)).any() or (
        num_classes is not None and (cls_f >= num_classes).any()
    ):
        return None
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)  # (L, 4) normalised
    outside = ((xyxy < -CLIP_TOLERANCE) | (xyxy > 1 + CLIP_TOLERANCE)).any(axis=1)
    line_file = np.repeat(np.arange(lines_per_file.size, dtype=np.int64), lines_per_file)
    return line_file, cls_f.astype(np.int64), xyxy, np.full(m.shape[0], np.nan), outside


def _parse_labels(
    buf: bytes,
    files: list[str],
    file_start: np.ndarray,
    num_classes: int | None,
    lines_per_file: np.ndarray | None = None,
):
    """Vectorised parse of concatenated label files (each ending in a newline).

    ``lines_per_file`` (F,) int64, the newline count of each file, enables the fast path
    :func:`_boxes_only`. Returns per content line (L): file index (L,) int64, class (L,) int64, xyxy
    (L, 4) float64 normalised and not clipped, polygon area (L,) float64 normalised (NaN for a box),
    outside (L,) bool.
    """
    if not buf:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0, bool))
    if lines_per_file is not None:
        fast = _boxes_only(buf, lines_per_file, num_classes)
        if fast is not None:
            return fast
    a = np.frombuffer(buf, np.uint8)
    ws = _WS[a]
    nl = np.flatnonzero(a == 10)  # (lines,) newline positions
    tok = np.flatnonzero(~ws & np.concatenate([[True], ws[:-1]]))  # (T,) token start positions
    tok_line = np.searchsorted(nl, tok)  # (T,) line of each token
    tokens = buf.split()
    try:
        vals = np.array(tokens, dtype=np.float64)  # (T,)
    except ValueError:
        for i, t in enumerate(tokens):
            try:
                float(t)
            except ValueError:
                _line_error(
                    files,
                    file_start,
                    nl,
                    buf,
                    int(tok_line[i]),
                    f"value {t.decode('utf-8', 'replace')!r} is not a number",
                )
    ntok = np.bincount(tok_line, minlength=nl.size)  # (lines,)
    lines = np.flatnonzero(ntok)  # content lines
    n = ntok[lines]
    first = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)  # first token of each content line
    bad = (n != 5) & ((n < 7) | (n % 2 == 0))
    if bad.any():
        _line_error(
            files,
            file_start,
            nl,
            buf,
            int(lines[np.argmax(bad)]),
            f"expected 5 fields (class cx cy w h) or a class and 3 or more x y points, found {n[np.argmax(bad)]}",
        )
    if not np.isfinite(vals).all():
        _line_error(files, file_start, nl, buf, int(tok_line[np.argmax(~np.isfinite(vals))]), "values must be finite")
    cls_f = vals[first]
    bad = (cls_f != np.round(cls_f)) | (cls_f < 0) | ((cls_f >= num_classes) if num_classes is not None else False)
    if bad.any():
        rng = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        _line_error(files, file_start, nl, buf, int(lines[np.argmax(bad)]), f"class must be an integer in {rng}")
    xyxy = np.empty((lines.size, 4))
    area = np.full(lines.size, np.nan)
    box = n == 5
    bi = first[box]
    cx, cy, w, h = vals[bi + 1], vals[bi + 2], vals[bi + 3], vals[bi + 4]
    if ((w < 0) | (h < 0)).any():
        _line_error(
            files, file_start, nl, buf, int(lines[box][np.argmax((w < 0) | (h < 0))]), "width and height must be >= 0"
        )
    xyxy[box] = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    outside = np.zeros(lines.size, bool)
    if not box.all():
        pl = np.flatnonzero(~box)
        npts = (n[pl] - 1) // 2  # (Lp,)
        pstart = np.concatenate([[0], np.cumsum(npts)[:-1]])  # (Lp,) first point of each polygon
        pt_line = np.repeat(np.arange(pl.size), npts)  # (Pts,)
        k = np.arange(npts.sum()) - pstart[pt_line]  # (Pts,) point index in its polygon
        xi = first[pl][pt_line] + 1 + 2 * k
        x, y = vals[xi], vals[xi + 1]
        outside[pl] = np.logical_or.reduceat(
            (x < -CLIP_TOLERANCE) | (x > 1 + CLIP_TOLERANCE) | (y < -CLIP_TOLERANCE) | (y > 1 + CLIP_TOLERANCE), pstart
        )
        x, y = np.clip(x, 0, 1), np.clip(y, 0, 1)
        xyxy[pl] = np.stack(
            [
                np.minimum.reduceat(x, pstart),
                np.minimum.reduceat(y, pstart),
                np.maximum.reduceat(x, pstart),
                np.maximum.reduceat(y, pstart),
            ],
            axis=1,
        )
        nxt = np.arange(x.size) + 1
        ends = pstart + npts  # wrap each polygon to its first point
        nxt[ends - 1] = pstart
        area[pl] = np.abs(np.add.reduceat(x * y[nxt] - x[nxt] * y, pstart)) / 2
    outside[box] = ((xyxy[box] < -CLIP_TOLERANCE) | (xyxy[box] > 1 + CLIP_TOLERANCE)).any(axis=1)
    line_start = np.concatenate([[0], nl[:-1] + 1])[lines]
    line_file = np.searchsorted(file_start, line_start, side="right") - 1
    return line_file.astype(np.int64), cls_f.astype(np.int64), xyxy, area, outside


def _read_chunk(images: list[str], num_classes: int | None) -> _Parsed:
    """Image sizes and parsed labels of a chunk of images (runs in a worker process)."""
    sizes = np.array([image_size(p) for p in images], dtype=np.int64).reshape(-1, 2)
    state = np.zeros(len(images), np.int8)
    parts, starts, have, nlines = [], [], [], []
    labels = _label_paths(images)[0]
    pos = 0
    for i, p in enumerate(labels):
        try:
            data = _read(p, None)
        except FileNotFoundError:
            state[i] = 2
            continue
        except OSError as exc:
            raise DatasetFormatError(f"label file {p}: cannot be read: {exc.strerror}") from None
        if not data.strip():
            state[i] = 1
            continue
        if not data.endswith(b"\n"):
            data += b"\n"
        parts.append(data)
        nlines.append(data.count(b"\n"))
        starts.append(pos)
        have.append(i)
        pos += len(data)
    buf = b"".join(parts)
    files = [labels[i] for i in have]
    line_file, cls, xyxy, area, outside = _parse_labels(
        buf, files, np.array(starts, np.int64), num_classes, np.array(nlines, np.int64)
    )
    return _Parsed(
        sizes, state, np.array(have, np.int64)[line_file] if have else np.zeros(0, np.int64), cls, xyxy, area, outside
    )


def _map_chunks(fn, images: tuple[str, ...], args: tuple, workers: int | None, pool: str = "process") -> list:
    """``[fn(chunk, *args) for chunk in chunks of images]``, over a pool when there are enough images.

    workers: processes (threads with ``pool="thread"``); default the usable cores up to 8, or 1 below
    :data:`POOL_MIN_IMAGES` images; 1 runs ``fn`` once in this process over all the images.
    """
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)), 8) if len(images) >= POOL_MIN_IMAGES else 1
    if workers <= 1:
        return [fn(list(images), *args)]
    step = -(-len(images) // (workers * 4))  # 4 chunks per worker: even load, bounded memory
    chunks = [list(images[i : i + step]) for i in range(0, len(images), step)]
    if pool == "thread":
        from concurrent.futures import ThreadPoolExecutor

        executor: Executor = ThreadPoolExecutor(workers)
    else:
        import multiprocessing

        # fork where there is one: forkserver and spawn re-import the caller's __main__ (a script without
        # a main guard would run again) and pay the imports once more; the children only read files
        # and run numpy, so the threads fork cannot copy (torch, BLAS) do not matter to them
        methods = multiprocessing.get_all_start_methods()
        executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork" if "fork" in methods else None)
        )
    with executor:
        return list(executor.map(fn, chunks, *[[a] * len(chunks) for a in args]))


def _read_all(
    images: tuple[str, ...], num_classes: int | None, workers: int | None, pool: str = "process"
) -> list[_Parsed]:
    return _map_chunks(_read_chunk, images, (num_classes,), workers, pool)


# --------------------------------------------------------------------------------------------------
# Building the Dataset, and the cache
# --------------------------------------------------------------------------------------------------
def _stem(p: str) -> str:
    """``Path(p).stem`` for an absolute path string, without building a Path."""
    name = p[p.rfind(os.sep) + 1 :]
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name


def _image_ids(paths: tuple[str, ...]) -> np.ndarray:
    stems = [_stem(p) for p in paths]
    if stems and all(s.isdigit() for s in stems):
        ids = np.array([int(s) for s in stems], np.int64)
        if np.unique(ids).size == ids.size:
            return ids
    return np.arange(1, len(paths) + 1, dtype=np.int64)


def _label_paths(images: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """:func:`label_path` of every image, and the distinct folders holding the images (sorted).

    The same rule as :func:`label_path`, applied once per folder (the ``/images/`` -> ``/labels/``
    part never reaches into the file name), so that each image costs a few string operations.
    """
    out: list[str] = []
    label_dirs: dict[str, str] = {}
    sep, add = os.sep, out.append
    folder, cut, label_dir = "", -2, ""  # -2: no rfind result, so the first path sets them
    for p in images:
        k = p.rfind(sep)
        if k != cut or not p.startswith(folder):
            folder, cut = p[: k + 1], k
            if folder not in label_dirs:
                label_dirs[folder] = label_path(folder + "x")[:-5]  # strip "x.txt"
            label_dir = label_dirs[folder]
        dot = p.rfind(".", k + 2)  # an extension, not a leading dot: as label_path
        add(label_dir + (p[k + 1 : dot] if dot > 0 else p[k + 1 :]) + ".txt")
    return out, sorted(f[:-1] if len(f) > 1 else f for f in label_dirs)


def _stats(paths: list[str]) -> np.ndarray:
    """(n, 2) int64: each file's size in bytes and mtime in ns (symlinks followed), (-1, -1) where
    there is none."""
    out: list[int] = []
    add, stat = out.extend, os.stat
    for p in paths:
        try:
            s = stat(p)
            add((s.st_size, s.st_mtime_ns))
        except OSError:
            add((-1, -1))
    return np.array(out, np.int64).reshape(-1, 2)


@dataclass(frozen=True)
class CacheKey:
    """What :func:`cache_key` found.

    Attributes:
        digest: 16 hex digits, the cache entry's name.
        settled: every label file and image folder was last modified at least :data:`SETTLE_NS` before
            the key was taken, so none can change again within its timestamp tick unseen; an entry
            is written only under a settled key.
    """

    digest: str
    settled: bool


def cache_key(src: YoloSource) -> CacheKey:
    """The cache key of one split: a digest over everything the parsed arrays depend on, cheap to take.

    It covers: the cache layout versions; the resolved config (names, category ids, split, config
    path); every image path in order (the listing :func:`resolve_yolo` has just made); each image's
    label file's (size, mtime_ns), or its absence; and the mtime_ns of every folder holding an image
    (symlinked folders followed). It costs one ``stat`` per label file and one per image folder, none
    per image. What that detects and what it misses: the module docstring ("Cache").
    """
    from cocostat.data import CACHE_VERSION

    taken = time.time_ns()
    paths = src.image_paths
    label_files, folders = _label_paths(paths)
    labels = _stats(label_files)  # (I, 2)
    folder_mtimes = _stats(folders)[:, 1]  # (F,)
    h = hashlib.sha256(
        json.dumps(
            [CACHE_VERSION, YOLO_CACHE_VERSION, str(src.annotations.absolute()), src.split, src.names, src.category_ids]
        ).encode()
    )
    h.update("\0".join(paths).encode("utf-8", "surrogateescape"))
    h.update(labels.tobytes())
    h.update("\0".join(folders).encode("utf-8", "surrogateescape"))
    h.update(folder_mtimes.tobytes())
    newest = max(int(labels[:, 1].max(initial=-1)), int(folder_mtimes.max(initial=-1)))
    return CacheKey(h.hexdigest()[:16], newest <= taken - SETTLE_NS)


def _warn(src_name: str, counts: dict) -> None:
    if counts["no_file"] or counts["empty"]:
        warnings.warn(
            f"{src_name}: {counts['no_file']:,} of {counts['images']:,} image(s) have no label file "
            f"and {counts['empty']:,} an empty one; read as images without objects"
            + (f" (labels are looked for at {counts['example']})" if counts["no_file"] == counts["images"] else ""),
            CocostatWarning,
            stacklevel=4,
        )
    if counts["clipped"]:
        warnings.warn(
            f"{src_name}: {counts['clipped']:,} label(s) have coordinates outside [0, 1], clipped to the image",
            CocostatWarning,
            stacklevel=4,
        )


def load_yolo(src: YoloSource, *, cache: bool = True, workers: int | None = None, pool: str = "process") -> Dataset:
    """Read one split of a YOLO dataset into a :class:`~cocostat.data.Dataset`.

    Args:
        src: what :func:`resolve_yolo` found.
        cache: read and write the parsed-array cache (key: :func:`cache_key`).
        workers: reader processes (default: the usable cores up to 8, or 1 below
            :data:`POOL_MIN_IMAGES` images); 1 reads in this process.
        pool: ``process`` (default) or ``thread``; threads are kept for the benchmark that shows they
            lose (pillow's header parse and the line parse hold the GIL).

    Returns: a Dataset with bbox (G, 4) float64 xywh pixels, area (G,) float64 pixels (polygon area
        for segment labels, w * h for boxes), iscrowd all False, categories from the names.

    Raises:
        DatasetNotFoundError: an image does not exist.
        DatasetFormatError: an unreadable image header, or a bad label line (file and line named).
    """
    from cocostat.data import _assemble, _load_cache, _save_cache, _warn_quality, cache_dir

    file = side = key = None
    if cache:
        key = cache_key(src)
        file = cache_dir() / f"{src.name}-yolo-{key.digest}.npz"
        side = file.with_suffix(".json")
        if file.is_file() and side.is_file():
            ds = _load_cache(file, src.name, src.annotations, src.image_dir)
            if ds is not None:
                try:
                    _warn(src.name, json.loads(side.read_text()))
                    _warn_quality(ds, src.name)
                    return dataclasses.replace(ds, split=src.split)
                except (OSError, ValueError, KeyError):
                    pass
    num_classes = len(src.names) if src.names is not None else None
    parts = _read_all(src.image_paths, num_classes, workers, pool)
    sizes = np.concatenate([p.sizes for p in parts]).reshape(-1, 2)
    state = np.concatenate([p.state for p in parts])
    base = np.cumsum([0] + [p.sizes.shape[0] for p in parts])
    line_image = np.concatenate([p.line_image + b for p, b in zip(parts, base[:-1], strict=True)])
    cls = np.concatenate([p.cls for p in parts])
    xyxy = np.concatenate([p.xyxy for p in parts]).reshape(-1, 4)
    poly_area = np.concatenate([p.poly_area for p in parts])
    clipped = int(sum(int(p.outside.sum()) for p in parts))

    names = src.names
    if names is None:
        names = tuple(str(i) for i in range(int(cls.max()) + 1 if cls.size else 0))
    cat_ids = np.array(src.category_ids if src.category_ids is not None else range(1, len(names) + 1), np.int64)
    wh = sizes[line_image].astype(np.float64)  # (G, 2) pixels
    xyxy = np.clip(xyxy, 0.0, 1.0) * np.concatenate([wh, wh], axis=1)  # (G, 4) pixels
    bbox = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    area = np.where(np.isnan(poly_area), bbox[:, 2] * bbox[:, 3], poly_area * wh[:, 0] * wh[:, 1])
    image_id = _image_ids(src.image_paths)
    cut = len(os.path.join(str(src.image_dir), "")) if src.image_dir is not None else 0  # every path is under it
    rel = [p[cut:] for p in src.image_paths]
    file_name = np.array(rel, dtype=str) if rel else np.zeros(0, dtype="<U1")
    categories = pd.DataFrame({"category_id": cat_ids, "name": list(names), "supercategory": [""] * len(names)})
    g = cls.size
    ds = _assemble(
        src.name,
        src.annotations,
        src.image_dir,
        src.name,
        image_id,
        file_name,
        sizes[:, 0].copy(),
        sizes[:, 1].copy(),
        categories,
        np.arange(1, g + 1, dtype=np.int64),
        image_id[line_image],
        cat_ids[cls],
        bbox,
        area,
        np.zeros(g, bool),
    )
    counts = {
        "images": int(state.size),
        "no_file": int((state == 2).sum()),
        "empty": int((state == 1).sum()),
        "clipped": clipped,
        "example": label_path(src.image_paths[0]) if src.image_paths else "",
    }
    _warn(src.name, counts)
    if file is not None and side is not None and key is not None and key.settled:
        from cocostat.atomic import write_text

        _save_cache(ds, file)
        try:
            write_text(side, json.dumps(counts))
        except OSError:
            pass
    return dataclasses.replace(ds, split=src.split)


# --------------------------------------------------------------------------------------------------
# Writing: convert
# --------------------------------------------------------------------------------------------------
def write_coco(dataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` as a COCO instances JSON (boxes only, no segmentation), atomically."""
    import orjson

    from cocostat.atomic import write_bytes
    from cocostat.evaluate import coco_dict

    return write_bytes(path, orjson.dumps(coco_dict(dataset)))


@dataclass(frozen=True)
class ConvertResult:
    """What ``cocostat convert`` wrote."""

    source: str
    target: str
    to: str
    images: int
    objects: int
    crowd_left_out: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"field": list(self.__dict__), "value": [str(v) for v in self.__dict__.values()]})

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        return [("convert", self.to_frame())]


def _check_images(names: list[str], image_dir: Path, dataset: str) -> None:
    """Every image of a dataset about to be linked is a file in ``image_dir`` (one ``stat`` each)."""
    missing = [n for n in names if not os.path.isfile(os.path.join(image_dir, n))]
    if missing:
        raise DatasetNotFoundError(
            f"converting {dataset} to YOLO: {len(missing):,} of {len(names):,} image(s) are not in {image_dir} "
            f"(first: {missing[0]}); the YOLO layout links to them: pass the folder that holds them with --images"
        )


def _check_label_clash(names: list[str], labels: list[str], dataset: str) -> None:
    """No two images map to one label file (``a.jpg`` and ``a.png`` both to ``a.txt``)."""
    if len(set(labels)) == len(labels):
        return
    first: dict[str, str] = {}
    for name, lab in zip(names, labels, strict=True):
        if lab in first:
            raise DatasetFormatError(
                f"converting {dataset} to YOLO: images {first[lab]} and {name} would share the label file "
                f"{os.path.basename(lab)} (a YOLO label is found by the image path without its extension); "
                "rename one of them"
            )
        first[lab] = name


def write_yolo(
    dataset, out_dir: str | os.PathLike, split: str = DEFAULT_SPLIT, folder: str | None = None
) -> ConvertResult:
    """Write ``dataset`` as a YOLO layout in ``out_dir``, replacing it as a whole at the end.

    Layout (ultralytics), with FOLDER = ``folder`` or ``split``: ``OUT/images/FOLDER/<file_name>``
    symlinks to the original images, ``OUT/labels/FOLDER/<stem>.txt`` (``class cx cy w h``, normalised,
    10 significant digits, one line per box; no file for an image without boxes) and
    ``OUT/<OUT name>.yaml`` (no ``path``: the YAML's folder is the root, for ultralytics too; the split,
    ``names`` and ``category_ids`` so that reading it back gives the same COCO category ids).
    Crowd boxes are left out, as ultralytics' COCO labels leave them out (YOLO labels have no crowd
    flag, and a crowd box read back as an object would be trained on as one); their count is returned.
    The folder is built beside ``out_dir`` and renamed into place, so a failure leaves no half layout.

    Raises:
        DatasetNotFoundError: the dataset has no image folder, or an image of it is not in that folder
            (a YOLO layout needs its images: the links would dangle, and the image sizes are read from
            them); the message names the first missing image and counts them. Checked before anything
            is written.
        DatasetFormatError: two images would share a label file (``a.jpg`` and ``a.png``: the label
            is found by the image's path without its extension); both are named.
    """
    out = Path(out_dir)
    if split not in SPLITS:
        raise OptionError(f"the split of a YOLO layout must be one of {', '.join(SPLITS)}, got {split!r}")
    folder = folder or split
    if dataset.image_dir is None:
        raise DatasetNotFoundError(f"converting {dataset.name} to YOLO needs its images: pass --images DIR")
    image_dir = Path(os.path.abspath(dataset.image_dir))
    names = dataset.file_name.tolist()
    _check_images(names, image_dir, dataset.name)
    keep = ~dataset.iscrowd
    ds = dataset.select_annotations(keep)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        img_root = tmp / "images" / folder
        # label files by the loader's own rule, so that reading the layout back finds every one
        labels = [label_path(os.path.join(img_root, name)) for name in names]
        _check_label_clash(names, labels, dataset.name)
        wh = np.stack([ds.width, ds.height], axis=1)[ds.image_index].astype(np.float64)  # (G, 2)
        c = ds.bbox[:, :2] + ds.bbox[:, 2:] / 2
        rows = np.concatenate([ds.class_idx[:, None].astype(np.float64), c / wh, ds.bbox[:, 2:] / wh], axis=1)
        offsets = ds.offsets
        for i, name in enumerate(names):
            link = img_root / name
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(image_dir / name, link)
            n = int(offsets[i + 1] - offsets[i])
            if n:
                lab = Path(labels[i])
                lab.parent.mkdir(parents=True, exist_ok=True)
                lab.write_text(("%d %.10g %.10g %.10g %.10g\n" * n) % tuple(rows[offsets[i] : offsets[i + 1]].ravel()))
        import yaml

        cats = ds.categories
        cfg = {
            split: f"images/{folder}",
            "names": dict(enumerate(cats["name"].tolist())),
            "category_ids": cats["category_id"].tolist(),
        }
        (tmp / f"{out.name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ConvertResult(
        source=str(dataset.path or dataset.name),
        target=str(out / f"{out.name}.yaml"),
        to="yolo",
        images=ds.num_images,
        objects=ds.num_annotations,
        crowd_left_out=int(dataset.iscrowd.sum()),
    )


def convert(dataset, output: str | os.PathLike, split: str = DEFAULT_SPLIT, folder: str | None = None) -> ConvertResult:
    """``cocostat convert``: a YOLO dataset becomes a COCO JSON file ``output`` (``.json``); a COCO
    dataset becomes a YOLO layout in the folder ``output`` (see :func:`write_yolo`)."""
    from cocostat.data import SAMPLE_NAME

    is_yolo = (
        dataset.path is not None
        and dataset.name != SAMPLE_NAME
        and (Path(dataset.path).is_dir() or is_yolo_argument(str(dataset.path)))
    )
    if is_yolo:
        if not str(output).endswith(".json"):
            raise OptionError(f"converting a YOLO dataset writes a COCO JSON file: -o must end in .json, got {output}")
        write_coco(dataset, output)
        return ConvertResult(
            source=str(dataset.path),
            target=str(output),
            to="coco",
            images=dataset.num_images,
            objects=dataset.num_annotations,
            crowd_left_out=0,
        )
    if str(output).endswith(".json"):
        raise OptionError(f"{dataset.name} is already COCO JSON; -o names the folder of the YOLO layout, got {output}")
    return write_yolo(dataset, output, split=split, folder=folder)
