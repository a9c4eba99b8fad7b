"""Anchor grids, and label assignment over them (the assigners live in :mod:`cocostat.assigners`).

:class:`AnchorGrid` holds the anchors, their output levels, the strides and the input size. The
assigners themselves (``yolov3``, ``darknet``, ``yolov5``, ``atss``, ... one module each in
:mod:`cocostat.assigners`) share one contract, ``positives(slots)``; :func:`assign` runs a box-only
one over the whole grid and gives its positives per anchor, and :func:`positive_mask` maps them
into a candidate layout. Both are what :mod:`cocostat.audit` and :mod:`cocostat.mismatch` use.

Everything is in network-input pixels (after letterboxing). Crowd annotations are the caller's job
to leave out.

Shapes: G objects, A anchors (cfg order), L levels (``[yolo]`` layers in cfg order), N candidate
columns per object (see :mod:`cocostat.candidates`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cocostat import assigners
from cocostat.anchors import default_strides  # re-exported; defined once in anchors
from cocostat.assigners import NAMES
from cocostat.assigners._protocol import (
    GIVE_PREDICTIONS,
    Assigner,
    Slots,
    centre_cells,
    grid_slots,
    matched_anchors,
    member,
    slot_count,
)
from cocostat.boxes import pairwise_wh_iou
from cocostat.errors import OptionError

__all__ = [
    "ASSIGNERS",
    "AnchorGrid",
    "Assigner",
    "Assignment",
    "assign",
    "default_strides",
    "grid_from_anchor_set",
    "grid_from_manifest",
    "in_positives",
    "positive_mask",
]

#: every registered assigner (see :mod:`cocostat.assigners`).
ASSIGNERS: tuple[str, ...] = NAMES


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
            raise OptionError(
                f"anchors {self.name}: level indices must lie in 0..{strides.shape[0] - 1}, "
                f"got {sorted(set(level.tolist()))}"
            )
        if (strides <= 0).any():
            raise OptionError(f"anchors {self.name}: strides must be positive, got {strides.tolist()}")
        if self.size <= 0 or (strides.size and (self.size % strides).any()):
            raise OptionError(
                f"size must be a positive multiple of every stride "
                f"({', '.join(map(str, strides.tolist()))}), got {self.size}",
                param="size",
            )

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
        raise OptionError(
            f"anchors {anchor_set.name}: anchor(s) {np.flatnonzero(level < 0).tolist()} "
            f"belong to no level's mask; the audits need every anchor in a level"
        )
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
        raise OptionError(
            f"{where}: expected anchors [[w, h], ...], levels [{{mask, stride}}, ...] and size, "
            f"could not read them ({type(exc).__name__}: {exc})"
        ) from None
    level = np.full(wh.shape[0], -1, dtype=np.int64)
    for lv, ix in enumerate(masks):
        if ix.size and (ix.min() < 0 or ix.max() >= wh.shape[0]):
            raise OptionError(f"{where}: level {lv} mask {ix.tolist()} refers to anchors outside 0..{wh.shape[0] - 1}")
        level[ix] = lv
    if (level < 0).any():
        raise OptionError(
            f"{where}: anchor(s) {np.flatnonzero(level < 0).tolist()} belong to no level's mask; "
            f"the audits need every anchor in a level"
        )
    return AnchorGrid(name, wh, level, np.asarray(strides), size)


@dataclass(frozen=True, eq=False)
class Assignment:
    """What a box-only assigner decided over the whole grid, on the device of its inputs.

    Attributes:
        assigner: the configured :class:`~cocostat.assigners.Assigner`.
        boxes: (G, 4) float64, xyxy, input pixels.
        matched: (G, A) bool; ``matched[g, a]``: anchor a has at least one positive slot for object g.
        wh_iou: (G, A) float64; wh-IoU of object g and anchor a (both centred), whatever the assigner.
        cell: (G, L, 2) int64; the cell (gx, gy) holding the object's centre at each level.
        slots: the whole-grid :class:`~cocostat.assigners.Slots` the assigner was run on.
        positives: (G, N) bool over ``slots``.
    """

    assigner: Assigner
    boxes: Tensor
    matched: Tensor
    wh_iou: Tensor
    cell: Tensor
    slots: Slots
    positives: Tensor


def _as_float_tensor(x, device=None, dtype=torch.float64) -> Tensor:
    if isinstance(x, Tensor):
        return x.to(device=device if device is not None else x.device, dtype=dtype)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype, device=device)


def assign(
    boxes, grid: AnchorGrid, assigner="yolov3", *, image=None, iou_t: float = 0.225, ratio_t: float = 4.0, **options
) -> Assignment:
    """Run a box-only label assigner over the whole grid, every object at once.

    Args:
        boxes: (G, 4) float, xyxy, network-input pixels (letterboxed); a torch tensor (its device is
            used) or a numpy array (CPU). Crowd annotations must already be left out.
        grid: the anchors, their levels and strides, and the input size.
        assigner: a registered name (see :mod:`cocostat.assigners`) or a configured assigner.
        image: (G,) int64 dense image index of each object (for assigners that resolve conflicts
            between objects of one image); default: each object alone in its image.
        iou_t, ratio_t, options: the assigner's options (each assigner takes its own).

    Returns:
        An :class:`Assignment` on the device of ``boxes``, computations in float64.

    Raises:
        OptionError: unknown assigner, bad option, an assigner that needs predictions, bad boxes.
    """
    asg = assigners.create(assigner, iou_t=iou_t, ratio_t=ratio_t, **options)
    if asg.needs_predictions:
        raise OptionError(f"the {asg.name} assigner needs predictions: {GIVE_PREDICTIONS}")
    b = _as_float_tensor(boxes)
    if b.ndim == 1 and b.numel() == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise OptionError(f"object boxes must have shape (G, 4), got {tuple(b.shape)}")
    img = None if image is None else torch.as_tensor(image, dtype=torch.int64, device=b.device)
    slots = grid_slots(b, grid, asg.reach(grid), image=img)
    pos = asg.positives(slots)
    awh = torch.as_tensor(grid.wh, dtype=torch.float64, device=b.device)  # (A, 2)
    wh_iou = pairwise_wh_iou((b[:, 2:] - b[:, :2]).clamp(min=0), awh)  # (G, A)
    return Assignment(asg, b, matched_anchors(slots, pos), wh_iou, centre_cells(b, grid), slots, pos)


def positive_mask(assignment: Assignment, grid: AnchorGrid, anchor, dx, dy, gx=None, gy=None) -> Tensor:
    """The assigner's whole-grid positives in a candidate layout.

    Args:
        assignment: from :func:`assign`.
        grid: the anchors it was computed with.
        anchor: (N,) int, anchor index (cfg order) of each candidate column.
        dx, dy: (N,) int, cell offset of each candidate column from the object's centre cell.
        gx, gy: (G, N) int, the cell of each candidate (default: the centre cell plus the offset).

    Returns:
        (G, N) bool, on the assignment's device: ``out[g, n]`` is true when the slot (anchor
        ``anchor[n]`` at that cell) is one of the assigner's positives for object g. Cells outside
        the grid are never positives.
    """
    dev = assignment.matched.device
    anchor, dx, dy = (torch.as_tensor(np.asarray(v), device=dev).long().reshape(-1) for v in (anchor, dx, dy))
    b = assignment.boxes
    level = torch.as_tensor(grid.level, device=dev)[anchor]
    if gx is None:
        cell = centre_cells(b, grid)  # (G, L, 2)
        gx, gy = cell[:, level, 0] + dx[None, :], cell[:, level, 1] + dy[None, :]
    else:
        gx, gy = (torch.as_tensor(np.asarray(v), device=dev).long() for v in (gx, gy))
    side = torch.as_tensor(grid.grid, device=dev)[level][None, :]
    inside = (gx >= 0) & (gy >= 0) & (gx < side) & (gy < side)
    layout = Slots(grid, b, assignment.slots.image, anchor, level, dx, dy, gx, gy, inside)
    return in_positives(assignment.slots, assignment.positives, layout)


def in_positives(slots: Slots, pos: Tensor, other: Slots) -> Tensor:
    """(G, N') bool: which slots of ``other`` (same objects, another layout) are positives in ``pos``.

    Slots are the same when their flat slot index is (:attr:`Slots.key`); objects are rows.
    """
    K = slot_count(slots.grid)
    g, n = torch.nonzero(pos, as_tuple=True)
    have = g * K + slots.key[g, n]  # (P,)
    rows = torch.arange(other.num_objects, device=other.device)[:, None]
    want = rows * K + other.key  # (G, N')
    return member(want, have) & other.inside
