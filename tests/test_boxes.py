"""Tests of cocostat.boxes: every kernel against a brute-force loop, plus hypothesis properties."""

from __future__ import annotations

import inspect
import json
import math
import typing

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cocostat import boxes as B
from cocostat.errors import OptionError

KINDS = ("iou", "giou", "diou", "ciou")
PAIRWISE = {
    "iou": lambda a, b: B.pairwise_iou(a, b, "iou"),
    "giou": lambda a, b: B.pairwise_iou(a, b, "giou"),
    "diou": lambda a, b: B.pairwise_iou(a, b, "diou"),
    "ciou": lambda a, b: B.pairwise_iou(a, b, "ciou"),
    "ioa": B.pairwise_ioa,
    "gap": B.pairwise_gap,
    "center": B.pairwise_center_distance,
}
MATCHED = {
    "iou": lambda a, b: B.matched_iou(a, b, "iou"),
    "giou": lambda a, b: B.matched_iou(a, b, "giou"),
    "diou": lambda a, b: B.matched_iou(a, b, "diou"),
    "ciou": lambda a, b: B.matched_iou(a, b, "ciou"),
    "ioa": B.matched_ioa,
    "gap": B.matched_gap,
    "center": B.matched_center_distance,
}
CONVERSIONS = [
    (B.xywh_to_xyxy, B.xyxy_to_xywh),
    (B.cxcywh_to_xyxy, B.xyxy_to_cxcywh),
    (B.xywh_to_cxcywh, B.cxcywh_to_xywh),
]


# ------------------------------------------------------------------------------------------
# brute force: one pair of boxes at a time, plain Python floats


def _div(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def ref_iou(a, b, kind: str = "iou") -> float:
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    union = area_a + area_b - inter
    iou = _div(inter, union)
    if kind == "iou":
        return iou
    cw = max(ax2, bx2) - min(ax1, bx1)
    ch = max(ay2, by2) - min(ay1, by1)
    if kind == "giou":
        return iou - _div(cw * ch - union, cw * ch)
    rho2 = ((ax1 + ax2) / 2 - (bx1 + bx2) / 2) ** 2 + ((ay1 + ay2) / 2 - (by1 + by2) / 2) ** 2
    diou = iou - _div(rho2, cw**2 + ch**2)
    if kind == "diou":
        return diou
    v = 4 / math.pi**2 * (math.atan2(bx2 - bx1, by2 - by1) - math.atan2(ax2 - ax1, ay2 - ay1)) ** 2
    alpha = _div(v, 1 - iou + v)
    return diou - alpha * v


def ref_ioa(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return _div(iw * ih, smaller)


def ref_gap(a, b) -> float:
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return math.sqrt(dx * dx + dy * dy)


def ref_center(a, b) -> float:
    return math.dist(((a[0] + a[2]) / 2, (a[1] + a[3]) / 2), ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2))


def ref_wh_iou(a, b) -> float:
    inter = min(a[0], b[0]) * min(a[1], b[1])
    return _div(inter, a[0] * a[1] + b[0] * b[1] - inter)


def _ref_iou_kind(kind: str):
    return lambda a, b: ref_iou(a, b, kind)


REFS = {
    **{k: _ref_iou_kind(k) for k in KINDS},
    "ioa": ref_ioa,
    "gap": ref_gap,
    "center": ref_center,
}


def brute_pairwise(ref, boxes1, boxes2) -> np.ndarray:
    out = np.zeros((len(boxes1), len(boxes2)))
    for i, a in enumerate(boxes1.tolist()):
        for j, b in enumerate(boxes2.tolist()):
            out[i, j] = ref(a, b)
    return out


def random_xyxy(rng: np.random.Generator, n: int) -> np.ndarray:
    """n boxes, xyxy float64, with some zero-width, zero-height and duplicate boxes mixed in."""
    xy = rng.uniform(-50, 150, size=(n, 2))
    wh = rng.uniform(0, 80, size=(n, 2)) * (rng.random((n, 2)) > 0.1)  # ~10% zero sides
    boxes = np.concatenate([xy, xy + wh], axis=1)
    if n >= 4:
        boxes[1] = boxes[0]  # identical pair
        boxes[3] = np.round(boxes[2])  # integer box, touches nothing in particular
    return boxes


# ------------------------------------------------------------------------------------------
# hypothesis strategies: coordinates on a 1/8 grid, so shifts and powers-of-two scales are exact,
# and identical, touching, nested and zero-area boxes come up often


def _box_from(v: tuple[int, int, int, int]) -> list[float]:
    x, y, w, h = (c / 8 for c in v)
    return [x, y, x + w, y + h]


coord = st.integers(-400, 400)
side = st.one_of(st.just(0), st.integers(0, 400))
box = st.tuples(coord, coord, side, side).map(_box_from)
box_lists = st.lists(box, min_size=1, max_size=8).map(lambda b: np.array(b, dtype=np.float64))
wh_lists = st.lists(st.tuples(side, side), min_size=1, max_size=8).map(lambda v: np.array(v, dtype=np.float64) / 8)
PROPS = settings(deadline=None)  # examples and derandomisation: the profile (tests/conftest.py)


# ------------------------------------------------------------------------------------------
# kernels against the brute force


@pytest.mark.parametrize("name", list(PAIRWISE))
def test_pairwise_matches_brute_force(name):
    rng = np.random.default_rng(0)
    b1, b2 = random_xyxy(rng, 17), random_xyxy(rng, 11)
    b2[:4] = b1[:4]  # some shared boxes across the two sets
    got = PAIRWISE[name](b1, b2)
    assert got.shape == (17, 11)
    np.testing.assert_allclose(got, brute_pairwise(REFS[name], b1, b2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(MATCHED))
def test_matched_matches_brute_force(name):
    rng = np.random.default_rng(1)
    b1, b2 = random_xyxy(rng, 23), random_xyxy(rng, 23)
    expected = [REFS[name](a, b) for a, b in zip(b1.tolist(), b2.tolist())]
    np.testing.assert_allclose(MATCHED[name](b1, b2), expected, rtol=1e-12, atol=1e-12)


def test_wh_iou_matches_brute_force():
    rng = np.random.default_rng(2)
    wh1 = rng.uniform(0, 100, size=(13, 2)) * (rng.random((13, 2)) > 0.1)
    wh2 = rng.uniform(0, 100, size=(9, 2))
    np.testing.assert_allclose(B.pairwise_wh_iou(wh1, wh2), brute_pairwise(ref_wh_iou, wh1, wh2))
    expected = [ref_wh_iou(a, b) for a, b in zip(wh1[:9].tolist(), wh2.tolist())]
    np.testing.assert_allclose(B.matched_wh_iou(wh1[:9], wh2), expected)


def test_box_area_matches_brute_force():
    rng = np.random.default_rng(3)
    b = random_xyxy(rng, 10)
    np.testing.assert_allclose(B.box_area(b), [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in b])
    assert B.box_area(b.reshape(2, 5, 4)).shape == (2, 5)


def test_known_values():
    a = [[0.0, 0.0, 10.0, 10.0]]
    b = [[5.0, 5.0, 15.0, 15.0]]
    assert B.pairwise_iou(a, b)[0, 0] == pytest.approx(25 / 175)
    # enclosing box 15 x 15 = 225, union 175
    assert B.pairwise_iou(a, b, "giou")[0, 0] == pytest.approx(25 / 175 - 50 / 225)
    # centres 5*sqrt(2) apart, enclosing diagonal 15*sqrt(2); same aspect ratio so CIoU == DIoU
    assert B.pairwise_iou(a, b, "diou")[0, 0] == pytest.approx(25 / 175 - 50 / 450)
    assert B.pairwise_iou(a, b, "ciou")[0, 0] == pytest.approx(25 / 175 - 50 / 450)
    assert B.pairwise_ioa(a, [[2.0, 2.0, 4.0, 4.0]])[0, 0] == 1.0
    assert B.pairwise_gap(a, [[13.0, 14.0, 20.0, 20.0]])[0, 0] == pytest.approx(5.0)
    assert B.pairwise_gap(a, [[10.0, 0.0, 20.0, 10.0]])[0, 0] == 0.0  # touching edge
    assert B.pairwise_center_distance(a, [[3.0, 4.0, 13.0, 14.0]])[0, 0] == pytest.approx(5.0)
    assert B.pairwise_wh_iou([[2.0, 8.0]], [[8.0, 2.0]])[0, 0] == pytest.approx(4 / 28)
    # a square against a 2:1 box centred on it: v = 4/pi^2 (atan 2 - pi/4)^2
    c = [[-10.0, -5.0, 10.0, 5.0]]
    sq = [[-5.0, -5.0, 5.0, 5.0]]
    v = 4 / math.pi**2 * (math.atan(2.0) - math.pi / 4) ** 2
    iou = 100 / 200
    assert B.pairwise_iou(sq, c, "ciou")[0, 0] == pytest.approx(iou - v * v / (1 - iou + v))


def test_identical_boxes_have_iou_exactly_one():
    b = np.array([[0.1, 0.2, 3.7, 9.9], [-5.5, 1.0, 7.25, 1.5], [1e-3, 1e-3, 2e-3, 5e-3]])
    for kind in KINDS:
        np.testing.assert_array_equal(B.matched_iou(b, b, kind), 1.0)
    np.testing.assert_array_equal(B.matched_ioa(b, b), 1.0)
    np.testing.assert_array_equal(B.matched_iou(b.astype(np.float32), b.astype(np.float32)), 1.0)


# ------------------------------------------------------------------------------------------
# degenerate and empty inputs


def test_zero_area_boxes_give_no_nan():
    point = [3.0, 3.0, 3.0, 3.0]
    segments = [[0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 5.0, 0.0]]  # zero width, zero height
    boxes = np.array([point, point, *segments, [7.0, 7.0, 7.0, 7.0], [0.0, 0.0, 10.0, 10.0]])
    for name, fn in PAIRWISE.items():
        out = fn(boxes, boxes)
        assert np.isfinite(out).all(), name
    np.testing.assert_array_equal(B.pairwise_iou([point], [point]), [[0.0]])  # union 0
    for kind in ("giou", "diou", "ciou"):  # enclosing box and its diagonal 0: no penalty
        np.testing.assert_array_equal(B.pairwise_iou([point], [point], kind), [[0.0]])
    # two points apart: IoU 0, enclosing box 4 x 4, union 0 -> GIoU -1; DIoU -1 (rho == c)
    far = [[7.0, 7.0, 7.0, 7.0]]
    assert B.pairwise_iou([point], far, "giou")[0, 0] == -1.0
    assert B.pairwise_iou([point], far, "diou")[0, 0] == pytest.approx(-1.0)
    assert B.pairwise_ioa([point], [[0.0, 0.0, 10.0, 10.0]])[0, 0] == 0.0
    np.testing.assert_array_equal(B.pairwise_wh_iou([[0.0, 0.0], [0.0, 3.0]], [[0.0, 0.0]]), 0.0)
    wh = torch.zeros(2, 2, requires_grad=True)
    B.matched_wh_iou(wh, torch.ones(2, 2)).sum().backward()
    assert torch.isfinite(wh.grad).all()


@pytest.mark.parametrize("name", list(PAIRWISE))
def test_empty_inputs(name):
    some = np.array([[0.0, 0.0, 1.0, 1.0]] * 3)
    none = np.zeros((0, 4))
    assert PAIRWISE[name](none, some).shape == (0, 3)
    assert PAIRWISE[name](some, none).shape == (3, 0)
    assert PAIRWISE[name](none, none).shape == (0, 0)
    assert PAIRWISE[name]([], some).shape == (0, 3)  # an empty list is zero boxes
    assert MATCHED[name](none, none).shape == (0,)
    t = PAIRWISE[name](torch.zeros(0, 4), torch.zeros(2, 4))
    assert isinstance(t, torch.Tensor) and t.shape == (0, 2)


def test_empty_inputs_other_functions():
    none = np.zeros((0, 4), dtype=np.float32)
    assert B.box_area(none).shape == (0,) and B.box_area(none).dtype == np.float32
    for forward, backward in CONVERSIONS:
        assert forward(none).shape == (0, 4) and backward(none).shape == (0, 4)
    assert B.pairwise_wh_iou(np.zeros((0, 2)), np.ones((4, 2))).shape == (0, 4)
    assert B.pairwise_wh_iou(np.ones((4, 2)), np.zeros((0, 2))).shape == (4, 0)
    assert B.matched_wh_iou(np.zeros((0, 2)), np.zeros((0, 2))).shape == (0,)


# ------------------------------------------------------------------------------------------
# array types, dtypes and devices


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(PAIRWISE))
def test_numpy_in_numpy_out_dtype_kept(name, dtype):
    b = random_xyxy(np.random.default_rng(4), 6).astype(dtype)
    pair, match = PAIRWISE[name](b, b[:4]), MATCHED[name](b, b)
    assert isinstance(pair, np.ndarray) and pair.dtype == dtype and pair.shape == (6, 4)
    assert isinstance(match, np.ndarray) and match.dtype == dtype and match.shape == (6,)
    np.testing.assert_allclose(pair, brute_pairwise(REFS[name], b, b[:4]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(PAIRWISE))
def test_ints_and_lists_become_float64(name):
    b = [[0, 0, 4, 4], [2, 2, 6, 8]]
    for arg in (b, np.array(b, dtype=np.int32)):
        out = PAIRWISE[name](arg, arg)
        assert isinstance(out, np.ndarray) and out.dtype == np.float64
        np.testing.assert_allclose(out, brute_pairwise(REFS[name], np.array(b), np.array(b)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(PAIRWISE))
def test_torch_in_torch_out(name, dtype):
    b = random_xyxy(np.random.default_rng(5), 5)
    out = PAIRWISE[name](torch.tensor(b, dtype=dtype), torch.tensor(b[:3], dtype=dtype))
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == (5, 3)
    np.testing.assert_allclose(out.numpy(), PAIRWISE[name](b, b[:3]), rtol=1e-4, atol=1e-4)
    assert B.pairwise_iou(torch.tensor([[0, 0, 2, 2]]), torch.tensor([[1, 1, 3, 3]])).dtype == (
        torch.get_default_dtype()
    )


def test_mixed_numpy_and_torch_gives_torch():
    out = B.pairwise_iou(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), np.array([[1.0, 1.0, 3.0, 3.0]]))
    assert isinstance(out, torch.Tensor)
    assert out.item() == pytest.approx(1 / 7)


def test_numpy_results_need_no_copy_of_inputs():
    b = np.array([[1.0, 2.0, 3.0, 4.0]])
    ro = b.copy()
    ro.flags.writeable = False  # torch cannot wrap read-only memory; must still work
    np.testing.assert_array_equal(B.xyxy_to_xywh(ro), [[1.0, 2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(B.xyxy_to_xywh(b[:, ::-1][:, ::-1]), [[1.0, 2.0, 2.0, 2.0]])


@pytest.mark.parametrize("forward,backward", CONVERSIONS)
def test_conversions_keep_type_and_dtype(forward, backward):
    b = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    assert forward(b).dtype == np.float32 and backward(b).dtype == np.float32
    t = forward(torch.tensor(b, dtype=torch.float64))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64


def test_conversions_known_values():
    xywh = np.array([[10.0, 20.0, 4.0, 6.0]])
    xyxy = np.array([[10.0, 20.0, 14.0, 26.0]])
    cxcywh = np.array([[12.0, 23.0, 4.0, 6.0]])
    np.testing.assert_array_equal(B.xywh_to_xyxy(xywh), xyxy)
    np.testing.assert_array_equal(B.xyxy_to_xywh(xyxy), xywh)
    np.testing.assert_array_equal(B.xyxy_to_cxcywh(xyxy), cxcywh)
    np.testing.assert_array_equal(B.cxcywh_to_xyxy(cxcywh), xyxy)
    np.testing.assert_array_equal(B.xywh_to_cxcywh(xywh), cxcywh)
    np.testing.assert_array_equal(B.cxcywh_to_xywh(cxcywh), xywh)
    assert B.xywh_to_xyxy(xywh.reshape(1, 1, 4)).shape == (1, 1, 4)


# ------------------------------------------------------------------------------------------
# bad input


def test_unknown_kind_names_the_valid_kinds():
    with pytest.raises(OptionError, match="iou, giou, diou, ciou.*'dice'"):
        B.pairwise_iou([[0, 0, 1, 1]], [[0, 0, 1, 1]], kind="dice")
    with pytest.raises(OptionError, match="iou, giou, diou, ciou"):
        B.matched_iou([[0, 0, 1, 1]], [[0, 0, 1, 1]], kind="IoU")


def test_bad_shapes_raise_option_error():
    with pytest.raises(OptionError, match=r"boxes2 must have shape \(\.\.\., 4\), got .*\(2, 3\)"):
        B.pairwise_iou(np.zeros((1, 4)), np.zeros((2, 3)))
    with pytest.raises(OptionError, match=r"boxes1 must have shape \(N, 4\).*\(2, 2, 4\)"):
        B.pairwise_gap(np.zeros((2, 2, 4)), np.zeros((2, 4)))
    with pytest.raises(OptionError, match="broadcastable"):
        B.matched_iou(np.zeros((3, 4)), np.zeros((2, 4)))
    with pytest.raises(OptionError, match=r"\(\.\.\., 2\)"):
        B.pairwise_wh_iou(np.zeros((3, 4)), np.zeros((2, 2)))
    with pytest.raises(OptionError, match="real numbers"):
        B.box_area([["a", "b", "c", "d"]])


# ------------------------------------------------------------------------------------------
# hypothesis properties


@PROPS
@given(box_lists, box_lists)
def test_symmetry(b1, b2):
    for name in ("iou", "giou", "diou", "ciou", "ioa", "gap", "center"):
        np.testing.assert_allclose(
            PAIRWISE[name](b1, b2), PAIRWISE[name](b2, b1).T, rtol=1e-12, atol=1e-12, err_msg=name
        )


@PROPS
@given(box_lists, box_lists)
def test_ranges_and_ordering(b1, b2):
    iou, giou, diou, ciou = (B.pairwise_iou(b1, b2, k) for k in KINDS)
    for out in (iou, giou, diou, ciou):
        assert np.isfinite(out).all()
    assert ((iou >= 0) & (iou <= 1)).all()
    assert ((giou >= -1) & (giou <= 1)).all()
    assert ((diou >= -1 - 1e-12) & (diou <= 1)).all()
    assert (giou <= iou).all()
    assert (diou <= iou).all()
    assert (ciou <= diou).all()
    ioa = B.pairwise_ioa(b1, b2)
    assert ((ioa >= iou - 1e-12) & (ioa <= 1)).all()  # the smaller box sees at least the IoU
    assert (B.pairwise_gap(b1, b2) >= 0).all() and (B.pairwise_center_distance(b1, b2) >= 0).all()


@PROPS
@given(box_lists, box_lists, st.integers(-800, 800), st.integers(-800, 800))
def test_shift_invariance(b1, b2, dx, dy):
    shift = np.array([dx, dy, dx, dy]) / 8
    for name, fn in PAIRWISE.items():
        np.testing.assert_allclose(fn(b1 + shift, b2 + shift), fn(b1, b2), rtol=1e-9, atol=1e-9, err_msg=name)


@PROPS
@given(box_lists, box_lists, st.floats(0.01, 100.0))
def test_scale_invariance(b1, b2, s):
    for name, fn in PAIRWISE.items():
        factor = s if name in ("gap", "center") else 1.0  # distances scale, ratios do not
        np.testing.assert_allclose(fn(b1 * s, b2 * s), factor * fn(b1, b2), rtol=1e-9, atol=1e-9, err_msg=name)
    wh1, wh2 = b1[:, 2:] - b1[:, :2], b2[:, 2:] - b2[:, :2]
    np.testing.assert_allclose(B.pairwise_wh_iou(wh1 * s, wh2 * s), B.pairwise_wh_iou(wh1, wh2), rtol=1e-9, atol=1e-9)


@PROPS
@given(wh_lists, wh_lists, st.integers(-800, 800), st.integers(-800, 800))
def test_wh_iou_is_iou_of_centre_aligned_boxes(wh1, wh2, cx, cy):
    centre = np.array([cx, cy, cx, cy]) / 8

    def aligned(wh):
        return np.concatenate([-wh / 2, wh / 2], axis=1) + centre

    expected = B.pairwise_iou(aligned(wh1), aligned(wh2))
    np.testing.assert_allclose(B.pairwise_wh_iou(wh1, wh2), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        B.matched_wh_iou(wh1, wh1[::-1]),
        B.matched_iou(aligned(wh1), aligned(wh1[::-1])),
        rtol=1e-12,
        atol=1e-12,
    )


@PROPS
@given(box_lists, box_lists)
def test_gap_is_zero_iff_boxes_touch_or_overlap(b1, b2):
    gap = B.pairwise_gap(b1, b2)
    lo = np.maximum(b1[:, None, :2], b2[None, :, :2])  # (N, M, 2)
    hi = np.minimum(b1[:, None, 2:], b2[None, :, 2:])  # (N, M, 2)
    touch = (lo <= hi).all(axis=-1)  # (N, M)
    np.testing.assert_array_equal(gap == 0, touch)
    assert (B.pairwise_iou(b1, b2)[~touch] == 0).all()  # apart boxes never overlap


@PROPS
@given(box_lists)
def test_matched_is_diagonal_of_pairwise(b):
    other = b[::-1] + 0.5
    for name, pairwise in PAIRWISE.items():
        # same maths; vectorised hypot/atan2 may differ from their scalar tails by an ulp
        np.testing.assert_allclose(
            MATCHED[name](b, other),
            np.diagonal(pairwise(b, other)),
            rtol=1e-14,
            atol=1e-14,
            err_msg=name,
        )
    wh1, wh2 = b[:, 2:] - b[:, :2], other[:, 2:] - other[:, :2]
    np.testing.assert_allclose(B.matched_wh_iou(wh1, wh2), np.diagonal(B.pairwise_wh_iou(wh1, wh2)), rtol=1e-14)


@PROPS
@given(box_lists)
def test_pairwise_matches_brute_force_on_generated_boxes(b):
    other = b[::-1] * 0.75 + 1.0
    for name, fn in PAIRWISE.items():
        np.testing.assert_allclose(
            fn(b, other), brute_pairwise(REFS[name], b, other), rtol=1e-12, atol=1e-12, err_msg=name
        )


@PROPS
@given(arrays(np.float64, st.tuples(st.integers(0, 5), st.just(4)), elements=st.floats(-1e4, 1e4, allow_nan=False)))
def test_conversions_round_trip(b):
    for forward, backward in CONVERSIONS:
        np.testing.assert_allclose(backward(forward(b)), b, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(forward(backward(b)), b, rtol=1e-9, atol=1e-9)
    # and the chain xywh -> cxcywh -> xyxy agrees with the direct route
    np.testing.assert_allclose(B.cxcywh_to_xyxy(B.xywh_to_cxcywh(b)), B.xywh_to_xyxy(b), atol=1e-9)


# ------------------------------------------------------------------------------------------
# real COCO boxes


def test_real_coco_boxes(real_data):
    """Real val2017 boxes: IoU agrees with pycocotools, every kernel with the brute force."""
    mask_utils = pytest.importorskip("pycocotools.mask")
    path = real_data / "coco-tiny" / "annotations" / "instances_val2017.json"
    anns = json.loads(path.read_text())["annotations"]
    xywh = np.array([a["bbox"] for a in anns], dtype=np.float64)  # (G, 4)
    image_ids = np.array([a["image_id"] for a in anns])  # (G,)
    xyxy = B.xywh_to_xyxy(xywh)
    np.testing.assert_allclose(B.xyxy_to_xywh(xyxy), xywh, atol=1e-9)
    # all G x G pairs at once against pycocotools' own box IoU (iscrowd off: plain IoU)
    coco_iou = mask_utils.iou(xywh, xywh, [0] * len(anns))  # (G, G)
    np.testing.assert_allclose(B.pairwise_iou(xyxy, xyxy), coco_iou, rtol=1e-9, atol=1e-12)
    # per image, every kernel against the brute force
    for image_id in np.unique(image_ids)[:10]:
        b = xyxy[image_ids == image_id]
        for name, fn in PAIRWISE.items():
            np.testing.assert_allclose(fn(b, b), brute_pairwise(REFS[name], b, b), rtol=1e-9, atol=1e-9, err_msg=name)


# ------------------------------------------------------------------------------------------
# GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    rng = np.random.default_rng(6)
    b1 = torch.tensor(random_xyxy(rng, 300), dtype=dtype)
    b2 = torch.tensor(random_xyxy(rng, 200), dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for name, fn in PAIRWISE.items():
        out = fn(b1.cuda(), b2.cuda())
        assert out.is_cuda and out.dtype == dtype and out.shape == (300, 200)
        torch.testing.assert_close(out.cpu(), fn(b1, b2), rtol=tol, atol=tol, msg=name)
        matched = MATCHED[name](b1[:200].cuda(), b2.cuda())
        assert matched.is_cuda
        torch.testing.assert_close(matched.cpu(), MATCHED[name](b1[:200], b2), rtol=tol, atol=tol)
    wh1, wh2 = (b[:, 2:] - b[:, :2] for b in (b1, b2))
    out = B.pairwise_wh_iou(wh1.cuda(), wh2.cuda())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), B.pairwise_wh_iou(wh1, wh2), rtol=tol, atol=tol)
    for forward, backward in CONVERSIONS:
        torch.testing.assert_close(forward(b1.cuda()).cpu(), forward(b1))
        torch.testing.assert_close(backward(b1.cuda()).cpu(), backward(b1))
    torch.testing.assert_close(B.box_area(b1.cuda()).cpu(), B.box_area(b1))
    # a tensor on the GPU pulls a numpy partner onto the GPU
    assert B.pairwise_iou(b1.cuda(), b2.numpy()).is_cuda


# ------------------------------------------------------------------------------------------
# dtype x device matrix (as torchvision's test_ops.py): every public kernel against a float64 loop
#
# Inputs are cast to the dtype first and the loop runs on those rounded values (converted to
# float64), so the test measures the kernel's arithmetic, not the rounding of its inputs. The
# tolerance is the result dtype's resolution, ``torch.finfo(dtype).resolution`` (float16 1e-3,
# bfloat16 1e-2, float32 1e-6, float64 1e-15; int64 boxes give float32), relative, plus the same
# times the coordinate scale (squared for areas) as an absolute floor for pixel-valued results.
# Half precision computes in float32, integers in float64 (module docs), so this holds even where
# the areas overflow float16 (boxes up to 1000 px: areas up to 1e6 > 65504).

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
SCALE = 1000.0


def ref_side_ratio(a, b) -> float:
    return min(_div(min(a[k], b[k]), max(a[k], b[k])) for k in (0, 1))


def ref_convert(kind: str, b) -> list[float]:
    p, q, r, s = (float(v) for v in b)
    return {
        "xywh_to_xyxy": [p, q, p + r, q + s],
        "xyxy_to_xywh": [p, q, r - p, s - q],
        "cxcywh_to_xyxy": [p - r / 2, q - s / 2, p + r / 2, q + s / 2],
        "xyxy_to_cxcywh": [(p + r) / 2, (q + s) / 2, r - p, s - q],
        "xywh_to_cxcywh": [p + r / 2, q + s / 2, r, s],
        "cxcywh_to_xywh": [p - r / 2, q - s / 2, r, s],
    }[kind]


def matrix_boxes(dtype: torch.dtype, device: str, n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(n, 4) xyxy boxes in ``dtype`` on ``device``, and the same values as float64 numpy."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, SCALE * 0.6, size=(n, 2))
    wh = rng.uniform(0, SCALE * 0.4, size=(n, 2)) * (rng.random((n, 2)) > 0.1)
    b = np.concatenate([xy, xy + wh], axis=1)
    b[1] = b[0]  # an identical pair
    t = torch.tensor(np.round(b) if not dtype.is_floating_point else b).to(dtype)
    return t.to(device), t.double().cpu().numpy()


def _result_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def _check(out, want: np.ndarray, dtype: torch.dtype, device: str, scale: float = 0.0) -> None:
    assert isinstance(out, torch.Tensor) and out.device.type == device
    rdt = _result_dtype(dtype)
    assert out.dtype == rdt
    res = torch.finfo(rdt).resolution
    # a result beyond the dtype's range (float16 areas above 65504) can only be inf
    want = np.where(np.abs(want) > torch.finfo(rdt).max, np.copysign(np.inf, want), want)
    np.testing.assert_allclose(out.double().cpu().numpy(), want, rtol=res, atol=res * max(scale, 1.0))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(PAIRWISE))
def test_dtype_device_matrix_box_pairs(name, dtype, device):
    t1, b1 = matrix_boxes(dtype, device, 12, 1)
    t2, b2 = matrix_boxes(dtype, device, 7, 2)
    scale = SCALE if name in ("gap", "center") else 0.0
    _check(PAIRWISE[name](t1, t2), brute_pairwise(REFS[name], b1, b2), dtype, device, scale)
    want = np.array([REFS[name](a, b) for a, b in zip(b1[:7].tolist(), b2.tolist())])
    _check(MATCHED[name](t1[:7], t2), want, dtype, device, scale)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_device_matrix_sizes_area_conversions(dtype, device):
    t1, b1 = matrix_boxes(dtype, device, 12, 3)
    t2, b2 = matrix_boxes(dtype, device, 7, 4)
    wh1, wh2 = t1[:, 2:] - t1[:, :2], t2[:, 2:] - t2[:, :2]  # exact in every dtype: same grid
    w1, w2 = wh1.double().cpu().numpy(), wh2.double().cpu().numpy()
    for pairwise, matched, ref in (
        (B.pairwise_wh_iou, B.matched_wh_iou, ref_wh_iou),
        (B.pairwise_side_ratio, B.matched_side_ratio, ref_side_ratio),
    ):
        _check(pairwise(wh1, wh2), brute_pairwise(ref, w1, w2), dtype, device)
        _check(matched(wh1[:7], wh2), np.array([ref(a, b) for a, b in zip(w1[:7], w2)]), dtype, device)
    area = [(b[2] - b[0]) * (b[3] - b[1]) for b in b1.tolist()]
    _check(B.box_area(t1), np.array(area), dtype, device, SCALE**2)
    for kind in (
        "xywh_to_xyxy",
        "xyxy_to_xywh",
        "cxcywh_to_xyxy",
        "xyxy_to_cxcywh",
        "xywh_to_cxcywh",
        "cxcywh_to_xywh",
    ):
        _check(getattr(B, kind)(t1), np.array([ref_convert(kind, b) for b in b1.tolist()]), dtype, device, SCALE)
    stats = B.matched_overlaps(t1[:7], t2)
    for name in B.OVERLAP_STATS:  # the fused kernel is the single kernels, bit for bit
        assert torch.equal(stats[name], MATCHED[name](t1[:7], t2)), name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_iou_of_large_boxes(dtype, device):
    """Issue 11: float16 gave 0.0 (the area overflows to inf) and bfloat16 1.0; float64 says 0.9901."""
    a = torch.tensor([[0.0, 0.0, 300.0, 300.0]], dtype=dtype, device=device)
    b = torch.tensor([[1.0, 1.0, 301.0, 300.0]], dtype=dtype, device=device)
    res = torch.finfo(dtype).resolution
    for kind in KINDS:
        out = B.pairwise_iou(a, b, kind)
        assert out.dtype == dtype
        want = ref_iou(a[0].double().tolist(), b[0].double().tolist(), kind)  # on the rounded inputs
        assert abs(float(out) - want) <= res, kind
        assert abs(float(out) - ref_iou([0, 0, 300, 300], [1, 1, 301, 300], kind)) <= res, kind


@pytest.mark.parametrize("name", list(PAIRWISE))
def test_non_finite_boxes_give_nan_for_every_kernel(name):
    """Issue 11: _safe_div mapped inf/NaN to 0, so plain IoU of an overflowed box looked like 0."""
    good = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]])
    for bad in ([0.0, 0.0, math.inf, 10.0], [-math.inf, 0.0, 10.0, 10.0], [0.0, math.nan, 10.0, 10.0]):
        boxes = np.array([bad, [1.0, 1.0, 9.0, 9.0]])
        out = PAIRWISE[name](boxes, good)
        assert np.isnan(out[0]).all() and np.isfinite(out[1]).all(), (name, bad)
        assert np.isnan(MATCHED[name](boxes, good)[0]) and np.isnan(PAIRWISE[name](good, boxes)[:, 0]).all()
    assert np.isnan(B.pairwise_wh_iou([[math.inf, 1.0]], [[1.0, 1.0]])).all()
    assert np.isnan(B.pairwise_side_ratio([[math.nan, 1.0]], [[1.0, 1.0]])).all()
    assert B.valid_predictions(np.array([[0.0, 0.0, math.inf, 1.0], [0.0, 0.0, 1.0, 1.0]])).tolist() == [False, True]


def test_side_ratio_is_one_direction_of_both_ultralytics_forms():
    """One kernel, one direction: ``side_ratio > 1/t`` is YOLOv5's ``max(r, 1/r) < t`` and autoanchor's x."""
    rng = np.random.default_rng(7)
    wh = rng.uniform(1, 300, size=(200, 2))
    anchors = rng.uniform(5, 300, size=(9, 2))
    x = B.pairwise_side_ratio(wh, anchors)
    for i, (w, h) in enumerate(wh.tolist()):
        for j, (aw, ah) in enumerate(anchors.tolist()):
            rw, rh = w / aw, h / ah
            worst = max(rw, 1 / rw, rh, 1 / rh)  # YOLOv5 build_targets
            assert x[i, j] == pytest.approx(1 / worst, rel=1e-12)
            assert (x[i, j] > 1 / 4.0) == (worst < 4.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_box_set_pair_overlaps_are_matched_overlaps_bit_for_bit(dtype, device):
    """BoxSet (areas and validity once per box, no NaN masks for a tame set) changes no bit, and
    agrees with the float64 loop within the dtype's resolution."""
    t, b = matrix_boxes(dtype, device, 12, 5)
    rng = np.random.default_rng(5)
    first, second = rng.integers(0, 12, 40), rng.integers(0, 12, 40)
    box_set = B.BoxSet(t)
    assert box_set.tame and len(box_set) == 12
    got = box_set.pair_overlaps(first, second)
    want = B.matched_overlaps(t[first], t[second])
    for name in B.OVERLAP_STATS:
        assert torch.equal(got[name], want[name]), name
        ref = np.array([REFS[name](b[i].tolist(), b[j].tolist()) for i, j in zip(first, second)])
        _check(got[name], ref, dtype, device, SCALE if name in ("gap", "center") else 0.0)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 1e200])
def test_box_set_with_a_non_finite_or_huge_box_is_not_tame(bad):
    # 1e200 is finite, but its area (and centre offsets squared) overflow: the per-pair masks apply
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0], [0.0, 0.0, bad, 10.0]])
    box_set = B.BoxSet(boxes)
    assert not box_set.tame
    first, second = np.array([0, 0, 1, 2]), np.array([1, 2, 2, 2])
    got = box_set.pair_overlaps(first, second, ("center", "iou", "gap"))
    assert list(got) == ["center", "iou", "gap"]
    want = B.matched_overlaps(boxes[first], boxes[second], ("center", "iou", "gap"))
    for name in got:
        np.testing.assert_array_equal(got[name], want[name])  # NaN where matched_overlaps has NaN
        assert isinstance(got[name], np.ndarray) and got[name].dtype == np.float64
    if bad != 1e200:
        assert np.isnan(got["iou"][1:]).all() and np.isfinite(got["iou"][0])
    assert B.BoxSet(np.zeros((0, 4))).pair_overlaps(np.zeros(0, np.int64), np.zeros(0, np.int64))["iou"].shape == (0,)
    with pytest.raises(OptionError, match="must be among"):
        box_set.pair_overlaps(first, second, ("ciou",))
    with pytest.raises(OptionError, match=r"shape \(N, 4\)"):
        B.BoxSet(np.zeros((2, 3, 4)))


# --------------------------------------------------------------------------------------------------
# the declared types: a tensor among the inputs gives a tensor, numpy arrays and lists give numpy
# --------------------------------------------------------------------------------------------------
OVERLOADED = [n for n in B.__all__ if inspect.isfunction(getattr(B, n)) and typing.get_overloads(getattr(B, n))]


def _argument(hint, name: str):
    """A real input of the declared type: 3 boxes (or sizes, for the wh kernels) as a tensor or as numpy."""
    boxes = [[0.0, 0.0, 10.0, 8.0], [2.0, 1.0, 12.0, 9.0], [20.0, 20.0, 21.0, 40.0]]
    value = [row[2:] for row in boxes] if name.startswith("wh") else boxes
    return torch.tensor(value) if hint is torch.Tensor else np.array(value)


@pytest.mark.parametrize("name", OVERLOADED)
def test_overloads_declare_what_the_kernels_return(name):
    """Each overload of a public kernel, called with inputs of its parameter types, returns its return type."""
    assert len(OVERLOADED) >= 20, OVERLOADED  # every conversion, overlap and distance kernel
    func = getattr(B, name)
    for stub in typing.get_overloads(func):
        hints = typing.get_type_hints(stub, globalns=vars(B))
        required = [
            p.name
            for p in inspect.signature(stub).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty
        ]
        out = func(*(_argument(hints[p], p) for p in required))
        want = hints["return"]
        if typing.get_origin(want) is dict:
            want = typing.get_args(want)[1]
            assert isinstance(out, dict) and out and all(type(v) is want for v in out.values()), (name, hints)
        else:
            assert type(out) is want, (name, hints, type(out))


def test_box_set_returns_the_array_type_it_was_built_from():
    boxes = [[0.0, 0.0, 10.0, 8.0], [2.0, 1.0, 12.0, 9.0]]
    idx = np.array([0]), np.array([1])
    assert all(isinstance(v, torch.Tensor) for v in B.BoxSet(torch.tensor(boxes)).pair_overlaps(*idx).values())
    assert all(isinstance(v, np.ndarray) for v in B.BoxSet(np.array(boxes)).pair_overlaps(*idx).values())


def test_iou_kind_checks_and_narrows():
    assert B.iou_kind("ciou") == "ciou"
    with pytest.raises(OptionError, match=r"^iou must be one of iou, giou, diou, ciou, got 'eiou'$") as err:
        B.iou_kind("eiou", "iou")
    assert err.value.param == "iou"
    with pytest.raises(OptionError, match=r"^kind must be one of iou, giou, diou, ciou, got 'eiou'$"):
        B.pairwise_iou([[0.0, 0.0, 1.0, 1.0]], [[0.0, 0.0, 1.0, 1.0]], "eiou")
