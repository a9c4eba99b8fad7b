"""YOLO-format datasets: the real coco-tiny val2017 laid out as ultralytics does, read back through
every path (YAML, .data, list, folder), compared with the COCO JSON; bad label files; convert."""

from __future__ import annotations

import json
import os
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from cocostat import yolo
from cocostat.cli import main
from cocostat.data import load_coco, load_dataset
from cocostat.errors import CocostatWarning, DatasetFormatError, OptionError


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _coco_json(real_data: Path) -> Path:
    return real_data / "coco-tiny" / "annotations" / "instances_val2017.json"


def write_yolo_layout(coco_json: Path, image_dir: Path, root: Path, empty_files: int = 0) -> Path:
    """Independent converter (plain json and loops): COCO -> ultralytics layout under ``root``, crowd
    left out, images symlinked; the first ``empty_files`` images without boxes get an empty label file."""
    d = json.loads(coco_json.read_text())
    cats = sorted(c["id"] for c in d["categories"])
    index = {c: i for i, c in enumerate(cats)}
    names = {c["id"]: c["name"] for c in d["categories"]}
    lines: dict[int, list[str]] = {}
    for a in d["annotations"]:
        if a["iscrowd"]:
            continue
        im = next(i for i in d["images"] if i["id"] == a["image_id"])
        x, y, w, h = a["bbox"]
        W, H = im["width"], im["height"]
        lines.setdefault(a["image_id"], []).append(
            f"{index[a['category_id']]} {(x + w / 2) / W:.12f} {(y + h / 2) / H:.12f} {w / W:.12f} {h / H:.12f}"
        )
    (root / "images" / "val2017").mkdir(parents=True)
    (root / "labels" / "val2017").mkdir(parents=True)
    empty = 0
    for im in d["images"]:
        os.symlink(image_dir / im["file_name"], root / "images" / "val2017" / im["file_name"])
        label = root / "labels" / "val2017" / (Path(im["file_name"]).stem + ".txt")
        if im["id"] in lines:
            label.write_text("\n".join(lines[im["id"]]) + "\n")
        elif empty < empty_files:
            label.write_text("")
            empty += 1
    cfg = root / "coco-tiny.yaml"
    cfg.write_text(yaml.safe_dump({"path": str(root), "val": "images/val2017", "names": [names[c] for c in cats]}))
    return cfg


@pytest.fixture(scope="module")
def yolo_val(real_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("yolo-val")
    return write_yolo_layout(_coco_json(real_data), real_data / "coco-tiny" / "val2017", root)


def _json(*args) -> dict:
    res = run(*args, "--format", "json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


# --------------------------------------------------------------------------------------------------
# The same figures as the COCO JSON without its crowd boxes
# --------------------------------------------------------------------------------------------------
def test_loads_like_the_coco_json_without_crowd(real_data, yolo_val):
    coco = load_coco(_coco_json(real_data), cache=False).without_crowd()
    ds = load_dataset(str(yolo_val), cache=False)
    assert ds.name == "coco-tiny-val" and ds.num_images == coco.num_images == 80
    np.testing.assert_array_equal(ds.image_id, coco.image_id)  # numeric stems are the COCO ids
    np.testing.assert_array_equal(ds.width, coco.width)  # from the JPEG headers
    np.testing.assert_array_equal(ds.height, coco.height)
    np.testing.assert_array_equal(ds.offsets, coco.offsets)
    np.testing.assert_array_equal(ds.class_idx, coco.class_idx)  # same per-image line order
    np.testing.assert_allclose(ds.bbox, coco.bbox, atol=1e-6 * 640)
    assert not ds.iscrowd.any()
    assert list(ds.categories["name"]) == list(coco.categories["name"])
    np.testing.assert_array_equal(ds.categories["category_id"], np.arange(1, 81))  # class index + 1
    assert (ds.image_dir / ds.file_name[0]).is_file()


def test_info_matches_coco(real_data, yolo_val):
    coco_json = _coco_json(real_data)
    y = _json("info", yolo_val)
    c = _json("info", coco_json)
    raw = json.loads(coco_json.read_text())
    crowd = sum(a["iscrowd"] for a in raw["annotations"])
    assert y["images"] == c["images"] == 80
    assert y["annotations"] == c["annotations"] - crowd == 804
    assert y["crowd"] == 0 and y["categories"] == c["categories"] == 80
    # per category: the COCO counts minus its crowd boxes (names and order equal; ids are index + 1)
    by_name = {r["name"]: r["annotations"] for r in c["per_category"]}
    for a in raw["annotations"]:
        if a["iscrowd"]:
            by_name[next(x["name"] for x in raw["categories"] if x["id"] == a["category_id"])] -= 1
    assert {r["name"]: r["annotations"] for r in y["per_category"]} == by_name
    # size buckets: a YOLO box has no segment area, so they count the box area w * h
    areas = [a["bbox"][2] * a["bbox"][3] for a in raw["annotations"] if not a["iscrowd"]]
    assert y["size_buckets"] == {
        "small": sum(a < 32**2 for a in areas),
        "medium": sum(32**2 <= a < 96**2 for a in areas),
        "large": sum(a >= 96**2 for a in areas),
    }
    noc = load_coco(coco_json, cache=False).without_crowd()
    from cocostat.summary import info

    expect = info(noc).to_dict()["box_percentiles"]
    for stat, row in y["box_percentiles"].items():
        for col, v in row.items():
            assert v == pytest.approx(expect[stat][col], rel=1e-6, abs=1e-6)


def test_kmeans_matches_coco(real_data, yolo_val):
    args = ["-k", "6", "--evolve", "30", "--restarts", "2", "--device", "cpu"]
    y = _json("kmeans", yolo_val, *args)
    c = _json("kmeans", _coco_json(real_data), *args)  # kmeans leaves crowd out by default
    assert y["boxes"] == c["boxes"] == 804 and y["excluded"] == {"crowd": 0, "zero_size": 0}
    assert c["excluded"]["crowd"] == 11
    assert y["anchors"] == c["anchors"] and y["best_for"] == c["best_for"] and y["masks"] == c["masks"]
    for k, v in c["metrics"].items():
        assert y["metrics"][k] == pytest.approx(v, abs=1e-6)
    assert y["darknet"] == c["darknet"]


def test_overlap_matches_coco_exclude_crowd(real_data, yolo_val):
    y = _json("overlap", yolo_val)
    c = _json("overlap", _coco_json(real_data), "--exclude-crowd")
    assert c.pop("exclude_crowd") is True and y.pop("exclude_crowd") is False  # YOLO has no crowd to drop
    for d in (y, c):
        d.pop("dataset", None), d.pop("name", None)
    assert y == c


# --------------------------------------------------------------------------------------------------
# The other ways of naming a YOLO dataset
# --------------------------------------------------------------------------------------------------
def test_darknet_data_and_names(yolo_val, tmp_path):
    root = yolo_val.parent
    names = [n for n in yaml.safe_load(yolo_val.read_text())["names"]]
    (tmp_path / "coco.names").write_text("\n".join(names) + "\n")
    lst = tmp_path / "val.txt"
    lst.write_text("\n".join(str(p) for p in sorted((root / "images" / "val2017").iterdir())) + "\n")
    data = tmp_path / "coco.data"
    data.write_text(
        f"classes = 80\ntrain = {lst}\nvalid = val.txt  # relative to this file\nnames = coco.names\nbackup = backup/\n"
    )
    ds = load_dataset(str(data), cache=False)
    ref = load_dataset(str(yolo_val), cache=False)
    assert ds.name == "coco-val"
    assert list(ds.categories["name"]) == names
    np.testing.assert_array_equal(ds.bbox, ref.bbox)
    train = load_dataset(str(data), split="train", cache=False)
    assert train.num_annotations == ref.num_annotations
    data.with_name("bad.data").write_text("classes = many\nvalid = val.txt\n")
    res = run("info", data.with_name("bad.data"))
    assert res.exit_code == 2 and "error: bad.data: classes must be a whole number >= 0, got 'many'" in res.stderr
    res = run("info", data, "--split", "test")
    assert res.exit_code == 2 and "error: coco.data has no 'test' split (it has: train, val)" in res.stderr


def test_yaml_names_dict_list_and_category_ids(yolo_val, tmp_path):
    cfg = yaml.safe_load(yolo_val.read_text())
    as_dict = tmp_path / "d.yaml"
    as_dict.write_text(yaml.safe_dump({**cfg, "names": dict(enumerate(cfg["names"]))}))
    with_ids = tmp_path / "ids.yaml"
    ids = [3 * i + 7 for i in range(80)]
    with_ids.write_text(yaml.safe_dump({**cfg, "category_ids": ids}))
    a, b = load_dataset(str(as_dict), cache=False), load_dataset(str(yolo_val), cache=False)
    assert list(a.categories["name"]) == cfg["names"]
    np.testing.assert_array_equal(a.category_id, b.category_id)
    c = load_dataset(str(with_ids), cache=False)
    np.testing.assert_array_equal(c.category_id, np.array(ids)[b.class_idx])
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**cfg, "names": {0: "a", 2: "b"}}))
    res = run("info", bad)
    assert res.exit_code == 2 and "names must have the keys 0..1" in res.stderr


def test_image_list_and_folder(yolo_val, tmp_path):
    root = yolo_val.parent
    ref = load_dataset(str(yolo_val), cache=False)
    lst = root / "val-list.txt"
    lst.write_text("\n".join("./images/val2017/" + p.name for p in sorted((root / "images" / "val2017").iterdir())))
    by_list = load_dataset(str(lst), cache=False)
    by_folder = load_dataset(str(root / "images" / "val2017"), cache=False)
    for ds in (by_list, by_folder):
        np.testing.assert_array_equal(ds.bbox, ref.bbox)
        np.testing.assert_array_equal(ds.class_idx, ref.class_idx)
        assert list(ds.categories["name"]) == [str(i) for i in range(int(ref.class_idx.max()) + 1)]
    (root / "images" / "classes.txt").write_text("\n".join(ref.categories["name"]))
    try:
        named = load_dataset(str(root / "images" / "val2017"), cache=False)
        assert list(named.categories["name"]) == list(ref.categories["name"])
    finally:
        (root / "images" / "classes.txt").unlink()
    res = run("info", lst, "--split", "train")
    assert res.exit_code == 2 and "needs a dataset YAML or .data file" in res.stderr


def test_root_images_and_split_options_are_checked(real_data, yolo_val):
    res = run("info", yolo_val, "--images", real_data)
    assert res.exit_code == 2 and "--root and --images are for COCO JSON datasets" in res.stderr
    res = run("info", _coco_json(real_data), "--split", "val")
    assert res.exit_code == 2 and "--split is for YOLO dataset YAML or .data files" in res.stderr
    res = run("info", yolo_val, "--split", "train")
    assert res.exit_code == 2 and "has no 'train' split (it has: val)" in res.stderr


def test_fast_and_general_parse_agree_on_real_labels(yolo_val):
    files = sorted(str(p) for p in (yolo_val.parent / "labels" / "val2017").iterdir())
    datas = [Path(f).read_bytes() for f in files]
    buf = b"".join(datas)
    starts = np.cumsum([0] + [len(d) for d in datas[:-1]])
    nlines = np.array([d.count(b"\n") for d in datas])
    fast = yolo._boxes_only(buf, nlines, 80)
    assert fast is not None
    general = yolo._parse_labels(buf, files, starts, 80)
    for a, b in zip(fast, general, strict=True):
        np.testing.assert_array_equal(a, b)
    # tabs, double spaces, CRLF and blank lines leave the fast path, with the same result
    messy = [d.replace(b" ", b"\t", 1).replace(b"\n", b"\r\n\n") for d in datas]
    assert yolo._boxes_only(b"".join(messy), np.array([d.count(b"\n") for d in messy]), 80) is None
    again = yolo._parse_labels(b"".join(messy), files, np.cumsum([0] + [len(d) for d in messy[:-1]]), 80)
    for a, b in zip(again, general, strict=True):
        np.testing.assert_array_equal(a, b)


def test_pool_reads_the_same(yolo_val):
    src = yolo.resolve_yolo(yolo_val)
    one = yolo.load_yolo(src, cache=False, workers=1)
    two = yolo.load_yolo(src, cache=False, workers=2)
    for k in ("image_id", "width", "height", "bbox", "area", "class_idx", "offsets"):
        np.testing.assert_array_equal(getattr(one, k), getattr(two, k))


# --------------------------------------------------------------------------------------------------
# Label content: hand-built layouts
# --------------------------------------------------------------------------------------------------
def _mini(tmp_path: Path, labels: dict[str, str | None], size=(200, 100), names=("a", "b", "c")) -> Path:
    """A YAML dataset with one 200x100 JPEG per label entry (None: no label file)."""
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    for stem, text in labels.items():
        Image.new("RGB", size).save(tmp_path / "images" / "val" / f"{stem}.jpg")
        if text is not None:
            (tmp_path / "labels" / "val" / f"{stem}.txt").write_text(text)
    cfg = tmp_path / "mini.yaml"
    cfg.write_text(yaml.safe_dump({"val": "images/val", "names": list(names)}))  # no path: the YAML's folder
    return cfg


def test_missing_and_empty_label_files_are_counted(tmp_path):
    cfg = _mini(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n", "b": None, "c": "", "d": "\n  \n"})
    with pytest.warns(CocostatWarning, match=r"1 of 4 image\(s\) have no label file and 2 an empty one"):
        ds = load_dataset(str(cfg), cache=False)
    assert ds.num_images == 4 and ds.num_annotations == 1
    np.testing.assert_array_equal(ds.counts, [1, 0, 0, 0])
    np.testing.assert_array_equal(ds.image_id, [1, 2, 3, 4])  # stems are not numbers: positions
    np.testing.assert_allclose(ds.bbox, [[50, 25, 100, 50]])


def test_all_labels_missing_says_where_they_were_looked_for(tmp_path):
    cfg = _mini(tmp_path, {"a": None})
    with pytest.warns(CocostatWarning, match=r"labels are looked for at .*/labels/val/a\.txt"):
        load_dataset(str(cfg), cache=False)


def test_empty_folder_is_an_empty_dataset(tmp_path):
    (tmp_path / "images").mkdir()
    ds = load_dataset(str(tmp_path / "images"), cache=False)
    assert ds.num_images == 0 and ds.num_annotations == 0 and ds.bbox.shape == (0, 4)
    assert run("info", tmp_path / "images").exit_code == 0


def test_clipping_is_counted(tmp_path):
    cfg = _mini(
        tmp_path, {"a": "0 0.9 0.5 0.4 0.2\n1 0.5 0.5 0.2 0.2\n2 0.9950004 0.5 0.01 0.1\n1 -0.1 0.1 0.5 0.5 0.5 0.9\n"}
    )
    with pytest.warns(CocostatWarning, match=r"2 label\(s\) have coordinates outside \[0, 1\], clipped"):
        ds = load_dataset(str(cfg), cache=False)
    np.testing.assert_allclose(ds.bbox[0], [140, 40, 60, 20])  # x2 = 1.1 -> 1.0
    np.testing.assert_allclose(ds.bbox[2], [198, 45, 2, 10], atol=1e-3)  # x2 1 + 4e-7: clipped, not counted
    np.testing.assert_allclose(ds.bbox[3], [0, 10, 100, 80])


def test_segments_become_boxes_with_polygon_area(tmp_path):
    rng = np.random.default_rng(0)
    polys = [np.round(rng.random(2 * n), 9) for n in (3, 5, 12)]
    text = "".join(f"{i} " + " ".join(f"{v:.9f}" for v in p) + "\n" for i, p in enumerate(polys))
    cfg = _mini(tmp_path, {"a": "1 0.5 0.5 0.2 0.4\n" + text})
    ds = load_dataset(str(cfg), cache=False)
    W, H = 200, 100
    for row, p in enumerate(polys, start=1):
        xs, ys = [x * W for x in p[0::2]], [y * H for y in p[1::2]]
        area = 0.0
        for k in range(len(xs)):  # shoelace, plain loop
            area += xs[k] * ys[(k + 1) % len(xs)] - xs[(k + 1) % len(xs)] * ys[k]
        x0, y0 = min(xs), min(ys)
        np.testing.assert_allclose(ds.bbox[row], [x0, y0, max(xs) - x0, max(ys) - y0], atol=1e-6)
        assert ds.area[row] == pytest.approx(abs(area) / 2, abs=1e-6)
    assert ds.area[0] == pytest.approx(40 * 40)  # a box's area is w * h
    np.testing.assert_array_equal(ds.class_idx, [1, 0, 1, 2])


@pytest.mark.parametrize(
    "text, line, message",
    [
        (
            "0 0.5 0.5 0.5 0.5\n0 0.5 0.5 0.5\n",
            2,
            "expected 5 fields (class cx cy w h) or a class and 3 or more x y points, found 4, got '0 0.5 0.5 0.5'",
        ),
        ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4\n", 1, "found 8"),
        ("\n\n3 0.5 0.5 0.1 0.1\n", 3, "class must be an integer in 0..2, got '3 0.5 0.5 0.1 0.1'"),
        ("1.5 0.5 0.5 0.1 0.1\n", 1, "class must be an integer in 0..2"),
        ("-1 0.5 0.5 0.1 0.1\n", 1, "class must be an integer in 0..2"),
        ("0 0.5 0.5 0.1 0.1\n0 0.5 abc 0.1 0.1\n", 2, "value 'abc' is not a number"),
        ("0 0.5 nan 0.1 0.1\n", 1, "values must be finite"),
        ("0 0.5 0.5 -0.1 0.1\n", 1, "width and height must be >= 0"),
    ],
)
def test_bad_label_lines_name_file_and_line(tmp_path, text, line, message):
    cfg = _mini(tmp_path, {"000001": "0 0.5 0.5 0.5 0.5\n", "000002": text})
    res = CliRunner().invoke(main, ["info", str(cfg)])
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert "\n" not in err and "Traceback" not in res.output
    assert err.startswith(f"error: {tmp_path / 'labels' / 'val' / '000002.txt'} line {line}: ")
    assert message in err


def test_bad_images_and_missing_paths(tmp_path):
    cfg = _mini(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n"})
    (tmp_path / "images" / "val" / "b.jpg").write_bytes(b"not a jpeg")
    res = CliRunner().invoke(main, ["info", str(cfg)])
    assert res.exit_code == 2 and "b.jpg: cannot read its header" in res.stderr
    lst = tmp_path / "list.txt"
    lst.write_text("images/val/a.jpg\nimages/val/gone.jpg\n")
    res = CliRunner().invoke(main, ["info", str(lst)])
    assert res.exit_code == 2 and "gone.jpg does not exist" in res.stderr
    res = CliRunner().invoke(main, ["info", str(tmp_path / "nothing.yaml")])
    assert res.exit_code == 2 and "does not exist" in res.stderr


def test_header_reader_agrees_with_pillow_on_every_real_image(real_data):
    paths = sorted(str(p) for p in real_data.glob("*/*2017/*.jpg"))
    assert len(paths) == 288
    for p in paths:
        with Image.open(p) as im:
            assert yolo.image_size(p) == im.size == yolo._pillow_size(p), p


@pytest.mark.parametrize("orientation, order", [(1, "II"), (6, "II"), (8, "MM"), (3, "MM")])
def test_exif_orientation_swaps_width_and_height(tmp_path, orientation, order):
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw = exif.tobytes()
    if order == "MM":  # a big-endian EXIF block, as some cameras write (pillow writes little-endian)
        raw = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01" + bytes([0, orientation, 0, 0]) + b"\0\0\0\0"
    Image.new("RGB", (30, 20)).save(tmp_path / "rot.jpg", exif=raw)
    with Image.open(tmp_path / "rot.jpg") as im:
        assert im.getexif().get(0x0112) == orientation  # the file says what the test means
    want = (20, 30) if orientation in (6, 8) else (30, 20)
    assert yolo.image_size(str(tmp_path / "rot.jpg")) == want == yolo._pillow_size(str(tmp_path / "rot.jpg"))


def test_header_reader_formats(tmp_path):
    Image.new("RGB", (31, 17)).save(tmp_path / "p.png")
    Image.new("RGB", (33, 19)).save(tmp_path / "prog.jpg", progressive=True)
    Image.new("RGB", (35, 21)).save(tmp_path / "b.bmp")
    Image.new("L", (37, 23)).save(tmp_path / "g.jpg")
    for name, size in (("p.png", (31, 17)), ("prog.jpg", (33, 19)), ("b.bmp", (35, 21)), ("g.jpg", (37, 23))):
        assert yolo.image_size(str(tmp_path / name)) == size
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "g.jpg").read_bytes()[:30])  # truncated before the frame
    with pytest.raises(DatasetFormatError, match="cut.jpg: cannot read its header"):
        yolo.image_size(str(tmp_path / "cut.jpg"))


def test_label_path_rule():
    assert yolo.label_path("/d/images/a/images/x.y.jpg") == "/d/images/a/labels/x.y.txt"
    assert yolo.label_path("/d/imgs/x.png") == "/d/imgs/x.txt"


def test_label_paths_per_folder_follow_the_rule():
    """The per-folder shortcut of the cache key and the cold read gives label_path's answer for every
    path, in any order (folders revisited, nested, named images, leading dots, no extension)."""
    paths = [
        "/d/images/val/a.jpg",
        "/d/images/val/sub/b.x.png",
        "/d/images/val/c.jpeg",
        "/d/images/a/images/x.y.jpg",
        "/d/imgs/.hidden.jpg",
        "/d/imgs/.jpg",
        "/d/imgs/noext",
        "/d/images/val/d.JPG",
        "/images/e.jpg",
        "/f.jpg",
    ]
    labels, folders = yolo._label_paths(paths)
    assert labels == [yolo.label_path(p) for p in paths]
    assert folders == sorted({os.path.dirname(p) for p in paths})


# --------------------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------------------
def test_convert_round_trip_real(real_data, tmp_path):
    coco_json = _coco_json(real_data)
    out = tmp_path / "yolo"
    res = run("convert", coco_json, "-o", out, "--format", "json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    raw = json.loads(coco_json.read_text())
    assert summary["crowd_left_out"] == sum(a["iscrowd"] for a in raw["annotations"]) == 11
    assert (out / "images" / "val" / raw["images"][0]["file_name"]).is_symlink()
    back = tmp_path / "back.json"
    res = run("convert", out / "yolo.yaml", "-o", back)
    assert res.exit_code == 0, res.output
    got = json.loads(back.read_text())
    size = {i["id"]: (i["width"], i["height"]) for i in raw["images"]}
    assert sorted((i["id"], i["width"], i["height"]) for i in got["images"]) == sorted(
        (i["id"], i["width"], i["height"]) for i in raw["images"]
    )
    assert [(c["id"], c["name"]) for c in got["categories"]] == [
        (c["id"], c["name"]) for c in sorted(raw["categories"], key=lambda c: c["id"])
    ]
    want = sorted((a["image_id"], a["category_id"], *a["bbox"]) for a in raw["annotations"] if not a["iscrowd"])
    have = sorted((a["image_id"], a["category_id"], *a["bbox"]) for a in got["annotations"])
    assert len(want) == len(have) == 804
    for w, h in zip(want, have, strict=True):
        assert w[:2] == h[:2]
        W, H = size[w[0]]
        assert max(abs(w[2] - h[2]) / W, abs(w[3] - h[3]) / H, abs(w[4] - h[4]) / W, abs(w[5] - h[5]) / H) < 1e-6
    assert not any(a["iscrowd"] for a in got["annotations"])
    # run again over the existing folder: replaced as a whole, nothing left beside it
    assert run("convert", coco_json, "-o", out).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.json", "yolo"]


def test_convert_bad_targets(real_data, yolo_val, tmp_path):
    res = run("convert", yolo_val, "-o", tmp_path / "out")
    assert res.exit_code == 2 and "-o must end in .json" in res.stderr
    res = run("convert", _coco_json(real_data), "-o", tmp_path / "x.json")
    assert res.exit_code == 2 and "is already COCO JSON" in res.stderr
    res = run("convert", "sample", "-o", tmp_path / "y")
    assert res.exit_code == 2 and "needs its images: pass --images DIR" in res.stderr
    assert not (tmp_path / "y").exists() and list(tmp_path.iterdir()) == []


def test_convert_needs_every_image(real_data, tmp_path):
    """A source image that is missing: one line naming it and the count, exit 2, nothing written."""
    coco_json = _coco_json(real_data)
    raw = json.loads(coco_json.read_text())
    images = tmp_path / "imgs"
    images.mkdir()
    for im in raw["images"][:-2]:  # the last two left out
        os.symlink(real_data / "coco-tiny" / "val2017" / im["file_name"], images / im["file_name"])
    res = run("convert", coco_json, "--images", images, "-o", tmp_path / "out")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert f"2 of 80 image(s) are not in {images}" in res.stderr
    assert any(f"(first: {im['file_name']})" in res.stderr for im in raw["images"][-2:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def test_convert_refuses_two_images_sharing_a_label_file(tmp_path):
    """a.jpg and a.png would both be labelled by a.txt: the error names both, nothing is written."""
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (40, 20)).save(images / "a.jpg")
    Image.new("RGB", (40, 20)).save(images / "a.png")
    Image.new("RGB", (40, 20)).save(images / "b.jpg")
    coco = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 40, "height": 20},
            {"id": 2, "file_name": "b.jpg", "width": 40, "height": 20},
            {"id": 3, "file_name": "a.png", "width": 40, "height": 20},
        ],
        "annotations": [{"id": 1, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "x"}],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    res = run("convert", tmp_path / "c.json", "--images", images, "-o", tmp_path / "out")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert "images a.jpg and a.png would share the label file a.txt" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "imgs"]
    # the same stem in two folders is two label files
    (images / "x").mkdir()
    os.replace(images / "a.png", images / "x" / "a.png")
    coco["images"][2]["file_name"] = "x/a.png"
    (tmp_path / "c.json").write_text(json.dumps(coco))
    res = run("convert", tmp_path / "c.json", "--images", images, "-o", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "labels" / "val" / "x" / "a.txt").read_text() == "0 0.0625 0.2 0.075 0.2\n"
    assert load_dataset(str(tmp_path / "out" / "out.yaml"), cache=False).num_annotations == 1


def test_library_errors_are_cocostat_errors(tmp_path):
    cfg = _mini(tmp_path, {"a": "5 0.5 0.5 0.5 0.5\n"})
    with pytest.raises(DatasetFormatError, match="a.txt line 1"):
        load_dataset(str(cfg), cache=False)
    with pytest.raises(OptionError, match="^split must be one of"):
        yolo.resolve_yolo(cfg, "dev")


def test_a_report_of_a_yaml_split_reproduces_that_split(yolo_val, tmp_path):
    # the library call (no dataset_argv) must name the split in its reproducing commands: `train`
    # and `val` are different images, and commands default to different splits
    from cocostat.report import build_report

    cfg = yaml.safe_load(yolo_val.read_text())
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump({**cfg, "train": cfg["val"]}))
    ds = load_dataset(str(two), split="train", cache=False)
    assert ds.split == "train" and load_dataset(str(yolo_val), cache=False).split == "val"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = build_report(ds, out_dir=tmp_path / "rep", progress=False)
    command = res.section("info").command
    assert shlex.split(command)[1:4] == ["info", str(two), "--split"] and "--split train" in command
    out = _json(*shlex.split(command)[1:])
    assert out["annotations"] == ds.num_annotations
