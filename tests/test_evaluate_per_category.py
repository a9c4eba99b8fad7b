"""``run_cocoeval`` evaluates one category at a time; its stats and its precision, recall and scores
arrays must equal one whole-dataset COCOeval (pycocotools', or faster-coco-eval's for ``faster``)
exactly: on the real yolov3-tiny predictions of coco-tiny val2017, on the sample with score ties and
shuffled file order, class-agnostic, and on hand-built edge cases.

The oracle is the old way, written out here: ``COCO`` of the ground truth, ``loadRes`` of every
detection, ``evaluate()``, ``accumulate()``, ``summarize()`` on the whole dataset.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings

import numpy as np
import pytest

from cocostat.data import from_dict, load_dataset, sample_path
from cocostat.errors import CocostatWarning
from cocostat.evaluate import (
    STAT_NAMES,
    evaluate,
    load_detections,
    merge_categories,
    run_cocoeval,
)
from tests.test_evaluate import fake_detections, pycocotools_eval

BACKENDS = ("pycocotools", "faster")


def whole_cocoeval(gt: dict | str, dets: list[dict], backend: str):
    """One COCOeval over the whole dataset and every detection (``gt``: a COCO dict or a JSON path)."""
    if backend == "pycocotools" and dets:
        return pycocotools_eval(gt, dets)[0]
    dets = copy.deepcopy(dets)
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "faster":
            fce = pytest.importorskip("faster_coco_eval")

            def quiet(*args, **kwargs):
                return None

            coco = fce.COCO(copy.deepcopy(gt) if isinstance(gt, dict) else gt, print_function=quiet)
            res = coco.loadRes(dets)  # faster-coco-eval's loadRes takes an empty list
            ev = fce.COCOeval_faster(coco, res, iouType="bbox", print_function=quiet)
        else:  # pycocotools' loadRes refuses an empty list; an empty results object is evaluable
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            assert isinstance(gt, dict)
            coco, res = COCO(), COCO()
            coco.dataset = copy.deepcopy(gt)
            res.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco.createIndex()
            res.createIndex()
            ev = COCOeval(coco, res, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def assert_same(new, old) -> None:
    """Per-category result ``new`` equals whole-dataset COCOeval ``old`` bit for bit."""
    assert np.array_equal(new.stats, np.asarray(old.stats, dtype=np.float64)[:12])
    for key in ("precision", "recall", "scores"):
        assert new.eval[key].shape == np.asarray(old.eval[key]).shape, key
        assert np.array_equal(new.eval[key], old.eval[key]), key


def agnostic(coco: dict, dets: list[dict]) -> tuple[dict, list[dict]]:
    """The COCO dict and detections with every category rewritten to one (id 1), by hand."""
    coco = copy.deepcopy(coco)
    coco["categories"] = [{"id": 1, "name": "object", "supercategory": "object"}]
    for a in coco["annotations"]:
        a["category_id"] = 1
    return coco, [{**d, "category_id": 1} for d in dets]


# --------------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_yolo(tiny_predictions, real_data):
    ds, folder = tiny_predictions
    path = real_data / "coco-tiny" / "annotations" / "instances_val2017.json"
    dets = json.loads((folder / "detections.json").read_text())
    return path, ds, folder, dets


@pytest.mark.realdata
@pytest.mark.parametrize("backend", BACKENDS)
def test_per_category_equals_whole_cocoeval_on_yolov3_tiny(tiny_yolo, backend):
    path, ds, folder, dets = tiny_yolo
    old = whole_cocoeval(str(path), dets, backend)  # the evaluator reads the real JSON itself
    new = run_cocoeval(ds, load_detections(folder, ds), backend)
    assert_same(new, old)
    assert new.stats[1] > 0.1 and (new.eval["precision"] > -1).any() and (new.eval["precision"] == -1).any()
    assert new.category_id.tolist() == sorted(c["id"] for c in json.loads(path.read_text())["categories"])
    assert list(evaluate(ds, folder, backend=backend).stats) == list(old.stats[:12])
    assert new.to_dict()["AP50"] == old.stats[1] and list(new.to_frame()["statistic"]) == list(STAT_NAMES)


@pytest.mark.realdata
@pytest.mark.parametrize("backend", BACKENDS)
def test_per_category_equals_whole_cocoeval_class_agnostic_on_yolov3_tiny(tiny_yolo, backend):
    path, ds, folder, dets = tiny_yolo
    coco1, dets1 = agnostic(json.loads(path.read_text()), dets)
    old = whole_cocoeval(coco1, dets1, backend)
    new = run_cocoeval(*merge_categories(ds, load_detections(folder, ds)), backend)
    assert_same(new, old)
    assert new.eval["precision"].shape[2] == 1
    assert list(evaluate(ds, folder, class_agnostic=True, backend=backend).stats) == list(old.stats[:12])


@pytest.mark.realdata
@pytest.mark.parametrize("backend", BACKENDS)
def test_per_category_equals_whole_cocoeval_on_real_json_with_ties(real_data, backend):
    """Real val2017 annotations (crowd regions included), fake detections with 1-decimal score ties
    in shuffled file order: the ties inside an (image, category) must be broken as the whole run does."""
    path = real_data / "coco-tiny" / "annotations" / "instances_val2017.json"
    coco = json.loads(path.read_text())
    assert any(a["iscrowd"] for a in coco["annotations"])
    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    dets = fake_detections(coco, seed=7, score_decimals=1)
    dets = [dets[i] for i in np.random.default_rng(7).permutation(len(dets))]
    assert_same(run_cocoeval(ds, load_detections(dets, ds), backend), whole_cocoeval(str(path), dets, backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_category_equals_whole_cocoeval_on_sample_with_max_dets(backend):
    """The sample (COCO128 annotations), score ties, and 150 detections in one (image, category),
    beyond maxDets=100."""
    coco = json.loads(sample_path().read_text())
    ds = load_dataset("sample")
    rng = np.random.default_rng(1)
    dets = fake_detections(coco, seed=1, score_decimals=1)
    a0 = next(a for a in coco["annotations"] if not a["iscrowd"])
    x, y, w, h = a0["bbox"]
    for _ in range(150):
        j = rng.normal(0, 0.1, 2)
        dets.append(
            {
                "image_id": a0["image_id"],
                "category_id": a0["category_id"],
                "bbox": [x + j[0] * w, y + j[1] * h, w, h],
                "score": round(float(rng.random()), 1),
            }
        )
    dets = [dets[i] for i in rng.permutation(len(dets))]
    assert_same(run_cocoeval(ds, load_detections(dets, ds), backend), whole_cocoeval(coco, dets, backend))
    coco1, dets1 = agnostic(coco, dets)
    new1 = run_cocoeval(*merge_categories(ds, load_detections(dets, ds)), backend)
    assert_same(new1, whole_cocoeval(coco1, dets1, backend))


# --------------------------------------------------------------------------------------------------
# Hand-built edge cases
# --------------------------------------------------------------------------------------------------
EDGE = {
    "images": [
        {"id": 1, "width": 640, "height": 480, "file_name": "a.jpg"},
        {"id": 2, "width": 500, "height": 500, "file_name": "b.jpg"},
        {"id": 5, "width": 300, "height": 200, "file_name": "c.jpg"},  # detections only
        {"id": 9, "width": 100, "height": 100, "file_name": "d.jpg"},  # nothing at all
    ],
    "categories": [
        {"id": 1, "name": "dog", "supercategory": "animal"},  # annotations (one crowd) and detections
        {"id": 3, "name": "cat", "supercategory": "animal"},  # detections only
        {"id": 4, "name": "car", "supercategory": "vehicle"},  # annotations only
        {"id": 7, "name": "bus", "supercategory": "vehicle"},  # neither
        {"id": 8, "name": "bike", "supercategory": "vehicle"},  # a crowd annotation only, and detections
    ],
    "annotations": [
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 80], "area": 8000, "iscrowd": 0},
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [200, 50, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 13, "image_id": 1, "category_id": 1, "bbox": [300, 200, 200, 200], "area": 40000, "iscrowd": 1},
        {"id": 14, "image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0},
        {"id": 15, "image_id": 2, "category_id": 4, "bbox": [100, 100, 60, 40], "area": 2400, "iscrowd": 0},
        {"id": 16, "image_id": 2, "category_id": 8, "bbox": [200, 200, 250, 250], "area": 62500, "iscrowd": 1},
        {"id": 17, "image_id": 1, "category_id": 4, "bbox": [50, 300, 120, 90], "area": 10800, "iscrowd": 0},
    ],
}


def edge_detections() -> list[dict]:
    def det(img, cat, box, score):
        return {"image_id": img, "category_id": cat, "bbox": box, "score": score}

    return [
        det(1, 1, [12, 11, 98, 80], 0.9),  # hits 11
        det(1, 1, [11, 10, 99, 79], 0.9),  # duplicate of 11 with a tied score
        det(1, 1, [201, 51, 19, 20], 0.5),  # hits 12 (small)
        det(1, 1, [310, 210, 50, 50], 0.7),  # inside the crowd region 13: ignored
        det(2, 1, [0, 0, 48, 52], 0.3),  # hits 14
        det(5, 1, [10, 10, 30, 30], 0.8),  # image with no annotations
        det(1, 3, [10, 10, 100, 80], 0.6),  # category without annotations
        det(5, 3, [0, 0, 10, 10], 0.2),
        det(2, 8, [210, 210, 100, 100], 0.4),  # on the crowd-only category
        det(2, 8, [0, 0, 20, 20], 0.35),
    ]


@pytest.fixture(scope="module")
def edge():
    return from_dict(EDGE, name="edge")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "keep",
    [
        "all",  # every case at once
        "none",  # empty detections
        "cat3",  # only the category without annotations
        "img5",  # only the image without annotations
        "crowd",  # only detections of the crowd-only category
    ],
)
def test_per_category_equals_whole_cocoeval_on_edge_cases(edge, backend, keep):
    dets = edge_detections()
    dets = {
        "all": dets,
        "none": [],
        "cat3": [d for d in dets if d["category_id"] == 3],
        "img5": [d for d in dets if d["image_id"] == 5],
        "crowd": [d for d in dets if d["category_id"] == 8],
    }[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)  # "no detections"
        d = load_detections(dets, edge)
    old = whole_cocoeval(EDGE, dets, backend)
    new = run_cocoeval(edge, d, backend)
    assert_same(new, old)
    assert new.eval["precision"].shape == (10, 101, 5, 4, 3)
    # category 7 (bus) has nothing: -1 everywhere, as accumulate leaves an absent category
    assert (new.eval["precision"][:, :, 3] == -1).all() and (new.eval["recall"][:, 3] == -1).all()
    if keep == "all":
        assert 0 < new.stats[0] < 1 and (new.eval["precision"][0, :, 0, 0, 2] > 0).any()
    assert_same(run_cocoeval(*merge_categories(edge, d), backend), whole_cocoeval(*agnostic(EDGE, dets), backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dataset_without_categories_equals_whole_cocoeval(backend):
    """No category at all: nothing to evaluate, (T, R, 0, A, M) arrays, the whole run's stats."""
    coco = {"images": EDGE["images"], "categories": [], "annotations": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)  # no annotations, no detections
        empty = from_dict(coco, name="empty")
        res = run_cocoeval(empty, load_detections([], empty), backend)
    assert_same(res, whole_cocoeval(coco, [], backend))
    assert res.eval["precision"].shape == (10, 101, 0, 4, 3)


def test_each_evaluator_sees_one_category_and_only_its_images(edge, monkeypatch):
    """What bounds the memory: every COCOeval run holds one category, the images with an annotation
    or a detection of it, and only its detections; the category with nothing gets no evaluator."""
    from pycocotools import cocoeval

    seen = []

    class Spy(cocoeval.COCOeval):
        def evaluate(self):
            gt, dt = self.cocoGt.dataset, self.cocoDt.dataset
            seen.append(
                (
                    [c["id"] for c in gt["categories"]],
                    [i["id"] for i in gt["images"]],
                    [a["id"] for a in gt["annotations"]],
                    [(a["image_id"], a["category_id"], a["score"]) for a in dt["annotations"]],
                )
            )
            super().evaluate()

    monkeypatch.setattr(cocoeval, "COCOeval", Spy)
    dets = edge_detections()
    run_cocoeval(edge, load_detections(dets, edge))
    expected = []
    for cat in EDGE["categories"]:
        anns = [a for a in EDGE["annotations"] if a["category_id"] == cat["id"]]
        mine = [(d["image_id"], d["category_id"], d["score"]) for d in dets if d["category_id"] == cat["id"]]
        if anns or mine:
            imgs = sorted({a["image_id"] for a in anns} | {m[0] for m in mine})
            ann_ids = [a["id"] for a in sorted(anns, key=lambda a: (a["image_id"], a["id"]))]  # dataset order
            expected.append(([cat["id"]], imgs, ann_ids, mine))
    assert seen == expected and len(seen) == 4
