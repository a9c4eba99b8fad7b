"""The assigner protocol: the :class:`Slots` layout, the :class:`Assigner` base and shared kernels.

See :mod:`cocostat.assigners` for the contract. Every kernel here follows its inputs' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor

from cocostat.boxes import IouKind, matched_iou, pairwise_wh_iou, valid_predictions
from cocostat.errors import OptionError

if TYPE_CHECKING:  # cocostat.assign imports the assigners
    from cocostat.assign import AnchorGrid


# --------------------------------------------------------------------------------------------------
# Slot numbering of one image's grid
# --------------------------------------------------------------------------------------------------
def _anchor_tables(grid) -> dict[str, np.ndarray]:
    """Per anchor (A,): its level's grid side W, anchors per level A_l, index within the level, offset.

    The flat slot index of (level l, row y, column x, anchor a) in one image is
    ``offset[l] + (y * W_l + x) * A_l + local[a]`` with ``offset[l] = sum_{l' < l} W_l'^2 A_l'``:
    slots numbered level by level, then row, column, and anchor within the level (cfg order).
    """
    per_level = np.bincount(grid.level, minlength=grid.num_levels)  # (L,)
    side = grid.grid  # (L,)
    offset = np.concatenate([[0], np.cumsum(side**2 * per_level)[:-1]])  # (L,)
    local = np.zeros(grid.num_anchors, dtype=np.int64)
    for lv in range(grid.num_levels):
        ix = np.flatnonzero(grid.level == lv)
        local[ix] = np.arange(ix.size)
    lv = grid.level
    return {"side": side[lv], "per_level": per_level[lv], "local": local, "offset": offset[lv]}


def slot_count(grid) -> int:
    """Slots in one image's whole grid: ``sum_l W_l^2 A_l`` (10,647 for yolov3 at 416)."""
    per_level = np.bincount(grid.level, minlength=grid.num_levels)
    return int((grid.grid**2 * per_level).sum())


# --------------------------------------------------------------------------------------------------
# The layout
# --------------------------------------------------------------------------------------------------
class SlotPredictions(NamedTuple):
    """The prediction fields of :class:`Slots`, all present (see :meth:`Slots.predictions`).

    Attributes: as those of :class:`Slots`: ``pred`` (G, N, 4) float32; ``iou``, ``q``, ``score``,
    ``obj``, ``cls_prob`` (G, N) float32; ``has_pred`` (G, N) bool.
    """

    pred: Tensor
    iou: Tensor
    q: Tensor
    score: Tensor
    obj: Tensor
    cls_prob: Tensor
    has_pred: Tensor


#: how to give an analysis the predictions it needs (the end of its error message).
GIVE_PREDICTIONS = "give --predictions DIR or --cfg FILE --weights FILE"


@dataclass(frozen=True, eq=False)
class Slots:
    """N slots of each of G objects, and what an assigner may look at, on one device.

    Attributes:
        grid: the :class:`~cocostat.assign.AnchorGrid` (anchors, levels, strides, input size).
        boxes: (G, 4) float64, xyxy, input pixels (crowd left out).
        image: (G,) int64, dense image index of each object (conflicts are resolved per image).
        anchor, level, dx, dy: (N,) int64, the fixed column layout (anchor, dy, dx order); ``dx``,
            ``dy`` are cell offsets from the object's centre cell at the anchor's level.
        gx, gy: (G, N) int64, the cell of each slot (meaningless where not ``inside``).
        inside: (G, N) bool, the cell lies inside the grid.
        class_idx: (G,) int64 or None.
        pred: (G, N, 4) float32, xyxy, input pixels, or None (box-only).
        iou: (G, N) float32, plain IoU of prediction and object; -inf where not ``has_pred``.
        q: (G, N) float32, the chosen ``--iou`` kind (IoU, GIoU, DIoU or CIoU); -inf where not ``has_pred``.
        score: (G, N) float32, objectness x probability of the object's class (the class-aware score).
        obj, cls_prob: (G, N) float32, sigmoid objectness and class probability.
        has_pred: (G, N) bool, the slot is inside the grid and its prediction is valid (finite box,
            objectness and class probability: :func:`cocostat.boxes.valid_predictions`).
    """

    grid: AnchorGrid
    boxes: Tensor
    image: Tensor
    anchor: Tensor
    level: Tensor
    dx: Tensor
    dy: Tensor
    gx: Tensor
    gy: Tensor
    inside: Tensor
    class_idx: Tensor | None = None
    pred: Tensor | None = None
    iou: Tensor | None = None
    q: Tensor | None = None
    score: Tensor | None = None
    obj: Tensor | None = None
    cls_prob: Tensor | None = None
    has_pred: Tensor | None = None

    @property
    def num_objects(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    @property
    def has_predictions(self) -> bool:
        return self.pred is not None

    def predictions(self, needed_by: str = "this analysis") -> SlotPredictions:
        """The prediction fields, all present (the candidate layout, :func:`candidate_slots`).

        Raises:
            OptionError: the slots are box-only (:func:`grid_slots`): "``needed_by`` needs predictions: give
                --predictions DIR or --cfg FILE --weights FILE".
        """
        if (
            self.pred is None
            or self.iou is None
            or self.q is None
            or self.score is None
            or self.obj is None
            or self.cls_prob is None
            or self.has_pred is None
        ):
            raise OptionError(f"{needed_by} needs predictions: {GIVE_PREDICTIONS}")
        return SlotPredictions(self.pred, self.iou, self.q, self.score, self.obj, self.cls_prob, self.has_pred)

    def _t(self, a, dtype=torch.int64) -> Tensor:
        return torch.as_tensor(np.asarray(a), dtype=dtype, device=self.device)

    @cached_property
    def is_centre(self) -> Tensor:
        """(N,) bool: the column is the object's centre cell (dx = dy = 0)."""
        return (self.dx == 0) & (self.dy == 0)

    @cached_property
    def stride(self) -> Tensor:
        """(N,) float64, input pixels per cell of each column's level."""
        return self._t(self.grid.strides, torch.float64)[self.level]

    @cached_property
    def anchor_wh(self) -> Tensor:
        """(N, 2) float64, anchor width and height of each column, input pixels."""
        return self._t(self.grid.wh, torch.float64)[self.anchor]

    @cached_property
    def object_wh(self) -> Tensor:
        """(G, 2) float64, object width and height (negative sides clamped to 0)."""
        return (self.boxes[:, 2:] - self.boxes[:, :2]).clamp(min=0)

    @cached_property
    def object_centre(self) -> Tensor:
        """(G, 2) float64, object centre, input pixels."""
        return 0.5 * (self.boxes[:, :2] + self.boxes[:, 2:])

    @cached_property
    def centre(self) -> Tensor:
        """(G, N, 2) float64, slot centre ``((gx + 0.5) s, (gy + 0.5) s)``, input pixels."""
        s = self.stride[None, :]
        return torch.stack([(self.gx + 0.5) * s, (self.gy + 0.5) * s], dim=-1)

    @cached_property
    def wh_iou_per_anchor(self) -> Tensor:
        """(G, A) float64, wh-IoU of object g and anchor a (both centred)."""
        return pairwise_wh_iou(self.object_wh, self._t(self.grid.wh, torch.float64))

    @cached_property
    def wh_iou(self) -> Tensor:
        """(G, N) float64, wh-IoU of object and column anchor (both centred), whatever the cell."""
        return self.wh_iou_per_anchor[:, self.anchor]

    @cached_property
    def anchor_iou(self) -> Tensor:
        """(G, N) float64, IoU of the anchor box centred at the slot centre with the object."""
        half = 0.5 * self.anchor_wh[None, :, :]  # (1, N, 2)
        abox = torch.cat([self.centre - half, self.centre + half], dim=-1)  # (G, N, 4)
        return matched_iou(abox, self.boxes[:, None, :].expand_as(abox), "iou")

    def centre_inside(self, eps: float) -> Tensor:
        """(G, N) bool: the slot centre lies inside the object by more than ``eps`` px on every side."""
        c, b = self.centre, self.boxes[:, None, :]
        return ((c - b[..., :2]).amin(-1) > eps) & ((b[..., 2:] - c).amin(-1) > eps)

    @cached_property
    def key(self) -> Tensor:
        """(G, N) int64, flat slot index in the image's grid (see :func:`slot_count`); -1 outside."""
        t = {k: self._t(v)[self.anchor] for k, v in _anchor_tables(self.grid).items()}  # each (N,)
        key = t["offset"] + (self.gy * t["side"] + self.gx) * t["per_level"] + t["local"]
        return torch.where(self.inside, key, torch.full_like(key, -1))

    @cached_property
    def order(self) -> Tensor:
        """(N,) int64: the columns sorted by slot index (level, row, column, anchor in level).

        The same permutation for every object, since ``gy = centre_y + dy``: ties between slots go
        to the one earlier in this order (the lower flat index).
        """
        local = _anchor_tables(self.grid)["local"]
        lv, dy, dx, an = (v.cpu().numpy() for v in (self.level, self.dy, self.dx, self.anchor))
        return self._t(np.lexsort((local[an], dx, dy, lv)))

    def valid(self) -> Tensor:
        """(G, N) bool: slots an assigner may pick: inside the grid, and with a finite prediction if any."""
        return self.has_pred if self.has_pred is not None else self.inside


def _layout(grid, radius: int, device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(anchor, level, dx, dy), each (N,) int64, N = A (2r+1)^2, in (anchor, dy, dx) order."""
    offs = torch.arange(-radius, radius + 1, device=device)
    dy, dx = (v.reshape(-1) for v in torch.meshgrid(offs, offs, indexing="ij"))
    A, C = grid.num_anchors, dy.numel()
    anchor = torch.arange(A, device=device).repeat_interleave(C)
    level = torch.as_tensor(grid.level, device=device)[anchor]
    return anchor, level, dx.repeat(A), dy.repeat(A)


def centre_cells(boxes: Tensor, grid) -> Tensor:
    """(G, L, 2) int64: the cell (gx, gy) holding each object's centre at each level, clamped to the grid."""
    strides = torch.as_tensor(grid.strides, dtype=torch.float64, device=boxes.device)  # (L,)
    side = torch.as_tensor(grid.grid, dtype=torch.float64, device=boxes.device)  # (L,)
    gxy = (0.5 * (boxes[:, :2] + boxes[:, 2:]))[:, None, :] / strides[None, :, None]  # (G, L, 2)
    return torch.minimum(gxy.floor().clamp(min=0), side[None, :, None] - 1).long()


def grid_slots(boxes: Tensor, grid, radius: int, image: Tensor | None = None, class_idx: Tensor | None = None) -> Slots:
    """Every slot within ``radius`` cells (Chebyshev) of each object's centre cell, at every level.

    Args:
        boxes: (G, 4) float, xyxy, input pixels; its device is used (computed in float64).
        grid: the anchor grid.
        radius: r; each object gets N = A (2r+1)^2 columns, cells outside the grid marked not ``inside``.
        image: (G,) int64 dense image index (default: every object its own image).
    """
    b = boxes.to(torch.float64)
    G, dev = b.shape[0], b.device
    anchor, level, dx, dy = _layout(grid, int(radius), dev)
    cell = centre_cells(b, grid)  # (G, L, 2)
    gx = cell[:, level, 0] + dx[None, :]  # (G, N)
    gy = cell[:, level, 1] + dy[None, :]
    side = torch.as_tensor(grid.grid, device=dev)[level][None, :]  # (1, N)
    inside = (gx >= 0) & (gy >= 0) & (gx < side) & (gy < side)
    if image is None:
        image = torch.arange(G, device=dev)
    return Slots(
        grid, b, image.to(dev), anchor, level, dx, dy, gx, gy, inside, None if class_idx is None else class_idx.to(dev)
    )


def candidate_slots(
    boxes: Tensor,
    grid,
    arrays,
    image: Tensor,
    *,
    iou: IouKind = "iou",
    q: Tensor | None = None,
    plain: Tensor | None = None,
) -> Slots:
    """The stored candidate layout of a predictions table as :class:`Slots`.

    Args:
        boxes: (G, 4) float, xyxy, input pixels; its device is used.
        arrays: a :class:`~cocostat.candidates.CandidateArrays` (numpy) or any object with the same
            attributes as tensors (``anchor``, ``level``, ``dx``, ``dy``, ``gx``, ``gy``, ``valid``,
            ``pred``, ``obj``, ``cls_prob``, ``class_idx``).
        image: (G,) int64 dense image index.
        iou: the IoU kind of ``q``; ``q`` and ``plain`` may be given when already computed.
    """
    dev = boxes.device

    def t(a, dtype):
        if isinstance(a, Tensor):
            return a.to(device=dev, dtype=dtype)
        a = np.ascontiguousarray(a)
        return torch.from_numpy(a if a.flags.writeable else a.copy()).to(device=dev, dtype=dtype)

    b = boxes.to(torch.float64)
    pred = t(arrays.pred, torch.float32)  # (G, N, 4)
    obj, cls_prob = t(arrays.obj, torch.float32), t(arrays.cls_prob, torch.float32)
    inside = t(arrays.valid, torch.bool)
    gt32 = b.to(torch.float32)[:, None, :]
    if plain is None:
        plain = matched_iou(pred, gt32, "iou")
    if q is None:
        q = plain if iou == "iou" else matched_iou(pred, gt32, iou)
    has_pred = inside & valid_predictions(pred, obj, cls_prob)  # the one validity rule
    neg = torch.tensor(-math.inf, dtype=torch.float32, device=dev)
    return Slots(
        grid,
        b,
        image.to(dev),
        t(arrays.anchor, torch.int64),
        t(arrays.level, torch.int64),
        t(arrays.dx, torch.int64),
        t(arrays.dy, torch.int64),
        t(arrays.gx, torch.int64),
        t(arrays.gy, torch.int64),
        inside,
        t(arrays.class_idx, torch.int64),
        pred,
        torch.where(has_pred, plain, neg),
        torch.where(has_pred, q, neg),
        torch.where(has_pred, obj * cls_prob, torch.zeros_like(obj)),
        obj,
        cls_prob,
        has_pred,
    )


# --------------------------------------------------------------------------------------------------
# Kernels the assigners share
# --------------------------------------------------------------------------------------------------
def topk_mask(score: Tensor, k, allowed: Tensor, order: Tensor, then: Tensor | None = None) -> Tensor:
    """(G, N) bool: each row's ``k`` allowed columns of highest ``score``.

    Args:
        score: (G, N) float; NaN counts as not allowed.
        k: an int or a (G,) int64 tensor (per-row k).
        allowed: (G, N) bool.
        order: (N,) int64, the tie-break order: among equal scores (and equal ``then``) the column
            earlier in ``order`` wins.
        then: (G, N) float or None, a second key, lower first, that breaks ties of ``score`` before ``order``.

    ``torch.topk`` finds each row's k-th score; only rows where that score is shared by more
    columns than remain to be taken are sorted in full (stable sorts in the tie-break order).
    """
    G, N = score.shape
    allowed = allowed & ~torch.isnan(score)
    kk = (k if isinstance(k, Tensor) else torch.full((G,), int(k), device=score.device)).long().clamp(0, N)
    if G == 0 or N == 0 or int(kk.max()) == 0:
        return torch.zeros_like(allowed)
    s = score.masked_fill(~allowed, -math.inf)
    top = torch.topk(s, int(kk.max()), dim=1).values  # (G, kmax), descending
    kth = top.gather(1, (kk - 1).clamp(min=0)[:, None])  # (G, 1), each row's k-th score
    sure = (s > kth) & allowed
    tie = (s == kth) & allowed
    need = kk - sure.sum(1)  # (G,) columns still to take from the tie
    out = sure | (tie & (tie.sum(1) <= need)[:, None])
    hard = torch.nonzero((tie.sum(1) > need) & (need > 0)).reshape(-1)  # rows whose tie must be broken
    if hard.numel():
        out[hard] = _topk_sorted(score[hard], kk[hard], allowed[hard], order, None if then is None else then[hard])
    return out & (kk > 0)[:, None]


def _topk_sorted(score: Tensor, kk: Tensor, allowed: Tensor, order: Tensor, then: Tensor | None) -> Tensor:
    """:func:`topk_mask` by full stable sorts (the rows with ties at the k-th score)."""
    G, N = score.shape
    s = score[:, order].masked_fill(~allowed[:, order], -math.inf)  # (G, N), columns in tie-break order
    if then is None:
        idx = torch.sort(s, dim=1, descending=True, stable=True).indices  # (G, N)
    else:  # two stable sorts, the second key first
        idx = torch.sort(then[:, order], dim=1, stable=True).indices  # (G, N)
        idx = idx.gather(1, torch.sort(s.gather(1, idx), dim=1, descending=True, stable=True).indices)
    rank = torch.empty_like(idx)
    rank.scatter_(1, idx, torch.arange(N, device=score.device).expand(G, N).contiguous())
    keep = (rank < kk[:, None]) & allowed[:, order]  # (G, N) in tie-break order
    out = torch.zeros_like(keep)
    out[:, order] = keep
    return out


def resolve_conflicts(slots: Slots, pos: Tensor, metric: Tensor, *, higher: bool = True) -> Tensor:
    """A slot that is positive for several objects of one image stays with one of them.

    The object with the highest ``metric`` (lowest with ``higher=False``) keeps it; ties go to the
    object first in the input order (annotation order within an image). Vectorised over every
    image at once: each positive is keyed by ``image x slots per image + flat slot index``.

    Args:
        pos: (G, N) bool. metric: (G, N) float.

    Returns:
        (G, N) bool, ``pos`` with the losing claims removed.
    """
    g, n = torch.nonzero(pos, as_tuple=True)  # (P,)
    if g.numel() == 0:
        return pos
    code = slots.image[g] * slot_count(slots.grid) + slots.key[g, n]  # (P,)
    m = metric[g, n].to(torch.float64)
    m = -m if higher else m
    # sort by (code, metric best first, object index): three stable sorts, last key first
    idx = torch.argsort(g, stable=True)
    idx = idx[torch.argsort(m[idx], stable=True)]
    idx = idx[torch.argsort(code[idx], stable=True)]
    c = code[idx]
    first = torch.ones_like(c, dtype=torch.bool)
    first[1:] = c[1:] != c[:-1]
    out = torch.zeros_like(pos)
    out[g[idx[first]], n[idx[first]]] = True
    return out


def member(values: Tensor, pool: Tensor) -> Tensor:
    """``values`` (any shape, int64) found in ``pool`` ((P,) int64): ``torch.isin`` by sort and binary search.

    (Several times faster than ``torch.isin`` on the CPU when ``values`` is large and ``pool`` small.)
    """
    if pool.numel() == 0:
        return torch.zeros_like(values, dtype=torch.bool)
    pool = torch.sort(pool).values
    at = torch.searchsorted(pool, values.reshape(-1)).clamp(max=pool.numel() - 1)
    return (pool[at] == values.reshape(-1)).reshape(values.shape)


def matched_anchors(slots: Slots, pos: Tensor) -> Tensor:
    """(G, A) bool: anchor a has at least one positive slot for object g."""
    A = slots.grid.num_anchors
    out = torch.zeros(pos.shape[0], A, dtype=torch.int64, device=pos.device)
    out.index_add_(1, slots.anchor, pos.long())
    return out > 0


def positive_keys(slots: Slots, pos: Tensor) -> tuple[Tensor, Tensor]:
    """(object row (P,), flat slot index (P,)) of every positive, int64."""
    g, n = torch.nonzero(pos, as_tuple=True)
    return g, slots.key[g, n]


# --------------------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Assigner:
    """A label assigner: a configured callable ``positives(slots) -> (G, N) bool``.

    Subclasses set the class attributes ``name`` (the registry name), ``summary`` (one line) and
    ``needs_predictions``, take their options as dataclass fields, check them in
    ``__post_init__`` (raising :class:`~cocostat.errors.OptionError`), and implement
    :meth:`positives`. Box-only assigners also say how far from the centre cell a positive can lie
    (:meth:`reach`); prediction-aware ones say which slots they choose from (:meth:`region`, and
    :meth:`region_size` on the whole grid, to count what the stored neighbourhood leaves out).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    needs_predictions: ClassVar[bool] = False
    #: the fields the commands' shared options (``--iou-t``, ``--ratio-t``, ``--topk``, ``--alpha``)
    #: set; None: every field of that name.
    cli_options: ClassVar[tuple[str, ...] | None] = None

    def positives(self, slots: Slots) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reach(self, grid) -> int:
        """Box-only: r such that every positive lies within r cells (Chebyshev) of the centre cell."""
        return 0

    def region(self, slots: Slots) -> Tensor:
        """(G, N) bool: the slots the assigner chooses among (default: every valid slot)."""
        return slots.valid()

    def region_size(self, boxes: Tensor, grid) -> Tensor:
        """(G,) int64: how many slots of the whole grid :meth:`region` covers (default: all of them)."""
        return torch.full((boxes.shape[0],), slot_count(grid), dtype=torch.int64, device=boxes.device)

    def options(self) -> dict:
        """The assigner's options (its fields) as a JSON-safe dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> str:
        """``name(option=value, ...)``."""
        opts = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.options().items())
        return f"{self.name}({opts})"

    def _need_predictions(self, slots: Slots) -> SlotPredictions:
        """The slots' prediction fields; an :class:`OptionError` naming this assigner if they have none."""
        return slots.predictions(f"the {self.name} assigner")


def check_unit(value: float, option: str, *, closed: bool = True) -> float:
    """``value`` if it lies in [0, 1] ([0, 1) with ``closed=False``), else an :class:`OptionError`.

    ``option`` is the Python parameter (``"iou_t"``); the CLI shows it as its flag."""
    ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
    if not (isinstance(value, (int, float)) and ok):
        raise OptionError(f"{option} must lie in [0, 1{']' if closed else ')'}, got {value}", param=option)
    return float(value)


def check_count(value: int, option: str) -> int:
    """``value`` if it is an integer >= 1, else an :class:`OptionError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise OptionError(f"{option} must be an integer >= 1, got {value!r}", param=option)
    return int(value)


def count_centres_in(rect: Tensor, grid) -> Tensor:
    """(G,) int64: slots of the whole grid whose centre lies strictly inside each rectangle.

    Args:
        rect: (G, 4) or (G, L, 4) (one per level) float64, xyxy, input pixels. Per level, the cells
            x with ``x1 < (x + 0.5) s < x2`` (and likewise y) inside the grid, times the level's anchors.
    """
    out = torch.zeros(rect.shape[0], dtype=torch.int64, device=rect.device)
    per_level = np.bincount(grid.level, minlength=grid.num_levels)
    for lv in range(grid.num_levels):  # a handful of levels, each vectorised over objects
        s, W = float(grid.strides[lv]), int(grid.grid[lv])
        r = rect if rect.ndim == 2 else rect[:, lv]
        lo = torch.floor(r[:, :2] / s - 0.5).clamp(min=-1) + 1  # first cell with centre > x1
        hi = torch.ceil(r[:, 2:] / s - 0.5).clamp(max=W) - 1  # last cell with centre < x2
        n = (hi - lo + 1).clamp(min=0).prod(-1)  # (G,)
        out += n.long() * int(per_level[lv])
    return out
