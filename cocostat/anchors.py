"""YOLO anchors: presets, parsing, fitness figures, IoU k-means with evolutionary refinement.

Shapes (letters from the package docs): G boxes, A anchors, K clusters (the anchors being designed),
L output levels, R k-means restarts, M points of the search (distinct box sizes, or cells of the
size grid, see below), B candidate anchors tried per evolution generation. Every size is a
``(w, h)`` pair in pixels of the network input (after the resize named in the output).

Fitness figures of an anchor set ``a`` on boxes ``g`` (:func:`fitness`; every mean is over boxes):

- ``avg_iou``: mean over boxes of ``max_a wh_iou(g, a)``, where
  ``wh_iou = min(w_g, w_a) * min(h_g, h_a) / (w_g h_g + w_a h_a - min(w_g, w_a) * min(h_g, h_a))``
  is the IoU of the two boxes placed on one centre (:func:`cocostat.boxes.pairwise_wh_iou`).
- ``bpr_iou``: share of boxes with ``max_a wh_iou(g, a) > iou_t`` (best possible recall of a
  trainer that matches anchors by wh-IoU, ultralytics YOLOv3: ``iou_t = 0.225``).
- ``anchors_above_iou``: mean number of anchors with ``wh_iou(g, a) > iou_t``.
- ``bpr_ratio`` and ``anchors_above_ratio``: the same with ultralytics' ratio metric
  ``x(g, a) = min(min(w_g / w_a, w_a / w_g), min(h_g / h_a, h_a / h_g))`` and the test
  ``x > 1 / ratio_t`` (YOLOv5's ``anchor_t = 4.0``).
- ``best_for[a]``: number of boxes whose highest wh-IoU is with anchor ``a`` (ties go to the
  lower index; a box with IoU 0 with every anchor counts for anchor 0).

The designer (:func:`design_anchors`, :func:`kmeans`):

1. Distinct sizes are weighted by how often they occur (``np.unique`` with counts), so repeated
   sizes cost nothing. COCO gives boxes to 0.01 px, so after the resize almost every size is
   distinct (synthetic train2017 at 416 px: 845,176 distinct of 849,861). When more than
   ``max_points`` (20,000) distinct sizes remain, the *search* runs on a grid of cells ``grid``
   wide in ``log w`` and ``log h`` (default 0.04, i.e. 4% steps: 16,196 cells for train2017), each
   cell represented by the count-weighted mean size of its boxes and weighted by its box count; on
   that data the grid's mean best IoU of an anchor set differs from the exact one by < 1e-4. Every
   figure that is reported, and the final never-worse check, uses the exact sizes.
2. IoU k-means: distance ``1 - wh_iou``, k-means++ start (each next centre drawn with probability
   proportional to count x distance^2 to the nearest centre), ``restarts`` runs side by side on one
   tensor. Each iteration assigns every point to the centre of highest wh-IoU and moves each centre
   to the count-weighted median width and median height of its members. (Darknet's mean update
   does not maximise IoU: on COCO-like sizes it drifts, as it converges, to a mean best IoU of 0.569
   where the median reaches 0.60.) Each run keeps its best iterate; the run with the highest mean
   best IoU wins, and its centres rounded to ``decimals`` (whole pixels by default) are the *start*.
3. Evolution, ``evolve`` generations: each proposes ``B`` candidates, each changing one anchor,
   most by a log-normal factor ``exp(sigma * z)`` (``z`` standard normal per side, ``sigma``
   log-uniform in [0.003, 0.3]), a few by moving it onto a size drawn where the boxes are served
   worst; candidates are rounded to ``decimals``. Each is scored from a cache of every point's two
   best anchors (O(M) per candidate, not O(M * K)), and the best replaces the current set when it
   raises the fitness (:func:`fitness_value`: by default ``avg_iou + 0.05 * bpr_iou``, the mean best
   IoU with a bonus for each box that clears ``iou_t``). At the end the exact fitness of the result
   and of the start are compared and the better is kept: the refinement is never worse than its start.

All random numbers come from ``numpy.random.default_rng(seed)`` on the CPU, so one seed gives the
same anchors on every run (and, up to floating-point ties, on CPU and GPU). The search runs in
torch on the ``device`` it is given.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cocostat.boxes import cpu_threads, side_ratio, wh_iou
from cocostat.data import Dataset
from cocostat.errors import CocostatWarning, ModelFormatError, OptionError, TooFewBoxesError, check_int
from cocostat.models import letterbox_scale

__all__ = [
    "FITNESSES",
    "METRIC_KEYS",
    "PRESETS",
    "RECALL_BONUS",
    "RESIZES",
    "AnchorDesign",
    "AnchorSet",
    "BoxSizes",
    "KmeansReport",
    "SetFit",
    "box_sizes",
    "default_levels",
    "default_strides",
    "design_anchors",
    "fitness",
    "fitness_value",
    "kmeans",
    "parse_anchor_spec",
    "parse_darknet_anchors",
    "plot_anchors",
    "ratio_metric",
]

RESIZES = ("letterbox", "stretch")
FITNESSES = ("iou-bpr", "avg-iou", "ratio")
#: Weight of ``bpr_iou`` in the ``iou-bpr`` fitness ``avg_iou + RECALL_BONUS * bpr_iou``.
RECALL_BONUS = 0.05
#: A box whose shorter side is below this many pixels (after the resize) is counted as tiny.
SMALL_BOX_PX = 2.0


# --------------------------------------------------------------------------------------------------
# Anchor sets: presets, Darknet cfg files, lists
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AnchorSet:
    """A named set of anchors split into output levels.

    Attributes:
        name: how the set was named (a preset name, a cfg path, a list string, ``kmeans``).
        wh: (A, 2) float64, anchor width and height, pixels of the network input, in the order the
            cfg or list gives them (presets and designed sets: ascending area).
        levels: L (n_l,) int64 arrays of indices into ``wh``, in Darknet ``[yolo]`` section order
            (the coarsest level, stride 32, first): ``levels[l]`` is that section's ``mask``.
            Every anchor appears in at most one level; an anchor in no level is unused.
    """

    name: str
    wh: np.ndarray
    levels: list[np.ndarray] = field(default_factory=list)

    @property
    def num_anchors(self) -> int:
        return int(self.wh.shape[0])

    def level_of(self) -> np.ndarray:
        """(A,) int64: the level index of each anchor (-1 for an anchor no level uses)."""
        out = np.full(self.num_anchors, -1, dtype=np.int64)
        for li, idx in enumerate(self.levels):
            out[idx] = li
        return out

    def darknet(self) -> str:
        """Darknet cfg lines: ``anchors =``, ``num =`` and, per ``[yolo]`` section, a comment line and
        its ``mask =`` line (every section repeats the same ``anchors``/``num`` lines)."""
        values = ", ".join(f"{_num(w)},{_num(h)}" for w, h in self.wh)
        lines = [f"anchors = {values}", f"num = {self.num_anchors}"]
        strides = default_strides(len(self.levels))
        for li, idx in enumerate(self.levels):  # Darknet reads only whole-line comments
            lines.append(f"# [yolo] section {li + 1} (stride {strides[li]})")
            lines.append(f"mask = {','.join(str(int(i)) for i in idx)}")
        return "\n".join(lines)

    def yolov5_yaml(self) -> str:
        """A yolov5-style ``anchors:`` YAML block: one row per level, finest (P3/8) first."""
        strides = default_strides(len(self.levels))
        rows = ["anchors:"]
        for li in reversed(range(len(self.levels))):
            pairs = ", ".join(f"{_num(w)},{_num(h)}" for w, h in self.wh[self.levels[li]])
            s = strides[li]
            rows.append(f"  - [{pairs}]  # P{round(math.log2(s))}/{s}")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {
            "anchors": [[float(w), float(h)] for w, h in self.wh],
            "masks": [[int(i) for i in idx] for idx in self.levels],
        }


def _num(v: float) -> str:
    """An anchor side as a cfg writes it: a whole number when it is one, else up to 2 decimals."""
    v = float(v)
    return str(round(v)) if abs(v - round(v)) < 1e-9 else f"{v:.2f}".rstrip("0").rstrip(".")


def default_strides(levels: int) -> list[int]:
    """Default strides of ``levels`` YOLO output levels in ``[yolo]`` (cfg) order.

    The coarsest level has stride 32 and each next one halves it, never below 1:
    3 -> [32, 16, 8], 2 -> [32, 16]. The one definition; :mod:`cocostat.assign` imports it.
    """
    return [max(32 // 2**i, 1) for i in range(levels)]


def default_levels(k: int) -> int:
    """Number of output levels for ``k`` anchors: ``max(1, round(k / 3))`` (9 -> 3, 6 -> 2)."""
    return max(1, round(k / 3))


def _split_levels(k: int, n_levels: int) -> list[np.ndarray]:
    """Masks for ``k`` anchors sorted by ascending area: contiguous groups, largest group first."""
    groups = np.array_split(np.arange(k, dtype=np.int64), n_levels)
    return [g for g in reversed(groups)]


def _preset(name: str, values: Sequence[int], masks: Sequence[Sequence[int]]) -> AnchorSet:
    wh = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    wh.setflags(write=False)
    return AnchorSet(name, wh, [np.asarray(m, dtype=np.int64) for m in masks])


_YOLOV3 = (10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326)
#: Anchor presets, as in the Darknet cfgs of pjreddie/darknet (levels in ``[yolo]`` order).
PRESETS: dict[str, AnchorSet] = {
    "yolov3": _preset("yolov3", _YOLOV3, [[6, 7, 8], [3, 4, 5], [0, 1, 2]]),
    "yolov3-spp": _preset("yolov3-spp", _YOLOV3, [[6, 7, 8], [3, 4, 5], [0, 1, 2]]),
    "yolov3-tiny": _preset("yolov3-tiny", (10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319), [[3, 4, 5], [0, 1, 2]]),
}

_SECTION = re.compile(r"^\s*\[([^\]]*)\]")
_KEYVAL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def _numbers(text: str, what: str, where: str) -> np.ndarray:
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        vals = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        raise ModelFormatError(f"{where}: {what} must be comma-separated numbers, got {text!r}") from None
    return vals


def _anchor_pairs(vals: np.ndarray, text: str, where: str, err=ModelFormatError) -> np.ndarray:
    if vals.size == 0 or vals.size % 2:
        raise err(
            f"{where}: anchors must be an even, non-zero count of numbers (w,h pairs), got {vals.size} in {text!r}"
        )
    if not (np.isfinite(vals).all() and (vals > 0).all()):
        raise err(f"{where}: anchor widths and heights must be positive finite numbers, got {text!r}")
    return vals.reshape(-1, 2)


# Deliberately a second, lenient reader rather than models.parse_cfg (decided in issue #11): --compare
# must accept the anchors of cfgs whose other layers cocostat cannot build, so this one reads only the
# [yolo] anchors/mask lines, ignores every other line it cannot parse (as Darknet's own parser skips
# unparsable lines with a warning) and strips comments after '#' or ';' anywhere on a line. parse_cfg is
# strict (a malformed line or a repeated key is an error naming its line), because it builds the network.
# Sharing one tokenizer would make one of the two change its messages or what it accepts, so they stay
# two readers; both are tested on the same real cfgs (tests/test_anchors.py, tests/test_models.py).
def parse_darknet_anchors(path: str | Path) -> AnchorSet:
    """Anchors and masks of a Darknet cfg file, from its ``[yolo]`` sections only.

    Reads the ``anchors =`` and ``mask =`` lines of every ``[yolo]`` section (comments after ``#``
    or ``;`` ignored). All sections must list the same anchors (Darknet repeats them in each); a
    section without ``mask`` uses every anchor, as Darknet does.

    Returns:
        AnchorSet named by the path, ``wh`` (A, 2) in cfg order, one level per ``[yolo]`` section.

    Raises:
        ModelFormatError: unreadable file, no ``[yolo]`` section, a section without anchors,
            sections with different anchors, a mask index outside ``0..A-1``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ModelFormatError(f"cannot read Darknet cfg {path}: {exc.strerror or exc}") from None
    sections: list[dict[str, tuple[str, int]]] = []
    current: dict[str, tuple[str, int]] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"[#;]", raw, maxsplit=1)[0]
        m = _SECTION.match(line)
        if m:
            current = {} if m.group(1).strip().lower() == "yolo" else None
            if current is not None:
                current["__line__"] = ("", lineno)
                sections.append(current)
            continue
        if current is None:
            continue
        kv = _KEYVAL.match(line)
        if kv and kv.group(1) in ("anchors", "mask"):
            current[kv.group(1)] = (kv.group(2), lineno)
    if not sections:
        raise ModelFormatError(f"{path}: no [yolo] section found; expected a Darknet YOLOv3 cfg")
    wh = None
    levels = []
    for sec in sections:
        sec_line = sec["__line__"][1]
        if "anchors" not in sec:
            raise ModelFormatError(f"{path}: the [yolo] section at line {sec_line} has no anchors = line")
        atext, aline = sec["anchors"]
        where = f"{path} line {aline}"
        pairs = _anchor_pairs(_numbers(atext, "anchors", where), atext, where)
        if wh is None:
            wh = pairs
        elif pairs.shape != wh.shape or not np.array_equal(pairs, wh):
            raise ModelFormatError(
                f"{where}: anchors differ from those of the first [yolo] section; "
                "expected every [yolo] section to list the same anchors"
            )
        if "mask" in sec:
            mtext, mline = sec["mask"]
            mvals = _numbers(mtext, "mask", f"{path} line {mline}")
            if mvals.size == 0 or (mvals != np.round(mvals)).any():
                raise ModelFormatError(f"{path} line {mline}: mask must be anchor indices, got {mtext!r}")
            idx = mvals.astype(np.int64)
            if (idx < 0).any() or (idx >= wh.shape[0]).any():
                raise ModelFormatError(
                    f"{path} line {mline}: mask indices must be in 0..{wh.shape[0] - 1}, got {mtext!r}"
                )
        else:
            idx = np.arange(wh.shape[0], dtype=np.int64)
        levels.append(idx)
    assert wh is not None  # set by the first of the (non-empty) sections
    return AnchorSet(str(path), wh, levels)


def parse_anchor_spec(spec: str | AnchorSet) -> AnchorSet:
    """An anchor set from what a user types after ``--compare``.

    Args:
        spec: a preset name (``yolov3``, ``yolov3-spp``, ``yolov3-tiny``), the path of a Darknet cfg
            file (its ``[yolo]`` sections' ``anchors`` and ``mask``), or a list of numbers
            ``"10,13, 16,30, 33,23"`` (w,h pairs in pixels; split into :func:`default_levels`
            levels after sorting by area). An :class:`AnchorSet` is returned as is.

    Returns:
        AnchorSet: ``wh`` (A, 2) float64 and ``levels`` (see :class:`AnchorSet`).

    Raises:
        OptionError: neither a preset, an existing file nor a valid list of positive numbers.
        ModelFormatError: the cfg file is malformed (see :func:`parse_darknet_anchors`).
    """
    if isinstance(spec, AnchorSet):
        return spec
    if not isinstance(spec, str):
        raise OptionError(f"an anchor set must be a preset name, a cfg path or a list string, got {spec!r}")
    key = spec.strip()
    if key.lower() in PRESETS:
        return PRESETS[key.lower()]
    if re.fullmatch(r"[\d.eE+\-\s,]+", key) and re.search(r"\d", key):
        where = f"anchor list {spec!r}"
        try:
            vals = np.array([float(p) for p in re.split(r"[,\s]+", key) if p], dtype=np.float64)
        except ValueError:
            raise OptionError(f"{where}: expected numbers like '10,13, 16,30'") from None
        wh = _anchor_pairs(vals, spec, where, err=OptionError)
        order = np.argsort(wh.prod(axis=1), kind="stable")
        wh = wh[order]
        return AnchorSet(
            ",".join(_num(v) for v in wh.ravel()), wh, _split_levels(wh.shape[0], default_levels(wh.shape[0]))
        )
    path = Path(key).expanduser()
    if path.is_file():
        return parse_darknet_anchors(path)
    raise OptionError(
        f"unknown anchor set {spec!r}: expected a preset ({', '.join(PRESETS)}), the path of "
        "an existing Darknet cfg file, or a list of w,h numbers like '10,13, 16,30'"
    )


# --------------------------------------------------------------------------------------------------
# Box sizes at the network input
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class BoxSizes:
    """Box sizes brought to the network input (:func:`box_sizes`).

    Attributes:
        wh: (G, 2) float64, width and height in pixels of the network input, of the boxes kept
            (dataset order; crowd boxes unless included and zero-size boxes left out).
        size: the network input side, pixels (with ``multi_scale``: the nominal size only).
        resize: ``letterbox`` (long side -> size, aspect kept) or ``stretch`` (w -> size, h -> size).
        multi_scale: ``(min, max)`` when each image's size was drawn from the multiples of 32 in
            that range, else ``None``.
        annotations: annotations in the dataset.
        crowd_excluded: iscrowd boxes left out (0 with ``include_crowd``).
        zero_excluded: boxes of zero width or height left out.
        small: kept boxes whose shorter side is below :data:`SMALL_BOX_PX` pixels.
    """

    wh: np.ndarray
    size: int
    resize: str
    multi_scale: tuple[int, int] | None
    annotations: int
    crowd_excluded: int
    zero_excluded: int
    small: int

    def describe(self) -> str:
        """e.g. ``letterbox to 416 px`` or ``stretch to 320..608 px (multi-scale, step 32)``."""
        if self.multi_scale:
            return f"{self.resize} to {self.multi_scale[0]}..{self.multi_scale[1]} px (multi-scale, step 32)"
        return f"{self.resize} to {self.size} px"


def _scale_sizes(sizes: tuple[int, int]) -> np.ndarray:
    lo, hi = sizes
    steps = np.arange(-(-lo // 32) * 32, hi + 1, 32, dtype=np.int64)
    if steps.size == 0:
        raise OptionError(f"multi_scale (MIN, MAX) must contain a multiple of 32, got {lo} {hi}", param="multi_scale")
    return steps


def box_sizes(
    dataset: Dataset,
    *,
    size: int = 416,
    resize: str = "letterbox",
    multi_scale: tuple[int, int] | None = None,
    include_crowd: bool = False,
    seed: int = 0,
) -> BoxSizes:
    """Every box's width and height at the network input.

    Args:
        dataset: the annotations (``bbox`` xywh pixels of the image, image ``width``/``height``).
        size: network input side, pixels.
        resize: ``letterbox``: scale ``size / max(W, H)`` on both sides (ultralytics, mmdetection);
            ``stretch``: widths times ``size / W``, heights times ``size / H`` (Darknet).
        multi_scale: ``(min, max)``: each image gets a size drawn uniformly from the multiples of 32
            in ``[min, max]`` (Darknet ``random=1`` style) with ``numpy.random.default_rng(seed)``
            over the images in dataset order; replaces ``size``.
        include_crowd: keep iscrowd boxes (left out by default, as trainers do).
        seed: seed of the multi-scale draw.

    Returns:
        BoxSizes; ``wh`` (G, 2) float64. Zero-size boxes are always left out (no anchor can match
        them); both exclusions and the count of boxes under 2 px are reported as warnings.

    Raises:
        OptionError: bad ``size``, ``resize`` or ``multi_scale``.
    """
    size = check_int("size", size, 1)
    if resize not in RESIZES:
        raise OptionError(f"resize must be one of {', '.join(RESIZES)}, got {resize!r}", param="resize")
    if multi_scale is not None:
        lo, hi = (check_int("multi_scale", multi_scale[0], 1), check_int("multi_scale", multi_scale[1], 1))
        if lo > hi:
            raise OptionError(f"multi_scale (MIN, MAX) needs MIN <= MAX, got {lo} {hi}", param="multi_scale")
        multi_scale = (lo, hi)
        steps = _scale_sizes(multi_scale)
        img_size = np.random.default_rng(seed).choice(steps, size=dataset.num_images).astype(np.float64)
    else:
        img_size = np.full(dataset.num_images, float(size))
    keep = np.ones(dataset.num_annotations, dtype=bool)
    crowd = 0
    if not include_crowd:
        keep &= ~dataset.iscrowd
        crowd = int(dataset.iscrowd.sum())
    wh_raw = dataset.bbox[:, 2:]
    zero_mask = keep & ~(wh_raw > 0).all(axis=1)
    zero = int(zero_mask.sum())
    keep &= ~zero_mask
    img = dataset.image_index[keep]
    w_img = dataset.width[img].astype(np.float64)
    h_img = dataset.height[img].astype(np.float64)
    s = img_size[img]
    if resize == "letterbox":
        scale = letterbox_scale(w_img, h_img, s)[:, None]  # (G, 1)
    else:
        scale = np.stack([s / w_img, s / h_img], axis=1)  # (G, 2)
    wh = wh_raw[keep] * scale  # (G, 2)
    small = int((wh.min(axis=1) < SMALL_BOX_PX).sum()) if wh.size else 0
    where = f"dataset {dataset.name}"
    if crowd and not include_crowd:
        warnings.warn(
            f"{where}: {crowd} iscrowd box(es) left out (use --include-crowd to keep them)",
            CocostatWarning,
            stacklevel=2,
        )
    if zero:
        warnings.warn(f"{where}: {zero} box(es) of zero width or height left out", CocostatWarning, stacklevel=2)
    if small:
        warnings.warn(
            f"{where}: {small} of {wh.shape[0]} box(es) are under {SMALL_BOX_PX:g} px on their "
            "shorter side at the network input (kept)",
            CocostatWarning,
            stacklevel=2,
        )
    return BoxSizes(
        wh=wh,
        size=size,
        resize=resize,
        multi_scale=multi_scale,
        annotations=dataset.num_annotations,
        crowd_excluded=crowd if not include_crowd else 0,
        zero_excluded=zero,
        small=small,
    )


# --------------------------------------------------------------------------------------------------
# Fitness figures
# --------------------------------------------------------------------------------------------------
def _as_wh(name: str, a, allow_zero: bool) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise OptionError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise OptionError(f"{name} must have shape (N, 2) (width, height), got shape {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1) | ((arr < 0) if allow_zero else (arr <= 0)).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        kind = "finite and >= 0" if allow_zero else "finite and > 0"
        raise OptionError(f"{name} row {i}: width and height must be {kind}, got {arr[i].tolist()}")
    return arr


def _as_counts(counts, n: int) -> np.ndarray | None:
    if counts is None:
        return None
    c = np.asarray(counts)
    if c.shape != (n,) or c.dtype.kind not in "iu" or (c < 0).any():
        raise OptionError(
            f"counts must be (N,) non-negative integers matching wh's {n} rows, got shape {c.shape}, dtype {c.dtype}"
        )
    return c.astype(np.int64)


def ratio_metric(wh, anchors) -> np.ndarray:
    """Ultralytics' ratio metric of every box with every anchor: the side ratio of :mod:`cocostat.boxes`.

    :func:`cocostat.boxes.pairwise_side_ratio` with this module's input checks (anchors > 0) and
    float64 numpy out; a box is within ``ratio_t`` of an anchor when ``out > 1 / ratio_t``.

    Args:
        wh: (G, 2) float, box width and height, pixels.
        anchors: (A, 2) float, anchor width and height, pixels (> 0).

    Returns:
        (G, A) float64 in [0, 1]; ``out[i, j] = min(min(w_i/w_j, w_j/w_i), min(h_i/h_j, h_j/h_i))``
        (a zero-size box gives 0).
    """
    g = _as_wh("wh", wh, allow_zero=True)
    a = _as_wh("anchors", anchors, allow_zero=False)
    return _iou_ratio_np(g, a)[1]


def _iou_ratio_np(g: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """wh-IoU and side ratio of boxes g (G, 2) with anchors a (A, 2) > 0: two (G, A) float64.

    The kernels of :mod:`cocostat.boxes` (:func:`~cocostat.boxes.wh_iou`,
    :func:`~cocostat.boxes.side_ratio`) on the float64 arrays without a copy or input checks.
    """
    g, a = (np.require(x, requirements="W") for x in (g, a))  # torch cannot wrap read-only presets
    gt, at = torch.from_numpy(g)[:, None, :], torch.from_numpy(a)[None, :, :]  # (G, 1, 2), (1, A, 2)
    return wh_iou(gt, at).numpy(), side_ratio(gt, at).numpy()


#: Rows of boxes per block in :func:`fitness`, to bound memory at a few (block, A) temporaries.
_FITNESS_BLOCK = 1 << 16


def fitness(wh, anchors, iou_t: float = 0.225, ratio_t: float = 4.0, *, counts=None) -> dict:
    """How well an anchor set fits a set of box sizes (definitions in the module docstring).

    Args:
        wh: (G, 2) float, box width and height, pixels of the network input (>= 0). A numpy
            array, nested list or tensor (any device; the figures are computed in float64 on CPU).
        anchors: (A, 2) float, anchor width and height, same pixels (> 0).
        iou_t: wh-IoU threshold of ``bpr_iou`` and ``anchors_above_iou`` (test ``iou > iou_t``).
        ratio_t: ratio threshold of ``bpr_ratio`` and ``anchors_above_ratio`` (test ``x > 1/ratio_t``).
        counts: optional (G,) int, how many boxes each row stands for (``np.unique`` counts).

    Returns:
        dict with ``boxes`` (int, the weighted count), float ``avg_iou``, ``bpr_iou``,
        ``anchors_above_iou``, ``bpr_ratio``, ``anchors_above_ratio`` and ``fitness_ratio``
        (ultralytics' evolution fitness, mean of ``best_x * (best_x > 1/ratio_t)``), and
        ``best_for``: (A,) int64, boxes whose best wh-IoU anchor is that anchor. With no boxes the
        floats are NaN and ``best_for`` is zeros.

    Raises:
        OptionError: a bad shape, a negative or non-finite size, an anchor side <= 0, a threshold
            out of range (``0 <= iou_t < 1``, ``ratio_t >= 1``).
    """
    g = _as_wh("wh", wh, allow_zero=True)
    a = _as_wh("anchors", anchors, allow_zero=False)
    if a.shape[0] == 0:
        raise OptionError("anchors must hold at least one (w, h) pair, got none")
    c = _as_counts(counts, g.shape[0])
    _check_thresholds(iou_t, ratio_t)
    n_anchors = a.shape[0]
    tot = np.zeros(6)  # sums of: best iou, best > iou_t, # > iou_t, best x > thr, # x > thr, x * (x > thr)
    best_for = np.zeros(n_anchors, dtype=np.int64)
    thr = 1.0 / ratio_t
    for lo in range(0, g.shape[0], _FITNESS_BLOCK):
        gb = g[lo : lo + _FITNESS_BLOCK]
        wb = np.ones(gb.shape[0]) if c is None else c[lo : lo + _FITNESS_BLOCK].astype(np.float64)
        iou, x = _iou_ratio_np(gb, a)  # (g, A) each
        arg = iou.argmax(axis=1)  # first anchor on ties
        best = np.take_along_axis(iou, arg[:, None], axis=1)[:, 0]
        bx = x.max(axis=1)
        cols = np.stack(
            [
                best,
                best > iou_t,
                np.count_nonzero(iou > iou_t, axis=1),
                bx > thr,
                np.count_nonzero(x > thr, axis=1),
                bx * (bx > thr),
            ],
            axis=1,
        )  # (g, 6)
        tot += wb @ cols
        best_for += np.bincount(arg, weights=wb, minlength=n_anchors).round().astype(np.int64)
    n = int(g.shape[0] if c is None else c.sum())
    vals = tot / n if n else np.full(6, np.nan)
    keys = ("avg_iou", "bpr_iou", "anchors_above_iou", "bpr_ratio", "anchors_above_ratio", "fitness_ratio")
    out: dict = {"boxes": n}
    out.update({key: float(v) for key, v in zip(keys, vals, strict=True)})
    out["best_for"] = best_for
    return out


METRIC_KEYS = ("avg_iou", "bpr_iou", "anchors_above_iou", "bpr_ratio", "anchors_above_ratio")


def _check_thresholds(iou_t: float, ratio_t: float) -> None:
    if not (isinstance(iou_t, (int, float)) and 0.0 <= iou_t < 1.0):
        raise OptionError(f"iou_t must be a number in [0, 1), got {iou_t!r}", param="iou_t")
    if not (isinstance(ratio_t, (int, float)) and math.isfinite(ratio_t) and ratio_t >= 1.0):
        raise OptionError(f"ratio_t must be a number >= 1, got {ratio_t!r}", param="ratio_t")


def fitness_value(metrics: dict, name: str) -> float:
    """The evolution's fitness from :func:`fitness`'s figures.

    ``iou-bpr``: ``avg_iou + RECALL_BONUS * bpr_iou`` (mean best wh-IoU, with a bonus of 0.05 for each
    box that clears ``iou_t``, so recall is not traded away for IoU); ``avg-iou``: ``avg_iou``;
    ``ratio``: ``fitness_ratio`` (ultralytics' ``mean(best_x * (best_x > 1 / ratio_t))``).
    """
    if name == "iou-bpr":
        return metrics["avg_iou"] + RECALL_BONUS * metrics["bpr_iou"]
    return metrics["avg_iou"] if name == "avg-iou" else metrics["fitness_ratio"]


# --------------------------------------------------------------------------------------------------
# The search: weighted points, k-means, evolution (torch, on the device given)
# --------------------------------------------------------------------------------------------------
def _unique_sizes(wh: np.ndarray, counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``wh`` (sorted by w, then h) and how many boxes each stands for.

    The result does not depend on the order of the rows (sorting happens before any sum).
    """
    if wh.shape[0] == 0:
        return wh.reshape(0, 2), np.zeros(0, np.int64)
    order = np.lexsort((wh[:, 1], wh[:, 0]))
    s = wh[order]
    c = np.ones(s.shape[0], np.int64) if counts is None else counts[order]
    new = np.ones(s.shape[0], dtype=bool)
    new[1:] = (s[1:] != s[:-1]).any(axis=1)
    starts = np.flatnonzero(new)
    uc = np.add.reduceat(c, starts)
    u = s[starts]
    keep = uc > 0
    return u[keep], uc[keep]


def _grid_points(u: np.ndarray, uc: np.ndarray, grid: float) -> tuple[np.ndarray, np.ndarray]:
    """Cells ``grid`` wide in log w and log h: count-weighted mean size of each cell, and its count.

    ``u`` must be sorted (as :func:`_unique_sizes` returns it) so the sums run in a fixed order.
    """
    cell = np.floor(np.log(u) / grid).astype(np.int64)  # (M, 2)
    key = (cell[:, 0] - cell[:, 0].min()) * (int(cell[:, 1].max() - cell[:, 1].min()) + 1) + (
        cell[:, 1] - cell[:, 1].min()
    )
    _, inv = np.unique(key, return_inverse=True)
    cnt = np.bincount(inv, weights=uc)
    pts = np.stack([np.bincount(inv, weights=uc * u[:, 0]), np.bincount(inv, weights=uc * u[:, 1])], axis=1)
    return pts / cnt[:, None], cnt.round().astype(np.int64)


def _against(p: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points p (M, 2) and anchors a (..., 2) as broadcast operands: (M, 1..., 2) and (1, ..., 2)."""
    return p.reshape((p.shape[0],) + (1,) * (a.ndim - 1) + (2,)), a.unsqueeze(0)


def _iou_t(p: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """wh-IoU of every point with every anchor: p (M, 2), a (..., 2) -> (M, ...) (:func:`cocostat.boxes.wh_iou`)."""
    return wh_iou(*_against(p, a))


def _ratio_t(p: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Side ratio of every point with every anchor: p (M, 2), a (..., 2) -> (M, ...).

    See :func:`cocostat.boxes.side_ratio`.
    """
    return side_ratio(*_against(p, a))


def _quantize(a: torch.Tensor, decimals: int | None) -> torch.Tensor:
    """Anchors rounded to ``decimals`` (None: unchanged), never below one step (or 1e-3 px)."""
    if decimals is None:
        return a.clamp(min=1e-3)
    q = 10.0**decimals
    return (torch.round(a * q) / q).clamp(min=1.0 / q)


def _kmeans_pp(p: torch.Tensor, c: torch.Tensor, k: int, restarts: int, rng: np.random.Generator) -> torch.Tensor:
    """k-means++ starts for ``restarts`` runs at once: (R, K, 2) centres drawn from the points.

    Each next centre is drawn with probability proportional to ``count * (1 - best IoU)^2``; points
    already chosen get probability 0, other points at least a tiny one, so K distinct points are
    always drawn when there are at least K points.
    """
    m = p.shape[0]
    dev = p.device
    u = torch.from_numpy(rng.random((k, restarts))).to(dev, p.dtype)  # inverse-CDF draws
    chosen = torch.zeros(restarts, m, dtype=torch.bool, device=dev)
    idx = torch.empty(restarts, k, dtype=torch.long, device=dev)
    ar = torch.arange(restarts, device=dev)
    weight = c.expand(restarts, m).clone()  # (R, M)
    best = torch.zeros(restarts, m, dtype=p.dtype, device=dev)  # best IoU with a chosen centre
    for j in range(k):  # K sequential draws (each vectorised over R runs and M points)
        cdf = torch.cumsum(weight, dim=1)  # (R, M)
        pick = torch.searchsorted(cdf, (u[j] * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1).clamp(max=m - 1)
        # float rounding can land a draw on a chosen (zero-weight) point: take the first unchosen one
        pick = torch.where(chosen[ar, pick], torch.argmax((~chosen).to(torch.uint8), dim=1), pick)
        idx[:, j] = pick
        chosen[ar, pick] = True
        best = torch.maximum(best, _iou_t(p, p[pick]).T)  # (R, M)
        d = (1.0 - best).clamp(min=0)
        weight = torch.where(chosen, torch.zeros_like(d), c * (d * d).clamp(min=1e-12))
    return p[idx]  # (R, K, 2)


def _lloyd(
    p: torch.Tensor, c: torch.Tensor, centres: torch.Tensor, max_iter: int, patience: int = 10
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """IoU k-means iterations of R runs at once; returns each run's best centres (R, K, 2), their
    count-weighted mean best IoU (R,), and the iterations run.

    Assignment: the centre of highest wh-IoU (distance ``1 - wh_iou``). Update: the count-weighted
    median width and the count-weighted median height of the members (a centre that loses all its
    members stays). The median is used rather than Darknet's mean because the mean update does not
    maximise mean IoU: on COCO-like sizes it drifts to a lower mean IoU as it converges (0.569 against
    the median's 0.60 on synthetic train2017 at 416 px), while the median stays close to the IoU
    optimum. Each run keeps its best iterate; the loop stops when no assignment changes, or when no
    run has improved for ``patience`` iterations.
    """
    r, k, _ = centres.shape
    m = p.shape[0]
    dev = p.device
    order = [torch.argsort(p[:, d], stable=True) for d in (0, 1)]  # points sorted by w, by h
    ks = torch.arange(k, device=dev)
    best_score = torch.full((r,), -1.0, dtype=p.dtype, device=dev)
    best_centres = centres.clone()
    prev = None
    stale = 0
    it = 0
    csum = c.sum()
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned after the loop
        val, assign = _iou_t(p, centres).max(dim=2)  # (M, R): best IoU and its centre
        score = (c @ val) / csum  # (R,)
        better = score > best_score
        best_centres = torch.where(better[:, None, None], centres, best_centres)
        best_score = torch.where(better, score, best_score)
        stale = 0 if bool(better.any()) else stale + 1
        if (prev is not None and torch.equal(assign, prev)) or stale >= patience:
            break
        prev = assign
        wts = c[:, None, None] * (assign.unsqueeze(2) == ks)  # (M, R, K) member weights
        total = wts.sum(dim=0)  # (R, K)
        half = total / 2
        med = []
        for d in (0, 1):  # weighted median along each side: first sorted point reaching half the weight
            cum = torch.cumsum(wts[order[d]], dim=0)  # (M, R, K)
            idx = (cum < half).sum(dim=0).clamp(max=m - 1)  # (R, K)
            med.append(p[order[d][idx], d])
        new = torch.stack(med, dim=2)  # (R, K, 2)
        centres = torch.where((total > 0).unsqueeze(2), new, centres)
    return best_centres, best_score, it


@dataclass(frozen=True)
class _Objective:
    """A fitness as ``mean over points of value(max over anchors of score(point, anchor))``.

    ``value`` is non-decreasing, so a point's contribution depends only on its best score, which is
    what lets the evolution cache each point's two best scores.
    """

    name: str
    iou_t: float
    ratio_thr: float  # 1 / ratio_t

    def score(self, p: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """(M, ...) score of every point with every anchor: wh-IoU, or the ratio metric."""
        return _ratio_t(p, a) if self.name == "ratio" else _iou_t(p, a)

    def value(self, best: torch.Tensor) -> torch.Tensor:
        """Per-point contribution of its best score (see :func:`fitness_value`)."""
        if self.name == "ratio":
            return best * (best > self.ratio_thr)
        if self.name == "iou-bpr":
            return best + RECALL_BONUS * (best > self.iou_t)
        return best


def _evolve(
    p: torch.Tensor,
    c: torch.Tensor,
    start: torch.Tensor,
    generations: int,
    batch: int,
    obj: _Objective,
    decimals: int | None,
    rng: np.random.Generator,
    jumps: int = 1,
) -> tuple[torch.Tensor, int]:
    """Greedy evolution from ``start`` (K, 2); returns the best anchors found and the accepted moves.

    Each generation scores ``batch`` candidates, each of which changes one anchor ``j``:
    ``batch - jumps`` of them move it by a log-normal factor, ``jumps`` of them move it onto a
    point drawn with probability proportional to ``count * (1 - best score)^2`` (the worst-served
    sizes, as a k-means++ draw), which lets the search leave a local optimum. For every point the
    two best anchor scores are cached, so a candidate is scored in O(M):
    ``max(best score without anchor j, score with the candidate)``.
    """
    k = start.shape[0]
    if generations <= 0 or k == 0:
        return start, 0
    dev, dt = p.device, p.dtype
    m = p.shape[0]
    jumps = min(jumps, batch) if k > 1 else 0
    csum = c.sum()
    # every random number up front, from one numpy generator on the CPU
    which = torch.from_numpy(rng.integers(0, k, size=(generations, batch))).to(dev)
    step = torch.from_numpy(
        np.exp(rng.uniform(np.log(3e-3), np.log(0.3), size=(generations, batch, 1)))
        * rng.standard_normal((generations, batch, 2))
    ).to(dev, dt)  # log-size steps
    u_jump = torch.from_numpy(rng.random((generations, max(jumps, 1)))).to(dev, dt)
    a = start.clone()
    s = obj.score(p, a)  # (M, K)

    def top2(s):
        if k == 1:
            return s[:, 0], torch.zeros(m, dtype=torch.long, device=dev), torch.zeros_like(s[:, 0])
        t = torch.topk(s, 2, dim=1)
        return t.values[:, 0], t.indices[:, 0], t.values[:, 1]

    v1, i1, v2 = top2(s)
    f = float((c @ obj.value(v1)) / csum)
    cdf = None
    accepted = 0
    for g in range(generations):
        j = which[g]  # (B,)
        cand = a[j] * torch.exp(step[g])  # (B, 2)
        if jumps:
            if cdf is None:  # the draw weights change only when a move is accepted
                d = (1.0 - v1).clamp(min=0)
                cdf = torch.cumsum(c * d * d, dim=0)
            pick = torch.searchsorted(cdf, u_jump[g] * cdf[-1], right=True).clamp(max=m - 1)
            cand[batch - jumps :] = p[pick]
        cand = _quantize(cand, decimals)
        sc = obj.score(p, cand)  # (M, B)
        other = torch.where(i1.unsqueeze(1) == j.unsqueeze(0), v2.unsqueeze(1), v1.unsqueeze(1))  # (M, B)
        fb = (c @ obj.value(torch.maximum(other, sc))) / csum  # (B,)
        # a candidate that rounds back onto its anchor is no move (its score differs only by summation noise)
        fb = torch.where((cand == a[j]).all(dim=1), torch.full_like(fb, -math.inf), fb)
        b = int(torch.argmax(fb))
        fbest = float(fb[b])  # one device sync per generation
        if fbest > f:
            f = fbest
            a[j[b]] = cand[b]
            s[:, j[b]] = sc[:, b]
            v1, i1, v2 = top2(s)
            cdf = None
            accepted += 1
    return a, accepted


@dataclass(frozen=True, eq=False)
class AnchorDesign:
    """The result of :func:`design_anchors`.

    Attributes:
        wh: (K, 2) float64, the anchors, ascending area, pixels.
        start: (K, 2) float64, the k-means anchors (rounded like ``wh``) the evolution started from.
        metrics, start_metrics: :func:`fitness` of ``wh`` and of ``start`` on the exact box sizes.
        fitness, start_fitness: the chosen fitness of each (``avg_iou`` or ``fitness_ratio``).
        distinct: distinct sizes among the boxes; ``points``: points the search ran on (equal to
            ``distinct`` unless the log-size grid was used).
        iterations: k-means iterations run; ``restart_scores``: (R,) weighted mean best IoU of each
            restart's best iterate on the search points; ``accepted``: evolution moves accepted.
        kept_start: True when the evolution's result was not better than the start (start kept).
        seconds: wall time of the search (box-size weighting, k-means, evolution, exact check).
    """

    wh: np.ndarray
    start: np.ndarray
    metrics: dict
    start_metrics: dict
    fitness: float
    start_fitness: float
    distinct: int
    points: int
    iterations: int
    restart_scores: np.ndarray
    accepted: int
    kept_start: bool
    seconds: float


@contextlib.contextmanager
def _search_threads(device: torch.device):
    """Run the CPU search single-threaded, restoring torch's thread count afterwards.

    The search loop runs thousands of small ops (~10^5 elements each), where torch's intra-op
    threads cost more in hand-offs than they give: measured on a 2-core machine, one thread ran the
    k-means and evolution 1.3x faster when the machine was idle and about 10x faster when it was
    busy with other work (OpenMP spin-waits).
    """
    if device.type != "cpu":
        yield
        return
    with cpu_threads(1):
        yield


def design_anchors(
    wh,
    k: int = 9,
    *,
    counts=None,
    restarts: int = 5,
    seed: int = 0,
    evolve: int = 1000,
    fitness_name: str = "iou-bpr",
    iou_t: float = 0.225,
    ratio_t: float = 4.0,
    decimals: int | None = 0,
    device: torch.device | str | None = None,
    max_points: int = 20_000,
    grid: float = 0.04,
    batch: int = 8,
    jumps: int = 2,
    max_iter: int = 300,
) -> AnchorDesign:
    """Design ``k`` anchors for box sizes ``wh`` (algorithm in the module docstring).

    Args:
        wh: (G, 2) float, box width and height, pixels of the network input (> 0).
        k: number of anchors (K).
        counts: optional (G,) int multiplicity of each row.
        restarts: k-means runs from different k-means++ starts (R); the best is kept.
        seed: seed of ``numpy.random.default_rng`` for every random draw.
        evolve: evolution generations (0: k-means only).
        fitness_name: what the evolution maximises (:func:`fitness_value`): ``iou-bpr`` (mean best
            wh-IoU + 0.05 x share of boxes above ``iou_t``), ``avg-iou`` (mean best wh-IoU) or
            ``ratio`` (ultralytics' ``mean(best_x * (best_x > 1/ratio_t))``).
        iou_t, ratio_t: thresholds of the figures and of the fitness.
        decimals: anchors are rounded to this many decimals (0: whole pixels, as cfgs hold them)
            before and during the evolution; None keeps floats.
        device: torch device of the search (default CPU); results come back as numpy.
        max_points: above this many distinct sizes the search runs on the log-size grid.
        grid: cell width of that grid in natural-log units (0.04: 4% steps; on COCO-like sizes the
            grid's mean best IoU differs from the exact one by < 1e-4).
        batch: candidates per evolution generation (B); ``jumps`` of them relocate an anchor.
        max_iter: cap on k-means iterations.

    Returns:
        AnchorDesign (numpy arrays, on the CPU).

    Raises:
        OptionError: bad options; fewer distinct sizes than ``k`` (naming both counts).
    """
    t0 = time.perf_counter()
    k = check_int("k", k, 1)
    restarts = check_int("restarts", restarts, 1)
    evolve = check_int("evolve", evolve, 0)
    seed = check_int("seed", seed, 0)
    batch = check_int("batch", batch, 1)
    jumps = check_int("jumps", jumps, 0)
    if fitness_name not in FITNESSES:
        raise OptionError(
            f"fitness_name must be one of {', '.join(FITNESSES)}, got {fitness_name!r}", param="fitness_name"
        )
    _check_thresholds(iou_t, ratio_t)
    if decimals is not None:
        decimals = check_int("decimals", decimals, 0)
    g = _as_wh("wh", wh, allow_zero=False)
    cnt = _as_counts(counts, g.shape[0])
    u, uc = _unique_sizes(g, cnt)
    distinct = int(u.shape[0])
    if distinct < k:
        raise TooFewBoxesError(
            f"only {distinct} distinct box size(s) among {int(uc.sum())} box(es), "
            f"fewer than the {k} anchors asked for (k); lower k or add data"
        )
    pts, pc = (u, uc) if distinct <= max_points else _grid_points(u, uc, grid)
    if pts.shape[0] < k:  # a grid too coarse for this many anchors: search the exact sizes
        pts, pc = u, uc
    dev = torch.device(device) if device is not None else torch.device("cpu")
    dt = torch.float32
    rng = np.random.default_rng(seed)
    with _search_threads(dev), torch.no_grad():
        p = torch.from_numpy(pts).to(dev, dt)
        c = torch.from_numpy(pc.astype(np.float64)).to(dev, dt)
        init = _kmeans_pp(p, c, k, restarts, rng)
        centres, scores, iters = _lloyd(p, c, init, max_iter)
        best_run = int(torch.argmax(scores))
        start = _quantize(centres[best_run].to(torch.float64), decimals).to(dt)
        start = start[torch.argsort(start.prod(dim=1), stable=True)]
        obj = _Objective(fitness_name, iou_t, 1.0 / ratio_t)
        evolved, accepted = _evolve(p, c, start, evolve, batch, obj, decimals, rng, jumps)
        start_np = start.double().cpu().numpy()
        evolved_np = evolved.double().cpu().numpy()
        restart_scores = scores.double().cpu().numpy()
    if decimals is not None:  # exact decimal values (float32 rounding noise removed)
        start_np, evolved_np = np.round(start_np, decimals), np.round(evolved_np, decimals)
    start_np = start_np[np.argsort(start_np.prod(axis=1), kind="stable")]
    evolved_np = evolved_np[np.argsort(evolved_np.prod(axis=1), kind="stable")]
    # exact figures on the distinct sizes with their counts: the same numbers as on every box, summed
    # in an order that does not depend on the order of the boxes
    m_start = fitness(u, start_np, iou_t, ratio_t, counts=uc)
    m_new = fitness(u, evolved_np, iou_t, ratio_t, counts=uc) if accepted else m_start
    f_start, f_new = fitness_value(m_start, fitness_name), fitness_value(m_new, fitness_name)
    kept_start = not f_new > f_start
    final, m_final = (start_np, m_start) if kept_start else (evolved_np, m_new)
    dup = _duplicates(final)
    if dup:
        warnings.warn(
            f"anchors {dup[0]} and {dup[1]} coincide ({_num(final[dup[0], 0])}x"
            f"{_num(final[dup[0], 1])}) after rounding to {decimals} decimal(s); the boxes have "
            "too few distinct sizes for this many anchors",
            CocostatWarning,
            stacklevel=2,
        )
    return AnchorDesign(
        wh=final,
        start=start_np,
        metrics=m_final,
        start_metrics=m_start,
        fitness=max(f_new, f_start),
        start_fitness=f_start,
        distinct=distinct,
        points=int(pts.shape[0]),
        iterations=iters,
        restart_scores=restart_scores,
        accepted=accepted,
        kept_start=kept_start,
        seconds=time.perf_counter() - t0,
    )


def _duplicates(a: np.ndarray) -> tuple[int, int] | None:
    for i in range(a.shape[0]):  # K <= a few dozen anchors
        same = np.flatnonzero((a[i + 1 :] == a[i]).all(axis=1))
        if same.size:
            return i, i + 1 + int(same[0])
    return None


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SetFit:
    """An anchor set with its fitness figures on the report's boxes."""

    anchors: AnchorSet
    metrics: dict  # METRIC_KEYS -> float, plus fitness_ratio
    best_for: np.ndarray  # (A,) int64

    def to_dict(self) -> dict:
        d = self.anchors.to_dict()
        d["metrics"] = {key: self.metrics[key] for key in METRIC_KEYS}
        d["best_for"] = [int(v) for v in self.best_for]
        return d


@dataclass(frozen=True, eq=False)
class KmeansReport:
    """``cocostat kmeans``: designed anchors and the fit of every compared set.

    Attributes:
        dataset: the dataset's name; ``sizes``: the boxes used (see :class:`BoxSizes`).
        k, seed, restarts, evolve, fitness_name, iou_t, ratio_t, device: the options.
        design: the search's result (:class:`AnchorDesign`).
        result: the designed anchors (name ``kmeans``, ascending area, levels) with their figures;
            ``start``: the k-means start's figures.
        compare: name -> figures of each set given with ``compare``, in the order given.
        plot: the PNG written, or None.
    """

    dataset: str
    sizes: BoxSizes
    k: int
    seed: int
    restarts: int
    evolve: int
    fitness_name: str
    iou_t: float
    ratio_t: float
    device: str
    design: AnchorDesign
    result: SetFit
    start: SetFit
    compare: dict[str, SetFit]
    plot: Path | None = None

    def to_dict(self) -> dict:
        s = self.sizes
        return {
            "dataset": self.dataset,
            "size": s.size,
            "resize": s.resize,
            "multi_scale": list(s.multi_scale) if s.multi_scale else None,
            "k": self.k,
            "seed": self.seed,
            "restarts": self.restarts,
            "evolve": self.evolve,
            "fitness": self.fitness_name,
            "iou_t": self.iou_t,
            "ratio_t": self.ratio_t,
            "boxes": int(s.wh.shape[0]),
            "excluded": {"crowd": s.crowd_excluded, "zero_size": s.zero_excluded},
            "small_boxes": s.small,
            "distinct_sizes": self.design.distinct,
            "search_points": self.design.points,
            **self.result.to_dict(),
            "start": self.start.to_dict(),
            "evolution": {
                "generations": self.evolve,
                "accepted": self.design.accepted,
                "start_fitness": self.design.start_fitness,
                "fitness": self.design.fitness,
                "kept_start": self.design.kept_start,
            },
            "compare": {name: fit.to_dict() for name, fit in self.compare.items()},
            "darknet": self.result.anchors.darknet(),
            "yolov5_yaml": self.result.anchors.yolov5_yaml(),
            "plot": str(self.plot) if self.plot else None,
            "seconds": round(self.design.seconds, 3),
            "device": self.device,
        }

    def _sets(self) -> list[tuple[str, SetFit]]:
        return [("kmeans", self.result), ("k-means start", self.start), *self.compare.items()]

    def anchors_frame(self) -> pd.DataFrame:
        """One row per anchor of every set: set, anchor index, level, w, h, aspect w/h, best_for, share."""
        frames = []
        for name, fit in [("kmeans", self.result), *self.compare.items()]:
            a = fit.anchors
            n = max(int(fit.best_for.sum()), 1)
            strides = default_strides(len(a.levels))
            lev = a.level_of()
            frames.append(
                pd.DataFrame(
                    {
                        "set": name,
                        "anchor": np.arange(a.num_anchors),
                        "level": lev,
                        "stride": [strides[li] if li >= 0 else -1 for li in lev],
                        "w": a.wh[:, 0],
                        "h": a.wh[:, 1],
                        "aspect": a.wh[:, 0] / a.wh[:, 1],
                        "best_for": fit.best_for,
                        "share": fit.best_for / n,
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def metrics_frame(self) -> pd.DataFrame:
        """One row per anchor set: ``set``, ``anchors`` (A) and the five figures under their JSON keys."""
        rows = [
            {"set": name, "anchors": fit.anchors.num_anchors, **{key: fit.metrics[key] for key in METRIC_KEYS}}
            for name, fit in self._sets()
        ]
        return pd.DataFrame(rows)

    def to_frame(self) -> pd.DataFrame:
        return self.anchors_frame()

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        s, d = self.sizes, self.design
        overview = pd.DataFrame(
            {
                "statistic": [
                    "boxes used",
                    "resize",
                    "iscrowd boxes left out",
                    "zero-size boxes left out",
                    f"boxes under {SMALL_BOX_PX:g} px (kept)",
                    "distinct sizes",
                    "search points",
                    "k (levels)",
                    "seed",
                    "k-means restarts / iterations",
                    "evolution generations",
                    "accepted moves",
                    f"fitness ({self.fitness_name}) start -> final",
                    "device",
                    "seconds",
                ],
                "value": [
                    f"{s.wh.shape[0]:,} of {s.annotations:,} annotations",
                    s.describe(),
                    str(s.crowd_excluded),
                    str(s.zero_excluded),
                    str(s.small),
                    f"{d.distinct:,}",
                    f"{d.points:,}" + ("" if d.points == d.distinct else " (log-size grid)"),
                    f"{self.k} ({len(self.result.anchors.levels)})",
                    str(self.seed),
                    f"{self.restarts} / {d.iterations}",
                    str(self.evolve),
                    str(d.accepted),
                    f"{d.start_fitness:.4f} -> {d.fitness:.4f}" + (" (start kept)" if d.kept_start else ""),
                    self.device,
                    f"{d.seconds:.2f}",
                ],
            }
        )
        # short headers so the table fits 80 columns; the title says what each one is
        metrics = self.metrics_frame().rename(
            columns={"anchors": "A", "anchors_above_iou": "above_iou", "anchors_above_ratio": "above_ratio"}
        )
        anchors = self.anchors_frame()
        out = [
            (f"kmeans anchors for {self.dataset}", overview),
            (
                (
                    f"fit: avg_iou = mean best wh-IoU; bpr_iou = share of boxes with best wh-IoU > {self.iou_t:g}; "
                    f"above_iou = anchors per box above it; bpr_ratio, above_ratio: the same with "
                    f"ultralytics' side-ratio test at {self.ratio_t:g}"
                ),
                metrics,
            ),
            (
                "kmeans anchors (ascending area; level 0 = first yolo section, the coarsest)",
                anchors[anchors["set"] == "kmeans"].drop(columns="set"),
            ),
        ]
        for name in self.compare:
            out.append((f"anchors of {name}", anchors[anchors["set"] == name].drop(columns="set")))
        out.append(("Darknet cfg lines (one mask line per yolo section, in cfg order)", self.result.anchors.darknet()))
        out.append(("yolov5 model YAML", self.result.anchors.yolov5_yaml()))
        if self.plot:
            out.append(("plot", str(self.plot)))
        return out


def _set_fit(anchors: AnchorSet, metrics: dict) -> SetFit:
    m = dict(metrics)
    best_for = m.pop("best_for")
    return SetFit(anchors, m, best_for)


def _fit(anchors: AnchorSet, wh: np.ndarray, iou_t: float, ratio_t: float) -> SetFit:
    return _set_fit(anchors, fitness(wh, anchors.wh, iou_t, ratio_t))


def kmeans(
    dataset: Dataset,
    *,
    size: int = 416,
    k: int = 9,
    resize: str = "letterbox",
    multi_scale: tuple[int, int] | None = None,
    include_crowd: bool = False,
    restarts: int = 5,
    seed: int = 0,
    evolve: int = 1000,
    fitness_name: str = "iou-bpr",
    iou_t: float = 0.225,
    ratio_t: float = 4.0,
    compare: Sequence[str | AnchorSet] = (),
    levels: int | None = None,
    device: torch.device | str | None = None,
    plot: str | Path | None = None,
    decimals: int | None = 0,
) -> KmeansReport:
    """Design YOLO anchors for a dataset and measure how they and other sets fit its boxes.

    Args:
        dataset: the annotations.
        size, resize, multi_scale, include_crowd: how boxes reach the network input (:func:`box_sizes`).
        k: number of anchors. ``levels``: output levels to split them into (default
            :func:`default_levels`).
        restarts, seed, evolve, fitness_name, decimals, device: the search (:func:`design_anchors`).
        iou_t, ratio_t: thresholds of the fitness figures (:func:`fitness`).
        compare: anchor sets to measure as well (see :func:`parse_anchor_spec`).
        plot: write a PNG of the box-size density with the anchors marked (:func:`plot_anchors`).

    Returns:
        KmeansReport. Raises OptionError / ModelFormatError on bad options or anchor specs
        (checked before the search runs).
    """
    _check_thresholds(iou_t, ratio_t)
    k = check_int("k", k, 1)
    n_levels = default_levels(k) if levels is None else check_int("levels", levels, 1)
    if n_levels > k:
        raise OptionError(f"levels must be at most k={k}, got {n_levels}", param="levels")
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise OptionError(f"plot must name a .png file, got {str(plot)!r}")
    sets: dict[str, AnchorSet] = {}
    for spec in compare:
        a = parse_anchor_spec(spec)
        sets.setdefault(a.name, a)
    sizes = box_sizes(
        dataset, size=size, resize=resize, multi_scale=multi_scale, include_crowd=include_crowd, seed=seed
    )
    design = design_anchors(
        sizes.wh,
        k,
        restarts=restarts,
        seed=seed,
        evolve=evolve,
        fitness_name=fitness_name,
        iou_t=iou_t,
        ratio_t=ratio_t,
        decimals=decimals,
        device=device,
    )
    levels_idx = _split_levels(k, n_levels)
    result = _set_fit(AnchorSet("kmeans", design.wh, levels_idx), design.metrics)
    start = _set_fit(AnchorSet("k-means start", design.start, levels_idx), design.start_metrics)
    fits = {name: _fit(a, sizes.wh, iou_t, ratio_t) for name, a in sets.items()}
    plot_path = None
    if plot is not None:
        title = (
            f"{dataset.name}: {sizes.wh.shape[0]:,} boxes, {sizes.describe()}; kmeans k={k}: "
            f"avg IoU {result.metrics['avg_iou']:.3f}, BPR {result.metrics['bpr_iou']:.3f}"
        )
        plot_path = plot_anchors(sizes.wh, [result.anchors, *sets.values()], plot, title=title)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return KmeansReport(
        dataset=dataset.name,
        sizes=sizes,
        k=k,
        seed=seed,
        restarts=restarts,
        evolve=evolve,
        fitness_name=fitness_name,
        iou_t=iou_t,
        ratio_t=ratio_t,
        device=str(dev),
        design=design,
        result=result,
        start=start,
        compare=fits,
        plot=plot_path,
    )


# --------------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------------
_MARKERS = [("X", "#e4151b"), ("o", "#111111"), ("s", "#ff8c00"), ("^", "#1f6fd1"), ("D", "#c2185b"), ("v", "#2e7d32")]


def plot_anchors(wh, anchor_sets: Sequence[AnchorSet], path: str | Path, *, title: str = "") -> Path:
    """Box width/height density on log axes with each anchor set's anchors marked; a PNG, atomically.

    Args:
        wh: (G, 2) float, box sizes, pixels of the network input (sizes with a zero side are not drawn).
        anchor_sets: sets to mark (the first filled and labelled with its sizes, the others hollow).
        path: the PNG to write.
        title: figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from cocostat.atomic import atomic_path

    g = _as_wh("wh", wh, allow_zero=True)
    g = g[(g > 0).all(axis=1)]
    all_a = np.concatenate([a.wh for a in anchor_sets], axis=0) if anchor_sets else np.zeros((0, 2))
    vals = np.concatenate([g.ravel(), all_a.ravel()])
    if vals.size == 0:
        vals = np.array([1.0, 100.0])
    lo = max(float(vals.min()) / 1.4, 0.1)
    hi = float(vals.max()) * 1.4
    fig, ax = plt.subplots(figsize=(9, 7.5), dpi=120)
    ax.set_facecolor("#f4f4f4")
    if g.shape[0]:
        # hexagons sized to the data: ~20 across for a thousand boxes, up to 90 for COCO train2017
        gridsize = int(np.clip(np.sqrt(g.shape[0]) / 1.5, 20, 90))
        hb = ax.hexbin(
            g[:, 0],
            g[:, 1],
            xscale="log",
            yscale="log",
            gridsize=gridsize,
            mincnt=1,
            norm=LogNorm(),
            cmap="viridis",
            extent=(np.log10(lo), np.log10(hi), np.log10(lo), np.log10(hi)),
            linewidths=0.1,
        )
        fig.colorbar(hb, ax=ax, label="boxes per hexagon (log scale)", pad=0.01)
    ax.plot([lo, hi], [lo, hi], color="0.45", lw=0.8, ls="--", label="w = h")
    for n, a in enumerate(anchor_sets):
        marker, colour = _MARKERS[n % len(_MARKERS)]
        if n == 0:
            ax.scatter(
                a.wh[:, 0],
                a.wh[:, 1],
                marker=marker,
                s=140,
                c=colour,
                edgecolors="white",
                linewidths=1.2,
                zorder=5,
                label=f"{a.name} ({a.num_anchors})",
            )
            for w, h in a.wh:
                ax.annotate(
                    f"{_num(w)}x{_num(h)}",
                    (w, h),
                    xytext=(7, 6),
                    textcoords="offset points",
                    fontsize=8,
                    color="black",
                    zorder=6,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75},
                )
        else:
            # a set identical to an earlier one (yolov3 and yolov3-spp share anchors) hides under it: say so
            twin = next(
                (
                    b.name
                    for b in anchor_sets[:n]
                    if b.wh.shape == a.wh.shape and np.array_equal(b.wh[np.lexsort(b.wh.T)], a.wh[np.lexsort(a.wh.T)])
                ),
                None,
            )
            label = f"{a.name} ({a.num_anchors})" + (f", same as {twin}" if twin else "")
            ax.scatter(
                a.wh[:, 0],
                a.wh[:, 1],
                marker=marker,
                s=95,
                facecolors="none",
                edgecolors=colour,
                linewidths=2.0,
                zorder=4,
                label=label,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("box width (px at the network input)")
    ax.set_ylabel("box height (px at the network input)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", color="white", lw=0.6, alpha=0.6)
    ax.legend(loc="upper left", fontsize=9, framealpha=0.85)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
