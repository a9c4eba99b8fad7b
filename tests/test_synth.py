"""Tests of benchmarks.synth, the synthetic COCO annotation-file generator (small scales only)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import synth  # the repo root is on sys.path via pyproject's pytest pythonpath

SCALE = 0.002
MISSING_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


@pytest.fixture(scope="module")
def data() -> dict:
    return synth.generate("train2017", seed=0, scale=SCALE)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    return synth.write(tmp_path_factory.mktemp("synth") / "train_synth.json", "train2017", 0, SCALE)


def _quiet_coco(path: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_deterministic_for_a_seed(data):
    assert synth.generate("train2017", seed=0, scale=SCALE) == data


def test_different_seeds_differ(data):
    other = synth.generate("train2017", seed=1, scale=SCALE)
    assert other["images"] != data["images"]
    assert other["annotations"] != data["annotations"]


@pytest.mark.parametrize("like", ["train2017", "val2017"])
@pytest.mark.parametrize("scale", [SCALE, 0.01])
def test_counts_match_preset_times_scale(like, scale):
    preset = synth.PRESETS[like]
    d = synth.generate(like, seed=3, scale=scale)
    assert len(d["images"]) == round(preset.n_images * scale)
    assert len(d["annotations"]) == round(preset.n_annotations * scale)
    n_crowd = sum(a["iscrowd"] for a in d["annotations"])
    assert n_crowd == round(preset.n_crowd * scale)
    assert synth.expected_counts(like, scale) == (len(d["images"]), len(d["annotations"]), n_crowd)
    # about 1% of the images have no annotation
    used = {a["image_id"] for a in d["annotations"]}
    n_empty = sum(img["id"] not in used for img in d["images"])
    assert n_empty == round(len(d["images"]) * 0.01)


def test_real_presets():
    assert synth.expected_counts("train2017") == (118_287, 860_001, 10_050)
    assert synth.expected_counts("val2017") == (5_000, 36_781, 446)


def test_categories_are_cocos(data):
    cats = data["categories"]
    assert len(cats) == 80
    ids = [c["id"] for c in cats]
    assert ids == sorted(ids)
    assert set(ids) == set(range(1, 91)) - MISSING_IDS
    assert {c["id"]: c["name"] for c in cats}[1] == "person"
    assert {c["id"]: c["name"] for c in cats}[90] == "toothbrush"
    assert all(c["supercategory"] for c in cats)


def test_ids_unique(data):
    img_ids = [i["id"] for i in data["images"]]
    ann_ids = [a["id"] for a in data["annotations"]]
    assert len(set(img_ids)) == len(img_ids)
    assert len(set(ann_ids)) == len(ann_ids)


def test_references_exist(data):
    img_ids = {i["id"] for i in data["images"]}
    cat_ids = {c["id"] for c in data["categories"]}
    assert all(a["image_id"] in img_ids for a in data["annotations"])
    assert all(a["category_id"] in cat_ids for a in data["annotations"])


def test_image_fields(data):
    for img in data["images"]:
        assert img["file_name"] == f"{img['id']:012d}.jpg"
        assert img["coco_url"].endswith(img["file_name"])
        assert 1 <= img["license"] <= 8
        assert img["width"] > 0 and img["height"] > 0
        assert len(img["date_captured"]) == 19
    long_side = np.array([max(i["width"], i["height"]) for i in data["images"]])
    assert (long_side == 640).mean() > 0.9


def test_boxes_inside_image(data):
    imgs = {i["id"]: i for i in data["images"]}
    eps = 1e-6
    for a in data["annotations"]:
        img = imgs[a["image_id"]]
        x, y, w, h = a["bbox"]
        assert x >= 0 and y >= 0 and w >= 0 and h >= 0
        assert x + w <= img["width"] + eps and y + h <= img["height"] + eps
        assert a["area"] >= 0
        assert all(round(v, 2) == v for v in a["bbox"])
        seg = a["segmentation"]
        if a["iscrowd"]:
            assert seg["size"] == [img["height"], img["width"]]
            assert sum(seg["counts"]) == img["height"] * img["width"]
        else:
            (poly,) = seg
            assert len(poly) % 2 == 0 and 10 <= len(poly) // 2 <= 40
            xs, ys = np.array(poly[0::2]), np.array(poly[1::2])
            # bbox is the polygon's tight bounds
            assert xs.min() == pytest.approx(x) and xs.max() == pytest.approx(x + w)
            assert ys.min() == pytest.approx(y) and ys.max() == pytest.approx(y + h)


def test_written_file_matches_generate_and_loads_with_pycocotools(written, data):
    assert json.loads(written.read_bytes()) == data
    assert not [p for p in written.parent.iterdir() if p.name != written.name]  # no temp left
    coco = _quiet_coco(written)
    assert len(coco.imgs) == len(data["images"])
    assert len(coco.anns) == len(data["annotations"])
    assert len(coco.cats) == 80


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2
def test_masks_match_area_and_bbox(written):
    from pycocotools import mask as mask_utils

    coco = _quiet_coco(written)
    anns = list(coco.anns.values())
    crowd = [a for a in anns if a["iscrowd"]]
    assert crowd
    for a in crowd:
        m = coco.annToMask(a)
        assert m.sum() == a["area"]
        rle = mask_utils.frPyObjects(a["segmentation"], *a["segmentation"]["size"])
        assert np.allclose(mask_utils.toBbox(rle), a["bbox"])
    # polygon areas are their shoelace areas, close to the rasterised mask's
    ratios = []
    for a in anns:
        if not a["iscrowd"] and a["area"] > 32**2:
            ratios.append(coco.annToMask(a).sum() / a["area"])
    assert 0.9 < float(np.median(ratios)) < 1.1


def test_size_and_frequency_statistics():
    d = synth.generate("train2017", seed=5, scale=0.01)
    anns = d["annotations"]
    area = np.array([a["area"] for a in anns if not a["iscrowd"]])
    small = (area < 32**2).mean()
    medium = ((area >= 32**2) & (area < 96**2)).mean()
    large = (area >= 96**2).mean()
    assert 0.35 < small < 0.47
    assert 0.28 < medium < 0.40
    assert 0.19 < large < 0.30
    person = np.mean([a["category_id"] == 1 for a in anns])
    assert 0.24 < person < 0.37
    crowd_area = np.median([a["area"] for a in anns if a["iscrowd"]])
    assert crowd_area > 4 * np.median(area)
    n_zero = sum(a["bbox"][2] == 0 or a["bbox"][3] == 0 for a in anns)
    assert n_zero <= 0.002 * len(anns)
    per_image = np.bincount(np.unique([a["image_id"] for a in anns], return_inverse=True)[1])
    assert 6.0 < len(anns) / len(d["images"]) < 8.5
    assert per_image.max() > 4 * np.median(per_image)  # long tail
    assert per_image.max() <= 900


def test_cli(tmp_path, capsys):
    out = tmp_path / "sub" / "val.json"
    assert synth.main(["--like", "val2017", "-o", str(out), "--seed", "2", "--scale", "0.01"]) == 0
    assert json.loads(out.read_bytes()) == synth.generate("val2017", seed=2, scale=0.01)
    assert "annotations" in capsys.readouterr().err


def test_bad_arguments():
    with pytest.raises(ValueError):
        synth.generate("train2014")
    with pytest.raises(ValueError):
        synth.generate("val2017", scale=0)
    with pytest.raises(SystemExit):
        synth.main(["--like", "val2017", "-o", "/nonexistent/x.json", "--scale", "-1"])
