"""cocostat.diagnose: every TIDE error type and its dAP on hand-built cases, merged and suppressed
objects, hard examples, drawing, and agreement with pycocotools and tidecv on real annotations."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cocostat.boxes import matched_iou
from cocostat.data import from_dict, load_dataset, sample_path
from cocostat.diagnose import (
    CANDIDATE_COLUMNS,
    ErrorType,
    SpecialError,
    _winners,
    classify_errors,
    diagnose,
    found_objects,
    hard_examples,
    suppressed_objects,
)
from cocostat.errors import (
    CocostatWarning,
    DatasetFormatError,
    DatasetNotFoundError,
    OptionError,
)
from cocostat.evaluate import REC_THRS, load_detections, match_detections
from tests.test_evaluate import fake_detections, pycocotools_eval, yolo_predictions

CAT, DOG = 1, 2
T = {t.short: i for i, t in enumerate(ErrorType)}


def _coco(annotations, images=(1, 2)):
    return {
        "images": [{"id": i, "width": 200, "height": 200, "file_name": f"{i}.jpg"} for i in images],
        "categories": [{"id": CAT, "name": "cat"}, {"id": DOG, "name": "dog"}],
        "annotations": [
            {"id": k, "image_id": i, "category_id": c, "bbox": b, "iscrowd": int(cr)} for k, i, c, b, cr in annotations
        ],
    }


# image 1: cats A, B; dogs C, D (never detected), F; a crowd of cats E. Image 2 is empty.
GT = [
    (1, 1, CAT, [0, 0, 40, 40], 0),  # A
    (2, 1, CAT, [100, 0, 40, 40], 0),  # B
    (3, 1, DOG, [0, 100, 40, 40], 0),  # C
    (4, 1, DOG, [100, 100, 40, 40], 0),  # D: missed
    (5, 1, CAT, [150, 150, 50, 50], 1),  # E: crowd
    (6, 1, DOG, [50, 150, 40, 40], 0),  # F
]
DETS = [
    (1, CAT, [0, 0, 40, 40], 0.9),  # d0 TP on A
    (1, CAT, [4, 0, 40, 40], 0.8),  # d1 Dupe: IoU 0.82 with A, already matched
    (1, CAT, [0, 100, 40, 40], 0.7),  # d2 Cls: a cat box exactly on dog C
    (1, CAT, [124, 0, 40, 40], 0.6),  # d3 Loc: IoU 0.25 with cat B
    (1, CAT, [60, 60, 20, 20], 0.5),  # d4 Bkg: overlaps nothing
    (1, DOG, [120, 0, 40, 40], 0.45),  # d5 Both: IoU 1/3 with cat B, nothing of its class
    (1, CAT, [160, 160, 20, 20], 0.4),  # d6 on the crowd of cats: ignored, no error
    (2, DOG, [10, 10, 30, 30], 0.3),  # d7 Bkg: an image without objects
    (1, DOG, [50, 150, 40, 40], 0.85),  # d8 TP on dog F
]


def _case(gt=GT, dets=DETS):
    ds = from_dict(_coco(gt))
    d = load_detections([{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in dets], ds)
    return ds, d


def _ap_points(n_points_per_class):
    """mAP in points from the number of recall thresholds at precision 1 per class."""
    return 100 * np.mean([n / REC_THRS.size for n in n_points_per_class])


def test_every_error_type_by_hand():
    ds, d = _case()
    m = match_detections(ds, d)
    err, target, missed = classify_errors(ds, d, m)
    assert err.tolist() == [-1, T["Dupe"], T["Cls"], T["Loc"], T["Bkg"], T["Both"], -1, T["Bkg"], -1]
    ann = ds.ann_id
    assert ann[target[2]] == 3 and ann[target[3]] == 2 and (target[[0, 1, 4, 5, 6, 7, 8]] == -1).all()
    assert ann[missed].tolist() == [4]  # D; B and C are targets of Loc / Cls errors, E is a crowd
    assert m.ignored.tolist() == [False] * 6 + [True, False, False]


def test_dap_of_every_type_by_hand():
    rep = diagnose(
        from_dict(_coco(GT)), [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in DETS]
    )
    # base: cat 1 TP of 2 objects at the top (51 recall points), dog 1 of 3 (34 points)
    assert rep.ap == pytest.approx(_ap_points([51, 34]), abs=1e-9)
    dap = dict(zip(rep.errors["type"], rep.errors["dAP"]))
    count = dict(zip(rep.errors["type"], rep.errors["count"]))
    assert count == {"Cls": 1, "Loc": 1, "Both": 1, "Dupe": 1, "Bkg": 2, "Miss": 1}
    base = _ap_points([51, 34])
    # Cls fixed: d2 becomes a dog TP at 0.7 -> dog 2 of 3 at precision 1 (67 points)
    assert dap["Cls"] == pytest.approx(_ap_points([51, 67]) - base, abs=1e-9)
    # Loc fixed: d3 a cat TP at 0.6 after 2 FPs -> precision 1 to recall .5, then 2/4 to recall 1
    assert dap["Loc"] == pytest.approx(100 * np.mean([(51 + 50 * 0.5) / 101, 34 / 101]) - base, abs=1e-9)
    # Miss fixed: D leaves the ground truth -> dog 1 of 2 (51 points)
    assert dap["Miss"] == pytest.approx(_ap_points([51, 51]) - base, abs=1e-9)
    # removing FPs below every TP gains nothing
    assert dap["Dupe"] == dap["Bkg"] == dap["Both"] == 0.0
    special = dict(zip(rep.special["type"], rep.special["dAP"]))
    assert special["FalsePos"] == 0.0
    assert special["FalseNeg"] == pytest.approx(100 - base, abs=1e-9)  # B, C, D removed: all found
    assert dict(zip(rep.special["type"], rep.special["count"])) == {"FalsePos": 6, "FalseNeg": 3}


def test_only_the_best_cls_or_loc_error_recovers_an_object():
    dets = [*DETS, (1, CAT, [122, 0, 40, 40], 0.65)]  # d9: a second Loc error on B, higher score than d3
    ds, d = _case(dets=dets)
    m = match_detections(ds, d)
    err, target, _ = classify_errors(ds, d, m)
    assert err[9] == err[3] == T["Loc"] and target[9] == target[3]
    win = _winners(d, target, m)
    assert win[9] and not win[3] and win[2]
    # an error whose target is already matched recovers nothing: d1's object A is taken
    dets = [*DETS, (1, DOG, [0, 0, 40, 40], 0.95)]  # d9: a dog box on cat A (matched by d0): Cls, no winner
    ds, d = _case(dets=dets)
    m = match_detections(ds, d)
    err, target, _ = classify_errors(ds, d, m)
    assert err[9] == T["Cls"] and not _winners(d, target, m)[9]


def test_no_detections_and_no_objects():
    ds = from_dict(_coco(GT))
    with pytest.warns(CocostatWarning, match="no detections"):
        rep = diagnose(ds, [])
    assert rep.ap == 0 and (rep.errors.set_index("type")["count"].drop("Miss") == 0).all()
    assert rep.errors.set_index("type").loc["Miss", "count"] == 5  # every non-crowd object
    assert len(rep.merged) == 0 and len(rep.hard) == 1  # image 1 (all missed); image 2 has no error
    empty = from_dict(_coco([]))
    rep = diagnose(empty, [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5}])
    assert np.isnan(rep.ap) and rep.errors.set_index("type").loc["Bkg", "count"] == 1
    assert (rep.errors["dAP"] == 0).all()


def test_error_enums_carry_names_and_descriptions():
    assert [t.short for t in ErrorType] == ["Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"]  # TIDE's order
    assert all(t.description and t.title for t in ErrorType)
    assert [s.short for s in SpecialError] == ["FalsePos", "FalseNeg"]
    rep = diagnose(*_case())
    assert list(rep.errors["description"]) == [t.description for t in ErrorType]


# --------------------------------------------------------------------------------------------------
# Merged, suppressed, hard examples
# --------------------------------------------------------------------------------------------------
PAIR = [(1, 1, CAT, [0, 0, 40, 40], 0), (2, 1, CAT, [40, 0, 40, 40], 0), (3, 1, CAT, [150, 150, 40, 40], 0)]


def test_merged_detection_by_hand():
    wide = (1, CAT, [0, 0, 80, 40], 0.9)  # IoU 0.5 with each object of the pair
    ds, d = _case(PAIR, [wide])
    rep = diagnose(ds, d)
    assert len(rep.merged) == 1
    row = rep.merged.iloc[0]
    assert (row["objects"], row["found"], row["detection"], row["image_id"]) == (2, 1, 0, 1)
    assert sorted(row["ann_ids"]) == [1, 2] and rep.objects_lost_to_merging == 1
    assert rep.to_dict()["merged"]["images"] == [1]
    # both objects found: no merge
    ds, d = _case(PAIR, [wide, (1, CAT, [0, 0, 40, 40], 0.8)])
    assert len(diagnose(ds, d).merged) == 0
    # the second object found only below --conf: a merge again
    assert len(diagnose(ds, d, conf=0.85).merged) == 1
    # below --conf the wide box itself is not counted; above --merge-iou 0.5 neither
    ds, d = _case(PAIR, [(1, CAT, [0, 0, 80, 40], 0.2)])
    assert len(diagnose(ds, d).merged) == 0
    ds, d = _case(PAIR, [wide])
    assert len(diagnose(ds, d, merge_iou=0.5).merged) == 0
    # another class's objects do not count
    ds, d = _case(PAIR, [(1, DOG, [0, 0, 80, 40], 0.9)])
    assert len(diagnose(ds, d).merged) == 0


def _candidates(rows):
    """A hand-made candidate table: (ann_id, pred xyxy, gt xyxy, obj, cls_prob, valid) per row."""
    cols = {c: [] for c in CANDIDATE_COLUMNS}
    for ann, p, g, obj, cls, valid in rows:
        for c, v in zip(CANDIDATE_COLUMNS, (ann, *p, *g, obj, cls, valid)):
            cols[c].append(v)
    frame = pd.DataFrame(cols)
    frame["image_id"] = 1
    return frame


def test_suppressed_objects_by_hand():
    # object 1: found; object 2: good candidate, lost; object 3: candidate below conf; plus an invalid row
    ds, d = _case(PAIR, [(1, CAT, [0, 0, 40, 40], 0.9)])
    box = {1: [0, 0, 40, 40], 2: [40, 0, 80, 40], 3: [150, 150, 190, 190]}  # xyxy (input px = image px here)
    frame = _candidates(
        [
            (1, box[1], box[1], 0.9, 0.9, True),
            (2, [42, 0, 82, 40], box[2], 0.8, 0.5, True),  # conf 0.4, IoU 0.9
            (2, [60, 0, 100, 40], box[2], 0.9, 0.9, True),  # IoU 1/3: not good
            (2, [np.nan] * 4, box[2], np.nan, np.nan, False),
            (3, box[3], box[3], 0.5, 0.3, True),  # conf 0.15 < 0.25
            (3, box[3], box[3], 0.9, 0.9, False),  # outside the grid
        ]
    )
    rep = diagnose(ds, d, candidates=frame)
    assert rep.suppressed["ann_id"].tolist() == [2]
    assert rep.suppressed.iloc[0]["best_conf"] == pytest.approx(0.4)
    assert rep.suppressed.iloc[0]["best_iou"] == pytest.approx(38 * 40 / (2 * 1600 - 38 * 40))
    assert rep.to_dict()["suppressed"]["count"] == 1
    assert diagnose(ds, d, candidates=frame, conf=0.1).suppressed["ann_id"].tolist() == [2, 3]
    assert diagnose(ds, d, candidates=frame, conf=0.5).suppressed["ann_id"].tolist() == []
    # a detection that survives NMS on object 2 but is matched elsewhere: not suppressed
    ds2, d2 = _case(PAIR, [(1, CAT, [0, 0, 40, 40], 0.9), (1, CAT, [20, 0, 40, 40], 0.8)])
    assert diagnose(ds2, d2, candidates=frame).suppressed["ann_id"].tolist() == [2]  # IoU 1/3 < 0.5
    ds3, d3 = _case(PAIR, [(1, CAT, [0, 0, 80, 40], 0.9), (1, CAT, [0, 0, 40, 40], 0.2)])
    m3 = match_detections(ds3, d3)
    assert m3.gt_det.tolist() == [1, 0, -1]  # the wide box took object 2 (IoU 0.5, the later tie)
    found = found_objects(ds3, d3, m3, 0.25)
    assert found.tolist() == [False, True, False]
    assert suppressed_objects(ds3, frame, found, 0.25)["ann_id"].tolist() == [1]  # candidate of 1 is good
    # ... but the wide box (IoU 0.5 with object 1) survived NMS: object 1 is lost to the merge, not to NMS
    assert diagnose(ds3, d3, candidates=frame).suppressed["ann_id"].tolist() == []
    # nothing to report: the empty frame keeps its columns
    assert list(suppressed_objects(ds, frame.iloc[:0], found, 0.25).columns) == [
        "ann_id",
        "image_id",
        "file_name",
        "category",
        "best_conf",
        "best_iou",
    ]


def test_suppressed_bad_tables():
    ds, d = _case(PAIR, [(1, CAT, [0, 0, 40, 40], 0.9)])
    frame = _candidates([(99, [0, 0, 1, 1], [0, 0, 1, 1], 0.9, 0.9, True)])
    with pytest.raises(DatasetFormatError, match="ann_id 99 is not an annotation of dataset memory"):
        diagnose(ds, d, candidates=frame)
    with pytest.raises(DatasetFormatError, match="missing column.*cls_prob"):
        diagnose(ds, d, candidates=frame.drop(columns=["cls_prob"]))


def test_hard_examples_against_brute_force():
    coco = json.loads(sample_path().read_text())
    ds = load_dataset("sample")
    dets = fake_detections(coco, seed=8)
    d = load_detections(dets, ds)
    m = match_detections(ds, d)
    hard = hard_examples(ds, d, m, top=5)
    err = {}
    for i in range(ds.num_images):
        e = sum(d.score[k] for k in np.flatnonzero(m.fp & (d.image_index == i)))
        for g in range(ds.offsets[i], ds.offsets[i + 1]):
            if not ds.iscrowd[g]:
                e += 1.0 - (d.score[m.gt_det[g]] if m.gt_det[g] >= 0 else 0.0)
        err[int(ds.image_id[i])] = e
    expect = sorted(err, key=lambda k: (-err[k], k))[:5]
    assert hard["image_id"].tolist() == expect
    np.testing.assert_allclose(hard["error"], [err[k] for k in expect], rtol=1e-12)
    np.testing.assert_allclose(hard["error"], hard["false_positives"] + hard["missed"], rtol=1e-12)
    assert len(hard_examples(ds, d, m, top=0)) == 0


def test_option_errors():
    ds, d = _case()
    for kw, msg in [
        ({"iou": 0}, "^iou must"),
        ({"bg_iou": 0.5}, "^bg_iou must"),
        ({"merge_iou": 1}, "^merge_iou must"),
        ({"conf": -1}, "^conf must"),
        ({"top": -1}, "^top must"),
    ]:
        with pytest.raises(OptionError, match=msg):
            diagnose(ds, d, **kw)
    with pytest.raises(OptionError, match="--detections FILE"):
        diagnose(ds)


def test_draw_needs_images_and_writes_nothing_without(tmp_path):
    ds, d = _case()
    with pytest.raises(DatasetNotFoundError, match="--images DIR"):
        diagnose(ds, d, draw=tmp_path / "draw")
    assert not (tmp_path / "draw").exists()


# --------------------------------------------------------------------------------------------------
# Real annotations
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(real_data):
    path = real_data / "coco-tiny" / "annotations" / "instances_val2017.json"
    return path, json.loads(path.read_text()), load_dataset("val2017", root=real_data / "coco-tiny")


@pytest.mark.realdata
def test_real_base_ap_is_cocoeval_ap50_and_errors_add_up(tiny):
    path, coco, ds = tiny
    dets = fake_detections(coco, seed=0)
    ev, _ = pycocotools_eval(str(path), dets)
    rep = diagnose(ds, dets)
    assert rep.ap == 100 * ev.stats[1]  # bit for bit
    d = load_detections(dets, ds)
    m = match_detections(ds, d)
    counts = rep.errors.set_index("type")["count"]
    assert counts.drop("Miss").sum() == m.fp.sum() == (rep.det_error >= 0).sum()
    unmatched = int((~ds.iscrowd & (m.gt_det < 0)).sum())
    assert counts["Miss"] <= unmatched and rep.special.set_index("type").loc["FalseNeg", "count"] == unmatched
    assert (counts > 0).all() and (rep.errors["dAP"] >= 0).all()
    assert rep.errors.set_index("type").loc["Cls", "dAP"] > 1  # 10 % class swaps cost AP


@pytest.mark.realdata
def test_real_error_types_in_small_pair_blocks_equal_a_loop(tiny):
    """classify_errors over blocks of 7 (false positive, object) pairs equals the module's rules
    written as a loop over false positives (IoU from the same matched_iou, one object at a time)."""
    _, coco, ds = tiny
    d = load_detections(fake_detections(coco, seed=1), ds)
    m = match_detections(ds, d, pair_block=5)
    assert m.det_gt.tolist() == match_detections(ds, d).det_gt.tolist()
    err, target, missed = classify_errors(ds, d, m, 0.1, pair_block=7)
    objects: dict[int, list[int]] = {}
    for j in range(ds.num_annotations):
        if not ds.iscrowd[j]:
            objects.setdefault(int(ds.image_index[j]), []).append(j)
    gt, det = ds.boxes_xyxy(), d.boxes_xyxy()
    expect_err, expect_target = [-1] * len(d), [-1] * len(d)
    for i in np.flatnonzero(m.fp).tolist():
        best = {"same": (-np.inf, -1), "other": (-np.inf, -1), "dupe": (-np.inf, -1), "all": (-np.inf, -1)}
        for j in objects.get(int(d.image_index[i]), []):
            v = float(matched_iou(det[i : i + 1], gt[j : j + 1])[0])
            same = d.class_idx[i] == ds.class_idx[j]
            for key, ok in (("same", same), ("other", not same), ("dupe", same and m.gt_det[j] >= 0), ("all", True)):
                if ok and v > best[key][0]:  # objects in index order: the first one on ties
                    best[key] = (v, j)
        if not objects.get(int(d.image_index[i])):
            e, t = "Bkg", -1
        elif 0.1 <= best["same"][0] <= 0.5:
            e, t = "Loc", best["same"][1]
        elif best["other"][0] >= 0.5:
            e, t = "Cls", best["other"][1]
        elif best["dupe"][0] >= 0.5:
            e, t = "Dupe", -1
        elif best["all"][0] <= 0.1:
            e, t = "Bkg", -1
        else:
            e, t = "Both", -1
        expect_err[i], expect_target[i] = T[e], t
    assert err.tolist() == expect_err and target.tolist() == expect_target
    assert len(set(expect_err)) == 6  # every type occurs (-1 and five error types)
    targeted = set(t for t in expect_target if t >= 0)
    expect_missed = [not ds.iscrowd[j] and m.gt_det[j] < 0 and j not in targeted for j in range(ds.num_annotations)]
    assert missed.tolist() == expect_missed


@pytest.mark.realdata
def test_real_agrees_with_tidecv(tiny, tmp_path):
    """tidecv (Bolya et al.'s code) on the same detections: same counts, dAP within 0.01 points.

    tidecv ranks ties differently and has no eps in its precision, so its AP differs in the 3rd decimal;
    detections on crowd regions are left out (tidecv's PyPI release still classifies them).
    """
    tidecv = pytest.importorskip("tidecv")
    path, coco, ds = tiny
    dets = fake_detections(coco, seed=0)
    m = match_detections(ds, load_detections(dets, ds))
    dets = [x for x, ig in zip(dets, m.ignored) if not ig]
    file = tmp_path / "dets.json"
    file.write_text(json.dumps(dets))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tide = tidecv.TIDE()
        run = tide.evaluate(
            tidecv.datasets.COCO(str(path)), tidecv.datasets.COCOResult(str(file)), mode=tidecv.TIDE.BOX
        )
        main = next(iter(tide.get_main_errors().values()))
        special = next(iter(tide.get_special_errors().values()))
    rep = diagnose(ds, file)
    assert rep.ap == pytest.approx(run.ap, abs=0.01)
    assert dict(zip(rep.errors["type"], rep.errors["count"])) == {
        k.short_name: len(v) for k, v in run.error_dict.items()
    }
    for t, v in zip(rep.errors["type"], rep.errors["dAP"]):
        assert v == pytest.approx(main[t], abs=0.01), t
    for t, v in zip(rep.special["type"], rep.special["dAP"]):
        assert v == pytest.approx(special[t], abs=0.01), t


@pytest.mark.realdata
def test_real_draw(tiny, tmp_path):
    _, coco, ds = tiny
    rep = diagnose(ds, fake_detections(coco, seed=1), top=2, draw=tmp_path / "draw")
    assert len(rep.drawn) == 2
    for k, (p, name) in enumerate(zip(rep.drawn, rep.hard["file_name"]), start=1):
        assert p.endswith(f"{k:02d}_{name[:-4]}.png")
        drawn = Image.open(p)
        original = Image.open(ds.image_dir / name).convert("RGB")
        assert drawn.size == original.size and drawn.format == "PNG"
        assert np.abs(np.asarray(drawn, float) - np.asarray(original, float)).sum(axis=2).astype(bool).mean() > 0.01
    assert sorted(q.name for q in (tmp_path / "draw").iterdir()) == sorted(p.split("/")[-1] for p in rep.drawn)


@pytest.mark.realdata
@pytest.mark.slow
def test_real_yolov3_tiny_predictions_folder(tiny, real_data, tmp_path_factory):
    path, _, ds = tiny
    folder = yolo_predictions(real_data, tmp_path_factory)
    dets = json.loads((folder / "detections.json").read_text())
    ev, _ = pycocotools_eval(str(path), dets)
    rep = diagnose(ds, predictions=folder, conf=0.05)
    assert rep.ap == 100 * ev.stats[1] and rep.detections == len(dets)
    assert rep.suppressed is not None and len(rep.suppressed) > 0
    # every suppressed object checked by hand: a good candidate, not found, no surviving good box
    from cocostat.boxes import matched_iou
    from cocostat.candidates import read_predictions

    cand = read_predictions(folder).candidates
    d = load_detections(dets, ds)
    m = match_detections(ds, d)
    for ann in rep.suppressed["ann_id"]:
        g = int(np.flatnonzero(ds.ann_id == ann)[0])
        rows = cand[cand["ann_id"] == ann]
        iou = matched_iou(
            rows[["px1", "py1", "px2", "py2"]].to_numpy(float),
            rows[["gt_x1", "gt_y1", "gt_x2", "gt_y2"]].to_numpy(float),
        )
        assert ((rows["obj"] * rows["cls_prob"] >= 0.05) & (iou >= 0.5) & rows["valid"]).any()
        assert m.gt_det[g] < 0 or d.score[m.gt_det[g]] < 0.05
        same = np.flatnonzero(
            (d.image_index == ds.image_index[g]) & (d.class_idx == ds.class_idx[g]) & (d.score >= 0.05) & m.kept
        )
        box = ds.boxes_xyxy()[g][None]
        assert not (matched_iou(d.boxes_xyxy()[same], np.repeat(box, same.size, 0)) >= 0.5).any()


@pytest.mark.realdata
def test_real_chunks_of_whole_images_equal_one_chunk_with_ties_and_drawing(tiny, tmp_path):
    """diagnose in chunks of about 150 detections (whole images, each matched against a dataset of
    its images only) equals the one-chunk run, on detections with many score ties (1 decimal) whose
    accumulation order must follow image and file order; the drawn images are the same files."""
    _, coco, ds = tiny
    dets = fake_detections(coco, seed=2, score_decimals=1)
    whole = diagnose(ds, dets, conf=0.3, top=3, draw=tmp_path / "whole")
    chunked = diagnose(ds, dets, conf=0.3, top=3, draw=tmp_path / "chunked", chunk_detections=150)
    assert whole.to_dict() == {**chunked.to_dict(), "drawn": list(whole.drawn)}
    for name in ("det_error", "det_target", "missed"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))
    assert len(whole.merged) > 0 and len(whole.drawn) == 3
    for a, b in zip(whole.drawn, chunked.drawn):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


@pytest.mark.realdata
def test_real_accumulation_order_is_a_sort_by_key(tiny):
    """accumulation_order (grouped by class, then one lexsort per class) against Python's sorted()
    on (class, -score, image, file position), on detections with score ties."""
    from cocostat.evaluate import accumulation_order

    _, coco, ds = tiny
    d = load_detections(fake_detections(coco, seed=3, score_decimals=1), ds)
    idx = np.flatnonzero(np.random.default_rng(0).random(len(d)) < 0.8)
    want = sorted(idx.tolist(), key=lambda j: (d.class_idx[j], -d.score[j], d.image_index[j], j))
    assert len(set(d.score[idx].tolist())) <= 11 and len(idx) > 800
    assert accumulation_order(d, idx, d.class_idx).tolist() == want


@pytest.mark.realdata
def test_real_select_images_is_a_mask_over_annotations(tiny):
    _, _, ds = tiny
    images = np.flatnonzero(np.random.default_rng(1).random(ds.num_images) < 0.3)
    sub, rows = ds.select_images(images)
    want = np.flatnonzero(np.isin(ds.image_index, images))
    np.testing.assert_array_equal(rows, want)
    np.testing.assert_array_equal(sub.image_id, ds.image_id[images])
    np.testing.assert_array_equal(sub.image_id[sub.image_index], ds.image_id[ds.image_index[want]])
    np.testing.assert_array_equal(sub.bbox, ds.bbox[want])
    np.testing.assert_array_equal(sub.ann_id, ds.ann_id[want])
    assert sub.offsets[-1] == want.size and sub.num_classes == ds.num_classes
    for k, i in enumerate(images[:20]):
        assert sub.offsets[k + 1] - sub.offsets[k] == ds.offsets[i + 1] - ds.offsets[i]
