"""`cocostat assigners` (cocostat.lab): figures against plain loops over the reference positive sets,
equality with anchor-audit, streamed = whole, the command on the built-in sample and on real predictions."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from test_assigners import (
    BOX_ONLY,
    CROWD,
    EDGE_BOXES,
    PRED_AWARE,
    hand_table,
    kernel_ious,
    real_predictions,  # noqa: F401 (a fixture)
    ref_box_only,
    ref_pred_aware,
    stored_rows,
)

from cocostat.assign import grid_from_manifest
from cocostat.audit import anchor_audit, dense_image_index
from cocostat.candidates import to_arrays
from cocostat.cli import main
from cocostat.data import from_dict, load_dataset
from cocostat.errors import CocostatWarning, OptionError
from cocostat.lab import assigner_lab, image_blocks

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        return fn(*args, **kwargs)


def square_dataset(boxes, images, size=416):
    """A COCO dataset of size x size images (letterboxing is the identity) holding ``boxes`` (xyxy)."""
    return from_dict(
        {
            "images": [
                {"id": i + 1, "width": size, "height": size, "file_name": f"{i}.jpg"} for i in sorted(set(images))
            ],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [
                {
                    "id": g + 1,
                    "image_id": int(images[g]) + 1,
                    "category_id": 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                }
                for g, b in enumerate(boxes)
            ],
        },
        name="square",
    )


def figures_from_sets(sets, ref_sets):
    """The box figures of one assigner from its positive sets, by plain Python."""
    n = [len(s) for s in sets]
    jac = [len(a & r) / len(a | r) for a, r in zip(sets, ref_sets) if a | r]
    return {
        "positives": sum(n),
        "mean": sum(n) / len(n),
        "p50": float(np.percentile(n, 50)),
        "p90": float(np.percentile(n, 90)),
        "max": max(n),
        "none": sum(v == 0 for v in n),
        "jaccard": sum(jac) / len(jac) if jac else None,
        "disjoint": sum(1 for a, r in zip(sets, ref_sets) if (a | r) and not (a & r)),
    }


def check_box_figures(d, sets, ref_sets):
    want = figures_from_sets(sets, ref_sets)
    ppo = d["positives_per_object"]
    assert (d["positives"], ppo["max"], d["objects_without_positive"]) == (want["positives"], want["max"], want["none"])
    assert ppo["mean"] == pytest.approx(want["mean"]) and ppo["p50"] == want["p50"] and ppo["p90"] == want["p90"]
    assert d["agreement"]["disjoint_objects"] == want["disjoint"]
    assert d["agreement"]["mean_jaccard"] == pytest.approx(want["jaccard"])


# --------------------------------------------------------------------------------------------------
# box-only figures against loops
# --------------------------------------------------------------------------------------------------
def test_box_only_figures_against_reference_sets():
    from test_assign import yolov3_grid

    boxes = EDGE_BOXES + CROWD
    images = [0] * len(EDGE_BOXES) + [1] * len(CROWD)
    ds = square_dataset(boxes, images)
    grid = yolov3_grid()
    lab = quiet(assigner_lab, ds, anchors="yolov3", size=416, topk=4)
    d = lab.to_dict()
    assert [a["name"] for a in d["assigners"]] == ["yolov3", "atss", "darknet", "topk-anchor", "yolov5"]
    assert d["objects"] == len(boxes) and d["predictions"] is False and d["reference"] == "yolov3"
    ref_sets = ref_box_only("yolov3", boxes, images, grid)
    whole = [(key, lv, a) for key, lv, x, y, a, *_ in __import__("test_assigners").whole_grid(grid)]
    level_of, anchor_of = {k: lv for k, lv, _ in whole}, {k: a for k, _, a in whole}
    for row in d["assigners"]:
        sets = ref_box_only(row["name"], boxes, images, grid, topk=4)
        check_box_figures(row, sets, ref_sets)
        per_level = [sum(level_of[k] == lv for s in sets for k in s) for lv in range(3)]
        assert [v["positives"] for v in row["per_level"]] == per_level
        per_anchor = [sum(anchor_of[k] == a for s in sets for k in s) for a in range(9)]
        assert [v["positives"] for v in row["per_anchor"]] == per_anchor
        assert [v["objects"] for v in row["per_anchor"]] == [
            sum(any(anchor_of[k] == a for k in s) for s in sets) for a in range(9)
        ]
    assert "mean_pred_iou" not in d["assigners"][0]


def test_yolov3_darknet_yolov5_rows_equal_anchor_audit_on_the_sample():
    ds = load_dataset("sample")
    lab = quiet(assigner_lab, ds, anchors="yolov3", size=416, assigners="yolov3,darknet,yolov5")
    for row in lab.to_dict()["assigners"]:
        audit = quiet(anchor_audit, ds, anchors="yolov3", size=416, assigner=row["name"])
        assert [a["objects"] for a in row["per_anchor"]] == audit.per_anchor["matched"].tolist()
        assert row["objects_without_positive"] == audit.unmatched_objects
    yolov3 = lab.to_dict()["assigners"][0]
    assert [a["positives"] for a in yolov3["per_anchor"]] == [a["objects"] for a in yolov3["per_anchor"]]


def test_streamed_blocks_give_the_whole_answer():
    ds = load_dataset("sample")
    whole = quiet(assigner_lab, ds, anchors="yolov3", size=416)
    blocks = quiet(assigner_lab, ds, anchors="yolov3", size=416, chunk_objects=7)
    assert whole.to_dict() == blocks.to_dict()
    pd.testing.assert_frame_equal(whole.per_object, blocks.per_object)


def test_image_blocks_never_split_an_image():
    img = np.array([0, 0, 0, 1, 2, 2, 2, 2, 2, 3, 4])
    blocks = image_blocks(img, 4)
    assert blocks == [(0, 4), (4, 9), (9, 11)]  # the 5-object image is one block over the limit
    assert image_blocks(np.zeros(0, np.int64), 3) == []
    for lo, hi in blocks:
        assert lo == 0 or img[lo] != img[lo - 1]


def test_empty_dataset_and_bad_options():
    empty = from_dict(
        {"images": [{"id": 1, "width": 10, "height": 10}], "categories": [{"id": 1, "name": "a"}], "annotations": []},
        name="empty",
    )
    lab = assigner_lab(empty, anchors="yolov3", size=416)
    d = lab.to_dict()
    assert d["objects"] == 0 and all(a["positives"] == 0 for a in d["assigners"])
    assert all(a["positives_per_object"]["mean"] is None for a in d["assigners"])
    ds = load_dataset("sample")
    with pytest.raises(OptionError, match="need predictions"):
        quiet(assigner_lab, ds, assigners="yolov3,simota")
    with pytest.raises(OptionError, match="^assigners must be one of"):
        assigner_lab(ds, assigners="yolov3,retina")
    with pytest.raises(OptionError, match="^reference must be one of"):
        assigner_lab(ds, reference="nope")
    with pytest.raises(OptionError, match="^topk must"):
        assigner_lab(ds, topk=0)
    with pytest.raises(OptionError, match="^alpha must"):
        assigner_lab(ds, assigners="mixed", alpha=1.5)
    with pytest.raises(OptionError, match="^iou must"):
        assigner_lab(ds, iou="eiou")


# --------------------------------------------------------------------------------------------------
# with predictions: hand-built table, figures against loops
# --------------------------------------------------------------------------------------------------
def pred_figures(name, arrays, images, grid, sets, iou):
    """mean prediction IoU of the stored positives, best-pred-is-positive, score/IoU mismatch: loops."""
    _, chosen = kernel_ious(arrays, iou)
    qs, best_pos, has, mism, two = [], 0, 0, 0, 0
    for g in range(arrays.gt.shape[0]):
        rows = stored_rows(arrays, g, grid)
        valid = [(float(chosen[g, n]), r["key"], r["score"]) for n, r in enumerate(rows) if r["valid"]]
        pos = [v for v in valid if v[1] in sets[g]]
        qs += [q for q, _, _ in pos]
        if valid:
            has += 1
            best = sorted(valid, key=lambda v: (-v[0], v[1]))[0]
            best_pos += best[1] in sets[g]
        if len(pos) >= 2:
            two += 1
            conf = sorted(pos, key=lambda v: (-v[2], v[1]))[0]
            mism += conf[0] < max(q for q, _, _ in pos)
    return {
        "mean_pred_iou": sum(qs) / len(qs) if qs else None,
        "best": best_pos,
        "best_share": best_pos / has,
        "mismatch": mism,
        "mismatch_share": mism / two if two else None,
    }


@pytest.mark.parametrize("iou", ["iou", "diou"])
def test_prediction_figures_against_reference_sets(iou):
    t = hand_table()
    lab = quiet(assigner_lab, t.dataset(), t.predictions(), iou=iou, topk=3, alpha=0.3)
    d = lab.to_dict()
    assert d["predictions"] is True and d["neighborhood"] == 1
    assert [a["name"] for a in d["assigners"]] == [
        *BOX_ONLY[:1],
        "atss",
        "darknet",
        "topk-anchor",
        "yolov5",
        *sorted(PRED_AWARE),
    ]
    arrays = to_arrays(t.frame())
    _, images = dense_image_index(arrays.image_id)
    grid = grid_from_manifest(t.manifest())
    ref_sets = ref_box_only("yolov3", arrays.gt.astype(np.float64), images, grid)
    for row in d["assigners"]:
        name = row["name"]
        if name in PRED_AWARE:
            sets = ref_pred_aware(name, arrays, images, grid, iou=iou, topk=3, alpha=0.3)
            assert row["positives_not_stored"] == 0 and row["region_slots_outside"]["total"] >= 0
        else:
            sets = ref_box_only(name, arrays.gt.astype(np.float64), images, grid, topk=3)
            assert row["region_slots_outside"] is None
        check_box_figures(row, sets, ref_sets)
        want = pred_figures(name, arrays, images, grid, sets, iou)
        assert row["mean_pred_iou"] == pytest.approx(want["mean_pred_iou"], rel=1e-6)
        assert row["best_pred_positive"] == want["best"]
        assert row["best_pred_positive_share"] == pytest.approx(want["best_share"])
        assert row["score_iou_mismatch"] == want["mismatch"]
    by = {a["name"]: a for a in d["assigners"]}
    assert by["best-pred"]["best_pred_positive_share"] == 1.0 and by["yolov3"]["agreement"]["mean_jaccard"] == 1.0
    # mixed and tal take no slot outside the stored cells' region for the centre cell: mixed's region is stored
    assert by["mixed"]["region_slots_outside"]["total"] == 0


# --------------------------------------------------------------------------------------------------
# real predictions: yolov3-tiny on coco-tiny val2017
# --------------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.slow
def test_cli_on_real_predictions(real_data, real_predictions, tmp_path):  # noqa: F811
    root = real_data / "coco-tiny"
    res = run(
        "assigners",
        "val2017",
        "--root",
        root,
        "--predictions",
        real_predictions,
        "--format",
        "json",
        "--plot",
        tmp_path / "plots",
        "--per-object",
        tmp_path / "po.parquet",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["objects"] == 804 and d["images"] == 80 and d["predictions"] is True
    names = [a["name"] for a in d["assigners"]]
    assert set(names) == set(BOX_ONLY) | set(PRED_AWARE)
    for a in d["assigners"]:
        for key in (
            "name",
            "positives",
            "objects_without_positive",
            "per_anchor",
            "mean_pred_iou",
            "best_pred_positive_share",
            "score_iou_mismatch",
            "agreement",
        ):
            assert key in a
        assert {"anchor_index", "positives"} <= set(a["per_anchor"][0])
        assert 0 <= a["mean_pred_iou"] <= 1 and 0 <= a["best_pred_positive_share"] <= 1
    by = {a["name"]: a for a in d["assigners"]}
    # the yolov3 row equals anchor-audit's matched counts on the same predictions
    audit = json.loads(
        run("anchor-audit", "val2017", "--root", root, "--predictions", real_predictions, "--format", "json").stdout
    )
    assert [a["objects"] for a in by["yolov3"]["per_anchor"]] == [a["matched"] for a in audit["per_anchor"]]
    assert by["yolov3"]["objects_without_positive"] == audit["unmatched_objects"]
    # anchor-audit takes any registered assigner: its matched anchors are the lab's, on the same slots
    for name in ("atss", "tal"):
        other = json.loads(
            run(
                "anchor-audit",
                "val2017",
                "--root",
                root,
                "--predictions",
                real_predictions,
                "--assigner",
                name,
                "--format",
                "json",
            ).stdout
        )
        assert [a["matched"] for a in other["per_anchor"]] == [a["objects"] for a in by[name]["per_anchor"]]
        assert other["unmatched_objects"] == by[name]["objects_without_positive"]
    assert by["best-pred"]["best_pred_positive_share"] == 1.0 and by["best-pred"]["positives"] == 804
    # best-pred takes each object's best stored prediction: no top-k set averages higher
    assert by["best-pred"]["mean_pred_iou"] >= by["topk-iou"]["mean_pred_iou"]
    assert (tmp_path / "plots" / "assigners.png").read_bytes()[:8] == PNG_MAGIC
    po = pd.read_parquet(tmp_path / "po.parquet")
    assert len(po) == 804 * len(names)
    assert {"assigner", "ann_id", "positives", "jaccard", "region_slots_outside"} <= set(po.columns)
    tal = po[po["assigner"] == "tal"]
    assert tal["region_slots_outside"].sum() == by["tal"]["region_slots_outside"]["total"]
    csv = run(
        "assigners",
        "val2017",
        "--root",
        root,
        "--predictions",
        real_predictions,
        "--format",
        "csv",
        "--assigners",
        "yolov3,mixed,tal",
        "--alpha",
        "1.0",
    )
    frame = pd.read_csv(__import__("io").StringIO(csv.stdout))
    assert frame["name"].tolist() == ["yolov3", "mixed", "tal"]
    # alpha = 1: mixed is yolov3 on the stored slots (identical positives where predictions are finite)
    mixed = frame.set_index("name").loc["mixed"]
    assert mixed["mean_jaccard"] == 1.0 and mixed["disjoint_objects"] == 0


@pytest.mark.realdata
@pytest.mark.slow
def test_real_predictions_streamed_equals_whole(real_data, real_predictions):  # noqa: F811
    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    whole = quiet(assigner_lab, ds, real_predictions, iou="giou")
    blocks = quiet(assigner_lab, ds, real_predictions, iou="giou", chunk_objects=50)
    assert whole.to_dict() == blocks.to_dict()


def test_cli_box_only_builtin_sample_and_errors():
    res = run("assigners", "--anchors", "yolov3", "--size", "416", "--format", "json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["objects"] == 929 and d["anchors"] == "yolov3" and d["size"] == 416 and d["predictions"] is False
    assert [a["name"] for a in d["assigners"]] == ["yolov3", "atss", "darknet", "topk-anchor", "yolov5"]
    assert "crowd annotation(s) left out" in res.stderr
    table = run("assigners", "--anchors", "yolov3", "--assigners", "yolov3,atss")
    assert table.exit_code == 0 and "positives per level" in table.stdout
    for args, msg in [
        (["--assigners", "tal"], "need predictions"),
        (["--assigners", "x"], "--assigners must be"),
        (["--topk", "0"], "--topk"),
        (["--per-object", "a.txt"], "--per-object"),
    ]:
        bad = run("assigners", *args)
        assert bad.exit_code == 2 and bad.stderr.startswith("error: ") and msg in bad.stderr, bad.output
        assert "Traceback" not in bad.output


@pytest.mark.gpu
def test_lab_on_cuda_matches_cpu():
    ds = load_dataset("sample")
    cpu = quiet(assigner_lab, ds, anchors="yolov3", size=416).to_dict()
    gpu = quiet(assigner_lab, ds, anchors="yolov3", size=416, device=torch.device("cuda")).to_dict()
    for a, b in zip(cpu["assigners"], gpu["assigners"]):
        assert a["positives"] == b["positives"] and a["per_anchor"] == b["per_anchor"]
        assert a["agreement"]["disjoint_objects"] == b["agreement"]["disjoint_objects"]
        assert math.isclose(a["mean_anchor_wh_iou"], b["mean_anchor_wh_iou"], rel_tol=1e-9)


def test_lab_block_without_predictions_names_the_assigner_that_needs_them():
    """A prediction-aware assigner on a box-only block: the one-line error (before: AttributeError on None)."""
    from test_assign import yolov3_grid

    from cocostat import assigners
    from cocostat.assign import assign
    from cocostat.lab import lab_block

    grid = yolov3_grid()
    boxes, image = torch.tensor([[10.0, 10.0, 60.0, 90.0]], dtype=torch.float64), torch.zeros(1, dtype=torch.int64)
    ref = assigners.create("yolov3")
    with pytest.raises(OptionError, match="^the tal assigner needs predictions: give --predictions DIR"):
        lab_block(boxes, image, grid, [ref, assigners.create("tal")], ref)
    positives = lab_block(boxes, image, grid, [ref], ref).objects["yolov3"]["positives"]
    assert positives.tolist() == [float(assign(boxes, grid, "yolov3").positives.sum())]
