"""Every registered assigner against a brute-force reference written here with plain loops.

Box-only assigners are checked against loops over **every slot of the whole grid** (so the reach
each module claims is checked too); prediction-aware ones against loops over the stored candidate
rows. Inputs: hand-built edge cases (ties, cell borders, tiny and huge objects, image edges,
crowded images with conflicts, zero-size boxes, an empty image), random boxes, the built-in
sample, and the real yolov3-tiny predictions on coco-tiny val2017.
"""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_assign import random_boxes, ref_assign, ref_wh_iou, yolov3_grid
from test_audit import TableBuilder

from cocostat import assigners
from cocostat.anchors import parse_anchor_spec
from cocostat.assign import AnchorGrid, grid_from_anchor_set
from cocostat.assigners import candidate_slots, grid_slots
from cocostat.audit import dense_image_index, load_inputs
from cocostat.boxes import matched_iou
from cocostat.candidates import to_arrays
from cocostat.data import load_dataset
from cocostat.errors import CocostatWarning, OptionError

BOX_ONLY = ("yolov3", "darknet", "yolov5", "atss", "topk-anchor")
PRED_AWARE = ("topk-iou", "best-pred", "mixed", "simota", "tal")


def test_registry_is_the_package():
    assert set(assigners.NAMES) == set(BOX_ONLY) | set(PRED_AWARE)
    for name in assigners.NAMES:
        cls = assigners.load(name)
        assert cls.name == name and cls.summary and cls.__doc__
        assert cls.needs_predictions == (name in PRED_AWARE)
        doc = __import__(cls.__module__, fromlist=["ASSIGNER"]).__doc__
        assert "Definition" in doc and "Source" in doc and doc.startswith(f"``{name}``")
    with pytest.raises(OptionError, match="^assigner must be one of atss, best-pred"):
        assigners.create("retina")
    # the shared options reach only the assigners they belong to
    made = {n: assigners.create(n, topk=3, alpha=0.2, iou_t=0.3, ratio_t=3.0) for n in assigners.NAMES}
    assert made["topk-anchor"].topk == 3 and made["topk-iou"].topk == 3 and made["mixed"].alpha == 0.2
    assert made["atss"].topk == 9 and made["tal"].topk == 10 and made["tal"].alpha == 0.5
    assert made["yolov3"].iou_t == 0.3 and made["mixed"].iou_t == 0.3 and made["yolov5"].ratio_t == 3.0


@pytest.mark.parametrize("bad", [{"topk": 0}, {"topk": 2.5}, {"alpha": 1.5}, {"iou_t": 1.0}, {"ratio_t": 1.0}])
def test_bad_options(bad):
    owner = {"topk": "topk-anchor", "alpha": "mixed", "iou_t": "yolov3", "ratio_t": "yolov5"}[next(iter(bad))]
    name = next(iter(bad))
    with pytest.raises(OptionError, match=f"^{name} must") as err:  # the Python parameter, not a CLI flag
        assigners.create(owner, **bad)
    assert err.value.param == name


# --------------------------------------------------------------------------------------------------
# brute-force references
# --------------------------------------------------------------------------------------------------
def whole_grid(grid: AnchorGrid):
    """Every slot of one image: (key, level, gx, gy, anchor, cx, cy, aw, ah), numbered level, row, column, anchor."""
    out, key = [], 0
    for lv in range(grid.num_levels):
        mask = [a for a in range(grid.num_anchors) if grid.level[a] == lv]
        s, W = int(grid.strides[lv]), int(grid.grid[lv])
        for y in range(W):
            for x in range(W):
                for a in mask:
                    out.append((key, lv, x, y, a, (x + 0.5) * s, (y + 0.5) * s, *map(float, grid.wh[a])))
                    key += 1
    return out


def py_iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return min(inter / union, 1.0) if union > 0 else 0.0


def centre_cell(box, grid, lv):
    s, W = float(grid.strides[lv]), int(grid.grid[lv])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return min(max(math.floor(cx / s), 0), W - 1), min(max(math.floor(cy / s), 0), W - 1)


def resolve(claims, better):
    """claims: {(image, key): [(object, metric), ...]} -> set of (object, key) kept: best metric, then first object."""
    kept = set()
    for (_, key), cl in claims.items():
        best = cl[0]
        for c in cl[1:]:
            if better(c[1], best[1]):
                best = c
        kept.add((best[0], key))
    return kept


def ref_box_only(name, boxes, images, grid, *, iou_t=0.225, ratio_t=4.0, topk=5):
    """Positive slot keys per object, by loops over every slot of the whole grid."""
    slots = whole_grid(grid)
    out = []
    claims: dict = {}
    for g, box in enumerate(boxes):
        box = [float(v) for v in box]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        cells = [centre_cell(box, grid, lv) for lv in range(grid.num_levels)]
        pos = set()
        if name in ("yolov3", "darknet", "yolov5"):
            matched, _, neigh = ref_assign(box, grid, name, iou_t=iou_t, ratio_t=ratio_t)
            for key, lv, x, y, a, *_ in slots:
                ccx, ccy = cells[lv]
                left, up, right, down = neigh[lv]
                at = (x - ccx, y - ccy)
                side = (
                    (at == (-1, 0) and left)
                    or (at == (0, -1) and up)
                    or (at == (1, 0) and right)
                    or (at == (0, 1) and down)
                )
                if matched[a] and (at == (0, 0) or (name == "yolov5" and side)):
                    pos.add(key)
        elif name == "atss":
            cand = []
            for lv in range(grid.num_levels):
                ranked = sorted(
                    (((sx - cx) ** 2 + (sy - cy) ** 2), key, sx, sy, aw, ah)
                    for key, l2, x, y, a, sx, sy, aw, ah in slots
                    if l2 == lv
                )
                cand += ranked[:9]
            ious = [py_iou([sx - aw / 2, sy - ah / 2, sx + aw / 2, sy + ah / 2], box) for _, _, sx, sy, aw, ah in cand]
            thr = statistics.fmean(ious) + statistics.stdev(ious) if len(ious) > 1 else math.nan
            for (_, key, sx, sy, _, _), v in zip(cand, ious):
                inside = min(sx - box[0], sy - box[1], box[2] - sx, box[3] - sy) > 0.01
                if v >= thr - 1e-12 and inside:
                    claims.setdefault((images[g], key), []).append((g, v))
        elif name == "topk-anchor":
            ranked = []
            for key, lv, x, y, a, sx, sy, aw, ah in slots:
                v = py_iou([sx - aw / 2, sy - ah / 2, sx + aw / 2, sy + ah / 2], box)
                if v > 0:
                    ranked.append((-round(v / 1e-12), (sx - cx) ** 2 + (sy - cy) ** 2, key))
            pos = {key for *_, key in sorted(ranked)[:topk]}
        else:
            raise ValueError(name)
        out.append(pos)
    if name == "atss":
        out = [set() for _ in boxes]
        for g, key in resolve(claims, lambda a, b: a > b):
            out[g].add(key)
    return out


def stored_rows(arrays, g, grid):
    """The stored slots of object g: dicts with key, level, cell centre, prediction and scores."""
    tables = {}
    for lv in range(grid.num_levels):
        mask = [a for a in range(grid.num_anchors) if grid.level[a] == lv]
        offset = sum(int(grid.grid[v]) ** 2 * int((grid.level == v).sum()) for v in range(lv))
        for i, a in enumerate(mask):
            tables[a] = (offset, int(grid.grid[lv]), len(mask), i, float(grid.strides[lv]))
    rows = []
    for n in range(arrays.anchor.shape[0]):
        a = int(arrays.anchor[n])
        off, W, per, local, s = tables[a]
        x, y = int(arrays.gx[g, n]), int(arrays.gy[g, n])
        inside = bool(arrays.valid[g, n])
        pred = [float(v) for v in arrays.pred[g, n]]
        obj, cls = float(arrays.obj[g, n]), float(arrays.cls_prob[g, n])
        finite = inside and all(math.isfinite(v) for v in [*pred, obj, cls])
        rows.append(
            {
                "key": off + (y * W + x) * per + local,
                "anchor": a,
                "dx": int(arrays.dx[n]),
                "dy": int(arrays.dy[n]),
                "cx": (x + 0.5) * s,
                "cy": (y + 0.5) * s,
                "stride": s,
                "inside": inside,
                "valid": finite,
                "pred": pred,
                "obj": obj,
                "cls": cls,
                "score": float(np.float32(arrays.obj[g, n]) * np.float32(arrays.cls_prob[g, n])),
            }
        )
    return rows


def kernel_ious(arrays, iou):
    """(plain IoU, chosen-kind IoU) (G, N) float32 of each stored prediction: the assigners' input data
    (the IoU kernels have their own brute-force tests in tests/test_boxes.py)."""
    pred, gt = torch.from_numpy(arrays.pred.copy()), torch.from_numpy(arrays.gt.copy())[:, None, :]
    return matched_iou(pred, gt, "iou").numpy(), matched_iou(pred, gt, iou).numpy()


def ref_pred_aware(name, arrays, images, grid, *, iou="iou", topk=5, alpha=0.5, iou_t=0.225):
    """Positive slot keys per object, by loops over each object's stored candidate rows."""
    plain, chosen = kernel_ious(arrays, iou)
    out, claims = [], {}
    for g in range(arrays.gt.shape[0]):
        box = [float(v) for v in arrays.gt[g]]
        w, h = max(box[2] - box[0], 0.0), max(box[3] - box[1], 0.0)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        rows = stored_rows(arrays, g, grid)
        for n, r in enumerate(rows):
            r["iou"], r["q"] = float(plain[g, n]), float(chosen[g, n])
        valid = [r for r in rows if r["valid"]]
        pos = set()
        if name in ("topk-iou", "best-pred"):
            k = 1 if name == "best-pred" else topk
            pos = {r["key"] for r in sorted(valid, key=lambda r: (-r["q"], r["key"]))[:k]}
        elif name == "mixed":
            for r in valid:
                wh = ref_wh_iou(w, h, *grid.wh[r["anchor"]])
                if r["dx"] == 0 and r["dy"] == 0 and alpha * wh + (1 - alpha) * r["q"] > iou_t:
                    pos.add(r["key"])
        elif name == "simota":
            cand = []
            for r in valid:
                in_box = min(r["cx"] - box[0], r["cy"] - box[1], box[2] - r["cx"], box[3] - r["cy"]) > 0
                rad = 2.5 * r["stride"]
                in_c = min(r["cx"] - (cx - rad), r["cy"] - (cy - rad), cx + rad - r["cx"], cy + rad - r["cy"]) > 0
                if in_box or in_c:
                    u = max(r["iou"], 0.0)
                    p = math.sqrt(max(r["obj"] * r["cls"], 0.0))
                    cls_cost = min(-math.log(p), 100.0) if p > 0 else 100.0
                    cost = cls_cost + 3.0 * -math.log(u + 1e-8) + (0.0 if (in_box and in_c) else 1e5)
                    cand.append((cost, r["key"], u))
            top = sorted(cand, key=lambda c: (-c[2], c[1]))[:10]
            k = max(1, math.floor(sum(c[2] for c in top)))
            for cost, key, _ in sorted(cand)[:k]:
                claims.setdefault((images[g], key), []).append((g, cost))
        elif name == "tal":
            cand = []
            for r in valid:
                if min(r["cx"] - box[0], r["cy"] - box[1], box[2] - r["cx"], box[3] - r["cy"]) > 1e-9:
                    t = max(r["score"], 0.0) ** 0.5 * max(r["iou"], 0.0) ** 6.0
                    cand.append((-t, r["key"], r["iou"]))
            for _, key, u in sorted(cand)[:10]:
                claims.setdefault((images[g], key), []).append((g, u))
        else:
            raise ValueError(name)
        out.append(pos)
    if name in ("simota", "tal"):
        out = [set() for _ in range(arrays.gt.shape[0])]
        better = (lambda a, b: a < b) if name == "simota" else (lambda a, b: a > b)
        for g, key in resolve(claims, better):
            out[g].add(key)
    return out


# --------------------------------------------------------------------------------------------------
# the vectorised side, as sets of slot keys
# --------------------------------------------------------------------------------------------------
def as_sets(slots, pos) -> list[set]:
    out = [set() for _ in range(slots.num_objects)]
    for g, n in torch.nonzero(pos).tolist():
        out[g].add(int(slots.key[g, n]))
    return out


def run_box_only(name, boxes, images, grid, **opts):
    asg = assigners.create(name, **opts)
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float64)).reshape(-1, 4)
    slots = grid_slots(b, grid, asg.reach(grid), torch.as_tensor(np.asarray(images, dtype=np.int64)))
    return as_sets(slots, asg.positives(slots))


def run_pred_aware(name, arrays, images, grid, iou="iou", **opts):
    asg = assigners.create(name, **opts)
    slots = candidate_slots(
        torch.from_numpy(arrays.gt.astype(np.float64)),
        grid,
        arrays,
        torch.as_tensor(np.asarray(images, dtype=np.int64)),
        iou=iou,
    )
    return as_sets(slots, asg.positives(slots))


def check_box_only(name, boxes, images, grid, **opts):
    got = run_box_only(name, boxes, images, grid, **opts)
    want = ref_box_only(name, boxes, images, grid, **opts)
    bad = [(g, sorted(got[g]), sorted(want[g])) for g in range(len(want)) if got[g] != want[g]]
    assert not bad, (name, bad[:3])
    return got


EDGE_BOXES = [
    [0, 0, 1, 1],  # tiny, image corner
    [10, 10, 10, 30],  # zero width
    [100, 100, 100, 100],  # zero size
    [0, 0, 416, 416],  # the whole image
    [400, 400, 416, 416],  # far corner
    [48, 48, 80, 80],  # centre (64, 64): on cell borders of every level
    [182, 182, 202, 202],  # centre (192, 192): on a border at every stride
    [15.9, 15.9, 16.1, 16.1],  # tiny, centre on a stride-16 border
    [200, 200, 216, 232],
    [300.5, 10.25, 415.75, 120.5],
]
CROWD = [[150 + i, 150 + 2 * i, 210 + i, 230 - i] for i in range(8)]  # one image, 8 overlapping objects


@pytest.mark.parametrize("name", BOX_ONLY)
def test_box_only_hand_built_edges_and_crowd(name):
    grid = yolov3_grid()
    boxes = EDGE_BOXES + CROWD
    images = [0] * len(EDGE_BOXES) + [1] * len(CROWD)
    got = check_box_only(name, boxes, images, grid)
    assert got[1] == set() and got[2] == set()  # zero-size boxes get no positive
    if name in ("darknet", "topk-anchor"):
        assert len(got[3]) >= 1  # the whole-image box matches
    if name == "atss":  # the crowd conflicts: every slot of the crowded image has one object
        keys = [k for g in range(len(EDGE_BOXES), len(boxes)) for k in got[g]]
        assert len(keys) == len(set(keys)) > 0
    # an empty image
    empty = run_box_only(name, np.zeros((0, 4)), [], grid)
    assert empty == []


@pytest.mark.parametrize("name", BOX_ONLY)
@pytest.mark.parametrize("anchors", ["yolov3", "yolov3-tiny"])
def test_box_only_random_boxes_against_whole_grid_loop(name, anchors):
    grid = yolov3_grid(320) if anchors == "yolov3" else grid_from_anchor_set(parse_anchor_spec(anchors), 320)
    rng = np.random.default_rng(7)
    boxes = random_boxes(rng, 60, size=320)
    images = np.sort(rng.integers(0, 6, 60))  # a few crowded images
    check_box_only(name, boxes, images, grid, iou_t=0.3, ratio_t=3.5, topk=4)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 127), st.integers(0, 127), st.integers(0, 128), st.integers(0, 128)),
        min_size=1,
        max_size=6,
    ),
    name=st.sampled_from(BOX_ONLY),
    topk=st.integers(1, 9),
)
def test_box_only_property_small_grid(data, name, topk):
    """Integer boxes on a 128 px input (cell borders and ties everywhere), one image."""
    grid = AnchorGrid("small", [(8, 8), (20, 12), (30, 60), (64, 64)], [1, 1, 0, 0], [32, 16], 128)
    boxes = [[min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)] for x1, y1, x2, y2 in data]
    check_box_only(name, boxes, [0] * len(boxes), grid, topk=topk)


def test_reach_is_tight_enough_and_documented():
    grid = yolov3_grid()
    one = AnchorGrid("one", [(10, 10), (40, 40)], [1, 0], [32, 16], 416)  # one anchor per level
    assert assigners.create("atss").reach(grid) == 2 and assigners.create("atss").reach(one) == 8
    assert assigners.create("topk-anchor", topk=5).reach(grid) == 4
    assert [assigners.create(n).reach(grid) for n in ("yolov3", "darknet", "yolov5")] == [0, 0, 1]
    boxes = random_boxes(np.random.default_rng(2), 40, size=416)
    check_box_only("atss", boxes, np.arange(40), one)  # the wide reach of one-anchor levels


@pytest.mark.realdata
@pytest.mark.parametrize("name", BOX_ONLY)
def test_box_only_real_coco_tiny_boxes(real_data, name):
    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        inp = load_inputs(ds, anchors="yolov3-tiny", size=320)
    _, img = dense_image_index(inp.image_id)
    keep = img < 25  # 25 real images, every object of them
    check_box_only(name, inp.boxes[keep], img[keep], inp.grid)


# --------------------------------------------------------------------------------------------------
# prediction-aware assigners on hand-built tables
# --------------------------------------------------------------------------------------------------
def hand_table():
    objects = [  # (ann_id, image_id, class_idx, box, iscrowd)
        (1, 1, 0, [100, 100, 162, 145], 0),
        (2, 1, 1, [104, 98, 170, 150], 0),  # overlaps 1: conflicts
        (3, 1, 2, [106, 102, 160, 149], 0),
        (4, 2, 0, [0, 0, 30, 30], 0),  # image corner, neighbour cells outside the grid
        (5, 2, 3, [380, 390, 416, 416], 0),  # far corner
        (6, 3, 0, [192, 192, 192, 240], 0),  # zero width
        (7, 3, 4, [0, 0, 416, 416], 0),  # the whole image
        (8, 4, 5, [63, 63, 65, 65], 0),  # tiny, centre on cell borders
        (9, 4, 5, [63, 63, 65, 65], 0),  # its exact duplicate: ties between objects
    ]
    t = TableBuilder(objects)
    t.plant(0, 4, box=[101, 101, 161, 144], obj=0.95)  # a near-perfect prediction
    t.plant(1, 4, box=[101, 101, 161, 144], obj=0.97)  # the same slot, predicting object 1 better
    t.plant(2, 5, 1, 0, box=[np.nan, 0, 1, 1])  # a non-finite prediction
    t.plant(3, 0, obj=float("nan"))  # non-finite objectness
    return t


def hand_arrays():
    t = hand_table()
    frame = t.frame()
    arrays = to_arrays(frame)
    _, images = dense_image_index(arrays.image_id)
    from cocostat.assign import grid_from_manifest

    return arrays, images, grid_from_manifest(t.manifest())


@pytest.mark.parametrize("name", PRED_AWARE)
@pytest.mark.parametrize("iou", ["iou", "giou"])
def test_prediction_aware_hand_built(name, iou):
    arrays, images, grid = hand_arrays()
    got = run_pred_aware(name, arrays, images, grid, iou=iou, topk=3, alpha=0.3)
    want = ref_pred_aware(name, arrays, images, grid, iou=iou, topk=3, alpha=0.3)
    assert got == want
    assert got[5] == set() or name in ("topk-iou", "best-pred", "simota")  # zero width: nothing inside it
    if name in ("simota", "tal"):  # conflicts resolved: a slot has at most one object per image
        seen = [(int(images[g]), k) for g in range(len(got)) for k in got[g]]
        assert len(seen) == len(set(seen))
    if name == "best-pred":
        assert all(len(s) == 1 for s in got)


@pytest.mark.parametrize("name", PRED_AWARE)
def test_prediction_aware_no_objects(name):
    from cocostat.audit import _empty_arrays

    grid = yolov3_grid()
    assert run_pred_aware(name, _empty_arrays(grid, 1), np.zeros(0, np.int64), grid) == []


def test_mixed_alpha_one_is_yolov3_on_the_stored_slots():
    arrays, images, grid = hand_arrays()
    mixed = run_pred_aware("mixed", arrays, images, grid, alpha=1.0)
    asg = assigners.create("yolov3")
    slots = candidate_slots(torch.from_numpy(arrays.gt.astype(np.float64)), grid, arrays, torch.from_numpy(images))
    assert mixed == as_sets(slots, asg.positives(slots)) and any(mixed)


def test_prediction_aware_needs_predictions():
    grid = yolov3_grid()
    slots = grid_slots(torch.tensor([[0.0, 0, 10, 10]]), grid, 1)
    for name in PRED_AWARE:
        with pytest.raises(OptionError, match=f"^the {name} assigner needs predictions: give --predictions DIR"):
            assigners.create(name).positives(slots)
    # the per-slot figures of the prediction-aware assigners say so too (before: AttributeError on None)
    for name, figure in (("mixed", "quality"), ("simota", "cost"), ("tal", "alignment")):
        with pytest.raises(OptionError, match=f"^the {name} assigner needs predictions"):
            getattr(assigners.create(name), figure)(slots)
    with pytest.raises(OptionError, match="^this analysis needs predictions"):
        slots.predictions()


def test_slot_predictions_are_the_slots_fields():
    arrays, images, grid = hand_arrays()
    slots = candidate_slots(torch.from_numpy(arrays.gt.astype(np.float64)), grid, arrays, torch.from_numpy(images))
    p = slots.predictions()
    for name in p._fields:
        assert getattr(p, name) is getattr(slots, name), name
    assert p.pred.shape == (*p.q.shape, 4) and p.has_pred.dtype == torch.bool


def test_region_sizes_count_the_whole_grid():
    """region_size against a loop over every slot of the whole grid."""
    grid = yolov3_grid()
    boxes = np.array(EDGE_BOXES + CROWD, dtype=np.float64)
    slots = whole_grid(grid)
    b = torch.from_numpy(boxes)
    tal = assigners.create("tal").region_size(b, grid).tolist()
    sim = assigners.create("simota").region_size(b, grid).tolist()
    for g, box in enumerate(boxes.tolist()):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        n_tal = n_sim = 0
        for _, lv, x, y, a, sx, sy, aw, ah in slots:
            inside = min(sx - box[0], sy - box[1], box[2] - sx, box[3] - sy)
            r = 2.5 * float(grid.strides[lv])
            near = min(sx - cx + r, sy - cy + r, cx + r - sx, cy + r - sy)
            n_tal += inside > 1e-9
            n_sim += inside > 0 or near > 0
        assert (tal[g], sim[g]) == (n_tal, n_sim), box


# --------------------------------------------------------------------------------------------------
# the real thing: yolov3-tiny predictions on coco-tiny val2017
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_predictions(real_data, tmp_path_factory):
    """A predictions folder written by `cocostat predict` with the stock yolov3-tiny on coco-tiny val2017."""
    from click.testing import CliRunner

    from cocostat.cli import main

    out = tmp_path_factory.mktemp("preds") / "yolov3-tiny"
    models = real_data / "models"
    res = CliRunner().invoke(
        main,
        [
            "predict",
            "--root",
            str(real_data / "coco-tiny"),
            "val2017",
            "--cfg",
            str(models / "yolov3-tiny.cfg"),
            "--weights",
            str(models / "yolov3-tiny.weights"),
            "-o",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("name", PRED_AWARE)
def test_prediction_aware_real_predictions(real_data, real_predictions, name):
    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        inp = load_inputs(ds, real_predictions)
    _, images = dense_image_index(inp.image_id)
    for iou in ("iou", "ciou"):
        got = run_pred_aware(name, inp.candidates, images, inp.grid, iou=iou)
        want = ref_pred_aware(name, inp.candidates, images, inp.grid, iou=iou)
        bad = [g for g in range(len(want)) if got[g] != want[g]]
        assert not bad, (name, iou, bad[:5])
    assert sum(map(len, got)) > len(got) // 2  # a trained model: most objects get positives


@pytest.mark.realdata
@pytest.mark.slow
def test_box_only_positives_match_on_the_predictions_boxes(real_data, real_predictions):
    """Box-only assigners on the boxes of the predictions table (what the lab runs) against the loop."""
    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        inp = load_inputs(ds, real_predictions)
    _, images = dense_image_index(inp.image_id)
    keep = images < 12
    for name in BOX_ONLY:
        check_box_only(name, inp.boxes[keep], images[keep], inp.grid)


def test_topk_mask_against_a_loop_with_many_ties():
    from cocostat.assigners import topk_mask

    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        G, N = 30, int(torch.randint(1, 30, (1,), generator=gen))
        score = torch.randint(0, 4, (G, N), generator=gen).double()
        score[torch.rand(G, N, generator=gen) < 0.05] = math.nan
        allowed = torch.rand(G, N, generator=gen) > 0.3
        order = torch.randperm(N, generator=gen)
        then = torch.randint(0, 3, (G, N), generator=gen).double()
        k = torch.randint(0, 8, (G,), generator=gen)
        rank_of = {int(c): i for i, c in enumerate(order)}
        for second in (None, then):
            got = topk_mask(score, k, allowed, order, second)
            for g in range(G):
                cols = [n for n in range(N) if allowed[g, n] and not math.isnan(score[g, n])]
                cols.sort(key=lambda n: (-score[g, n].item(), 0 if second is None else second[g, n].item(), rank_of[n]))
                assert {n for n in range(N) if got[g, n]} == set(cols[: int(k[g])])
