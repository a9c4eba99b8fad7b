"""mismatch: objectness ranking against IoU ranking, hand-built and against a per-object reference."""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_assign import ASSIGNERS, ref_assign  # the three ref_assign knows
from test_audit import hand_built, ref_iou, ref_wh_iou

from benchmarks.bench_audit import (
    InMemoryPredictions,
    synthetic_candidates,
    synthetic_dataset,
)
from cocostat.assign import grid_from_manifest
from cocostat.boxes import IOU_KINDS
from cocostat.data import from_dict, load_dataset
from cocostat.errors import CocostatWarning, OptionError
from cocostat.mismatch import STATS, mismatch
from cocostat.sources import run_model


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        yield


def ref_mismatch(frame, manifest, kind="iou", assigner="yolov3", radius=0):
    """Per object: every STATS value plus the three argmax candidates, in a plain loop."""
    grid = grid_from_manifest(manifest)
    frame = frame[~frame["iscrowd"]]
    out = {}
    for ann_id, rows in frame.groupby("ann_id", sort=False):
        rows = rows.reset_index(drop=True)
        gt = rows.loc[0, ["gt_x1", "gt_y1", "gt_x2", "gt_y2"]].to_numpy(float)
        matched, _, neigh = ref_assign(gt, grid, assigner)
        cands, pos = [], []
        for r in rows.itertuples(index=False):
            if not r.valid:
                continue
            box = [r.px1, r.py1, r.px2, r.py2]
            q = ref_iou(box, gt, kind)
            left, up, right, down = neigh[int(r.level)]
            cell = (int(r.dx), int(r.dy))
            side = (
                (cell == (-1, 0) and left)
                or (cell == (0, -1) and up)
                or (cell == (1, 0) and right)
                or (cell == (0, 1) and down)
            )
            if matched[r.anchor] and (cell == (0, 0) or (assigner == "yolov5" and side)):
                pos.append(q)
            if abs(r.dx) <= radius and abs(r.dy) <= radius:
                cands.append(
                    {
                        "q": q,
                        "obj": float(r.obj),
                        "score": float(r.obj) * float(r.cls_prob),
                        "box": box,
                        "stride": float(r.stride),
                        "anchor": int(r.anchor),
                        "dx": int(r.dx),
                        "dy": int(r.dy),
                    }
                )
        if not cands:
            continue

        best, conf, sc = _first_max(cands, "q"), _first_max(cands, "obj"), _first_max(cands, "score")
        area = _area
        offset = functools.partial(_offset, gt=gt)

        out[int(ann_id)] = {
            "best_iou": best["q"],
            "obj_iou": conf["q"],
            "score_iou": sc["q"],
            "matched_iou": float(np.mean(pos)) if pos else math.nan,
            "max_obj": conf["obj"],
            "best_obj": best["obj"],
            "max_score": sc["score"],
            "best_score": best["score"],
            "matched_anchors": float(sum(matched)),
            "best_area": area(best),
            "obj_area": area(conf),
            "area_ratio": area(conf) / area(best) if area(best) > 0 else math.nan,
            "best_offset": offset(best),
            "obj_offset": offset(conf),
            "best": (best["anchor"], best["dx"], best["dy"]),
            "conf": (conf["anchor"], conf["dx"], conf["dy"]),
            "candidates": len(cands),
        }
    return out


def _first_max(cands, key):
    m = max(c[key] for c in cands)
    return next(c for c in cands if c[key] == m)


def _area(c):
    b = c["box"]
    return (b[2] - b[0]) * (b[3] - b[1]) / c["stride"] ** 2


def _offset(c, gt):
    b = c["box"]
    return math.hypot((b[0] + b[2] - gt[0] - gt[2]) / 2, (b[1] + b[3] - gt[1] - gt[3]) / 2) / c["stride"]


def check_against_reference(rep, ref):
    assert rep.objects == len(ref)
    assert rep.candidates_per_object == max(r["candidates"] for r in ref.values())
    obj_nb = sum(r["obj_iou"] < r["best_iou"] for r in ref.values())
    score_nb = sum(r["score_iou"] < r["best_iou"] for r in ref.values())
    assert rep.obj_not_best == obj_nb and rep.score_not_best == score_nb
    assert rep.to_dict()["obj_not_best_share"] == pytest.approx(obj_nb / len(ref))
    pos = [r for r in ref.values() if r["best_iou"] > 0]
    assert rep.obj_iou_share == pytest.approx(np.mean([r["obj_iou"] / r["best_iou"] for r in pos]), rel=1e-5)
    assert rep.score_iou_share == pytest.approx(np.mean([r["score_iou"] / r["best_iou"] for r in pos]), rel=1e-5)
    stats = rep.stats.set_index("statistic")
    for name in STATS:
        v = np.array([r[name] for r in ref.values()], float)
        v = v[np.isfinite(v)]
        assert stats.loc[name, "objects"] == v.size, name
        assert stats.loc[name, "mean"] == pytest.approx(v.mean(), rel=2e-5, abs=1e-6), name
        assert stats.loc[name, "var"] == pytest.approx(v.var(), rel=1e-4, abs=1e-6), name
    po = rep.per_object.set_index("ann_id")
    for ann_id, r in ref.items():
        row = po.loc[ann_id]
        assert (row["best_anchor"], row["best_dx"], row["best_dy"]) == r["best"]
        assert (row["obj_anchor"], row["obj_dx"], row["obj_dy"]) == r["conf"]
        assert row["obj_not_best"] == (r["obj_iou"] < r["best_iou"])


def test_hand_built_objectness_disagrees_with_iou():
    t = hand_built()
    t.plant(3, anchor=3, cls=0.01)  # object 31: its best box's class probability is tiny
    ds, preds = t.dataset(), t.predictions()
    wh60 = [ref_wh_iou(60, 48, *a) for a in t.anchors]
    r0 = mismatch(ds, preds, iou="iou")
    assert r0.objects == 4 and r0.candidates_per_object == 9 and r0.neighborhood == 0
    # object 11: anchor 8 predicts it exactly, but the objectness there is 0.9 x its unplanted IoU
    po = r0.per_object.set_index("ann_id")
    assert po.loc[11, "best_anchor"] == 8 and po.loc[11, "obj_anchor"] == 4
    assert po.loc[11, "obj_iou"] == pytest.approx(wh60[4], rel=1e-6) and po.loc[11, "iou_lost"] > 0
    assert r0.obj_not_best == 1 and po["obj_not_best"].tolist() == [True, False, False, False]
    # class-aware: object 31's best box scores 0.01 x obj -> another anchor wins
    assert r0.score_not_best == 2 and po.loc[31, "score_not_best"]
    ratio_11 = wh60[4] / 1.0
    assert r0.obj_iou_share == pytest.approx((ratio_11 + 1 + 1 + 1) / 4, rel=1e-6)
    stats = r0.stats.set_index("statistic")
    assert stats.loc["best_iou", "mean"] == pytest.approx(np.mean([1.0, wh60[4], 4 / 130, 1.0]), rel=1e-6)
    assert stats.loc["matched_iou", "objects"] == 3  # the 2x2 object has no matched prediction
    # anchor 4 (62x45) at stride 16 predicting object 11: 62 * 45 / 16^2 cells, centred: offset 0
    assert po.loc[11, "obj_area"] == pytest.approx(62 * 45 / 256) and po.loc[11, "obj_offset"] == pytest.approx(0)
    assert po.loc[11, "best_area"] == pytest.approx(60 * 48 / 32**2)
    # the neighbourhood: object 21's exact box sits one cell to the right
    r1 = mismatch(ds, preds, iou="iou", neighborhood=1, examples=2)
    po1 = r1.per_object.set_index("ann_id")
    assert r1.candidates_per_object == 81 and r1.obj_not_best == 2
    assert (po1.loc[21, "best_anchor"], po1.loc[21, "best_dx"], po1.loc[21, "best_dy"]) == (4, 1, 0)
    assert po1.loc[21, "best_offset"] == pytest.approx(0) and po1.loc[21, "obj_offset"] == pytest.approx(0)
    assert r1.examples["image_id"].tolist() == [1, 2]
    assert r1.examples.loc[0, "iou_lost"] == pytest.approx(1 - wh60[4], rel=1e-6)
    check_against_reference(r0, ref_mismatch(t.frame(), t.manifest(), radius=0))
    check_against_reference(r1, ref_mismatch(t.frame(), t.manifest(), radius=1))
    d = r1.to_dict()
    assert set(d["stats"]) == set(STATS) and d["objects"] == 4 and d["examples"][0]["file_name"] == "img1.jpg"


@pytest.mark.parametrize("assigner", ASSIGNERS)
@pytest.mark.parametrize("kind", IOU_KINDS)
def test_random_tables_match_reference(kind, assigner):
    frame, manifest = synthetic_candidates(90, per_image=3, neighborhood=1, crowd=0.05, seed=13)
    ds = from_dict(synthetic_dataset(frame), name="synthetic")
    preds = InMemoryPredictions(frame, manifest)
    for radius in (0, 1):
        rep = mismatch(ds, preds, iou=kind, assigner=assigner, neighborhood=radius)
        check_against_reference(rep, ref_mismatch(frame, manifest, kind, assigner, radius))


def test_wider_stored_neighbourhood_and_tiny_layout():
    tiny = [(10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319)]
    frame, manifest = synthetic_candidates(
        60, anchors=tiny, masks=[[3, 4, 5], [0, 1, 2]], strides=[32, 16], neighborhood=2, seed=3
    )
    ds = from_dict(synthetic_dataset(frame), name="synthetic")
    rep = mismatch(ds, InMemoryPredictions(frame, manifest), neighborhood=2, iou="diou")
    check_against_reference(rep, ref_mismatch(frame, manifest, "diou", radius=2))
    with pytest.raises(OptionError, match="--neighborhood 3 is wider than the 2"):
        mismatch(ds, InMemoryPredictions(frame, manifest), neighborhood=3)


def test_errors_and_empty():
    t = hand_built()
    with pytest.raises(OptionError, match="mismatch needs predictions"):
        mismatch(t.dataset(), None)
    with pytest.raises(OptionError, match="^neighborhood must be >= 0"):
        mismatch(t.dataset(), t.predictions(), neighborhood=-1)
    with pytest.raises(OptionError, match="^iou must be one of"):
        mismatch(t.dataset(), t.predictions(), iou="eiou")
    rep = mismatch(None, InMemoryPredictions(t.frame().iloc[:0], t.manifest()))
    assert rep.objects == 0 and rep.obj_not_best == 0 and rep.obj_iou_share is None
    assert rep.stats["objects"].tolist() == [0] * len(STATS)
    assert rep.to_dict()["stats"]["best_iou"] == {"objects": 0, "mean": None, "var": None}


def test_plots_and_per_object(tmp_path):
    t = hand_built()
    rep = mismatch(t.dataset(), t.predictions(), iou="giou", neighborhood=1, plot=tmp_path / "plots")
    assert [p.rsplit("/", 1)[1] for p in rep.plots] == ["iou_vs_obj.png", "iou_vs_score.png"]
    for p in rep.plots:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 1000 and im.height > 300  # three level panels
    assert not list((tmp_path / "plots").glob(".*"))
    rep.write_per_object(tmp_path / "po.csv")
    back = pd.read_csv(tmp_path / "po.csv")
    assert back["ann_id"].tolist() == [11, 21, 22, 31] and {"iou_lost", "obj_not_best", *STATS} <= set(back.columns)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_yolov3_tiny_on_coco_tiny(real_data, tmp_path):
    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    models = real_data / "models"
    preds = run_model(ds, models / "yolov3-tiny.cfg", models / "yolov3-tiny.weights", progress=False)
    rep = mismatch(ds, preds, iou="iou", plot=tmp_path, examples=3)
    assert rep.objects == 804 and rep.candidates_per_object == 6
    stats = rep.stats.set_index("statistic")
    # a trained model: its most confident prediction is usually a good one, and never better than the best
    assert 0.5 < rep.obj_iou_share <= 1 and stats.loc["best_iou", "mean"] >= stats.loc["obj_iou", "mean"]
    assert 0 < rep.obj_not_best < rep.objects
    check_against_reference(rep, ref_mismatch(preds.candidates, preds.manifest))
    r1 = mismatch(ds, preds, iou="iou", neighborhood=1)
    assert (
        r1.candidates_per_object == 54
        and r1.stats.set_index("statistic").loc["best_iou", "mean"] >= stats.loc["best_iou", "mean"]
    )
    print(rep.to_dict())
    print(r1.to_dict())


@pytest.mark.gpu
def test_cuda_matches_cpu(tmp_path):
    import torch

    frame, manifest = synthetic_candidates(3000, neighborhood=1, seed=8)
    ds = from_dict(synthetic_dataset(frame), name="synthetic")
    preds = InMemoryPredictions(frame, manifest)
    for assigner in ASSIGNERS:
        cpu = mismatch(ds, preds, iou="giou", assigner=assigner, neighborhood=1)
        gpu = mismatch(
            ds, preds, iou="giou", assigner=assigner, neighborhood=1, device=torch.device("cuda"), plot=tmp_path
        )
        assert (cpu.obj_not_best, cpu.score_not_best) == (gpu.obj_not_best, gpu.score_not_best)
        np.testing.assert_allclose(cpu.stats["mean"], gpu.stats["mean"], rtol=1e-5)
        assert len(gpu.plots) == 2
