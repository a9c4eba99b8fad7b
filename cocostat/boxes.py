"""Vectorised box maths: format conversions, areas, IoU family, IoA, anchor wh-IoU, distances.

Formats (see the package docstring): ``xywh`` is COCO's top-left corner, width, height; ``xyxy``
the two corners; ``cxcywh`` the centre, width, height. Coordinates are pixels. The overlap and
distance kernels take ``xyxy`` boxes and assume ``x2 >= x1`` and ``y2 >= y1``; they do not check
values (that would force a device sync), :mod:`cocostat.data` validates annotations on load.

Every kernel comes in two shapes that share one implementation:

- ``pairwise_*(boxes1, boxes2)``: ``boxes1`` (N, 4), ``boxes2`` (M, 4) -> (N, M) with
  ``out[i, j] = f(boxes1[i], boxes2[j])``;
- ``matched_*(boxes1, boxes2)``: both (..., 4) and broadcastable -> (...,) elementwise, so
  ``matched_f(a, b) == diag(pairwise_f(a, b))``.

Kernels are torch code that follows the inputs' device and dtype and never chooses a device.
Every public function also accepts numpy arrays or nested lists and then returns numpy. If one
input is a tensor and the other is not, the other is moved to the tensor's device and the result
is a tensor. Empty inputs give correctly shaped empty outputs: (0, M), (N, 0) or (0,).

Dtypes (as torchvision's ``_upcast``): the inputs' common dtype decides. float32 and float64
compute and return in that dtype. float16 and bfloat16 compute in float32 (their areas overflow
or round away: the IoU of [0, 0, 300, 300] and [1, 1, 301, 300] is 0.9901, where float16
arithmetic gives 0.0 and bfloat16 1.0) and return the input dtype. Integer (and bool) inputs
compute in float64, so whole-pixel boxes of any size are exact up to the last rounding, and return
``torch.get_default_dtype()`` (float32 unless changed) for tensors, float64 for numpy arrays and
lists (numpy's own default). The error of a result is then the rounding to its dtype: within
``torch.finfo(dtype).eps`` relative to the result (times the box size for distances).

Validity (decided here, once, for every module): a box or prediction is *valid* when its four
coordinates, and its scores if it has any, are finite (:func:`valid_predictions`). Every kernel
returns NaN for a pair that holds a non-finite box, whatever the kernel (IoU, GIoU, DIoU, CIoU,
IoA, gap, centre distance), so no kind can mistake an overflowed box for a poor match; callers
drop invalid predictions with :func:`valid_predictions` before they rank anything.

Definitions (IoU family over boxes ``a`` and ``b``; ``C`` is the smallest enclosing box):

- IoU  = |a & b| / |a | b|
- GIoU = IoU - (|C| - |a | b|) / |C|                          (Rezatofighi et al., 2019)
- DIoU = IoU - rho^2 / c^2; rho is the distance between the centres, c the diagonal of C
- CIoU = DIoU - alpha * v; v = 4 / pi^2 * (atan2(w_b, h_b) - atan2(w_a, h_a))^2 and
  alpha = v / (1 - IoU + v)                                   (Zheng et al., 2020)
- IoA  = |a & b| / min(|a|, |b|), the overlap seen from the smaller box (occlusion studies)
- wh-IoU = min(w) * min(h) / (w_a * h_a + w_b * h_b - min(w) * min(h)): the IoU of two boxes
  aligned at their centres, as used to match ground truths to anchors
- gap  = sqrt(max(0, max(x1a, x1b) - min(x2a, x2b))^2 + max(0, max(y1a, y1b) - min(y2a, y2b))^2),
  the distance between the closest points of the two boxes; 0 when they touch or overlap
- centre distance = Euclidean distance between the two centres

Degenerate rules: whenever a denominator is 0 (two zero-area boxes, a union of 0, an enclosing box
of area or diagonal 0, ``1 - IoU + v == 0``, a smaller box of area 0) the ratio is 0 and the
penalty term is 0, never NaN (NaN appears only for a non-finite input, see Validity). So two identical
zero-area boxes have IoU 0, two identical points
have GIoU = DIoU = CIoU = 0, and two disjoint zero-area boxes have IoU 0 and GIoU -1. Aspect
angles use ``atan2(w, h)``, so zero-size boxes give no NaN either. The IoU of two identical boxes
of positive area is exactly 1.

Sizes (the ``(w, h)`` kernels, anchors against box sizes; sizes >= 0):

- wh-IoU (above), :func:`pairwise_wh_iou`;
- side ratio = ``min over the two sides of min(s_a, s_b) / max(s_a, s_b)``, in [0, 1]: 1 for equal
  sizes, 1/4 when one side is four times the other (0 when a side is 0),
  :func:`pairwise_side_ratio`. The one direction used everywhere: a size pair is *within ratio_t*
  when ``side_ratio > 1 / ratio_t``, which is ultralytics' ``max(r, 1/r) < ratio_t`` for
  ``r = w / w_a`` and ``r = h / h_a`` (YOLOv5 ``build_targets``) and its autoanchor metric
  ``min(r, 1/r)`` (``x > 1 / thr``) written once.

:func:`wh_iou` and :func:`side_ratio` are the bare tensor kernels (broadcast (..., 2) -> (...,),
no conversion or checks) for hot loops such as the anchor search; the public ``pairwise_*`` and
``matched_*`` functions wrap them.

Many pairs of one box set (every pair within an image): :class:`BoxSet` gives
:func:`matched_overlaps` of index pairs bit for bit, with each box's area and the validity check
worked out once per box instead of once per pair.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, Literal, NamedTuple, TypeVar, cast, overload

import numpy as np
import torch
from torch import Tensor

from cocostat.errors import OptionError

__all__ = [
    "IOU_KINDS",
    "BoxSet",
    "IouKind",
    "box_area",
    "cpu_threads",
    "cxcywh_to_xywh",
    "cxcywh_to_xyxy",
    "iou_kind",
    "matched_center_distance",
    "matched_gap",
    "matched_ioa",
    "matched_iou",
    "matched_overlaps",
    "matched_side_ratio",
    "matched_wh_iou",
    "pairwise_center_distance",
    "pairwise_gap",
    "pairwise_ioa",
    "pairwise_iou",
    "pairwise_side_ratio",
    "pairwise_wh_iou",
    "side_ratio",
    "valid_predictions",
    "wh_iou",
    "xywh_to_cxcywh",
    "xywh_to_xyxy",
    "xyxy_to_cxcywh",
    "xyxy_to_xywh",
]

NumpyLike = np.ndarray | Sequence
"""A numpy array or a nested list of numbers: what a kernel hands back as numpy."""

ArrayLike = Tensor | NumpyLike
"""A torch tensor, a numpy array or a nested list of numbers.

The kernels are typed with overloads to match the module docs: a tensor among the inputs gives a
tensor, numpy arrays and lists alone give numpy."""

IouKind = Literal["iou", "giou", "diou", "ciou"]
IOU_KINDS: tuple[str, ...] = ("iou", "giou", "diou", "ciou")

_FOUR_OVER_PI_SQ = 4.0 / math.pi**2


# --------------------------------------------------------------------------------------------
# numpy <-> torch round trip and input checks


class _Back(NamedTuple):
    """How a result goes back to the caller: as numpy or as a tensor, and in which dtype."""

    to_numpy: bool
    dtype: torch.dtype


_HALF = (torch.float16, torch.bfloat16)


def _compute_dtype(dtype: torch.dtype) -> tuple[torch.dtype, torch.dtype]:
    """(compute dtype, result dtype) for inputs of common tensor dtype ``dtype`` (module docs)."""
    if dtype in _HALF:
        return torch.float32, dtype
    if not dtype.is_floating_point:
        return torch.float64, torch.get_default_dtype()
    return dtype, dtype


def _as_tensors(arrays: dict[str, ArrayLike], last_dim: int) -> tuple[list[Tensor], _Back]:
    """Turn the named inputs into float tensors that share a compute dtype (and a device).

    Args:
        arrays: argument name -> tensor, numpy array or nested list; names appear in errors.
        last_dim: required size of the last dimension (4 for boxes, 2 for widths and heights).

    Returns:
        The tensors in the order given, upcast to the compute dtype (module docs, Dtypes), and how
        to hand results back (:func:`_out`). numpy inputs are wrapped with ``torch.from_numpy``
        without a copy whenever their dtype is already the compute dtype.
    """
    items = list(arrays.items())
    if not any(isinstance(a, Tensor) for _, a in items):
        arrs = [(name, _as_numeric_ndarray(name, a)) for name, a in items]
        dtype = np.result_type(*(a.dtype for _, a in arrs))
        if not np.issubdtype(dtype, np.floating):
            dtype = np.dtype(np.float64)  # ints and lists: numpy's default float
        out_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
        compute, _ = _compute_dtype(out_dtype)
        tensors = [_from_numpy(a.astype(dtype, copy=False)).to(compute) for _, a in arrs]
        back = _Back(True, out_dtype)
    else:
        ref = next(a for _, a in items if isinstance(a, Tensor))
        tensors = [
            a if isinstance(a, Tensor) else _from_numpy(_as_numeric_ndarray(name, a)).to(ref.device)
            for name, a in items
        ]
        common = tensors[0].dtype
        for t in tensors[1:]:
            common = torch.promote_types(common, t.dtype)
        compute, out_dtype = _compute_dtype(common)
        tensors = [t.to(compute) for t in tensors]
        back = _Back(False, out_dtype)
    for k, ((name, _), t) in enumerate(zip(items, tensors, strict=True)):
        if t.ndim == 1 and t.numel() == 0:  # an empty list: zero boxes
            tensors[k] = t = t.reshape(0, last_dim)
        if t.ndim == 0 or t.shape[-1] != last_dim:
            raise OptionError(f"{name} must have shape (..., {last_dim}), got shape {tuple(t.shape)}")
    return tensors, back


def _as_numeric_ndarray(name: str, a: ArrayLike) -> np.ndarray:
    """``np.asarray(a)``, refusing anything that is not made of real numbers."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise OptionError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    return arr


def _from_numpy(arr: np.ndarray) -> Tensor:
    """``torch.from_numpy`` without a copy, copying only what torch cannot wrap."""
    if not arr.flags.writeable or any(s < 0 for s in arr.strides):
        arr = np.array(arr)  # read-only or negative strides: torch needs its own copy
    return torch.from_numpy(arr)


def _cast(t: Tensor, back: _Back) -> Tensor:
    """A result in the caller's dtype (bools stay bool)."""
    return t.to(back.dtype) if t.is_floating_point() else t


def _out(t: Tensor, back: _Back) -> Tensor | np.ndarray:
    """Hand a result back in the caller's array type and dtype (bools stay bool)."""
    return _cast(t, back).numpy() if back.to_numpy else _cast(t, back)


def _out_all(results: dict[str, Tensor], back: _Back) -> dict[str, Tensor] | dict[str, np.ndarray]:
    """:func:`_out` of every value of a dict of results."""
    if back.to_numpy:
        return {name: _cast(t, back).numpy() for name, t in results.items()}
    return {name: _cast(t, back) for name, t in results.items()}


def _check_pairwise(name1: str, t1: Tensor, name2: str, t2: Tensor, fmt: str) -> None:
    for name, t in ((name1, t1), (name2, t2)):
        if t.ndim != 2:
            raise OptionError(f"{name} must have shape (N, {t.shape[-1]}) in {fmt} format, got shape {tuple(t.shape)}")


def _check_matched(name1: str, t1: Tensor, name2: str, t2: Tensor) -> None:
    try:
        torch.broadcast_shapes(t1.shape[:-1], t2.shape[:-1])
    except RuntimeError:
        raise OptionError(
            f"{name1} and {name2} must have broadcastable shapes (..., {t1.shape[-1]}), "
            f"got {tuple(t1.shape)} and {tuple(t2.shape)}"
        ) from None


def iou_kind(value: str, option: str = "kind") -> IouKind:
    """``value`` as an :data:`IouKind` if it is one of :data:`IOU_KINDS`, else an :class:`OptionError`.

    ``option`` is the Python parameter the message names (``"iou"`` in the audits)."""
    if value not in IOU_KINDS:
        raise OptionError(f"{option} must be one of {', '.join(IOU_KINDS)}, got {value!r}", param=option)
    return cast(IouKind, value)  # checked just above


# --------------------------------------------------------------------------------------------
# format conversions


@overload
def xywh_to_xyxy(boxes: Tensor) -> Tensor: ...
@overload
def xywh_to_xyxy(boxes: NumpyLike) -> np.ndarray: ...


def xywh_to_xyxy(boxes: ArrayLike) -> Tensor | np.ndarray:
    """COCO ``[x, y, w, h]`` (top-left corner) to corners ``[x1, y1, x2, y2]``.

    Args:
        boxes: (..., 4) float, xywh, pixels.

    Returns:
        (..., 4) float, xyxy, pixels; same array type, dtype and device as the input.
    """
    (b,), back = _as_tensors({"boxes": boxes}, 4)
    x, y, w, h = b.unbind(-1)
    return _out(torch.stack((x, y, x + w, y + h), dim=-1), back)


@overload
def xyxy_to_xywh(boxes: Tensor) -> Tensor: ...
@overload
def xyxy_to_xywh(boxes: NumpyLike) -> np.ndarray: ...


def xyxy_to_xywh(boxes: ArrayLike) -> Tensor | np.ndarray:
    """Corners ``[x1, y1, x2, y2]`` to COCO ``[x, y, w, h]`` (top-left corner).

    Args:
        boxes: (..., 4) float, xyxy, pixels.

    Returns:
        (..., 4) float, xywh, pixels; same array type, dtype and device as the input.
    """
    (b,), back = _as_tensors({"boxes": boxes}, 4)
    x1, y1, x2, y2 = b.unbind(-1)
    return _out(torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1), back)


@overload
def cxcywh_to_xyxy(boxes: Tensor) -> Tensor: ...
@overload
def cxcywh_to_xyxy(boxes: NumpyLike) -> np.ndarray: ...


def cxcywh_to_xyxy(boxes: ArrayLike) -> Tensor | np.ndarray:
    """Centre ``[cx, cy, w, h]`` to corners ``[x1, y1, x2, y2]``.

    Args:
        boxes: (..., 4) float, cxcywh, pixels.

    Returns:
        (..., 4) float, xyxy, pixels; same array type, dtype and device as the input.
    """
    (b,), back = _as_tensors({"boxes": boxes}, 4)
    cx, cy, w, h = b.unbind(-1)
    hw, hh = 0.5 * w, 0.5 * h
    return _out(torch.stack((cx - hw, cy - hh, cx + hw, cy + hh), dim=-1), back)


@overload
def xyxy_to_cxcywh(boxes: Tensor) -> Tensor: ...
@overload
def xyxy_to_cxcywh(boxes: NumpyLike) -> np.ndarray: ...


def xyxy_to_cxcywh(boxes: ArrayLike) -> Tensor | np.ndarray:
    """Corners ``[x1, y1, x2, y2]`` to centre ``[cx, cy, w, h]``.

    Args:
        boxes: (..., 4) float, xyxy, pixels.

    Returns:
        (..., 4) float, cxcywh, pixels; same array type, dtype and device as the input.
    """
    (b,), back = _as_tensors({"boxes": boxes}, 4)
    x1, y1, x2, y2 = b.unbind(-1)
    out = torch.stack((0.5 * (x1 + x2), 0.5 * (y1 + y2), x2 - x1, y2 - y1), dim=-1)
    return _out(out, back)


@overload
def xywh_to_cxcywh(boxes: Tensor) -> Tensor: ...
@overload
def xywh_to_cxcywh(boxes: NumpyLike) -> np.ndarray: ...


def xywh_to_cxcywh(boxes: ArrayLike) -> Tensor | np.ndarray:
    """COCO ``[x, y, w, h]`` (top-left corner) to centre ``[cx, cy, w, h]``.

    Args:
        boxes: (..., 4) float, xywh, pixels.

    Returns:
        (..., 4) float, cxcywh, pixels; same array type, dtype and device as the input.
    """
    (b,), back = _as_tensors({"boxes": boxes}, 4)
    x, y, w, h = b.unbind(-1)
    return _out(torch.stack((x + 0.5 * w, y + 0.5 * h, w, h), dim=-1), back)


@overload
def cxcywh_to_xywh(boxes: Tensor) -> Tensor: ...
@overload
def cxcywh_to_xywh(boxes: NumpyLike) -> np.ndarray: ...


def cxcywh_to_xywh(boxes: ArrayLike) -> Tensor | np.ndarray:
    """Centre ``[cx, cy, w, h]`` to COCO ``[x, y, w, h]`` (top-left corner).

    Args:
        boxes: (..., 4) float, cxcywh, pixels.

    Returns:
        (..., 4) float, xywh, pixels; same array type, dtype and device as the input.
    """
    (b,), back = _as_tensors({"boxes": boxes}, 4)
    cx, cy, w, h = b.unbind(-1)
    return _out(torch.stack((cx - 0.5 * w, cy - 0.5 * h, w, h), dim=-1), back)


@overload
def box_area(boxes: Tensor) -> Tensor: ...
@overload
def box_area(boxes: NumpyLike) -> np.ndarray: ...


def box_area(boxes: ArrayLike) -> Tensor | np.ndarray:
    """Area of each box.

    Args:
        boxes: (..., 4) float, xyxy, pixels.

    Returns:
        (...,) float, square pixels; same array type, dtype and device as the input.
    """
    (b,), back = _as_tensors({"boxes": boxes}, 4)
    return _out(_area(b), back)


# --------------------------------------------------------------------------------------------
# shared kernels; b1 and b2 are broadcastable (..., 4) xyxy tensors of one dtype and device


class _Overlap(NamedTuple):
    """Pieces of two broadcast boxes that every overlap kernel is built from; all (...,)."""

    inter_w: Tensor  # min(x2) - max(x1), negative when the boxes are apart along x
    inter_h: Tensor  # min(y2) - max(y1), negative when the boxes are apart along y
    inter: Tensor  # intersection area, >= 0
    area1: Tensor
    area2: Tensor
    bad: Tensor | None  # bool: a box of the pair is not finite (module docs, Validity); None: no pair


def _area(b: Tensor) -> Tensor:
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den``, and 0 where ``den <= 0`` (no NaN in the gradient either).

    Only a zero (or, for inverted boxes, negative) denominator becomes 0; a NaN or infinite one
    divides as usual, so a non-finite input is never turned into a plausible 0.
    """
    zero = den <= 0  # False for NaN
    return (num / torch.where(zero, 1.0, den)).masked_fill_(zero, 0.0)


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring torch's thread count afterwards.

    For loops of many small CPU ops (~10^5 elements), where intra-op threads cost more in
    hand-offs than they give, and much more on a busy machine (OpenMP spin-waits).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _finite(b: Tensor) -> Tensor:
    """(...,) bool: all of the last dimension is finite.

    ``max |b| < inf`` (NaN propagates through ``amax``): the same answer as
    ``isfinite(b).all(-1)``, four times faster on (n, 4) because it reduces floats, not bools.
    """
    if not b.is_floating_point():
        return torch.ones(b.shape[:-1], dtype=torch.bool, device=b.device)
    return b.abs().amax(dim=-1) < math.inf  # NaN propagates through amax


def _overlap(
    b1: Tensor, b2: Tensor, area1: Tensor | None = None, area2: Tensor | None = None, tame: bool = False
) -> _Overlap:
    """The shared pieces; ``area1``/``area2`` (...,) if already known (``_area`` of the boxes),
    ``tame``: the caller knows every coordinate is finite and below :func:`_tame_bound`, so no
    pair can be invalid or overflow and ``bad`` is None (no NaN masks to apply)."""
    # per coordinate rather than (..., 2) blocks and prod(dim=-1): elementwise ops only, which
    # torch runs much faster than reductions over a dimension of 2 (same float operations)
    iw = torch.minimum(b1[..., 2], b2[..., 2]) - torch.maximum(b1[..., 0], b2[..., 0])  # (...,)
    ih = torch.minimum(b1[..., 3], b2[..., 3]) - torch.maximum(b1[..., 1], b2[..., 1])  # (...,)
    inter = iw.clamp(min=0) * ih.clamp(min=0)  # (...,)
    area1 = _area(b1) if area1 is None else area1
    area2 = _area(b2) if area2 is None else area2
    # a box's area is finite exactly when its four coordinates are (an inf or NaN side makes the
    # area inf or NaN, inf * 0 included), unless a finite box is so large that its area overflows:
    # two ops per pair instead of an isfinite test of eight coordinates
    bad = None if tame else ~torch.isfinite(area1 + area2)  # (...,)
    return _Overlap(iw, ih, inter, area1, area2, bad)


def _tame_bound(dtype: torch.dtype) -> float:
    """Coordinates of magnitude at most this make no inf or NaN in any overlap kernel.

    With ``|coordinate| <= M``: areas are at most ``4 M^2`` (their sums ``8 M^2``), twice the centre
    offsets at most ``4 M`` (``dx^2 + dy^2 <= 32 M^2``), so ``M = sqrt(max / 32)`` keeps every
    intermediate finite: about 2.4e153 in float64, 3.3e18 in float32.
    """
    return math.sqrt(torch.finfo(dtype).max / 32)


def _nan_where(out: Tensor, bad: Tensor | None) -> Tensor:
    """``out`` with NaN (in place) where ``bad``; ``out`` itself when ``bad`` is None."""
    return out if bad is None else out.masked_fill_(bad, math.nan)


def _iou_kernel(b1: Tensor, b2: Tensor, kind: str, ov: _Overlap | None = None) -> Tensor:
    ov = _overlap(b1, b2) if ov is None else ov
    union = ov.area1 + ov.area2 - ov.inter  # (...,)
    iou = _safe_div(ov.inter, union).clamp(max=1.0)  # clamp: a rounding ulp above 1
    return _nan_where(_iou_kinds(b1, b2, kind, ov, union, iou), ov.bad)


def _iou_kinds(b1: Tensor, b2: Tensor, kind: str, ov: _Overlap, union: Tensor, iou: Tensor) -> Tensor:
    """IoU, or its GIoU, DIoU, CIoU penalties applied (a fresh tensor in every case)."""
    if kind == "iou":
        return iou
    hull_wh = torch.maximum(b1[..., 2:], b2[..., 2:]) - torch.minimum(b1[..., :2], b2[..., :2])
    if kind == "giou":
        hull = hull_wh.prod(dim=-1)  # (...,)
        # |C| >= |a | b| always; clamp so rounding cannot push GIoU above IoU
        return iou - _safe_div((hull - union).clamp(min=0), hull)
    diag_sq = hull_wh.square().sum(dim=-1)  # (...,) c^2
    # twice the centre offsets: (x1a + x2a) - (x1b + x2b), same for y
    d2 = (b1[..., :2] + b1[..., 2:]) - (b2[..., :2] + b2[..., 2:])  # (..., 2)
    rho_sq = 0.25 * d2.square().sum(dim=-1)  # (...,)
    diou = iou - _safe_div(rho_sq, diag_sq)
    if kind == "diou":
        return diou
    wh1 = b1[..., 2:] - b1[..., :2]  # (..., 2)
    wh2 = b2[..., 2:] - b2[..., :2]  # (..., 2)
    angle1 = torch.atan2(wh1[..., 0], wh1[..., 1])
    angle2 = torch.atan2(wh2[..., 0], wh2[..., 1])
    v = _FOUR_OVER_PI_SQ * (angle2 - angle1).square()  # (...,)
    alpha = _safe_div(v, 1.0 - iou + v)
    return diou - alpha * v


def _ioa_kernel(b1: Tensor, b2: Tensor, ov: _Overlap | None = None) -> Tensor:
    ov = _overlap(b1, b2) if ov is None else ov
    return _nan_where(_safe_div(ov.inter, torch.minimum(ov.area1, ov.area2)).clamp_(max=1.0), ov.bad)


def _gap_kernel(b1: Tensor, b2: Tensor, ov: _Overlap | None = None) -> Tensor:
    ov = _overlap(b1, b2) if ov is None else ov
    # min(iw, 0) is minus the gap along x (and squares alike): one op less than max(-iw, 0)
    gx, gy = ov.inter_w.clamp(max=0), ov.inter_h.clamp(max=0)  # (...,) each
    # not hypot: the same float operations as a plain loop
    gap = torch.sqrt(gx * gx + gy * gy)
    return gap if ov.bad is None else gap.masked_fill(ov.bad, math.nan)  # not in place: sqrt's grad needs it


def _center_distance_kernel(b1: Tensor, b2: Tensor, tame: bool = False) -> Tensor:
    # twice the centre offsets, per coordinate (elementwise ops only, as in _overlap)
    dx = (b1[..., 0] + b1[..., 2]) - (b2[..., 0] + b2[..., 2])  # (...,)
    dy = (b1[..., 1] + b1[..., 3]) - (b2[..., 1] + b2[..., 3])  # (...,)
    out = 0.5 * torch.sqrt(dx * dx + dy * dy)
    if tame:  # no coordinate is large enough to make an inf (see _overlap)
        return out
    # a non-finite coordinate makes dx or dy, so the distance, inf or NaN: NaN it is
    return out.masked_fill(out == math.inf, math.nan)  # NaN stays NaN


def wh_iou(wh1: Tensor, wh2: Tensor) -> Tensor:
    """Bare wh-IoU kernel: broadcastable (..., 2) float tensors (w, h >= 0) -> (...,).

    No conversion, upcast or checks (the public :func:`pairwise_wh_iou` does those): for hot
    loops. ``union >= inter >= 0`` for sizes >= 0 (also after rounding, which is monotone), and
    ``union == 0`` only when ``inter == 0``, so ``inter / max(union, tiny)`` is the IoU, 0 for two
    zero sizes, in [0, 1] without a clamp, at the cost of one pass rather than four.
    """
    inter = torch.minimum(wh1, wh2).prod(dim=-1)  # (...,)
    union = wh1.prod(dim=-1) + wh2.prod(dim=-1) - inter  # (...,)
    return inter / union.clamp(min=torch.finfo(union.dtype).tiny)


def side_ratio(wh1: Tensor, wh2: Tensor) -> Tensor:
    """Bare side-ratio kernel: broadcastable (..., 2) float tensors (w, h >= 0) -> (...,) in [0, 1].

    ``min over w, h of min(s1, s2) / max(s1, s2)`` (module docs, Sizes); 0 when a side is 0 in
    one size (and when both sizes have that side 0). No conversion or checks: for hot loops.
    """
    lo = torch.minimum(wh1, wh2)  # (..., 2)
    hi = torch.maximum(wh1, wh2)  # (..., 2)
    return (lo / hi.clamp(min=torch.finfo(hi.dtype).tiny)).amin(dim=-1)


def _nan_unless_finite(out: Tensor, ok: Tensor) -> Tensor:
    """``out`` with NaN where ``ok`` (broadcastable bool: both inputs finite) is False."""
    return out.masked_fill(~ok, math.nan)


def _pairwise(
    kernel: Callable[..., Tensor],
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    *args: str,
    last_dim: int = 4,
    fmt: str = "xyxy",
) -> Tensor | np.ndarray:
    """Run ``kernel`` on (N, 1, d) against (1, M, d) and return (N, M)."""
    (b1, b2), back = _as_tensors({"boxes1": boxes1, "boxes2": boxes2}, last_dim)
    _check_pairwise("boxes1", b1, "boxes2", b2, fmt)
    out = kernel(b1[:, None, :], b2[None, :, :], *args)  # (N, M)
    if last_dim == 2:  # the size kernels (box kernels NaN their non-finite pairs themselves)
        out = _nan_unless_finite(out, _finite(b1)[:, None] & _finite(b2)[None, :])
    return _out(out, back)


def _matched(
    kernel: Callable[..., Tensor],
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    *args: str,
    last_dim: int = 4,
) -> Tensor | np.ndarray:
    """Run ``kernel`` on two broadcastable (..., d) inputs and return (...,)."""
    (b1, b2), back = _as_tensors({"boxes1": boxes1, "boxes2": boxes2}, last_dim)
    _check_matched("boxes1", b1, "boxes2", b2)
    out = kernel(b1, b2, *args)  # (...,)
    if last_dim == 2:  # the size kernels (box kernels NaN their non-finite pairs themselves)
        out = _nan_unless_finite(out, _finite(b1) & _finite(b2))
    return _out(out, back)


# --------------------------------------------------------------------------------------------
# public overlap and distance kernels


@overload
def pairwise_iou(boxes1: Tensor, boxes2: ArrayLike, kind: IouKind = ...) -> Tensor: ...
@overload
def pairwise_iou(boxes1: NumpyLike, boxes2: Tensor, kind: IouKind = ...) -> Tensor: ...
@overload
def pairwise_iou(boxes1: NumpyLike, boxes2: NumpyLike, kind: IouKind = ...) -> np.ndarray: ...


def pairwise_iou(boxes1: ArrayLike, boxes2: ArrayLike, kind: IouKind = "iou") -> Tensor | np.ndarray:
    """IoU, GIoU, DIoU or CIoU of every box in ``boxes1`` with every box in ``boxes2``.

    Args:
        boxes1: (N, 4) float, xyxy, pixels.
        boxes2: (M, 4) float, xyxy, pixels.
        kind: ``"iou"``, ``"giou"``, ``"diou"`` or ``"ciou"`` (definitions in the module docs).

    Returns:
        (N, M) float, unitless; ``out[i, j] = kind(boxes1[i], boxes2[j])``. IoU lies in [0, 1],
        GIoU in [-1, 1], DIoU in [-1, 1], CIoU <= DIoU.

    Raises:
        OptionError: ``kind`` is unknown, or a shape is not (N, 4).
    """
    iou_kind(kind)
    return _pairwise(_iou_kernel, boxes1, boxes2, kind)


@overload
def matched_iou(boxes1: Tensor, boxes2: ArrayLike, kind: IouKind = ...) -> Tensor: ...
@overload
def matched_iou(boxes1: NumpyLike, boxes2: Tensor, kind: IouKind = ...) -> Tensor: ...
@overload
def matched_iou(boxes1: NumpyLike, boxes2: NumpyLike, kind: IouKind = ...) -> np.ndarray: ...


def matched_iou(boxes1: ArrayLike, boxes2: ArrayLike, kind: IouKind = "iou") -> Tensor | np.ndarray:
    """IoU, GIoU, DIoU or CIoU of matched pairs of boxes.

    Args:
        boxes1: (N, 4) float, xyxy, pixels (any broadcastable (..., 4) works).
        boxes2: (N, 4) float, xyxy, pixels.
        kind: ``"iou"``, ``"giou"``, ``"diou"`` or ``"ciou"``.

    Returns:
        (N,) float; ``out[i] = kind(boxes1[i], boxes2[i])``, the diagonal of :func:`pairwise_iou`.

    Raises:
        OptionError: ``kind`` is unknown, or the shapes do not broadcast.
    """
    iou_kind(kind)
    return _matched(_iou_kernel, boxes1, boxes2, kind)


@overload
def pairwise_ioa(boxes1: Tensor, boxes2: ArrayLike) -> Tensor: ...
@overload
def pairwise_ioa(boxes1: NumpyLike, boxes2: Tensor) -> Tensor: ...
@overload
def pairwise_ioa(boxes1: NumpyLike, boxes2: NumpyLike) -> np.ndarray: ...


def pairwise_ioa(boxes1: ArrayLike, boxes2: ArrayLike) -> Tensor | np.ndarray:
    """Intersection over the area of the smaller box, for every pair (occlusion studies).

    Args:
        boxes1: (N, 4) float, xyxy, pixels.
        boxes2: (M, 4) float, xyxy, pixels.

    Returns:
        (N, M) float in [0, 1]; ``out[i, j] = |b1 & b2| / min(|b1|, |b2|)`` with
        ``b1 = boxes1[i]``, ``b2 = boxes2[j]``; 1 when one box lies inside the other, 0 when the
        smaller box has area 0.
    """
    return _pairwise(_ioa_kernel, boxes1, boxes2)


@overload
def matched_ioa(boxes1: Tensor, boxes2: ArrayLike) -> Tensor: ...
@overload
def matched_ioa(boxes1: NumpyLike, boxes2: Tensor) -> Tensor: ...
@overload
def matched_ioa(boxes1: NumpyLike, boxes2: NumpyLike) -> np.ndarray: ...


def matched_ioa(boxes1: ArrayLike, boxes2: ArrayLike) -> Tensor | np.ndarray:
    """Intersection over the area of the smaller box, for matched pairs.

    Args:
        boxes1: (N, 4) float, xyxy, pixels (any broadcastable (..., 4) works).
        boxes2: (N, 4) float, xyxy, pixels.

    Returns:
        (N,) float in [0, 1]; ``out[i] = IoA(boxes1[i], boxes2[i])``.
    """
    return _matched(_ioa_kernel, boxes1, boxes2)


@overload
def pairwise_wh_iou(wh1: Tensor, wh2: ArrayLike) -> Tensor: ...
@overload
def pairwise_wh_iou(wh1: NumpyLike, wh2: Tensor) -> Tensor: ...
@overload
def pairwise_wh_iou(wh1: NumpyLike, wh2: NumpyLike) -> np.ndarray: ...


def pairwise_wh_iou(wh1: ArrayLike, wh2: ArrayLike) -> Tensor | np.ndarray:
    """Anchor-style IoU of every size in ``wh1`` with every size in ``wh2``, centres aligned.

    Args:
        wh1: (N, 2) float, width and height, pixels (e.g. G ground-truth sizes).
        wh2: (M, 2) float, width and height, pixels (e.g. A anchors).

    Returns:
        (N, M) float in [0, 1]; ``out[i, j] = min(w) * min(h) / (w1 h1 + w2 h2 - min(w) min(h))``
        for ``wh1[i]`` and ``wh2[j]``, the IoU of the two boxes placed on one centre.
    """
    return _pairwise(wh_iou, wh1, wh2, last_dim=2, fmt="wh")


@overload
def matched_wh_iou(wh1: Tensor, wh2: ArrayLike) -> Tensor: ...
@overload
def matched_wh_iou(wh1: NumpyLike, wh2: Tensor) -> Tensor: ...
@overload
def matched_wh_iou(wh1: NumpyLike, wh2: NumpyLike) -> np.ndarray: ...


def matched_wh_iou(wh1: ArrayLike, wh2: ArrayLike) -> Tensor | np.ndarray:
    """Anchor-style IoU of matched pairs of sizes, centres aligned.

    Args:
        wh1: (N, 2) float, width and height, pixels (any broadcastable (..., 2) works).
        wh2: (N, 2) float, width and height, pixels.

    Returns:
        (N,) float in [0, 1]; ``out[i] = wh_iou(wh1[i], wh2[i])``.
    """
    return _matched(wh_iou, wh1, wh2, last_dim=2)


@overload
def pairwise_gap(boxes1: Tensor, boxes2: ArrayLike) -> Tensor: ...
@overload
def pairwise_gap(boxes1: NumpyLike, boxes2: Tensor) -> Tensor: ...
@overload
def pairwise_gap(boxes1: NumpyLike, boxes2: NumpyLike) -> np.ndarray: ...


def pairwise_gap(boxes1: ArrayLike, boxes2: ArrayLike) -> Tensor | np.ndarray:
    """Distance between the closest points of every pair of boxes.

    Args:
        boxes1: (N, 4) float, xyxy, pixels.
        boxes2: (M, 4) float, xyxy, pixels.

    Returns:
        (N, M) float, pixels, >= 0; ``out[i, j]`` is the gap between ``boxes1[i]`` and
        ``boxes2[j]``, 0 when they touch or overlap.
    """
    return _pairwise(_gap_kernel, boxes1, boxes2)


@overload
def matched_gap(boxes1: Tensor, boxes2: ArrayLike) -> Tensor: ...
@overload
def matched_gap(boxes1: NumpyLike, boxes2: Tensor) -> Tensor: ...
@overload
def matched_gap(boxes1: NumpyLike, boxes2: NumpyLike) -> np.ndarray: ...


def matched_gap(boxes1: ArrayLike, boxes2: ArrayLike) -> Tensor | np.ndarray:
    """Distance between the closest points of matched pairs of boxes.

    Args:
        boxes1: (N, 4) float, xyxy, pixels (any broadcastable (..., 4) works).
        boxes2: (N, 4) float, xyxy, pixels.

    Returns:
        (N,) float, pixels, >= 0; ``out[i] = gap(boxes1[i], boxes2[i])``.
    """
    return _matched(_gap_kernel, boxes1, boxes2)


@overload
def pairwise_center_distance(boxes1: Tensor, boxes2: ArrayLike) -> Tensor: ...
@overload
def pairwise_center_distance(boxes1: NumpyLike, boxes2: Tensor) -> Tensor: ...
@overload
def pairwise_center_distance(boxes1: NumpyLike, boxes2: NumpyLike) -> np.ndarray: ...


def pairwise_center_distance(boxes1: ArrayLike, boxes2: ArrayLike) -> Tensor | np.ndarray:
    """Euclidean distance between the centres of every pair of boxes.

    Args:
        boxes1: (N, 4) float, xyxy, pixels.
        boxes2: (M, 4) float, xyxy, pixels.

    Returns:
        (N, M) float, pixels, >= 0; ``out[i, j] = |centre(boxes1[i]) - centre(boxes2[j])|``.
    """
    return _pairwise(_center_distance_kernel, boxes1, boxes2)


@overload
def matched_center_distance(boxes1: Tensor, boxes2: ArrayLike) -> Tensor: ...
@overload
def matched_center_distance(boxes1: NumpyLike, boxes2: Tensor) -> Tensor: ...
@overload
def matched_center_distance(boxes1: NumpyLike, boxes2: NumpyLike) -> np.ndarray: ...


def matched_center_distance(boxes1: ArrayLike, boxes2: ArrayLike) -> Tensor | np.ndarray:
    """Euclidean distance between the centres of matched pairs of boxes.

    Args:
        boxes1: (N, 4) float, xyxy, pixels (any broadcastable (..., 4) works).
        boxes2: (N, 4) float, xyxy, pixels.

    Returns:
        (N,) float, pixels, >= 0; ``out[i] = |centre(boxes1[i]) - centre(boxes2[i])|``.
    """
    return _matched(_center_distance_kernel, boxes1, boxes2)


@overload
def pairwise_side_ratio(wh1: Tensor, wh2: ArrayLike) -> Tensor: ...
@overload
def pairwise_side_ratio(wh1: NumpyLike, wh2: Tensor) -> Tensor: ...
@overload
def pairwise_side_ratio(wh1: NumpyLike, wh2: NumpyLike) -> np.ndarray: ...


def pairwise_side_ratio(wh1: ArrayLike, wh2: ArrayLike) -> Tensor | np.ndarray:
    """Side ratio of every size in ``wh1`` with every size in ``wh2`` (module docs, Sizes).

    Args:
        wh1: (N, 2) float, width and height, pixels (e.g. G ground-truth sizes).
        wh2: (M, 2) float, width and height, pixels (e.g. A anchors).

    Returns:
        (N, M) float in [0, 1]; ``out[i, j] = min(min(w1, w2) / max(w1, w2), min(h1, h2) /
        max(h1, h2))`` for ``wh1[i]`` and ``wh2[j]``. The pair is within ``ratio_t`` when
        ``out > 1 / ratio_t``.
    """
    return _pairwise(side_ratio, wh1, wh2, last_dim=2, fmt="wh")


@overload
def matched_side_ratio(wh1: Tensor, wh2: ArrayLike) -> Tensor: ...
@overload
def matched_side_ratio(wh1: NumpyLike, wh2: Tensor) -> Tensor: ...
@overload
def matched_side_ratio(wh1: NumpyLike, wh2: NumpyLike) -> np.ndarray: ...


def matched_side_ratio(wh1: ArrayLike, wh2: ArrayLike) -> Tensor | np.ndarray:
    """Side ratio of matched pairs of sizes.

    Args:
        wh1: (N, 2) float, width and height, pixels (any broadcastable (..., 2) works).
        wh2: (N, 2) float, width and height, pixels.

    Returns:
        (N,) float in [0, 1]; ``out[i] = side_ratio(wh1[i], wh2[i])``.
    """
    return _matched(side_ratio, wh1, wh2, last_dim=2)


#: Statistics :func:`matched_overlaps` can compute from one shared intersection.
OVERLAP_STATS: tuple[str, ...] = ("iou", "ioa", "gap", "center")


@overload
def matched_overlaps(boxes1: Tensor, boxes2: ArrayLike, stats: Sequence[str] = ...) -> dict[str, Tensor]: ...
@overload
def matched_overlaps(boxes1: NumpyLike, boxes2: Tensor, stats: Sequence[str] = ...) -> dict[str, Tensor]: ...
@overload
def matched_overlaps(boxes1: NumpyLike, boxes2: NumpyLike, stats: Sequence[str] = ...) -> dict[str, np.ndarray]: ...


def matched_overlaps(
    boxes1: ArrayLike, boxes2: ArrayLike, stats: Sequence[str] = OVERLAP_STATS
) -> dict[str, Tensor] | dict[str, np.ndarray]:
    """Several pair statistics of matched pairs from one intersection pass.

    The same kernels as :func:`matched_iou` (plain IoU), :func:`matched_ioa`,
    :func:`matched_gap` and :func:`matched_center_distance`, bit for bit, sharing the
    intersection, for callers that need several of them on millions of pairs.

    Args:
        boxes1: (N, 4) float, xyxy, pixels (any broadcastable (..., 4) works).
        boxes2: (N, 4) float, xyxy, pixels.
        stats: names from :data:`OVERLAP_STATS`.

    Returns:
        dict name -> (N,) float, in the order of ``stats``.
    """
    _check_stats(stats)
    (b1, b2), back = _as_tensors({"boxes1": boxes1, "boxes2": boxes2}, 4)
    _check_matched("boxes1", b1, "boxes2", b2)
    return _out_all(_overlap_stats(b1, b2, _overlap(b1, b2), stats), back)


def _check_stats(stats: Sequence[str]) -> None:
    for name in stats:
        if name not in OVERLAP_STATS:
            raise OptionError(f"stats must be among {', '.join(OVERLAP_STATS)}; got {name!r}")


def _overlap_stats(b1: Tensor, b2: Tensor, ov: _Overlap, stats: Sequence[str], tame: bool = False) -> dict[str, Tensor]:
    """The kernels of ``stats`` on one shared :class:`_Overlap` of ``b1`` and ``b2``."""
    run = {
        "iou": lambda: _iou_kernel(b1, b2, "iou", ov),
        "ioa": lambda: _ioa_kernel(b1, b2, ov),
        "gap": lambda: _gap_kernel(b1, b2, ov),
        "center": lambda: _center_distance_kernel(b1, b2, tame),
    }
    return {name: run[name]() for name in stats}


#: what a :class:`BoxSet` hands back: tensors when built from a tensor, numpy arrays otherwise.
_Result = TypeVar("_Result", Tensor, np.ndarray)


class BoxSet(Generic[_Result]):
    """One set of boxes whose pairs are given by index, for statistics of many pairs of few boxes.

    ``BoxSet(boxes).pair_overlaps(first, second, stats)`` is
    ``matched_overlaps(boxes[first], boxes[second], stats)`` bit for bit (same kernels, same
    dtype rules), with what belongs to one box worked out once per box instead of once per pair:
    the areas, and whether the set is *tame* (every coordinate finite and at most
    ``sqrt(finfo.max / 32)`` in magnitude, so no pair can be invalid or overflow, and no pair
    needs the NaN masks of the Validity rule). Coordinates are gathered one row at a time
    (``index_select`` of a contiguous (G,) row is several times faster than of (G, 4) or (4, G)).
    Used for every pair within an image (:mod:`cocostat.pairs`).

    Args:
        boxes: (G, 4) float, xyxy, pixels (tensor, numpy array or nested list).

    Raises:
        OptionError: ``boxes`` is not (G, 4) numbers.
    """

    @overload
    def __init__(self: BoxSet[Tensor], boxes: Tensor) -> None: ...
    @overload
    def __init__(self: BoxSet[np.ndarray], boxes: NumpyLike) -> None: ...

    def __init__(self, boxes: ArrayLike) -> None:
        (b,), self._back = _as_tensors({"boxes": boxes}, 4)
        _check_pairwise("boxes", b, "boxes", b, "xyxy")
        self._rows = rows = b.T.contiguous()  # (4, G): x1, y1, x2, y2
        self._area = _area(rows.T)  # (G,)
        # one host sync here, none per pair; NaN compares False, so a NaN box makes the set untame
        self.tame = b.numel() == 0 or bool(rows.abs().amax() <= _tame_bound(b.dtype))

    def __len__(self) -> int:
        return self._rows.shape[1]

    def pair_overlaps(
        self, first: ArrayLike, second: ArrayLike, stats: Sequence[str] = OVERLAP_STATS
    ) -> dict[str, _Result]:
        """Statistics of the pairs ``(boxes[first[k]], boxes[second[k]])``.

        Args:
            first, second: (n,) int row indices into the set (numpy or tensor; out of range raises).
            stats: names from :data:`OVERLAP_STATS`.

        Returns:
            dict name -> (n,) float, in the order of ``stats``; numpy if the set was built from
            numpy or lists, else tensors on the set's device.
        """
        _check_stats(stats)
        i1, i2 = (torch.as_tensor(i, device=self._rows.device) for i in (first, second))
        b1, b2 = self._gather(i1), self._gather(i2)  # (n, 4) views of (4, n)
        ov = _overlap(b1, b2, self._area.index_select(0, i1), self._area.index_select(0, i2), self.tame)
        out = _out_all(_overlap_stats(b1, b2, ov, stats, self.tame), self._back)
        # the __init__ overloads tie _Result to self._back: numpy input, numpy results
        return cast("dict[str, _Result]", out)

    def _gather(self, idx: Tensor) -> Tensor:
        out = self._rows.new_empty((4, idx.numel()))
        for k in range(4):
            torch.index_select(self._rows[k], 0, idx, out=out[k])
        return out.T


@overload
def valid_predictions(boxes: Tensor, *scores: ArrayLike) -> Tensor: ...
@overload
def valid_predictions(boxes: NumpyLike, *scores: ArrayLike) -> np.ndarray: ...


def valid_predictions(boxes: ArrayLike, *scores: ArrayLike) -> Tensor | np.ndarray:
    """The one validity rule: which boxes (and their scores) are finite (module docs, Validity).

    Args:
        boxes: (..., 4) float, any box format (only finiteness is tested).
        scores: any number of score arrays of shape (...,) (one score per box, e.g. objectness)
            or (..., C) (several per box, e.g. class probabilities).

    Returns:
        (...,) bool, same array type and device as ``boxes``: True where the box's four
        coordinates and every one of its scores are finite. Integer inputs are always valid.
    """
    b = boxes if isinstance(boxes, Tensor) else _from_numpy(_as_numeric_ndarray("boxes", boxes))
    if b.ndim == 0 or b.shape[-1] != 4:
        raise OptionError(f"boxes must have shape (..., 4), got shape {tuple(b.shape)}")
    ok = _finite(b)
    for k, sc in enumerate(scores):
        s = sc if isinstance(sc, Tensor) else _from_numpy(_as_numeric_ndarray(f"scores[{k}]", sc))
        s = s.to(b.device)
        if tuple(s.shape) == tuple(b.shape[:-1]):
            ok = ok & torch.isfinite(s)
        elif s.ndim == b.ndim and tuple(s.shape[:-1]) == tuple(b.shape[:-1]):
            ok = ok & _finite(s)
        else:
            raise OptionError(
                f"scores[{k}] must have shape {tuple(b.shape[:-1])} or "
                f"{tuple(b.shape[:-1])} + (C,), got shape {tuple(s.shape)}"
            )
    return ok if isinstance(boxes, Tensor) else ok.numpy()
