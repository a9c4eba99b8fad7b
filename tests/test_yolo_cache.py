"""The YOLO parsed-array cache: every change a user makes to a layout is a miss, an unchanged layout a
hit, and no entry is written while a file could still change within its timestamp tick.

Real data: the coco-tiny val2017 laid out by ``cocostat convert`` in tmp_path, and a copy of real
coco128 images for the image replacements (the images must be files to be replaced in place)."""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cocostat import yolo
from cocostat.data import load_dataset
from cocostat.errors import CocostatWarning
from tests.test_yolo import _mini, run

OLD = 100  # seconds: how far back a freshly written layout is dated, well past yolo.SETTLE_NS


_aged = [0]


def age(root: Path) -> None:
    """Date every file, link and folder under ``root`` modified in the last 5 s about :data:`OLD`
    seconds back (as if it had been written then), so that the cache key is settled; older ones keep
    their mtime. Each call dates to a later whole second than the last, so two edits never share an
    mtime, even on a filesystem with whole-second timestamps."""
    now = time.time_ns()
    _aged[0] += 1
    then = (now // 10**9 - OLD + _aged[0] % 50) * 10**9
    for d, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = os.path.join(d, name)
            if os.lstat(p).st_mtime_ns > now - 5 * 10**9:
                os.utime(p, ns=(then, then), follow_symlinks=False)
    if os.stat(root).st_mtime_ns > now - 5 * 10**9:
        os.utime(root, ns=(then, then))


class Reads:
    """Counts the cold reads (the cache misses) of ``yolo._read_all``."""

    def __init__(self, monkeypatch):
        self.n = 0
        orig = yolo._read_all

        def counted(*a, **k):
            self.n += 1
            return orig(*a, **k)

        monkeypatch.setattr(yolo, "_read_all", counted)


def load(cfg: Path, split: str | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        return load_dataset(str(cfg), split=split)


@pytest.fixture
def converted(real_data, tmp_path, monkeypatch):
    """coco-tiny val2017 written by ``cocostat convert`` (labels/val2017/*.txt, image symlinks), dated
    back, with a cache folder of its own; returns (YAML, labels folder, reads counter)."""
    monkeypatch.setenv("COCOSTAT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "tiny"
    res = run("convert", "--root", real_data / "coco-tiny", "val2017", "-o", out, "--folder", "val2017")
    assert res.exit_code == 0, res.output
    age(out)
    return out / "tiny.yaml", out / "labels" / "val2017", Reads(monkeypatch)


def _cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").glob("*-yolo-*.npz"))


def test_unchanged_layout_hits(converted, tmp_path):
    cfg, _, reads = converted
    first = load(cfg)
    assert reads.n == 1 and len(_cache_files(tmp_path)) == 1
    again = load(cfg)
    assert reads.n == 1  # read from the cache
    for k in ("image_id", "width", "height", "bbox", "area", "category_id", "offsets", "file_name"):
        np.testing.assert_array_equal(getattr(first, k), getattr(again, k))
    assert first.num_annotations == 804


def test_label_edited_in_place_same_size_misses(converted, tmp_path):
    cfg, labels, reads = converted
    first = load(cfg)
    lab = sorted(labels.iterdir())[0]
    text = lab.read_text()
    cls, rest = text.split(" ", 1)
    new_cls = str(int(cls) - 1 if int(cls) in (9, 79) else int(cls) + 1)  # as many digits: the same size
    ino = lab.stat().st_ino
    with open(lab, "r+") as f:  # rewritten in place, the same inode
        f.write(new_cls + " " + rest)
    assert lab.stat().st_size == len(text) and lab.stat().st_ino == ino
    age(lab.parent.parent.parent)
    edited = load(cfg)
    assert reads.n == 2
    i = int(np.flatnonzero(first.file_name == lab.stem + ".jpg")[0])
    j = int(first.offsets[i])  # the file's first line is the image's first annotation
    cats = first.categories["category_id"].to_numpy()
    assert first.category_id[j] == cats[int(cls)] and edited.category_id[j] == cats[int(new_cls)]
    assert np.delete(edited.category_id, j).tolist() == np.delete(first.category_id, j).tolist()


def test_label_added_and_removed_miss(converted, tmp_path):
    cfg, labels, reads = converted
    first = load(cfg)
    # remove one image's label file: its objects are gone
    lab = sorted(labels.iterdir())[3]
    n = len(lab.read_text().splitlines())
    lab.unlink()
    age(labels.parent.parent)
    removed = load(cfg)
    assert reads.n == 2 and removed.num_annotations == first.num_annotations - n
    # a label file added (one line) for that image
    (labels / lab.name).write_text("0 0.5 0.5 0.25 0.25\n")
    age(labels.parent.parent)
    added = load(cfg)
    assert reads.n == 3 and added.num_annotations == removed.num_annotations + 1
    # renamed away from its image: the image has no labels again, the state of the first removal,
    # whose entry is read (the key is a function of the state, not of the history)
    os.rename(labels / lab.name, labels / ("x" + lab.name))
    age(labels.parent.parent)
    renamed = load(cfg)
    assert reads.n == 3 and renamed.num_annotations == removed.num_annotations
    np.testing.assert_array_equal(renamed.bbox, removed.bbox)
    # renamed back: the added one's entry
    os.rename(labels / ("x" + lab.name), labels / lab.name)
    age(labels.parent.parent)
    assert load(cfg).num_annotations == added.num_annotations and reads.n == 3


def test_image_replaced_misses(real_data, tmp_path, monkeypatch):
    """Real coco128 images copied as files; one replaced by one of other dimensions the way tools
    replace files (a new file renamed over the old), another added, another removed."""
    monkeypatch.setenv("COCOSTAT_CACHE", str(tmp_path / "cache"))
    src = sorted((real_data / "coco128" / "train2017").iterdir())[:6]
    root = tmp_path / "c128"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for p in src[:5]:
        shutil.copy(p, root / "images" / "train" / p.name)
        (root / "labels" / "train" / (p.stem + ".txt")).write_text("0 0.5 0.5 0.5 0.5\n")
    cfg = root / "c128.yaml"
    cfg.write_text(yaml.safe_dump({"train": "images/train", "names": ["thing"]}))
    age(root)
    reads = Reads(monkeypatch)
    first = load(cfg, "train")
    assert load(cfg, "train").width.tolist() == first.width.tolist() and reads.n == 1
    with Image.open(src[0]) as im:
        w, h = im.size
    assert first.width[0] == w and first.height[0] == h  # real sizes from the real headers
    target = root / "images" / "train" / src[0].name
    tmp = target.with_name(".new.jpg.part")  # not an image suffix: never listed
    Image.new("RGB", (w // 2, h // 3), (10, 200, 30)).save(tmp, format="JPEG")
    os.replace(tmp, target)
    age(root)
    replaced = load(cfg, "train")
    assert reads.n == 2
    assert (replaced.width[0], replaced.height[0]) == (w // 2, h // 3)
    np.testing.assert_allclose(replaced.bbox[0], [w // 2 / 4, h // 3 / 4, w // 2 / 2, h // 3 / 2])
    # an image added, then one removed
    shutil.copy(src[5], root / "images" / "train" / src[5].name)
    age(root)
    assert load(cfg, "train").num_images == 6 and reads.n == 3
    (root / "images" / "train" / src[1].name).unlink()
    age(root)
    assert load(cfg, "train").num_images == 5 and reads.n == 4


def test_fresh_files_are_read_but_not_cached_until_settled(tmp_path, monkeypatch):
    """A label file written less than SETTLE_NS ago could change again within its timestamp tick
    (1-2 s on FAT, ext3, HFS+) with the same size and mtime: no entry is written under that key."""
    monkeypatch.setenv("COCOSTAT_CACHE", str(tmp_path / "cache"))
    cfg = _mini(tmp_path / "d", {"a": "0 0.5 0.5 0.5 0.5\n"})
    reads = Reads(monkeypatch)
    assert not yolo.cache_key(yolo.resolve_yolo(cfg)).settled
    load(cfg)
    load(cfg)
    assert reads.n == 2 and _cache_files(tmp_path) == []
    age(tmp_path / "d")
    key = yolo.cache_key(yolo.resolve_yolo(cfg))
    assert key.settled
    load(cfg)
    load(cfg)
    assert reads.n == 3 and [p.name for p in _cache_files(tmp_path)] == [f"mini-val-yolo-{key.digest}.npz"]


def test_cache_hit_replays_warnings_and_sees_label_edits(tmp_path, monkeypatch):
    monkeypatch.setenv("COCOSTAT_CACHE", str(tmp_path / "cache"))
    cfg = _mini(tmp_path / "d", {"a": "0 0.5 0.5 0.5 0.5\n", "b": None})
    age(tmp_path / "d")
    with pytest.warns(CocostatWarning, match="no label file"):
        first = load_dataset(str(cfg))

    def boom(*a, **k):
        raise AssertionError("cache missed")

    monkeypatch.setattr(yolo, "_read_all", boom)
    with pytest.warns(CocostatWarning, match="1 of 2 image"):
        again = load_dataset(str(cfg))
    np.testing.assert_array_equal(first.bbox, again.bbox)
    monkeypatch.undo()
    monkeypatch.setenv("COCOSTAT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "d" / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n")  # different size
    edited = load(cfg)
    (tmp_path / "d" / "labels" / "val" / "b.txt").write_text("1 0.5 0.5 0.5 0.5\n")  # a new label file
    added = load(cfg)
    np.testing.assert_allclose(edited.bbox, [[75, 25, 50, 50]])
    assert added.num_annotations == 2


def test_key_covers_config_names_and_listing(tmp_path):
    cfg = _mini(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n", "b": None})
    age(tmp_path)
    base = yolo.cache_key(yolo.resolve_yolo(cfg)).digest
    assert yolo.cache_key(yolo.resolve_yolo(cfg)).digest == base  # the same layout, the same key
    cfg.write_text(yaml.safe_dump({"val": "images/val", "names": ["a", "b", "renamed"]}))
    assert yolo.cache_key(yolo.resolve_yolo(cfg)).digest != base
    cfg.write_text(yaml.safe_dump({"val": "images/val", "names": ["a", "b", "c"]}))
    assert yolo.cache_key(yolo.resolve_yolo(cfg)).digest == base
    lst = tmp_path / "list.txt"
    lst.write_text("images/val/a.jpg\n")
    only_a = yolo.cache_key(yolo.resolve_yolo(lst)).digest
    lst.write_text("images/val/a.jpg\nimages/val/b.jpg\n")
    assert yolo.cache_key(yolo.resolve_yolo(lst)).digest != only_a


def test_darknet_layout_labels_beside_images_and_subfolders(tmp_path, monkeypatch):
    """A folder DATASET with each label beside its image (no ``/images/`` in the path) and a
    subfolder: both folders are in the key, the .txt files are not taken for images."""
    monkeypatch.setenv("COCOSTAT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "obj"
    (root / "more").mkdir(parents=True)
    for stem, folder in (("a", root), ("b", root), ("c", root / "more")):
        Image.new("RGB", (64, 32)).save(folder / f"{stem}.jpg")
        (folder / f"{stem}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    age(root)
    reads = Reads(monkeypatch)
    src = yolo.resolve_yolo(root)
    assert [Path(p).relative_to(root).as_posix() for p in src.image_paths] == ["a.jpg", "b.jpg", "more/c.jpg"]
    assert yolo._label_paths(src.image_paths)[1] == [str(root), str(root / "more")]
    assert load(root).num_annotations == 3 and load(root).num_annotations == 3 and reads.n == 1
    Image.new("RGB", (64, 32)).save(root / "more" / "d.jpg")  # an image added in the subfolder
    age(root)
    assert load(root).num_images == 4 and reads.n == 2
    (root / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n0 0.25 0.25 0.5 0.5\n")  # a label edited beside its image
    age(root)
    assert load(root).num_annotations == 4 and reads.n == 3
