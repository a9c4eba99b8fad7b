"""Label assigners (yolov3 / darknet / yolov5) against plain per-object loops written from the reference code.

The other assigners of the registry have their tests in tests/test_assigners.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cocostat.anchors import parse_anchor_spec
from cocostat.assign import (
    AnchorGrid,
    assign,
    default_strides,
    grid_from_anchor_set,
    grid_from_manifest,
    positive_mask,
)
from cocostat.assigners.yolov5 import neighbour_cells
from cocostat.errors import OptionError

#: the three assigners of the trainers (the first ones; tests/test_assigners.py has the others).
ASSIGNERS = ("yolov3", "darknet", "yolov5")

YOLOV3 = [(10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326)]


def yolov3_grid(size=416) -> AnchorGrid:
    return AnchorGrid("yolov3", YOLOV3, [2, 2, 2, 1, 1, 1, 0, 0, 0], [32, 16, 8], size)


# ---- brute-force references: one object, one anchor at a time, Python floats ----------------------
def ref_wh_iou(w, h, aw, ah):
    inter = min(w, aw) * min(h, ah)
    union = w * h + aw * ah - inter
    return inter / union if union > 0 else 0.0


def ref_assign(box, grid: AnchorGrid, kind: str, iou_t=0.225, ratio_t=4.0):
    """matched (A,) list of bool, cells per level [(gx, gy)], neighbours per level [left, up, right, down]."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    ious = [ref_wh_iou(w, h, aw, ah) for aw, ah in grid.wh]
    if kind == "yolov3":  # ultralytics build_targets: j = iou.view(-1) > iou_t
        matched = [v > iou_t for v in ious]
    elif kind == "darknet":  # yolo_layer: best_iou = 0; for n: if iou > best_iou: best = n
        best_iou, best_n = 0.0, -1
        for n, v in enumerate(ious):
            if v > best_iou:
                best_iou, best_n = v, n
        matched = [n == best_n for n in range(len(ious))]
    else:  # yolov5: r = t_wh / anchors; max(r, 1/r).max(2) < anchor_t
        matched = []
        for aw, ah in grid.wh:
            rs = [w / aw, h / ah]
            worst = max(max(r, 1 / r) if r > 0 else math.inf for r in rs)
            matched.append(worst < ratio_t)
    cells, neigh = [], []
    for s in grid.strides:
        W = grid.size // s
        gx, gy = cx / s, cy / s
        cells.append((min(max(math.floor(gx), 0), W - 1), min(max(math.floor(gy), 0), W - 1)))
        if kind != "yolov5":
            neigh.append([False] * 4)
            continue
        # j, k = ((gxy % 1 < g) & (gxy > 1)).T; l, m = ((gxi % 1 < g) & (gxi > 1)).T with gxi = W - gxy
        j, k = (gx % 1 < 0.5) and gx > 1, (gy % 1 < 0.5) and gy > 1
        l, m = ((W - gx) % 1 < 0.5) and (W - gx) > 1, ((W - gy) % 1 < 0.5) and (W - gy) > 1
        neigh.append([j, k, l, m])
    return matched, cells, neigh


def random_boxes(rng, n, size=416):
    side = np.exp(rng.normal(np.log(40), 1.0, n)).clip(0.5, size)
    asp = np.exp(rng.normal(0, 0.7, n))
    w, h = (side * np.sqrt(asp)).clip(0.5, size), (side / np.sqrt(asp)).clip(0.5, size)
    cx, cy = rng.uniform(w / 2, size - w / 2), rng.uniform(h / 2, size - h / 2)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


@pytest.mark.parametrize("kind", ASSIGNERS)
@pytest.mark.parametrize("grid_name", ["yolov3", "yolov3-tiny"])
def test_assign_matches_reference_loop(kind, grid_name):
    grid = yolov3_grid() if grid_name == "yolov3" else grid_from_anchor_set(parse_anchor_spec("yolov3-tiny"), 416)
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 400)
    boxes[:5] = [[0, 0, 1, 1], [100, 100, 100, 120], [0, 0, 416, 416], [200, 200, 216, 232], [15.9, 15.9, 16.1, 16.1]]
    res = assign(boxes, grid, kind, iou_t=0.25, ratio_t=3.5)
    for g, b in enumerate(boxes):
        matched, cells, neigh = ref_assign(b, grid, kind, iou_t=0.25, ratio_t=3.5)
        assert res.matched[g].tolist() == matched, (g, b)
        assert res.cell[g].tolist() == [list(c) for c in cells]
        if kind == "yolov5":
            assert neighbour_cells(res.boxes[g : g + 1], grid)[0].tolist() == neigh
        w, h = b[2] - b[0], b[3] - b[1]
        np.testing.assert_allclose(res.wh_iou[g].numpy(), [ref_wh_iou(w, h, *a) for a in grid.wh], rtol=1e-12)
    assert res.matched.dtype == torch.bool and res.matched.shape == (400, grid.num_anchors)
    assert res.assigner.name == kind


@settings(max_examples=60, deadline=None)
@given(
    w=st.floats(0.5, 400),
    h=st.floats(0.5, 400),
    cx=st.floats(1, 415),
    cy=st.floats(1, 415),
    iou_t=st.floats(0.05, 0.6),
    kind=st.sampled_from(ASSIGNERS),
)
def test_assign_single_box_property(w, h, cx, cy, iou_t, kind):
    grid = yolov3_grid()
    box = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
    res = assign(box, grid, kind, iou_t=iou_t)
    matched, _, neigh = ref_assign(box[0], grid, kind, iou_t=iou_t)
    assert res.matched[0].tolist() == matched
    if kind == "yolov5":
        assert neighbour_cells(res.boxes, grid)[0].tolist() == neigh
    if kind == "darknet":
        assert int(res.matched.sum()) == 1  # every box of positive size has exactly one best anchor
    # positives over the whole grid: one per matched anchor, plus the neighbour cells for yolov5
    extra = sum(neigh[grid.level[a]].count(True) for a in range(grid.num_anchors) if matched[a])
    assert int(res.positives.sum()) == sum(matched) + (extra if kind == "yolov5" else 0)


def test_known_cases():
    grid = yolov3_grid()
    # a box the size of anchor 4 (62x45): wh-IoU 1 with it; yolov3 matches it (and others above 0.225)
    res = assign([[100, 100, 162, 145]], grid, "yolov3")
    assert res.wh_iou[0, 4].item() == 1.0 and res.matched[0, 4]
    assert assign([[100, 100, 162, 145]], grid, "darknet").matched[0].nonzero().tolist() == [[4]]
    # a 1x1 px box: no yolov3 anchor (best wh-IoU 1/130); darknet still takes the smallest anchor
    tiny = [[10, 10, 11, 11]]
    assert not assign(tiny, grid, "yolov3").matched.any()
    assert assign(tiny, grid, "darknet").matched[0].nonzero().tolist() == [[0]]
    assert not assign(tiny, grid, "yolov5").matched.any()  # 10/1 > 4
    # a zero-size box matches nothing, not even with darknet
    assert not assign([[10, 10, 10, 30]], grid, "darknet").matched.any()


def test_yolov5_neighbour_cells_edges():
    grid = yolov3_grid()
    # centre (40, 40): stride 32 -> 1.25 cells: fraction < 0.5 but x > 1 -> the cell to the left and above
    L, U, R, D = range(4)

    def sides(box, level=0):
        b = torch.tensor([box], dtype=torch.float64)
        return [i for i, v in enumerate(neighbour_cells(b, grid)[0, level].tolist()) if v]

    res = assign([[30, 30, 50, 50]], grid, "yolov5")
    assert sides([30, 30, 50, 50]) == [L, U] and res.cell[0, 0].tolist() == [1, 1]
    # centre (16, 16) at stride 32: 0.5 cells, fraction exactly 0.5: neither side (strict < 0.5 both ways)
    assert sides([6, 6, 26, 26]) == []
    # centre (8, 408) at stride 32: x = 0.25 (not > 1: no left cell), y = 12.75 -> W - y = 0.25: no cell below
    assert sides([0, 400, 16, 416]) == []
    # centre (400, 200) at stride 32: x = 12.5 -> fraction 0.5 -> no horizontal; y = 6.25 -> above
    assert sides([390, 190, 410, 210]) == [U]
    # x = 11.75: W - x = 1.25 > 1 with fraction 0.25 -> the cell to the right
    assert sides([366, 190, 386, 210]) == [U, R]
    # centre exactly on a cell border (x = 6.0, y = 6.0 cells): both sides of both axes, as YOLOv5 does
    assert sides([182, 182, 202, 202]) == [L, U, R, D]


def test_positive_mask_layout():
    grid = yolov3_grid()
    r = 1
    offs = np.arange(-r, r + 1)
    dy_, dx_ = np.meshgrid(offs, offs, indexing="ij")
    anchor = np.repeat(np.arange(9), 9)
    dy, dx = np.tile(dy_.ravel(), 9), np.tile(dx_.ravel(), 9)
    boxes = random_boxes(np.random.default_rng(0), 60)
    for kind in ASSIGNERS:
        res = assign(boxes, grid, kind)
        pos = positive_mask(res, grid, anchor, dx, dy).numpy()
        for g in range(len(boxes)):
            matched, _, neigh = ref_assign(boxes[g], grid, kind)
            for n in range(anchor.size):
                a = anchor[n]
                left, up, right, down = neigh[grid.level[a]]
                cell = (int(dx[n]), int(dy[n]))
                want = matched[a] and (
                    cell == (0, 0)
                    or (cell == (-1, 0) and left)
                    or (cell == (0, -1) and up)
                    or (cell == (1, 0) and right)
                    or (cell == (0, 1) and down)
                )
                assert pos[g, n] == want, (kind, g, n)
        if kind != "yolov5":
            assert pos.sum() == res.matched.sum().item()


def test_empty_and_bad_inputs():
    grid = yolov3_grid()
    res = assign(np.zeros((0, 4)), grid, "yolov5")
    assert res.matched.shape == (0, 9) and res.cell.shape == (0, 3, 2) and res.positives.shape == (0, 81)
    assert positive_mask(res, grid, [0, 1], [0, 0], [0, 0]).shape == (0, 2)
    with pytest.raises(OptionError, match="^assigner must be one of"):
        assign([[0, 0, 1, 1]], grid, "retina")
    with pytest.raises(OptionError, match="^iou_t must lie in"):
        assign([[0, 0, 1, 1]], grid, "yolov3", iou_t=1.5)
    with pytest.raises(OptionError, match="^ratio_t must be greater than 1"):
        assign([[0, 0, 1, 1]], grid, "yolov5", ratio_t=0.5)
    with pytest.raises(OptionError, match=r"shape \(G, 4\)"):
        assign([[0, 0, 1]], grid, "yolov3")


def test_grids():
    assert default_strides(3) == [32, 16, 8] and default_strides(2) == [32, 16]
    g = grid_from_anchor_set(parse_anchor_spec("yolov3-spp"), 608)
    assert g.level.tolist() == [2, 2, 2, 1, 1, 1, 0, 0, 0] and g.strides.tolist() == [32, 16, 8]
    assert g.grid.tolist() == [19, 38, 76] and g.masks() == [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
    t = grid_from_anchor_set(parse_anchor_spec("yolov3-tiny"), 416)
    assert t.level.tolist() == [1, 1, 1, 0, 0, 0] and t.strides.tolist() == [32, 16]
    m = grid_from_manifest(
        {
            "anchors": YOLOV3,
            "size": 320,
            "levels": [
                {"mask": [6, 7, 8], "stride": 32},
                {"mask": [3, 4, 5], "stride": 16},
                {"mask": [0, 1, 2], "stride": 8},
            ],
        }
    )
    assert m.level.tolist() == g.level.tolist() and m.size == 320 and m.wh.shape == (9, 2)
    flat = grid_from_manifest(
        {"anchors": [10, 14, 23, 27], "size": 416, "levels": [{"mask": [1], "stride": 32}, {"mask": [0], "stride": 16}]}
    )
    assert flat.wh.tolist() == [[10, 14], [23, 27]] and flat.level.tolist() == [1, 0]
    with pytest.raises(OptionError, match="multiple of every stride"):
        grid_from_anchor_set(parse_anchor_spec("yolov3"), 400)
    with pytest.raises(OptionError, match="belong to no level"):
        grid_from_manifest({"anchors": YOLOV3, "size": 416, "levels": [{"mask": [6, 7, 8], "stride": 32}]})
    with pytest.raises(OptionError, match="manifest.json: expected anchors"):
        grid_from_manifest({"anchors": YOLOV3, "size": 416})


@pytest.mark.gpu
def test_assign_on_cuda_matches_cpu():
    grid = yolov3_grid()
    boxes = torch.from_numpy(random_boxes(np.random.default_rng(1), 5000))
    for kind in ASSIGNERS:
        cpu = assign(boxes, grid, kind)
        gpu = assign(boxes.cuda(), grid, kind)
        assert gpu.matched.is_cuda
        assert torch.equal(cpu.matched, gpu.matched.cpu()) and torch.equal(cpu.positives, gpu.positives.cpu())
