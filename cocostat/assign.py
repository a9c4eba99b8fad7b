"""Label assigners of YOLO trainers: which anchors (and cells) must predict each object.

An assigner looks only at box sizes and positions (no predictions) and says, for every object and
every anchor of every output level, whether that anchor is a positive for that object. Three are
implemented, each as its reference code does it, vectorised in torch over all objects at once:

- ``yolov3``: ultralytics YOLOv3 of 2019-2020, ``build_targets`` with ``use_all_anchors = True`` and
  ``reject = True``: every anchor of every level whose wh-IoU with the object exceeds ``iou_t``
  (strictly, ``wh_iou > iou_t``) is matched, at the cell holding the object's centre.
- ``darknet``: Darknet's ``yolo_layer``: the single anchor (over all levels) with the highest wh-IoU,
  at the centre cell; ties go to the first anchor in cfg order, as Darknet's ``if (iou > best_iou)``
  does. An object whose best wh-IoU is 0 (a zero-size box) is left unmatched.
- ``yolov5``: ultralytics YOLOv5 ``build_targets``: every anchor whose width and height ratios to
  the object are both within ``ratio_t`` (``max(r, 1/r) < ratio_t`` for ``r = w/w_a`` and
  ``r = h/h_a``, i.e. side ratio ``> 1 / ratio_t``, :func:`cocostat.boxes.pairwise_side_ratio`), at the centre cell and at the (usually two) neighbour cells nearest the centre: the
  horizontal one to the left when ``x mod 1 < 0.5`` and ``x > 1``, to the right when
  ``(W - x) mod 1 < 0.5`` and ``W - x > 1``, the vertical one likewise (``x`` the centre in grid
  cells of that level, ``W`` the grid width; a centre exactly on a cell border gets both sides).

Everything is in network-input pixels (after letterboxing). wh-IoU is scale-free, so comparing
pixel sizes gives what the trainers compute in grid units. Crowd annotations are the caller's job
to leave out.

Shapes: G objects, A anchors (cfg order), L levels (``[yolo]`` layers in cfg order), N candidate
rows per object (see :mod:`cocostat.candidates`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cocostat.anchors import default_strides  # noqa: F401 (re-exported; defined once in anchors)
from cocostat.boxes import pairwise_side_ratio, pairwise_wh_iou
from cocostat.errors import OptionError

__all__ = ["ASSIGNERS", "AnchorGrid", "Assigner", "Assignment", "assign", "default_strides",
           "grid_from_anchor_set", "grid_from_manifest", "positive_mask"]


class Assigner(enum.Enum):
    """A label assigner: its CLI name and what it does."""

    YOLOV3 = ("yolov3", "ultralytics YOLOv3 2019-2020: every anchor with wh-IoU > iou_t, centre cell")
    DARKNET = ("darknet", "Darknet yolo_layer: the single best anchor by wh-IoU, centre cell")
    YOLOV5 = ("yolov5", "ultralytics YOLOv5: anchors with w and h ratios < ratio_t, centre + 2 neighbour cells")

    def __init__(self, short: str, description: str):
        self.short = short
        self.description = description

    @classmethod
    def parse(cls, name: str | Assigner) -> Assigner:
        if isinstance(name, Assigner):
            return name
        for a in cls:
            if a.short == name:
                return a
        raise OptionError(f"--assigner must be one of {', '.join(ASSIGNERS)}, got {name!r}")


ASSIGNERS: tuple[str, ...] = tuple(a.short for a in Assigner)


@dataclass(frozen=True, eq=False)
class AnchorGrid:
    """Anchors with their output levels, strides and the input size.

    Attributes:
        name: where the anchors came from (a preset name, a cfg path, ``predictions``).
        wh: (A, 2) float64, anchor widths and heights, input pixels, cfg order.
        level: (A,) int64, output level of each anchor (``[yolo]`` layer index, cfg order).
        strides: (L,) int64, input pixels per grid cell of each level.
        size: network input size, pixels (square); level l has a ``size // strides[l]`` grid.
    """

    name: str
    wh: np.ndarray
    level: np.ndarray
    strides: np.ndarray
    size: int

    def __post_init__(self):
        wh = np.array(self.wh, dtype=np.float64).reshape(-1, 2)  # own copies: presets are read-only
        level = np.array(self.level, dtype=np.int64).reshape(-1)
        strides = np.array(self.strides, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "wh", wh)
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "strides", strides)
        if level.shape[0] != wh.shape[0]:
            raise OptionError(f"anchors {self.name}: {wh.shape[0]} anchors but {level.shape[0]} level indices")
        if not (np.isfinite(wh).all() and (wh > 0).all()):
            raise OptionError(f"anchors {self.name}: widths and heights must be positive, got {wh.tolist()}")
        if level.size and (level.min() < 0 or level.max() >= strides.shape[0]):
            raise OptionError(f"anchors {self.name}: level indices must lie in 0..{strides.shape[0] - 1}, "
                              f"got {sorted(set(level.tolist()))}")
        if (strides <= 0).any():
            raise OptionError(f"anchors {self.name}: strides must be positive, got {strides.tolist()}")
        if self.size <= 0 or (strides.size and (self.size % strides).any()):
            raise OptionError(f"--size must be a positive multiple of every stride "
                              f"({', '.join(map(str, strides.tolist()))}), got {self.size}")

    @property
    def num_anchors(self) -> int:
        return int(self.wh.shape[0])

    @property
    def num_levels(self) -> int:
        return int(self.strides.shape[0])

    @property
    def grid(self) -> np.ndarray:
        """(L,) int64: grid width (= height) of each level, ``size // stride``."""
        return self.size // self.strides

    def masks(self) -> list[list[int]]:
        """Anchor indices of each level (a Darknet ``mask`` line per level)."""
        return [np.flatnonzero(self.level == lv).tolist() for lv in range(self.num_levels)]


def grid_from_anchor_set(anchor_set, size: int, strides: Sequence[int] | None = None) -> AnchorGrid:
    """An :class:`AnchorGrid` from a :class:`cocostat.anchors.AnchorSet` (``name``, ``wh``, ``levels``).

    ``levels`` is a list of index arrays in cfg order (level 0 is the first ``[yolo]`` layer, the
    largest anchors in the stock cfgs). ``strides`` default to :func:`default_strides`.
    """
    wh = np.asarray(anchor_set.wh, dtype=np.float64).reshape(-1, 2)
    levels = [np.asarray(ix, dtype=np.int64).reshape(-1) for ix in anchor_set.levels]
    level = np.full(wh.shape[0], -1, dtype=np.int64)
    for lv, ix in enumerate(levels):
        level[ix] = lv
    if (level < 0).any():
        raise OptionError(f"anchors {anchor_set.name}: anchor(s) {np.flatnonzero(level < 0).tolist()} "
                          f"belong to no level's mask; the audits need every anchor in a level")
    strides = list(strides) if strides is not None else default_strides(len(levels))
    if len(strides) != len(levels):
        raise OptionError(f"anchors {anchor_set.name}: {len(levels)} levels but {len(strides)} strides")
    return AnchorGrid(str(anchor_set.name), wh, level, np.asarray(strides), int(size))


def grid_from_manifest(manifest: dict, where: str = "manifest.json", name: str = "predictions") -> AnchorGrid:
    """An :class:`AnchorGrid` from a predictions manifest (``anchors``, ``levels``, ``size``).

    ``anchors`` is ``[[w, h], ...]`` or a flat ``[w, h, w, h, ...]`` list in input pixels;
    ``levels`` is ``[{"mask": [anchor indices], "stride": s}, ...]`` in cfg order.

    Raises:
        OptionError: a key is missing or malformed.
    """
    try:
        wh = np.asarray(manifest["anchors"], dtype=np.float64).reshape(-1, 2)
        levels = manifest["levels"]
        size = int(manifest["size"] if not isinstance(manifest["size"], (list, tuple)) else manifest["size"][0])
        masks = [np.asarray(lv["mask"], dtype=np.int64).reshape(-1) for lv in levels]
        strides = [int(lv["stride"]) for lv in levels]
    except (KeyError, TypeError, ValueError) as exc:
        raise OptionError(f"{where}: expected anchors [[w, h], ...], levels [{{mask, stride}}, ...] and size, "
                          f"could not read them ({type(exc).__name__}: {exc})") from None
    level = np.full(wh.shape[0], -1, dtype=np.int64)
    for lv, ix in enumerate(masks):
        if ix.size and (ix.min() < 0 or ix.max() >= wh.shape[0]):
            raise OptionError(f"{where}: level {lv} mask {ix.tolist()} refers to anchors outside 0..{wh.shape[0] - 1}")
        level[ix] = lv
    if (level < 0).any():
        raise OptionError(f"{where}: anchor(s) {np.flatnonzero(level < 0).tolist()} belong to no level's mask; "
                          f"the audits need every anchor in a level")
    return AnchorGrid(name, wh, level, np.asarray(strides), size)


@dataclass(frozen=True, eq=False)
class Assignment:
    """What an assigner decided, on the device of its inputs.

    Attributes:
        assigner: the :class:`Assigner`.
        matched: (G, A) bool; ``matched[g, a]``: anchor a must predict object g.
        wh_iou: (G, A) float; wh-IoU of object g and anchor a (both centred), whatever the assigner.
        ratio: (G, A) float in [0, 1], the side ratio of :mod:`cocostat.boxes`
            (``min(w/w_a, w_a/w, h/h_a, h_a/h)``); YOLOv5 matches when ``ratio > 1 / ratio_t``.
        cell: (G, L, 2) int64; the cell (gx, gy) holding the object's centre at each level.
        neighbours: (G, L, 4) bool; YOLOv5's extra cells around the centre cell, in the order of
            its ``j, k, l, m`` masks: left ``(dx, dy) = (-1, 0)``, above ``(0, -1)``, right
            ``(+1, 0)``, below ``(0, +1)`` (all false for yolov3 and darknet). Usually one
            horizontal and one vertical; a centre exactly on a cell border (fraction 0) gets both
            sides, as in YOLOv5.
    """

    assigner: Assigner
    matched: Tensor
    wh_iou: Tensor
    ratio: Tensor
    cell: Tensor
    neighbours: Tensor


def _as_float_tensor(x, device=None, dtype=torch.float64) -> Tensor:
    if isinstance(x, Tensor):
        return x.to(device=device if device is not None else x.device, dtype=dtype)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype, device=device)


def assign(boxes, grid: AnchorGrid, assigner: str | Assigner = "yolov3", *, iou_t: float = 0.225,
           ratio_t: float = 4.0) -> Assignment:
    """Run a label assigner over every object at once.

    Args:
        boxes: (G, 4) float, xyxy, network-input pixels (letterboxed); a torch tensor (its device is
            used) or a numpy array (CPU). Crowd annotations must already be left out.
        grid: the anchors, their levels and strides, and the input size.
        assigner: ``yolov3``, ``darknet`` or ``yolov5`` (see the module docstring).
        iou_t: wh-IoU threshold of the yolov3 assigner (matched when ``wh_iou > iou_t``).
        ratio_t: ratio threshold of the yolov5 assigner (matched when side ratio ``> 1 / ratio_t``).

    Returns:
        An :class:`Assignment` on the device of ``boxes``, computations in float64.
    """
    kind = Assigner.parse(assigner)
    if not 0.0 <= iou_t < 1.0:
        raise OptionError(f"--iou-t must lie in [0, 1), got {iou_t}")
    if not ratio_t > 1.0:
        raise OptionError(f"--ratio-t must be greater than 1, got {ratio_t}")
    b = _as_float_tensor(boxes)
    if b.ndim == 1 and b.numel() == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise OptionError(f"object boxes must have shape (G, 4), got {tuple(b.shape)}")
    dev = b.device
    awh = torch.as_tensor(grid.wh, dtype=torch.float64, device=dev)  # (A, 2)
    strides = torch.as_tensor(grid.strides, dtype=torch.float64, device=dev)  # (L,)
    gsize = torch.as_tensor(grid.grid, dtype=torch.float64, device=dev)  # (L,)

    gwh = (b[:, 2:] - b[:, :2]).clamp(min=0)  # (G, 2)
    wh_iou = pairwise_wh_iou(gwh, awh)  # (G, A)
    ratio = pairwise_side_ratio(gwh, awh)  # (G, A) in [0, 1]; within ratio_t when > 1 / ratio_t

    centre = 0.5 * (b[:, :2] + b[:, 2:])  # (G, 2), pixels
    gxy = centre[:, None, :] / strides[None, :, None]  # (G, L, 2), grid units
    cell = torch.minimum(gxy.floor().clamp(min=0), gsize[None, :, None] - 1).long()  # (G, L, 2)
    neighbours = torch.zeros(cell.shape[0], cell.shape[1], 4, dtype=torch.bool, device=dev)  # (G, L, 4)

    if kind is Assigner.YOLOV3:
        matched = wh_iou > iou_t
    elif kind is Assigner.DARKNET:
        best, arg = wh_iou.max(dim=1)  # (G,); max returns the first index among ties
        matched = torch.zeros_like(wh_iou, dtype=torch.bool)
        matched[torch.arange(b.shape[0], device=dev), arg] = best > 0
    else:
        matched = ratio > 1.0 / ratio_t
        gxi = gsize[None, :, None] - gxy  # (G, L, 2), distance to the far edge, grid units
        low = (torch.remainder(gxy, 1.0) < 0.5) & (gxy > 1.0)  # (G, L, 2): the cell before
        high = (torch.remainder(gxi, 1.0) < 0.5) & (gxi > 1.0)  # (G, L, 2): the cell after
        neighbours = torch.cat([low, high], dim=2)  # (G, L, 4): left, above, right, below
    return Assignment(kind, matched, wh_iou, ratio, cell, neighbours)


def positive_mask(assignment: Assignment, grid: AnchorGrid, anchor, dx, dy) -> Tensor:
    """The assigner's positives in a candidate layout.

    Args:
        assignment: from :func:`assign`.
        grid: the anchors it was computed with.
        anchor: (N,) int, anchor index (cfg order) of each candidate column.
        dx, dy: (N,) int, cell offset of each candidate column from the object's centre cell.

    Returns:
        (G, N) bool, on the assignment's device: ``out[g, n]`` is true when the assigner makes
        anchor ``anchor[n]`` at offset ``(dx[n], dy[n])`` a positive for object g: a matched anchor
        at the centre cell, and for yolov5 also at its horizontal and vertical neighbour cells.
        Whether the cell lies inside the grid is not checked here (see the candidates' ``valid``).
    """
    dev = assignment.matched.device
    anchor, dx, dy = (torch.as_tensor(v, device=dev).long() for v in (anchor, dx, dy))
    matched = assignment.matched[:, anchor]  # (G, N)
    centre = (dx == 0) & (dy == 0)  # (N,)
    if assignment.assigner is not Assigner.YOLOV5:
        return matched & centre[None, :]
    lvl = torch.as_tensor(grid.level, device=dev)[anchor]  # (N,)
    nb = assignment.neighbours[:, lvl, :]  # (G, N, 4): left, above, right, below
    # which of the four sides each column is, or -1 for the centre and the other cells
    side = torch.full_like(anchor, -1)
    side[(dx == -1) & (dy == 0)] = 0
    side[(dx == 0) & (dy == -1)] = 1
    side[(dx == 1) & (dy == 0)] = 2
    side[(dx == 0) & (dy == 1)] = 3
    near = nb.gather(2, side.clamp(min=0)[None, :, None].expand(nb.shape[0], -1, 1))[..., 0]  # (G, N)
    return matched & (centre[None, :] | (near & (side >= 0)[None, :]))
