"""The columnar COCO loader: counts against the raw JSON, ordering, cache, dataset resolution, bad input."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from cocostat.data import (
    cache_dir,
    from_dict,
    load_coco,
    load_dataset,
    resolve_dataset,
    sample_path,
)
from cocostat.errors import CocostatWarning, DatasetFormatError, DatasetNotFoundError


def tiny_coco(**over) -> dict:
    coco = {
        "images": [
            {"id": 7, "width": 100, "height": 50, "file_name": "a.jpg"},
            {"id": 3, "width": 64, "height": 64, "file_name": "b.jpg"},
        ],
        "categories": [{"id": 5, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 11, "image_id": 7, "category_id": 5, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0},
            {"id": 10, "image_id": 7, "category_id": 2, "bbox": [0, 0, 10, 10], "area": 90, "iscrowd": 1},
            {"id": 12, "image_id": 3, "category_id": 5, "bbox": [5, 5, 20, 10], "iscrowd": 0},
        ],
    }
    coco.update(over)
    return coco


def test_from_dict_columns_sorted_and_indexed():
    ds = from_dict(tiny_coco())
    assert ds.image_id.tolist() == [3, 7]
    # annotations sorted by (image index, annotation id); class_idx follows categories sorted by id
    assert ds.ann_id.tolist() == [12, 10, 11]
    assert ds.image_index.tolist() == [0, 1, 1]
    assert ds.ann_image_id.tolist() == [3, 7, 7]
    assert ds.category_id.tolist() == [5, 2, 5]
    assert ds.class_idx.tolist() == [1, 0, 1]
    assert ds.categories["category_id"].tolist() == [2, 5]
    assert ds.offsets.tolist() == [0, 1, 3]
    assert ds.iscrowd.tolist() == [False, True, False]
    # a missing area is the box area
    assert ds.area.tolist() == [200.0, 90.0, 12.0]
    np.testing.assert_array_equal(ds.boxes_xyxy()[0], [5, 5, 25, 15])


def test_without_crowd_keeps_images_and_offsets():
    ds = from_dict(tiny_coco()).without_crowd()
    assert ds.num_images == 2
    assert ds.ann_id.tolist() == [12, 11]
    assert ds.offsets.tolist() == [0, 1, 2]


def test_empty_dataset_has_shaped_arrays():
    ds = from_dict({"images": [], "categories": [], "annotations": []})
    assert ds.bbox.shape == (0, 4)
    assert ds.offsets.tolist() == [0]
    ds = from_dict({"images": [{"id": 1, "width": 2, "height": 2}], "categories": [{"id": 1}]})
    assert ds.num_annotations == 0 and ds.counts.tolist() == [0]


def _independent_counts(path: Path) -> dict:
    raw = json.loads(path.read_text())
    anns = raw["annotations"]
    per_cat = Counter(a["category_id"] for a in anns)
    imgs_per_cat = defaultdict(set)
    for a in anns:
        imgs_per_cat[a["category_id"]].add(a["image_id"])
    return {
        "images": len(raw["images"]),
        "images_with_annotations": len({a["image_id"] for a in anns}),
        "annotations": len(anns),
        "crowd": sum(a["iscrowd"] for a in anns),
        "categories": len(raw["categories"]),
        "per_category": {c: (per_cat[c], len(imgs_per_cat[c])) for c in per_cat},
        "small": sum(a["area"] < 32**2 for a in anns),
        "medium": sum(32**2 <= a["area"] < 96**2 for a in anns),
        "large": sum(a["area"] >= 96**2 for a in anns),
        "by_image": {i: sorted(a["id"] for a in anns if a["image_id"] == i) for i in {a["image_id"] for a in anns}},
    }


def _check_against_json(ds, path: Path):
    from cocostat.summary import info

    ref = _independent_counts(path)
    rep = info(ds).to_dict()
    for key in ("images", "images_with_annotations", "annotations", "crowd", "categories"):
        assert rep[key] == ref[key], key
    assert rep["size_buckets"] == {"small": ref["small"], "medium": ref["medium"], "large": ref["large"]}
    got = {r["category_id"]: (r["annotations"], r["images"]) for r in rep["per_category"] if r["annotations"]}
    assert got == ref["per_category"]
    # CSR grouping holds exactly the annotations of each image
    for i, img in enumerate(ds.image_id.tolist()):
        ids = ds.ann_id[ds.offsets[i] : ds.offsets[i + 1]].tolist()
        assert ids == ref["by_image"].get(img, [])


def test_sample_counts_match_json():
    ds = load_dataset()
    got = (ds.name, ds.num_images, ds.num_annotations, int(ds.iscrowd.sum()), ds.num_classes)
    assert got == ("sample", 128, 939, 10, 80)
    _check_against_json(ds, sample_path())
    assert sample_path().stat().st_size < 300_000


@pytest.mark.realdata
@pytest.mark.parametrize(
    "folder,split", [("coco-tiny", "val2017"), ("coco-tiny", "train2017"), ("coco128", "train2017")]
)
def test_real_files_match_json(real_data, folder, split):
    ds = load_dataset(split, root=real_data / folder)
    assert ds.image_dir == real_data / folder / split
    _check_against_json(ds, real_data / folder / "annotations" / f"instances_{split}.json")


@pytest.mark.realdata
def test_real_val_reference_counts(real_data):
    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    assert (ds.num_images, ds.num_annotations, int(ds.iscrowd.sum()), ds.num_classes) == (80, 815, 11, 80)


def test_cache_hit_and_invalidation(tmp_path):
    path = tmp_path / "instances_x.json"
    path.write_text(json.dumps(tiny_coco()))
    first = load_coco(path)
    cached = list(cache_dir().glob("instances_x-*.npz"))
    assert len(cached) == 1
    second = load_coco(path)
    for col in ("image_id", "file_name", "ann_id", "bbox", "class_idx", "offsets", "iscrowd"):
        np.testing.assert_array_equal(getattr(first, col), getattr(second, col))
    assert second.categories["name"].tolist() == ["dog", "cat"]
    # a cache hit still reports zero-size boxes, as a fresh parse does
    coco = tiny_coco()
    coco["annotations"][0]["bbox"] = [1, 2, 0, 3]
    zero = tmp_path / "instances_zero.json"
    zero.write_text(json.dumps(coco))
    for _ in range(2):
        with pytest.warns(CocostatWarning, match="instances_zero.json: 1 annotation"):
            load_coco(zero)
    assert len(list(cache_dir().glob("instances_zero-*.npz"))) == 1
    # a changed file (size and mtime) is parsed again, not served from the stale cache
    coco = tiny_coco()
    coco["annotations"].pop()
    path.write_text(json.dumps(coco))
    os.utime(path, ns=(1, 1))
    assert load_coco(path).num_annotations == 2
    assert load_coco(path, cache=False).num_annotations == 2


def test_resolve_split_path_and_env(tmp_path, monkeypatch):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "images" / "val2017").mkdir(parents=True)
    ann = root / "annotations" / "instances_val2017.json"
    ann.write_text(json.dumps(tiny_coco()))
    src = resolve_dataset("val2017", root=root)
    assert (src.name, src.annotations, src.image_dir) == ("val2017", ann, root / "images" / "val2017")
    src = resolve_dataset(str(ann))
    assert (src.name, src.image_dir) == ("instances_val2017", root / "images" / "val2017")
    assert resolve_dataset(str(ann), images=tmp_path).image_dir == tmp_path
    monkeypatch.setenv("COCOSTAT_ROOT", str(root))
    assert resolve_dataset("val2017").annotations == ann
    monkeypatch.delenv("COCOSTAT_ROOT")
    monkeypatch.chdir(tmp_path)
    assert resolve_dataset("val2017").annotations == Path("coco/annotations/instances_val2017.json")
    assert resolve_dataset(None).name == resolve_dataset("sample").name == "sample"


def test_not_found_names_every_place(tmp_path, monkeypatch):
    monkeypatch.delenv("COCOSTAT_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError) as exc:
        resolve_dataset("val2017")
    msg = str(exc.value)
    assert "datasets/coco/annotations/instances_val2017.json" in msg
    assert "coco/annotations/instances_val2017.json" in msg and "--root" in msg
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        resolve_dataset("missing.json")


def _bad(**over):
    return over


BAD_CASES = {
    "missing key": ({"images": []}, "categories"),
    "unknown image": (
        {"annotations": [{"id": 1, "image_id": 99, "category_id": 5, "bbox": [0, 0, 1, 1]}]},
        "annotation 1 .*image_id 99",
    ),
    "unknown category": (
        {"annotations": [{"id": 1, "image_id": 7, "category_id": 42, "bbox": [0, 0, 1, 1]}]},
        "annotation 1 .*category_id 42",
    ),
    "negative width": (
        {"annotations": [{"id": 4, "image_id": 7, "category_id": 5, "bbox": [10, 20, -3, 5]}]},
        r"annotation 4 .*bbox must be 4 finite numbers with w, h >= 0, got \[10.0, 20.0, -3.0, 5.0\]",
    ),
    "three numbers": ({"annotations": [{"id": 4, "image_id": 7, "category_id": 5, "bbox": [10, 20, 5]}]}, "bbox"),
    "bbox not numbers": ({"annotations": [{"id": 4, "image_id": 7, "category_id": 5, "bbox": "x"}]}, "bbox"),
    "duplicate annotation": (
        {
            "annotations": [
                {"id": 4, "image_id": 7, "category_id": 5, "bbox": [0, 0, 1, 1]},
                {"id": 4, "image_id": 3, "category_id": 5, "bbox": [0, 0, 1, 1]},
            ]
        },
        "annotation ids must be unique.*id 4",
    ),
    "duplicate image": (
        {"images": [{"id": 7, "width": 1, "height": 1}, {"id": 7, "width": 1, "height": 1}]},
        "image ids must be unique",
    ),
    "duplicate category": ({"categories": [{"id": 5}, {"id": 5}]}, "category ids must be unique"),
    "zero-size image": ({"images": [{"id": 7, "width": 0, "height": 1}]}, "image 7 .*positive"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_raises_clear_error(case):
    over, pattern = BAD_CASES[case]
    coco = tiny_coco(**over) if case != "missing key" else over
    with pytest.raises(DatasetFormatError, match=pattern):
        from_dict(coco)


def test_non_finite_and_invalid_json(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(tiny_coco()).replace("[1, 2, 3, 4]", "[1, 2, 1e999, 4]"))
    # msgspec refuses the overflowing number itself and says where it is
    with pytest.raises(DatasetFormatError, match=r"a.json: .*annotations\[0\]\.bbox\[2\]"):
        load_coco(path, cache=False)
    path.write_text('{"images": [')
    with pytest.raises(DatasetFormatError, match="a.json: invalid JSON"):
        load_coco(path, cache=False)


def test_zero_size_boxes_warn_with_count():
    coco = tiny_coco()
    coco["annotations"][0]["bbox"] = [1, 2, 0, 4]
    coco["annotations"][2]["bbox"] = [1, 2, 3, 0]
    with pytest.warns(CocostatWarning, match="2 annotation"):
        ds = from_dict(coco)
    assert ds.num_annotations == 3


def test_top_level_info_api():
    import cocostat

    rep = cocostat.info(cocostat.load_dataset())
    d = rep.to_dict()
    assert (d["images"], d["annotations"], d["crowd"]) == (128, 939, 10)
    assert len(rep.to_frame()) == 81 and (rep.to_frame()["scope"] == "category").sum() == 80
    with pytest.raises(AttributeError):
        cocostat.no_such_thing  # noqa: B018
