"""anchor-audit: hand-built predictions with known answers, and a per-object brute-force reference."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from test_assign import ASSIGNERS, ref_assign, ref_wh_iou  # the three ref_assign knows

from benchmarks.bench_audit import (
    InMemoryPredictions,
    synthetic_candidates,
    synthetic_dataset,
)
from cocostat.assign import grid_from_manifest
from cocostat.audit import NEEDS_PREDICTIONS, anchor_audit, letterbox_boxes
from cocostat.boxes import IOU_KINDS
from cocostat.candidates import (
    COLUMNS,
    candidate_order,
    write_store,
)
from cocostat.data import from_dict, load_dataset
from cocostat.errors import CocostatWarning, OptionError
from cocostat.sources import run_model

YOLOV3 = [(10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326)]
MASKS = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]


# --------------------------------------------------------------------------------------------------
# A hand-built candidate table: every prediction is its anchor's box centred on the object (so its
# IoU is the anchor's wh-IoU), shifted by half a cell towards neighbouring cells; tests plant others.
# --------------------------------------------------------------------------------------------------
class TableBuilder:
    def __init__(self, objects, *, anchors=YOLOV3, masks=MASKS, strides=(32, 16, 8), size=416, r=1):
        """objects: list of (ann_id, image_id, class_idx, [x1, y1, x2, y2] input px, iscrowd)."""
        self.anchors = np.asarray(anchors, float)
        self.size, self.r = size, r
        self.masks, self.strides = masks, list(strides)
        level_of = np.zeros(len(anchors), int)
        for lv, m in enumerate(masks):
            level_of[m] = lv
        offs = np.arange(-r, r + 1)
        dy_, dx_ = np.meshgrid(offs, offs, indexing="ij")
        A, C = len(anchors), dy_.size
        self.anchor = np.repeat(np.arange(A), C)
        self.dy, self.dx = np.tile(dy_.ravel(), A), np.tile(dx_.ravel(), A)
        self.level = level_of[self.anchor]
        self.stride = np.asarray(strides, float)[self.level]
        self.objects = objects
        G, N = len(objects), self.anchor.size
        gt = np.array([o[3] for o in objects], float).reshape(G, 4)
        self.gt = gt
        cx, cy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
        n = size // self.stride
        self.gx = np.minimum(np.floor(cx[:, None] / self.stride), n - 1) + self.dx
        self.gy = np.minimum(np.floor(cy[:, None] / self.stride), n - 1) + self.dy
        self.valid = (self.gx >= 0) & (self.gy >= 0) & (self.gx < n) & (self.gy < n)
        pcx = cx[:, None] + 0.5 * self.dx * self.stride
        pcy = cy[:, None] + 0.5 * self.dy * self.stride
        aw, ah = self.anchors[self.anchor, 0], self.anchors[self.anchor, 1]
        self.pred = np.stack([pcx - aw / 2, pcy - ah / 2, pcx + aw / 2, pcy + ah / 2], -1)  # (G, N, 4)
        self.obj = np.zeros((G, N))
        self.cls = np.full((G, N), 0.5)
        for g in range(G):  # default objectness: 0.9 x IoU (agrees with the IoU ranking)
            for k in range(N):
                self.obj[g, k] = 0.9 * ref_iou(self.pred[g, k], gt[g], "iou")

    def col(self, anchor, dx=0, dy=0) -> int:
        return int(np.flatnonzero((self.anchor == anchor) & (self.dx == dx) & (self.dy == dy))[0])

    def plant(self, g, anchor, dx=0, dy=0, box=None, obj=None, cls=None):
        k = self.col(anchor, dx, dy)
        if box is not None:
            self.pred[g, k] = box
        if obj is not None:
            self.obj[g, k] = obj
        if cls is not None:
            self.cls[g, k] = cls

    def frame(self) -> pd.DataFrame:
        G, N = self.pred.shape[:2]
        pred = np.where(self.valid[..., None], self.pred, np.nan)

        def rows(v):
            return np.repeat(np.asarray(v), N)

        def cols(v):
            return np.tile(np.asarray(v), G)

        o = self.objects
        frame = pd.DataFrame(
            {
                "ann_id": rows([x[0] for x in o]),
                "image_id": rows([x[1] for x in o]),
                "class_idx": rows([x[2] for x in o]),
                "iscrowd": rows([bool(x[4]) for x in o]),
                "gt_x1": rows(self.gt[:, 0]),
                "gt_y1": rows(self.gt[:, 1]),
                "gt_x2": rows(self.gt[:, 2]),
                "gt_y2": rows(self.gt[:, 3]),
                "level": cols(self.level),
                "anchor": cols(self.anchor),
                "anchor_w": cols(self.anchors[self.anchor, 0]),
                "anchor_h": cols(self.anchors[self.anchor, 1]),
                "stride": cols(self.stride),
                "dx": cols(self.dx),
                "dy": cols(self.dy),
                "gx": self.gx.ravel(),
                "gy": self.gy.ravel(),
                "valid": self.valid.ravel(),
                "px1": pred[..., 0].ravel(),
                "py1": pred[..., 1].ravel(),
                "px2": pred[..., 2].ravel(),
                "py2": pred[..., 3].ravel(),
                "obj": np.where(self.valid, self.obj, np.nan).ravel(),
                "cls_prob": np.where(self.valid, self.cls, np.nan).ravel(),
                "max_cls_prob": 0.9,
                "max_cls_idx": rows([x[2] for x in o]),
            }
        ).astype(COLUMNS)
        return candidate_order(frame)

    def manifest(self) -> dict:
        return {
            "format": "cocostat-predictions",
            "version": 1,
            "cfg": "hand-built",
            "size": self.size,
            "anchors": self.anchors.tolist(),
            "neighborhood": self.r,
            "dataset": {"name": "hand"},
            "levels": [{"mask": m, "stride": s} for m, s in zip(self.masks, self.strides)],
        }

    def predictions(self) -> InMemoryPredictions:
        return InMemoryPredictions(self.frame(), self.manifest())

    def dataset(self):
        return from_dict(
            {
                "images": [
                    {"id": i, "width": self.size, "height": self.size, "file_name": f"img{i}.jpg"}
                    for i in sorted({o[1] for o in self.objects})
                ],
                "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(80)],
                "annotations": [
                    {
                        "id": o[0],
                        "image_id": o[1],
                        "category_id": o[2] + 1,
                        "iscrowd": int(o[4]),
                        "bbox": [o[3][0], o[3][1], o[3][2] - o[3][0], o[3][3] - o[3][1]],
                    }
                    for o in self.objects
                ],
            },
            name="hand",
        )


def ref_iou(p, g, kind):
    """IoU / GIoU / DIoU / CIoU of two xyxy boxes, straight from the definitions, Python floats."""
    px1, py1, px2, py2 = (float(v) for v in p)
    gx1, gy1, gx2, gy2 = (float(v) for v in g)
    iw, ih = min(px2, gx2) - max(px1, gx1), min(py2, gy2) - max(py1, gy1)
    inter = max(iw, 0.0) * max(ih, 0.0)
    ap, ag = (px2 - px1) * (py2 - py1), (gx2 - gx1) * (gy2 - gy1)
    union = ap + ag - inter
    iou = min(inter / union, 1.0) if union > 0 else 0.0
    if kind == "iou":
        return iou
    cw, ch = max(px2, gx2) - min(px1, gx1), max(py2, gy2) - min(py1, gy1)
    if kind == "giou":
        return iou - (max(cw * ch - union, 0.0) / (cw * ch) if cw * ch > 0 else 0.0)
    rho2 = ((px1 + px2 - gx1 - gx2) ** 2 + (py1 + py2 - gy1 - gy2) ** 2) / 4
    c2 = cw**2 + ch**2
    diou = iou - (rho2 / c2 if c2 > 0 else 0.0)
    if kind == "diou":
        return diou
    v = 4 / math.pi**2 * (math.atan2(gx2 - gx1, gy2 - gy1) - math.atan2(px2 - px1, py2 - py1)) ** 2
    alpha = v / (1 - iou + v) if (1 - iou + v) > 0 else 0.0
    return diou - alpha * v


# --------------------------------------------------------------------------------------------------
# brute-force reference: one object at a time
# --------------------------------------------------------------------------------------------------
def ref_audit(frame: pd.DataFrame, manifest: dict, kind="iou", assigner="yolov3", iou_t=0.225, ratio_t=4.0):
    grid = grid_from_manifest(manifest)
    A, L = grid.num_anchors, grid.num_levels
    frame = frame[~frame["iscrowd"]]
    out = {
        "objects": 0,
        "unmatched": 0,
        "compared": 0,
        "worst": 0,
        "best": 0,
        "neigh": 0,
        "fm": set(),
        "images": set(),
        "matched": np.zeros(A, int),
        "wh_sum": np.zeros(A),
        "pm_sum": np.zeros(A),
        "pm_n": np.zeros(A),
        "pa_sum": np.zeros(A),
        "pa_n": np.zeros(A),
        "bwu": np.zeros(A, int),
        "wm": np.zeros(A, int),
        "per_object": {},
    }
    stored_r = int(frame["dx"].abs().max())
    for ann_id, rows in frame.groupby("ann_id", sort=False):
        rows = rows.reset_index(drop=True)
        gt = rows.loc[0, ["gt_x1", "gt_y1", "gt_x2", "gt_y2"]].to_numpy(float)
        image = int(rows.loc[0, "image_id"])
        out["objects"] += 1
        out["images"].add(image)
        matched, _, neigh = ref_assign(gt, grid, assigner, iou_t=iou_t, ratio_t=ratio_t)
        w, h = gt[2] - gt[0], gt[3] - gt[1]
        for a in range(A):
            if matched[a]:
                out["matched"][a] += 1
                out["wh_sum"][a] += ref_wh_iou(w, h, *grid.wh[a])
        if not any(matched):
            out["unmatched"] += 1
        pos, unm, allv = [], [], []  # (q, anchor, dx, dy, level) in table order
        for r in rows.itertuples(index=False):
            if not r.valid:
                continue
            q = ref_iou([r.px1, r.py1, r.px2, r.py2], gt, kind)
            item = (q, int(r.anchor), int(r.dx), int(r.dy), int(r.level))
            allv.append(item)
            centre = r.dx == 0 and r.dy == 0
            left, up, right, down = neigh[int(r.level)]
            side = (
                ((r.dx, r.dy) == (-1, 0) and left)
                or ((r.dx, r.dy) == (0, -1) and up)
                or ((r.dx, r.dy) == (1, 0) and right)
                or ((r.dx, r.dy) == (0, 1) and down)
            )
            if matched[r.anchor] and (centre or (assigner == "yolov5" and side)):
                pos.append(item)
            if centre and not matched[r.anchor]:
                unm.append(item)
            if centre:
                out["pa_sum"][r.anchor] += q
                out["pa_n"][r.anchor] += 1
        for q, a, *_ in pos:
            out["pm_sum"][a] += q
            out["pm_n"][a] += 1
        rec = {"beats_worst": False, "beats_best": False}
        if pos and unm:
            out["compared"] += 1
            umax = max(x[0] for x in unm)
            if umax > min(x[0] for x in pos):
                out["worst"] += 1
                rec["beats_worst"] = True
            if umax > max(x[0] for x in pos):
                out["best"] += 1
                rec["beats_best"] = True
                first = next(x for x in unm if x[0] == umax)
                out["bwu"][first[1]] += 1
        if len(pos) >= 2:
            pmin = min(x[0] for x in pos)
            out["wm"][next(x for x in pos if x[0] == pmin)[1]] += 1
        for lv in range(L):
            u = [x[0] for x in unm if x[4] == lv]
            p = [x[0] for x in pos if x[4] == lv]
            if u and p and max(u) > min(p):
                out["fm"].add((image, lv))
        centre_best = max(x[0] for x in allv if x[2] == 0 and x[3] == 0)
        others = [x[0] for x in allv if (x[2], x[3]) != (0, 0)]
        rec["neigh"] = bool(others) and max(others) > centre_best
        out["neigh"] += rec["neigh"]
        best = max(x[0] for x in allv)
        rec["best"] = next(x for x in allv if x[0] == best)
        rec["n_matched"] = sum(matched)
        out["per_object"][int(ann_id)] = rec
    out["stored_r"] = stored_r
    return out


def check_against_reference(rep, ref):
    assert rep.objects == ref["objects"]
    assert rep.images == len(ref["images"])
    assert rep.feature_maps == len(ref["images"]) * len(rep.per_anchor["level"].unique())
    assert rep.unmatched_objects == ref["unmatched"]
    assert rep.objects_compared == ref["compared"]
    assert rep.objects_unmatched_beats_worst_matched == ref["worst"]
    assert rep.objects_unmatched_beats_best_matched == ref["best"]
    assert rep.feature_maps_unmatched_better == len(ref["fm"])
    assert rep.objects_best_from_neighbor == (ref["neigh"] if ref["stored_r"] else None)
    pa = rep.per_anchor
    np.testing.assert_array_equal(pa["matched"], ref["matched"])
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(pa["match_wh_iou"], ref["wh_sum"] / ref["matched"], rtol=1e-9)
        np.testing.assert_allclose(
            pa["pred_iou_matched"].astype(float), ref["pm_sum"] / ref["pm_n"], rtol=2e-5, atol=1e-6
        )
        np.testing.assert_allclose(pa["pred_iou_all"].astype(float), ref["pa_sum"] / ref["pa_n"], rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(pa["best_when_unmatched"].astype(int), ref["bwu"])
    np.testing.assert_array_equal(pa["worst_matched"].astype(int), ref["wm"])
    assert pa["best_when_unmatched"].sum() == rep.objects_unmatched_beats_best_matched
    po = rep.per_object.set_index("ann_id")
    for ann_id, rec in ref["per_object"].items():
        row = po.loc[ann_id]
        assert row["unmatched_beats_worst"] == rec["beats_worst"] and row["unmatched_beats_best"] == rec["beats_best"]
        assert row["best_from_neighbor"] == rec["neigh"] and row["matched_anchors"] == rec["n_matched"]
        assert (row["best_anchor"], row["best_dx"], row["best_dy"]) == rec["best"][1:4]
        assert row["best_iou"] == pytest.approx(rec["best"][0], rel=2e-5, abs=1e-6)


# --------------------------------------------------------------------------------------------------
# hand-built cases with known answers
# --------------------------------------------------------------------------------------------------
def hand_built() -> TableBuilder:
    objects = [
        (11, 1, 0, [100, 100, 160, 148], 0),  # 60x48: yolov3 matches anchors 2, 3, 4, 5, 6
        (21, 2, 1, [200, 200, 260, 248], 0),  # the same size: its best prediction planted in a neighbour cell
        (22, 2, 2, [300, 300, 302, 302], 0),  # 2x2 px: no yolov3 anchor
        (31, 3, 3, [40, 300, 70, 361], 0),  # 30x61 = anchor 3: nothing planted
        (32, 3, 4, [0, 0, 400, 400], 1),  # crowd: left out
    ]
    t = TableBuilder(objects)
    t.plant(0, anchor=8, box=[100, 100, 160, 148])  # unmatched anchor 8 predicts object 11 exactly
    t.plant(1, anchor=4, dx=1, box=[200, 200, 260, 248])  # a neighbour cell predicts object 21 exactly
    return t


def test_hand_built_known_answers():
    t = hand_built()
    ds = t.dataset()
    with pytest.warns(CocostatWarning, match="1 crowd annotation"):
        rep = anchor_audit(ds, t.predictions(), iou="iou", examples=2)
    assert (rep.objects, rep.images, rep.feature_maps) == (4, 3, 9)
    assert rep.unmatched_objects == 1  # object 22
    assert rep.objects_compared == 3
    assert rep.objects_unmatched_beats_worst_matched == 1 and rep.objects_unmatched_beats_best_matched == 1
    assert rep.feature_maps_unmatched_better == 1  # image 1, level 0 (anchor 8 beats matched anchor 6)
    assert rep.objects_best_from_neighbor == 1  # object 21
    pa = rep.per_anchor.set_index("anchor")
    assert pa["best_when_unmatched"].tolist() == [0] * 8 + [1]
    # every unplanted prediction's IoU is its anchor's wh-IoU, so the worst matched prediction of a
    # 60x48 object is anchor 2 (wh-IoU 0.264 < anchor 6's 0.276); of a 30x61 object the lowest above 0.225
    wh60 = [ref_wh_iou(60, 48, *a) for a in YOLOV3]
    wh30 = [ref_wh_iou(30, 61, *a) for a in YOLOV3]
    assert [a for a, v in enumerate(wh60) if v > 0.225] == [2, 3, 4, 5, 6] and min(wh60[2:7]) == wh60[2]
    want = np.zeros(9, int)
    want[2] += 2
    want[min((v, a) for a, v in enumerate(wh30) if v > 0.225)[1]] += 1
    assert pa["worst_matched"].tolist() == want.tolist()
    assert pa.loc[4, "matched"] == 3 and pa.loc[3, "match_wh_iou"] == pytest.approx(np.mean([wh60[3], wh60[3], 1.0]))
    assert pa.loc[8, "pred_iou_all"] == pytest.approx(
        (1 + wh60[8] + ref_wh_iou(2, 2, 373, 326) + wh30[8]) / 4, rel=1e-6
    )
    assert pa.loc[4, "pred_iou_matched"] == pytest.approx(np.mean([wh60[4], wh60[4], wh30[4]]), rel=1e-6)
    po = rep.per_object.set_index("ann_id")
    assert po.loc[11, "best_unmatched_anchor"] == 8 and po.loc[11, "unmatched_max_iou"] == pytest.approx(1.0)
    assert po.loc[11, "worst_matched_anchor"] == 2
    assert (po.loc[21, "best_anchor"], po.loc[21, "best_dx"], po.loc[21, "best_dy"]) == (4, 1, 0)
    assert po.loc[22, "matched_anchors"] == 0 and po.loc[22, "best_unmatched_anchor"] == 0
    assert 32 not in po.index
    assert rep.examples["image_id"].tolist() == [1, 2]
    assert rep.examples["file_name"].tolist() == ["img1.jpg", "img2.jpg"]
    assert rep.examples.loc[0, "unmatched_beats_best"] == 1 and rep.examples.loc[1, "unmatched"] == 1
    check_against_reference(rep, ref_audit(t.frame(), t.manifest()))
    d = rep.to_dict()
    for key in (
        "objects",
        "feature_maps",
        "unmatched_objects",
        "feature_maps_unmatched_better",
        "objects_unmatched_beats_worst_matched",
        "objects_unmatched_beats_best_matched",
        "objects_best_from_neighbor",
        "per_anchor",
    ):
        assert key in d
    assert d["per_anchor"][8] == {
        "anchor_index": 8,
        "level": 0,
        "stride": 32,
        "anchor": [373.0, 326.0],
        "matched": 0,
        "match_wh_iou": None,
        "pred_iou_matched": None,
        "pred_iou_all": pytest.approx(pa.loc[8, "pred_iou_all"]),
        "best_when_unmatched": 1,
        "worst_matched": 0,
    }
    json.dumps(d)  # JSON-safe


def test_hand_built_darknet_and_yolov5():
    t = hand_built()
    ds = t.dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        dk = anchor_audit(ds, t.predictions(), assigner="darknet")
        # yolov5: plant object 21's exact box at its positive side cell -> matched max IoU 1, from a neighbour
        cx = (200 + 260) / 2 / 16  # 14.375 cells at stride 16: fraction < 0.5 -> the left cell is positive
        assert cx % 1 < 0.5
        t.plant(1, anchor=4, dx=1, box=[0, 0, 1, 1])
        t.plant(1, anchor=4, dx=-1, box=[200, 200, 260, 248])
        v5 = anchor_audit(ds, t.predictions(), assigner="yolov5")
    assert dk.unmatched_objects == 0  # darknet always takes one anchor (the 2x2 box gets 10x13)
    assert dk.per_anchor["matched"].sum() == 4
    assert dk.objects_compared == 4 and dk.objects_unmatched_beats_best_matched == 1
    po = v5.per_object.set_index("ann_id")
    assert po.loc[21, "matched_max_iou"] == pytest.approx(1.0) and po.loc[21, "best_from_neighbor"]
    assert po.loc[21, "matched_predictions"] > po.loc[21, "matched_anchors"]  # side cells count
    check_against_reference(v5, ref_audit(t.frame(), t.manifest(), assigner="yolov5"))


# --------------------------------------------------------------------------------------------------
# random tables against the reference: every IoU variant, every assigner
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("assigner", ASSIGNERS)
@pytest.mark.parametrize("kind", IOU_KINDS)
def test_random_tables_match_reference(kind, assigner):
    frame, manifest = synthetic_candidates(120, per_image=4, neighborhood=1, crowd=0.05, seed=7)
    ds = from_dict(synthetic_dataset(frame), name="synthetic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        rep = anchor_audit(
            ds, InMemoryPredictions(frame, manifest), iou=kind, assigner=assigner, iou_t=0.3, ratio_t=3.0
        )
    check_against_reference(rep, ref_audit(frame, manifest, kind, assigner, iou_t=0.3, ratio_t=3.0))


def test_random_tiny_layout_two_cells_and_folder(tmp_path):
    tiny = [(10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319)]
    frame, manifest = synthetic_candidates(
        80, anchors=tiny, masks=[[3, 4, 5], [0, 1, 2]], strides=[32, 16], neighborhood=2, seed=11
    )
    write_store(tmp_path, frame, manifest)
    ds = from_dict(synthetic_dataset(frame), name="synthetic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        from_disk = anchor_audit(ds, tmp_path, iou="giou")
        in_memory = anchor_audit(ds, InMemoryPredictions(frame, manifest), iou="giou")
    assert from_disk.to_dict() | {"source": None} == in_memory.to_dict() | {"source": None}
    assert from_disk.source == f"predictions {tmp_path}" and from_disk.neighborhood == 2
    check_against_reference(from_disk, ref_audit(frame, manifest, "giou"))


def test_centre_only_table_has_null_neighbour_row():
    frame, manifest = synthetic_candidates(30, neighborhood=0, seed=2)
    ds = from_dict(synthetic_dataset(frame), name="synthetic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        rep = anchor_audit(ds, InMemoryPredictions(frame, manifest), assigner="yolov5")
    assert rep.objects_best_from_neighbor is None and any("neighborhood 0" in n for n in rep.notes)
    check_against_reference(rep, ref_audit(frame, manifest, assigner="yolov5"))


# --------------------------------------------------------------------------------------------------
# boxes only
# --------------------------------------------------------------------------------------------------
def test_boxes_only_letterbox_and_nulls():
    ds = from_dict(
        {
            "images": [
                {"id": 1, "width": 832, "height": 416, "file_name": "a.jpg"},
                {"id": 2, "width": 300, "height": 600, "file_name": "b.jpg"},
            ],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [100, 50, 124, 90]},
                {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 4, 4]},
                {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 300, 600], "iscrowd": 1},
            ],
        }
    )
    np.testing.assert_allclose(
        letterbox_boxes(ds, 416)[:2], [[50, 129, 112, 174], [104, 0, 106.7733, 2.7733]], atol=1e-4
    )
    with pytest.warns(CocostatWarning):
        rep = anchor_audit(ds, iou="giou", examples=5)
    assert (rep.objects, rep.images, rep.feature_maps, rep.unmatched_objects) == (2, 2, 6, 1)
    assert rep.per_anchor["matched"].tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0]  # 62x45 -> anchors 2..6
    assert rep.per_anchor.loc[4, "match_wh_iou"] == pytest.approx(1.0)
    d = rep.to_dict()
    assert d["predictions"] is False and d["anchors"] == "yolov3-spp" and d["size"] == 416
    for key in (
        "feature_maps_unmatched_better",
        "objects_unmatched_beats_worst_matched",
        "objects_unmatched_beats_best_matched",
        "objects_best_from_neighbor",
    ):
        assert d[key] is None
    assert all(p["pred_iou_all"] is None and p["worst_matched"] is None for p in d["per_anchor"])
    assert d["needs_predictions"] == list(NEEDS_PREDICTIONS) and "need predictions" in d["notes"][0]
    assert rep.examples["image_id"].tolist() == [2, 1]  # image 2 holds the unmatched 2.8 px box
    # a bigger --size and other anchors change the matching
    with pytest.warns(CocostatWarning):
        tiny = anchor_audit(ds, anchors="yolov3-tiny", size=832, assigner="darknet")
    assert tiny.anchors == "yolov3-tiny" and tiny.size == 832 and tiny.unmatched_objects == 0
    assert tiny.per_anchor["level"].tolist() == [1, 1, 1, 0, 0, 0]


def test_boxes_only_sample_and_empty():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        rep = anchor_audit(load_dataset("sample"), assigner="yolov5")
    assert rep.objects == 929 and rep.per_anchor["matched"].sum() > rep.objects
    empty = from_dict({"images": [{"id": 1, "width": 10, "height": 10}], "categories": [], "annotations": []})
    rep = anchor_audit(empty)
    assert (rep.objects, rep.images, rep.feature_maps, rep.unmatched_objects) == (0, 0, 0, 0)
    assert rep.per_anchor.shape[0] == 9 and rep.per_object.shape[0] == 0


def test_empty_candidate_table():
    t = hand_built()
    frame = t.frame().iloc[:0]
    rep = anchor_audit(None, InMemoryPredictions(frame, t.manifest()))
    assert rep.objects == 0 and rep.objects_unmatched_beats_best_matched == 0 and rep.feature_maps_unmatched_better == 0
    assert rep.per_anchor["best_when_unmatched"].tolist() == [0] * 9


# --------------------------------------------------------------------------------------------------
# options and errors
# --------------------------------------------------------------------------------------------------
def test_anchor_override_with_predictions():
    t = hand_built()
    ds = t.dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        # the same layout (3 levels x 3) with every anchor 62x45: all objects but the 2x2 one match all 9
        same = ",".join(["62,45"] * 9)
        rep = anchor_audit(ds, t.predictions(), anchors=same)
        assert rep.per_anchor["matched"].tolist() == [3] * 9 and rep.anchors == same
        with pytest.raises(OptionError, match="layout"):
            anchor_audit(ds, t.predictions(), anchors="yolov3-tiny")
        with pytest.raises(OptionError, match="--size 608 differs"):
            anchor_audit(ds, t.predictions(), size=608)
        with pytest.raises(OptionError, match="none of its annotation ids"):
            anchor_audit(load_dataset("sample"), t.predictions())
        with pytest.raises(OptionError, match="^iou must be one of"):
            anchor_audit(ds, t.predictions(), iou="xiou")
        with pytest.raises(OptionError, match="^assigner must be one of"):
            anchor_audit(ds, t.predictions(), assigner="retina")
        with pytest.raises(OptionError, match="^examples must"):
            anchor_audit(ds, t.predictions(), examples=-1)
        with pytest.raises(OptionError, match="unknown anchor set"):
            anchor_audit(ds, anchors="nope")


def test_predictions_missing_some_annotations_warns():
    t = hand_built()
    frame = t.frame()
    frame = frame[frame["ann_id"] != 31]
    with pytest.warns(CocostatWarning, match="1 annotation"):
        rep = anchor_audit(t.dataset(), InMemoryPredictions(frame, t.manifest()))
    assert rep.objects == 3


def test_per_object_file(tmp_path):
    t = hand_built()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        rep = anchor_audit(t.dataset(), t.predictions())
    rep.write_per_object(tmp_path / "po.parquet")
    rep.write_per_object(tmp_path / "po.csv")
    back = pd.read_parquet(tmp_path / "po.parquet")
    assert back["ann_id"].tolist() == [11, 21, 22, 31]
    assert back["unmatched_beats_best"].tolist() == [True, False, False, False]
    assert pd.read_csv(tmp_path / "po.csv").shape == back.shape
    with pytest.raises(OptionError, match=".parquet or .csv"):
        rep.write_per_object(tmp_path / "po.txt")
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


@pytest.mark.gpu
def test_cuda_matches_cpu():
    frame, manifest = synthetic_candidates(3000, neighborhood=1, seed=5)
    ds = from_dict(synthetic_dataset(frame), name="synthetic")
    preds = InMemoryPredictions(frame, manifest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        for assigner in ASSIGNERS:
            cpu = anchor_audit(ds, preds, iou="ciou", assigner=assigner).to_dict()
            gpu = anchor_audit(ds, preds, iou="ciou", assigner=assigner, device=torch.device("cuda")).to_dict()
            for key in (
                "unmatched_objects",
                "objects_unmatched_beats_best_matched",
                "objects_unmatched_beats_worst_matched",
                "feature_maps_unmatched_better",
                "objects_best_from_neighbor",
            ):
                assert cpu[key] == gpu[key]
            for a, b in zip(cpu["per_anchor"], gpu["per_anchor"]):
                assert a["matched"] == b["matched"] and a["best_when_unmatched"] == b["best_when_unmatched"]
                assert a["pred_iou_all"] == pytest.approx(b["pred_iou_all"], rel=1e-5)


# --------------------------------------------------------------------------------------------------
# the real thing: yolov3-tiny on coco-tiny val2017
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.realdata
def test_real_yolov3_tiny_on_coco_tiny(real_data):
    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    models = real_data / "models"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        preds = run_model(ds, models / "yolov3-tiny.cfg", models / "yolov3-tiny.weights", progress=False)
        rep = anchor_audit(ds, preds, iou="iou", examples=3)
        box_only = anchor_audit(ds, anchors="yolov3-tiny")
    assert rep.objects == 815 - 11 and rep.images == 80 and rep.feature_maps == 160
    # the box-only matching (letterboxed from the JSON) agrees with the matching on predict's boxes
    assert rep.unmatched_objects == box_only.unmatched_objects
    assert rep.per_anchor["matched"].tolist() == box_only.per_anchor["matched"].tolist()
    # a trained model: matched anchors predict their objects far better than the others on average
    pa = rep.per_anchor
    assert (pa["pred_iou_matched"] > pa["pred_iou_all"]).all()
    assert rep.objects_unmatched_beats_best_matched < 0.15 * rep.objects_compared
    assert rep.objects_unmatched_beats_worst_matched >= rep.objects_unmatched_beats_best_matched
    check_against_reference(rep, ref_audit(preds.candidates, preds.manifest))
    print(json.dumps({k: v for k, v in rep.to_dict().items() if k not in ("examples", "notes")}, indent=1))
