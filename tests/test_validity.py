"""The one validity rule (cocostat.boxes.valid_predictions) where predictions are ranked or kept.

A prediction is invalid when its box or any of its scores is not finite. Each test reproduces a
finding of issue 11 that failed before the rule was applied in one place.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from test_audit import hand_built

from cocostat.assign import grid_from_manifest
from cocostat.audit import candidate_tensors
from cocostat.boxes import IOU_KINDS, valid_predictions
from cocostat.candidates import to_arrays
from cocostat.errors import CocostatWarning
from cocostat.mismatch import mismatch
from cocostat.predict import _detect

INF = math.inf


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        yield


def test_valid_predictions_rule():
    boxes = np.array([[0, 0, 1, 1], [0, 0, INF, 1], [0, 0, 1, 1], [0, 0, 1, 1], [np.nan, 0, 1, 1]], float)
    obj = np.array([0.5, 0.5, np.nan, 0.5, 0.5])
    cls = np.array([[0.1, 0.2], [0.1, 0.2], [0.1, 0.2], [0.1, -INF], [0.1, 0.2]])
    ok = [
        bool(np.isfinite(b).all() and np.isfinite(o) and np.isfinite(c).all())  # the rule, written out
        for b, o, c in zip(boxes, obj, cls, strict=True)
    ]
    assert ok == [True, False, False, False, False]
    assert valid_predictions(boxes, obj, cls).tolist() == ok
    assert valid_predictions(boxes).tolist() == [True, False, True, True, False]
    t = valid_predictions(torch.tensor(boxes), torch.tensor(obj))
    assert isinstance(t, torch.Tensor) and t.tolist() == [True, False, False, True, False]


@pytest.mark.parametrize("bad", [[100, 100, INF, 148], [-INF, 100, 160, 148], [100, np.nan, 160, 148]])
def test_candidate_tensors_drop_non_finite_boxes_for_every_iou_kind(bad):
    t = hand_built()
    t.plant(0, anchor=5, box=bad, obj=0.99)
    arrays = to_arrays(t.frame())
    grid = grid_from_manifest(t.manifest())
    k = t.col(5)
    for kind in IOU_KINDS:  # before: plain IoU kept the box (IoU 0, finite) as a valid candidate
        ct = candidate_tensors(arrays, grid, iou=kind)
        g = 0  # object 11, the first row
        assert not bool(ct.valid[g, k]), kind
        assert ct.q[g, k] == -INF, kind


def _obj_not_best(t, kind):
    rep = mismatch(t.dataset(), t.predictions(), iou=kind)
    return rep, rep.per_object.set_index("ann_id")


def test_mismatch_overflowed_prediction_is_left_out_alike_for_every_kind():
    clean = hand_built()
    ref = {kind: _obj_not_best(clean, kind)[0].obj_not_best for kind in IOU_KINDS}
    t = hand_built()
    t.plant(0, anchor=5, box=[100, 100, INF, 148], obj=0.99)  # an overflowed box, highest objectness
    for kind in IOU_KINDS:
        rep, po = _obj_not_best(t, kind)
        # before: under --iou iou the inf box counted (IoU 0) and won the objectness ranking
        assert po.loc[11, "candidates"] == 8, kind
        assert rep.obj_not_best == ref[kind], kind
        assert po.loc[11, "obj_anchor"] != 5, kind


def test_mismatch_nan_objectness_is_left_out():
    t = hand_built()
    t.plant(0, anchor=8, obj=np.nan)  # object 11's exact box, objectness NaN
    t.plant(3, anchor=2, cls=np.nan)  # object 31, a class probability NaN
    rep, po = _obj_not_best(t, "iou")
    stats = rep.stats.set_index("statistic")
    # before: max_obj was NaN for object 11 (so its statistic counted 0 objects) while the
    # objectness ranking still called it "not the best IoU"
    assert stats.loc["max_obj", "objects"] == rep.objects == 4
    assert stats.loc["max_score", "objects"] == rep.objects
    assert po.loc[11, "candidates"] == 8 and po.loc[31, "candidates"] == 8
    assert np.isfinite(po["max_obj"]).all() and np.isfinite(po["max_score"]).all()
    assert po.loc[11, "best_anchor"] != 8  # the NaN-objectness box is not a candidate at all


def test_detect_drops_non_finite_predictions():
    c = 3
    rows = torch.tensor(
        [
            [50.0, 50.0, 20.0, 20.0, 0.9, 0.9, 0.1, 0.1],  # an ordinary detection
            [150.0, 50.0, INF, 20.0, 0.95, 0.9, 0.1, 0.1],  # overflowed width: was clipped to the image
            [250.0, 50.0, 20.0, 20.0, 0.95, math.nan, 0.9, 0.1],  # NaN class probability
            [50.0, 250.0, 20.0, 20.0, math.nan, 0.9, 0.1, 0.1],  # NaN objectness
        ]
    )[None]  # (1, 4, 5 + C)
    img, cls, box, score = _detect(rows, conf=0.25, nms_iou=0.45, max_det=100)
    # brute force: keep a row when it is finite and clears the threshold
    want = [
        (i, j)
        for i, r in enumerate(rows[0].tolist())
        for j in range(c)
        if all(math.isfinite(v) for v in r) and r[4] > 0.25 and r[4] * r[5 + j] > 0.25
    ]
    assert want == [(0, 0)]
    assert img.tolist() == [0] and cls.tolist() == [0]
    torch.testing.assert_close(box, torch.tensor([[40.0, 40.0, 60.0, 60.0]]))
    assert torch.isfinite(score).all()
